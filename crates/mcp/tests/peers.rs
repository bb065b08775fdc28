//! The client against the reference Python MCP SDK over each transport: handshake, tool
//! list, calls, tool errors, deadlines, refused credentials, and a server that dies.

use std::{collections::BTreeMap, path::Path, time::Duration};

use mcp::{Client, McpError, ServerConfig, Transport};
use serde_json::json;
use test_support::mcp_peer::{McpPeer, everything_server, mcp_python, mcp_script};

fn config(transport: Transport, url: Option<String>, python: &Path) -> ServerConfig {
    ServerConfig {
        label: "peer".into(),
        transport,
        url,
        headers: Vec::new(),
        command: Some(python.display().to_string()),
        args: vec![mcp_script().display().to_string(), "stdio".into()],
        env: BTreeMap::new(),
        timeout: Duration::from_secs(10),
    }
}

async fn exercise(client: &Client) {
    let info = client.server_info().await;
    assert_eq!(info.name, "switchyard-test-peer");
    assert!(mcp::SUPPORTED_VERSIONS.contains(&info.protocol_version.as_str()));
    let tools = client.list_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["add", "echo", "sleep", "fail", "die"]);
    assert_eq!(tools[0].description.as_deref(), Some("Adds two integers."));
    assert_eq!(tools[0].input_schema["required"], json!(["a", "b"]));

    let sum = client
        .call_tool("add", json!({"a": 2, "b": 40}))
        .await
        .unwrap();
    assert!(!sum.is_error);
    assert_eq!(sum.text(), "42");
    assert_eq!(sum.structured, Some(json!({"result": 42})));
    // Calls share the session, also at the same time.
    let (a, b) = tokio::join!(
        client.call_tool("echo", json!({"text": "one"})),
        client.call_tool("echo", json!({"text": "two"}))
    );
    assert_eq!(
        (a.unwrap().text(), b.unwrap().text()),
        ("one".into(), "two".into())
    );
    let failed = client
        .call_tool("fail", json!({"message": "boom"}))
        .await
        .unwrap();
    assert!(failed.is_error);
    let unknown = client.call_tool("nope", json!({})).await;
    match unknown {
        Err(McpError::Rpc { .. }) => {}
        Ok(result) => assert!(result.is_error, "{result:?}"),
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn every_transport_lists_and_calls_tools() {
    let Some(python) = mcp_python() else { return };
    let stdio = Client::connect(config(Transport::Stdio, None, &python))
        .await
        .unwrap();
    exercise(&stdio).await;
    stdio.close().await;
    for (transport, name) in [
        (Transport::Sse, "sse"),
        (Transport::StreamableHttp, "streamable-http"),
    ] {
        let peer = McpPeer::start(&python, name, None).await;
        let client = Client::connect(config(transport, Some(peer.url.clone()), &python))
            .await
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        exercise(&client).await;
        client.close().await;
    }
}

#[tokio::test]
async fn deadlines_and_credentials() {
    let Some(python) = mcp_python() else { return };
    let peer = McpPeer::start(&python, "streamable-http", Some("s3cret")).await;
    let mut cfg = config(Transport::StreamableHttp, Some(peer.url.clone()), &python);
    assert!(matches!(
        Client::connect(cfg.clone()).await,
        Err(McpError::Unauthorized(_))
    ));
    cfg.headers = vec![("Authorization".into(), "Bearer wrong".into())];
    assert!(matches!(
        Client::connect(cfg.clone()).await,
        Err(McpError::Forbidden(_))
    ));
    cfg.headers = vec![("Authorization".into(), "Bearer s3cret".into())];
    cfg.timeout = Duration::from_millis(1500);
    let client = Client::connect(cfg).await.unwrap();
    let slow = client.call_tool("sleep", json!({"seconds": 5})).await;
    assert_eq!(slow, Err(McpError::Timeout));
    // The session still serves the next call.
    assert_eq!(
        client
            .call_tool("echo", json!({"text": "after"}))
            .await
            .unwrap()
            .text(),
        "after"
    );

    let sse = McpPeer::start(&python, "sse", Some("s3cret")).await;
    let cfg = config(Transport::Sse, Some(sse.url.clone()), &python);
    assert!(matches!(
        Client::connect(cfg).await,
        Err(McpError::Unauthorized(_))
    ));

    let nobody = config(
        Transport::StreamableHttp,
        Some("http://127.0.0.1:9/mcp".into()),
        &python,
    );
    assert!(matches!(
        Client::connect(nobody).await,
        Err(McpError::Connection(_))
    ));
}

#[tokio::test]
async fn a_server_that_dies_fails_the_call_and_is_restarted() {
    let Some(python) = mcp_python() else { return };
    let client = Client::connect(config(Transport::Stdio, None, &python))
        .await
        .unwrap();
    let died = client.call_tool("die", json!({})).await;
    assert!(matches!(died, Err(McpError::Closed(_))), "{died:?}");
    // The next call starts the server again, with a new handshake.
    assert_eq!(
        client
            .call_tool("add", json!({"a": 1, "b": 1}))
            .await
            .unwrap()
            .text(),
        "2"
    );

    let mut peer = McpPeer::start(&python, "sse", None).await;
    let client = Client::connect(config(Transport::Sse, Some(peer.url.clone()), &python))
        .await
        .unwrap();
    peer.kill().await;
    let gone = client.call_tool("echo", json!({"text": "x"})).await;
    assert!(gone.is_err(), "{gone:?}");
}

/// A second, independent implementation: npm's everything server (TypeScript SDK).
#[tokio::test]
async fn the_everything_server_over_each_transport() {
    let Some(script) = everything_server() else {
        return;
    };
    let stdio = ServerConfig {
        label: "everything".into(),
        transport: Transport::Stdio,
        url: None,
        headers: Vec::new(),
        command: Some("node".into()),
        args: vec![script.display().to_string(), "stdio".into()],
        env: BTreeMap::new(),
        timeout: Duration::from_secs(15),
    };
    let mut configs = vec![(stdio.clone(), None)];
    for (transport, name) in [
        (Transport::Sse, "sse"),
        (Transport::StreamableHttp, "streamableHttp"),
    ] {
        let peer = McpPeer::start_everything(&script, name).await;
        let mut config = stdio.clone();
        config.transport = transport;
        config.url = Some(peer.url.clone());
        configs.push((config, Some(peer)));
    }
    for (config, _peer) in configs {
        let transport = config.transport;
        let client = Client::connect(config)
            .await
            .unwrap_or_else(|err| panic!("{transport:?}: {err}"));
        assert_eq!(client.server_info().await.name, "mcp-servers/everything");
        let tools = client.list_tools().await.unwrap();
        assert!(tools.iter().any(|t| t.name == "echo"), "{transport:?}");
        let echoed = client
            .call_tool("echo", json!({"message": "hi"}))
            .await
            .unwrap();
        assert_eq!(echoed.text(), "Echo: hi", "{transport:?}");
        client.close().await;
    }
}
