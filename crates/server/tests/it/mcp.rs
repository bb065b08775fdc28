//! MCP servers through the API: registration over each transport with probing and tool
//! caching, refusals, secrets kept out of answers and encrypted at rest, and calls through
//! the platform's connector.

use axum::http::StatusCode;

use crate::runs::{fake_default_model, publish, start, texts};
use serde_json::{Value, json};
use test_support::{
    TestApp, TestBackend, backend_tests,
    fake_llm::Reply,
    mcp_peer::{McpPeer, mcp_python, mcp_script},
};

backend_tests!(
    servers_are_registered_probed_and_listed,
    bad_servers_are_refused_or_reported,
    agents_call_mcp_tools_with_allow_lists_and_approvals,
    mcp_steps_call_one_tool,
    external_clients_run_workflows_as_tools,
    oauth_authorises_and_refreshes,
    agents_reach_servers_over_every_transport,
    approvals_show_as_cards_in_chat,
);

const TOKEN: &str = "peer-token-123456789";

fn names(tools: &Value) -> Vec<&str> {
    tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

async fn servers_are_registered_probed_and_listed(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let http = McpPeer::start(&python, "streamable-http", Some(TOKEN)).await;
    let sse = McpPeer::start(&python, "sse", None).await;

    let created = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Peer HTTP", "transport": "streamable_http", "server_url": http.url, "authorization": TOKEN}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["probe"]["status"], "ok", "{}", created.text);
    assert_eq!(
        names(&created.body["tools_cache"]),
        ["add", "echo", "sleep", "fail", "die"]
    );
    assert_eq!(created.body["authorization_hint"], "••••6789");
    assert!(!created.text.contains(TOKEN));
    let http_id = created.body["id"].as_i64().unwrap();

    // The seed's name for SSE is accepted.
    let sse_server = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Peer SSE", "transport": "http_sse", "server_url": sse.url}),
        )
        .await;
    assert_eq!(
        sse_server.status,
        StatusCode::CREATED,
        "{}",
        sse_server.text
    );
    assert_eq!(sse_server.body["transport"], "sse");
    assert_eq!(
        sse_server.body["probe"]["status"], "ok",
        "{}",
        sse_server.text
    );

    let stdio = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Peer stdio", "transport": "stdio", "command": python.display().to_string(),
                   "args": [mcp_script().display().to_string(), "stdio"], "env": {"PEER_SECRET": "hidden-value"}}),
        )
        .await;
    assert_eq!(stdio.status, StatusCode::CREATED, "{}", stdio.text);
    assert_eq!(stdio.body["probe"]["status"], "ok", "{}", stdio.text);
    assert_eq!(stdio.body["env_names"], json!(["PEER_SECRET"]));
    assert!(!stdio.text.contains("hidden-value"));

    // Secrets are encrypted at rest.
    let stored = app
        .app
        .services
        .store
        .mcp_server(http_id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.authorization_encrypted.unwrap().contains(TOKEN));

    // A wrong token: the probe says so and the cached tools stay.
    let changed = app
        .patch(
            &format!("/api/admin/mcp-servers/{http_id}"),
            Some(&admin),
            json!({"authorization": "Bearer wrong-token"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(
        changed.body["probe"]["status"], "forbidden",
        "{}",
        changed.text
    );
    assert_eq!(names(&changed.body["tools_cache"]).len(), 5);
    let fixed = app
        .patch(
            &format!("/api/admin/mcp-servers/{http_id}"),
            Some(&admin),
            json!({"authorization": TOKEN, "refresh_tools": false}),
        )
        .await;
    assert!(fixed.body.get("probe").is_none());
    let probed = app
        .post(
            &format!("/api/admin/mcp-servers/{http_id}/probe"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(probed.body["status"], "ok", "{}", probed.text);

    // Calls go through one kept session per server.
    let administrator = app.app.services.store.user_by_id(1).await.unwrap().unwrap();
    let server = domain::mcp::get_server(
        &app.app.services,
        &domain::Principal::user(administrator),
        http_id,
    )
    .await
    .unwrap();
    let connection = domain::mcp::connection(&app.app.services, &server).unwrap();
    let sum = app
        .app
        .services
        .mcp
        .call_tool(&connection, "add", json!({"a": 20, "b": 22}))
        .await
        .unwrap();
    assert_eq!((sum.text.as_str(), sum.is_error), ("42", false));
    let failed = app
        .app
        .services
        .mcp
        .call_tool(&connection, "fail", json!({"message": "no"}))
        .await
        .unwrap();
    assert!(failed.is_error);

    // Users see the active servers and their tools, never secrets or command lines.
    let (_, user) = app
        .create_user("user@example.com", "user-password", false)
        .await;
    let public = app.get("/api/mcp/servers", Some(&user)).await;
    assert_eq!(public.status, StatusCode::OK, "{}", public.text);
    assert_eq!(public.body.as_array().unwrap().len(), 3, "{}", public.text);
    assert!(!public.text.contains("PEER_SECRET") && !public.text.contains("mcp_server.py"));
    let http_public = public
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"].as_i64() == Some(http_id))
        .unwrap();
    assert_eq!(http_public["has_authorization"], true);
    assert_eq!(
        app.get("/api/admin/mcp-servers", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get("/api/mcp/servers", None).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Deleting.
    let gone = app
        .delete(&format!("/api/admin/mcp-servers/{http_id}"), Some(&admin))
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let missing = app
        .get(&format!("/api/admin/mcp-servers/{http_id}"), Some(&admin))
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "mcp_server_not_found");
}

async fn bad_servers_are_refused_or_reported(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    for (body, needle) in [
        (json!({"label": "x", "transport": "stdio"}), "command"),
        (
            json!({"label": "x", "server_url": "https://user:pw@example.com/mcp"}),
            "credentials",
        ),
        (
            json!({"label": "x", "server_url": "ftp://example.com"}),
            "http",
        ),
        (
            json!({"label": "x", "transport": "websocket", "server_url": "https://example.com"}),
            "transport",
        ),
        (
            json!({"label": "", "server_url": "https://example.com"}),
            "label",
        ),
        (
            json!({"label": "x", "server_url": "https://example.com", "timeout_secs": 0}),
            "timeout",
        ),
        (
            json!({"label": "x", "server_url": "https://example.com", "headers": {"Authorization": "Bearer x"}}),
            "authorization",
        ),
    ] {
        let refused = app
            .post("/api/admin/mcp-servers", Some(&admin), body.clone())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.text
        );
        assert!(
            refused.text.to_lowercase().contains(needle),
            "{body}: {}",
            refused.text
        );
    }
    let first = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Same", "server_url": "http://127.0.0.1:9/mcp", "refresh_tools": false}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Same", "server_url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);

    // Probes of configurations that are not saved report what went wrong.
    let peer = McpPeer::start(&python, "streamable-http", Some(TOKEN)).await;
    let probe = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let response = app
                .post("/api/admin/mcp-servers/probe", Some(&admin), body)
                .await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
            response.body
        }
    };
    assert_eq!(
        probe(json!({"server_url": peer.url})).await["status"],
        "unauthorized"
    );
    assert_eq!(
        probe(json!({"server_url": peer.url, "authorization": TOKEN})).await["tool_names"][0],
        "add"
    );
    assert_eq!(
        probe(json!({"server_url": "http://127.0.0.1:9/mcp"})).await["status"],
        "unreachable"
    );
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/mcp", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    assert_eq!(
        probe(json!({"server_url": silent_url, "timeout_secs": 1})).await["status"],
        "timeout"
    );
    holder.abort();
    // Not JSON-RPC at all.
    let fake = test_support::fake_llm::FakeLlm::start().await;
    let not_mcp = probe(json!({"server_url": format!("{}/models", fake.base_url)})).await;
    assert!(
        matches!(not_mcp["status"].as_str(), Some("protocol_error")),
        "{not_mcp}"
    );
    // The saved server's secret is used when probing changes to it.
    let saved = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Saved", "server_url": peer.url, "authorization": TOKEN}),
        )
        .await;
    let id = saved.body["id"].as_i64().unwrap();
    assert_eq!(
        probe(json!({"server_id": id, "timeout_secs": 5})).await["status"],
        "ok"
    );
}

fn agent_graph(tools: Value) -> Value {
    json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "parameters": {"instructions": "Use the tools.", "tools": tools}},
            {"slug": "end", "kind": "end"},
        ],
        "edges": [{"source": "start", "target": "agent"}, {"source": "agent", "target": "end"}],
    })
}

/// The `tool` message the model was sent in request `n`.
fn tool_result(fake: &test_support::fake_llm::FakeLlm, n: usize) -> String {
    let request = &fake.requests()[n].body;
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

async fn agents_call_mcp_tools_with_allow_lists_and_approvals(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let peer = McpPeer::start(&python, "streamable-http", Some(TOKEN)).await;
    let server = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Calc", "server_url": peer.url, "authorization": TOKEN}),
        )
        .await;
    let server_id = server.body["id"].as_i64().unwrap();

    // The allow-list decides what the model sees and what runs.
    let id = publish(
        &app,
        &admin,
        agent_graph(
            json!([{"type": "mcp", "server_id": server_id, "allow": {"tools": ["add", "echo"]}}]),
        ),
    )
    .await;
    fake.push(Reply::ToolCalls(vec![(
        "add".into(),
        r#"{"a": 2, "b": 3}"#.into(),
    )]));
    fake.push(Reply::ToolCalls(vec![("die".into(), "{}".into())]));
    fake.push(Reply::Text("The sum is 5.".into()));
    let run = start(&app, &admin, id, json!("What is 2 + 3?")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(texts(&run.body).last().unwrap(), "assistant: The sum is 5.");
    let first = fake.requests()[0].body.clone();
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["add", "echo"]);
    assert_eq!(tool_result(&fake, 1), "5");
    assert!(tool_result(&fake, 2).contains("no tool named `die`"));
    // `die` never ran: the server still answers.
    let probe = app
        .post(
            &format!("/api/admin/mcp-servers/{server_id}/probe"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(probe.body["status"], "ok");
    let events = app
        .get(
            &format!("/api/runs/{}/events", run.body["id"].as_str().unwrap()),
            Some(&admin),
        )
        .await;
    let finished: Vec<&Value> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "tool_call.finished")
        .collect();
    assert_eq!(finished[0]["data"]["name"], "add");
    assert_eq!(finished[0]["data"]["output"], "5");
    // The agent's step records its calls too.
    let steps = app
        .get(
            &format!("/api/runs/{}/steps", run.body["id"].as_str().unwrap()),
            Some(&admin),
        )
        .await;
    let agent_step = steps
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["node"] == "agent")
        .unwrap_or_else(|| panic!("the agent's step: {}", steps.text))
        .clone();
    let calls = agent_step["output"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(calls.len(), 2, "{agent_step}");
    assert_eq!(calls[0]["name"], "add");
    assert_eq!(calls[0]["arguments"], json!({"a": 2, "b": 3}));
    assert_eq!(calls[0]["output"], "5");

    // A tool that needs approval pauses the run until a person decides.
    let id = publish(
        &app,
        &admin,
        agent_graph(json!([{"type": "mcp", "server_id": server_id,
            "require_approval": {"always": {"tool_names": ["echo"]}}}])),
    )
    .await;
    for (decision, expected) in [("approve", "hello"), ("reject", "refused")] {
        let before = fake.requests().len();
        fake.push(Reply::ToolCalls(vec![(
            "echo".into(),
            r#"{"text": "hello"}"#.into(),
        )]));
        fake.push(Reply::Text("Done.".into()));
        let run = start(&app, &admin, id, json!("Say hello")).await;
        assert_eq!(run.body["status"], "waiting", "{}", run.text);
        assert_eq!(run.body["wait"]["kind"], "approval");
        assert_eq!(run.body["wait"]["data"]["tool"], "echo");
        assert_eq!(run.body["wait"]["data"]["server"], "Calc");
        assert!(
            run.body["wait"]["prompt"]
                .as_str()
                .unwrap()
                .contains("echo")
        );
        let run_id = run.body["id"].as_str().unwrap();
        let resumed = app
            .post(
                &format!("/api/runs/{run_id}/resume"),
                Some(&admin),
                json!({"approval": decision}),
            )
            .await;
        assert_eq!(resumed.body["status"], "completed", "{}", resumed.text);
        assert!(
            tool_result(&fake, before + 1).contains(expected),
            "{decision}: {}",
            tool_result(&fake, before + 1)
        );
    }
    // `add` needs no approval under that policy.
    fake.push(Reply::ToolCalls(vec![(
        "add".into(),
        r#"{"a": 1, "b": 1}"#.into(),
    )]));
    fake.push(Reply::Text("2".into()));
    let run = start(&app, &admin, id, json!("1 + 1")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);

    // A per-call rule: only large sums need approval.
    let id = publish(
        &app,
        &admin,
        agent_graph(
            json!([{"type": "mcp", "server_id": server_id, "allowed_tools": {"tool_names": ["add"]},
            "require_approval": {"when": "input.a > 10"}}]),
        ),
    )
    .await;
    fake.push(Reply::ToolCalls(vec![(
        "add".into(),
        r#"{"a": 1, "b": 1}"#.into(),
    )]));
    fake.push(Reply::Text("2".into()));
    let small = start(&app, &admin, id, json!("1 + 1")).await;
    assert_eq!(small.body["status"], "completed", "{}", small.text);
    fake.push(Reply::ToolCalls(vec![(
        "add".into(),
        r#"{"a": 50, "b": 1}"#.into(),
    )]));
    fake.push(Reply::Text("51".into()));
    let large = start(&app, &admin, id, json!("50 + 1")).await;
    assert_eq!(large.body["status"], "waiting", "{}", large.text);
    assert_eq!(large.body["wait"]["data"]["arguments"]["a"], 50);
    // OpenAI's allow-list form offers just those tools.
    let request = fake.requests().last().unwrap().body.clone();
    let offered: Vec<&str> = request["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["add"]);

    // A server turned off: the agent runs without its tools, and says why in a warning.
    app.patch(
        &format!("/api/admin/mcp-servers/{server_id}"),
        Some(&admin),
        json!({"is_active": false}),
    )
    .await;
    fake.push(Reply::Text("No tools today.".into()));
    let run = start(&app, &admin, id, json!("1 + 1")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert!(
        fake.requests()
            .last()
            .unwrap()
            .body
            .get("tools")
            .is_none_or(|t| t.as_array().is_none_or(Vec::is_empty))
    );
}

async fn mcp_steps_call_one_tool(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let server = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Calc", "transport": "stdio", "command": python.display().to_string(),
                   "args": [mcp_script().display().to_string(), "stdio"]}),
        )
        .await;
    let server_id = server.body["id"].as_i64().unwrap();
    let graph = |tool: &str| {
        json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "numbers", "kind": "transform", "parameters": {"expressions": {"x": 40}}},
                {"slug": "call", "kind": "mcp", "parameters": {"server_id": server_id, "tool": tool,
                    "arguments": {"a": "input.x", "b": 2, "message": "failed at {{ input.x }}"}, "on_error": "route"}},
                {"slug": "done", "kind": "end", "parameters": {"output": "input"}},
                {"slug": "sorry", "kind": "end", "parameters": {"message": "Sorry ({{ input.error.code }})"}}
            ],
            "edges": [
                {"source": "start", "target": "numbers"}, {"source": "numbers", "target": "call"},
                {"source": "call", "target": "done"}, {"source": "call", "target": "sorry", "condition": "error"}
            ]
        })
    };
    let id = publish(&app, &admin, graph("add")).await;
    let run = start(&app, &admin, id, json!("go")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(run.body["output"]["text"], "42", "{}", run.text);
    assert_eq!(run.body["output"]["structured"], json!({"result": 42}));

    // The tool's own failure takes the error edge.
    let id = publish(&app, &admin, graph("fail")).await;
    let run = start(&app, &admin, id, json!("go")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(
        texts(&run.body).last().unwrap(),
        "assistant: Sorry (mcp_tool_error)"
    );

    // A step without its tool is refused when the workflow is saved.
    let invalid = app
        .post(
            "/api/workflows",
            Some(&admin),
            json!({"display_name": "Broken", "publish": true, "graph": {
                "nodes": [{"slug": "start", "kind": "start"}, {"slug": "call", "kind": "mcp", "parameters": {"server_id": server_id}}],
                "edges": [{"source": "start", "target": "call"}]}}),
        )
        .await;
    assert_eq!(
        invalid.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        invalid.text
    );
    assert!(invalid.text.contains("parameters.tool"), "{}", invalid.text);
}

/// Our `/mcp` endpoint, driven over a real socket by the Python SDK's client.
async fn external_clients_run_workflows_as_tools(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "greet", "kind": "transform", "parameters": {"expressions": {"greeting": "Hello {{ input.city }}"}}},
            {"slug": "end", "kind": "end", "parameters": {"output": "input"}}
        ],
        "edges": [{"source": "start", "target": "greet"}, {"source": "greet", "target": "end"}],
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    });
    let id = publish(&app, &admin, graph).await;
    let hidden = publish(&app, &admin, agent_graph(json!([]))).await;
    let exposed = app
        .request(
            axum::http::Method::PUT,
            &format!("/api/admin/mcp-tools/{id}"),
            Some(&admin),
            Some(json!({"tool_name": "greet_city", "description": "Greets a city."})),
        )
        .await;
    assert_eq!(exposed.status, StatusCode::OK, "{}", exposed.text);
    // Names are unique.
    let taken = app
        .request(
            axum::http::Method::PUT,
            &format!("/api/admin/mcp-tools/{hidden}"),
            Some(&admin),
            Some(json!({"tool_name": "greet_city"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.text);
    let key = app
        .post(
            "/api/admin/api-keys",
            Some(&admin),
            json!({"name": "mcp client"}),
        )
        .await;
    let secret = key.body["secret"].as_str().unwrap().to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
    });
    let url = format!("http://{address}/mcp");
    let output = tokio::process::Command::new(&python)
        .arg(mcp_script().with_file_name("mcp_client.py"))
        .args([
            url.as_str(),
            secret.as_str(),
            "greet_city",
            r#"{"city": "Lyon"}"#,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["server"], "switchyard");
    assert_eq!(names(&answer["tools"]), ["greet_city"]);
    assert_eq!(answer["tools"][0]["description"], "Greets a city.");
    assert_eq!(
        answer["tools"][0]["inputSchema"]["required"],
        json!(["city"])
    );
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(
        answer["result"]["structuredContent"],
        json!({"greeting": "Hello Lyon"})
    );
    server.abort();

    // Without a key there is no answer; a stream or a session end is not offered.
    let anonymous = app
        .post(
            "/mcp",
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/mcp", Some(&secret)).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // Unknown tools and methods are JSON-RPC errors; notifications are accepted.
    let unknown = app
        .post(
            "/mcp",
            Some(&secret),
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "nope"}}),
        )
        .await;
    assert_eq!(unknown.body["error"]["code"], -32602, "{}", unknown.text);
    let method = app
        .post(
            "/mcp",
            Some(&secret),
            json!({"jsonrpc": "2.0", "id": "x", "method": "resources/list"}),
        )
        .await;
    assert_eq!(method.body["error"]["code"], -32601);
    assert_eq!(method.body["id"], "x");
    let note = app
        .post(
            "/mcp",
            Some(&secret),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
    assert_eq!(note.status, StatusCode::ACCEPTED);

    // A user sees only the tools of workflows they may run.
    let (_, user) = app
        .create_user("user@example.com", "user-password", false)
        .await;
    let listed = app
        .post(
            "/mcp",
            Some(&user),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(listed.body["result"]["tools"], json!([]), "{}", listed.text);
    // No longer offered.
    let removed = app
        .delete(&format!("/api/admin/mcp-tools/{id}"), Some(&admin))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let listed = app
        .post(
            "/mcp",
            Some(&secret),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        )
        .await;
    assert_eq!(listed.body["result"]["tools"], json!([]));
}

/// A small OAuth 2.1 authorization server: metadata, dynamic registration, an authorize
/// endpoint that approves at once (the browser's part), and a token endpoint that checks
/// PKCE and issues `tok-a` (expiring at once) then, on refresh, `tok-b`.
async fn authorization_server() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::{
        Json, Router,
        extract::Query,
        response::Redirect,
        routing::{get, post},
    };
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use std::{
        collections::HashMap,
        sync::{Arc, Mutex},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let challenges: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let metadata = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["tools"],
    });
    let app = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(move || async move { Json(metadata) }),
        )
        .route(
            "/register",
            post({
                let log = log.clone();
                move |Json(body): Json<Value>| async move {
                    log.lock().unwrap().push(format!("register {}", body["redirect_uris"][0]));
                    Json(json!({"client_id": "client-1"}))
                }
            }),
        )
        .route(
            "/authorize",
            get({
                let challenges = challenges.clone();
                move |Query(q): Query<HashMap<String, String>>| async move {
                    assert_eq!(q["code_challenge_method"], "S256");
                    assert_eq!(q["client_id"], "client-1");
                    challenges
                        .lock()
                        .unwrap()
                        .insert("code-1".into(), q["code_challenge"].clone());
                    Redirect::to(&format!("{}?code=code-1&state={}", q["redirect_uri"], q["state"]))
                }
            }),
        )
        .route(
            "/token",
            post({
                let log = log.clone();
                move |body: String| async move {
                    let form = form_fields(&body);
                    log.lock().unwrap().push(format!("token {}", form["grant_type"]));
                    if form["grant_type"] == "authorization_code" {
                        let challenge = challenges.lock().unwrap().remove(&form["code"]);
                        let digest = aws_lc_rs::digest::digest(
                            &aws_lc_rs::digest::SHA256,
                            form["code_verifier"].as_bytes(),
                        );
                        if challenge != Some(URL_SAFE_NO_PAD.encode(digest.as_ref())) {
                            return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"})));
                        }
                        (StatusCode::OK, Json(json!({"access_token": "tok-a", "refresh_token": "r-1", "expires_in": 0, "token_type": "Bearer"})))
                    } else if form.get("refresh_token").map(String::as_str) == Some("r-1") {
                        (StatusCode::OK, Json(json!({"access_token": "tok-b", "refresh_token": "r-2", "expires_in": 3600, "token_type": "Bearer"})))
                    } else {
                        (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"})))
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, log)
}

async fn oauth_authorises_and_refreshes(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (issuer, log) = authorization_server().await;
    let peer = McpPeer::start_with(
        &python,
        "streamable-http",
        Some("tok-a,tok-b"),
        Some(&issuer),
    )
    .await;
    let created = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Protected", "server_url": peer.url}),
        )
        .await;
    assert_eq!(
        created.body["probe"]["status"], "unauthorized",
        "{}",
        created.text
    );
    let id = created.body["id"].as_i64().unwrap();

    let started = app
        .post(
            &format!("/api/admin/mcp-servers/{id}/oauth/start"),
            Some(&admin),
            json!({"redirect_uri": "http://switchyard.test/api/mcp/oauth/callback"}),
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    let url = started.body["authorization_url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{issuer}/authorize?")), "{url}");
    assert!(url.contains("code_challenge_method=S256") && url.contains("scope=tools"));
    let flow = started.body["state"].as_str().unwrap().to_string();
    let status = app
        .get(
            &format!("/api/admin/mcp-servers/oauth/{flow}"),
            Some(&admin),
        )
        .await;
    assert_eq!(status.body["status"], "pending");

    // The browser: the authorization server approves and sends it back with a code.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let approved = browser.get(url).send().await.unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    let callback = location
        .strip_prefix("http://switchyard.test")
        .expect("back to our callback")
        .to_string();
    let landed = app.get(&callback, None).await;
    assert_eq!(landed.status, StatusCode::OK, "{}", landed.text);
    assert!(landed.text.contains("Connected"));
    // The state is single-use.
    let replayed = app.get(&callback, None).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST);
    let status = app
        .get(
            &format!("/api/admin/mcp-servers/oauth/{flow}"),
            Some(&admin),
        )
        .await;
    assert_eq!(status.body["status"], "done", "{}", status.text);
    let server = app
        .get(&format!("/api/admin/mcp-servers/{id}"), Some(&admin))
        .await;
    assert_eq!(server.body["oauth_client_id"], "client-1");
    assert_eq!(server.body["has_refresh_token"], true);
    assert!(!server.text.contains("tok-a") && !server.text.contains("r-1"));

    // The token expired at once: probes refresh it first (two at once refresh it once),
    // then connect.
    let path = format!("/api/admin/mcp-servers/{id}/probe");
    let (probed, again) = tokio::join!(
        app.post(&path, Some(&admin), json!({})),
        app.post(&path, Some(&admin), json!({}))
    );
    assert_eq!(probed.body["status"], "ok", "{}", probed.text);
    assert_eq!(again.body["status"], "ok", "{}", again.text);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "register \"http://switchyard.test/api/mcp/oauth/callback\"",
            "token authorization_code",
            "token refresh_token"
        ]
    );
    let server = app
        .get(&format!("/api/admin/mcp-servers/{id}"), Some(&admin))
        .await;
    assert_eq!(server.body["access_token_hint"], "••••");

    // A refusal at the authorization server ends the flow with its reason.
    let again = app
        .post(
            &format!("/api/admin/mcp-servers/{id}/oauth/start"),
            Some(&admin),
            json!({}),
        )
        .await;
    let flow = again.body["state"].as_str().unwrap();
    assert!(
        again.body["redirect_uri"]
            .as_str()
            .unwrap()
            .ends_with("/api/mcp/oauth/callback")
    );
    let refused = app
        .get(
            &format!("/api/mcp/oauth/callback?state={flow}&error=access_denied"),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.text.contains("access_denied"));
    let status = app
        .get(
            &format!("/api/admin/mcp-servers/oauth/{flow}"),
            Some(&admin),
        )
        .await;
    assert_eq!(status.body["status"], "failed");
}

/// The fields of an `application/x-www-form-urlencoded` body.
fn form_fields(body: &str) -> std::collections::HashMap<String, String> {
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn agents_reach_servers_over_every_transport(backend: TestBackend) {
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let sse = McpPeer::start(&python, "sse", None).await;
    let http = McpPeer::start(&python, "streamable-http", None).await;
    for (n, server) in [
        json!({"transport": "stdio", "command": python.display().to_string(), "args": [mcp_script().display().to_string(), "stdio"]}),
        json!({"transport": "sse", "server_url": sse.url}),
        json!({"transport": "streamable_http", "server_url": http.url}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut body = server.clone();
        body["label"] = json!(format!("Server {n}"));
        let created = app.post("/api/admin/mcp-servers", Some(&admin), body).await;
        assert_eq!(created.body["probe"]["status"], "ok", "{}", created.text);
        let id = publish(
            &app,
            &admin,
            agent_graph(json!([{"type": "mcp", "server_id": created.body["id"], "allow": {"tools": ["add"]}}])),
        )
        .await;
        let before = fake.requests().len();
        fake.push(Reply::ToolCalls(vec![("add".into(), format!(r#"{{"a": {n}, "b": 10}}"#))]));
        fake.push(Reply::Text("Done.".into()));
        let run = start(&app, &admin, id, json!("add")).await;
        assert_eq!(run.body["status"], "completed", "{server}: {}", run.text);
        assert_eq!(tool_result(&fake, before + 1), (n + 10).to_string(), "{server}");
    }
}

async fn approvals_show_as_cards_in_chat(backend: TestBackend) {
    use crate::chatkit::{chatkit, frames, learner, message, serve};
    let Some(python) = mcp_python() else { return };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    // Chat as most people do: a user who is not an administrator.
    let user = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let server = app
        .post(
            "/api/admin/mcp-servers",
            Some(&admin),
            json!({"label": "Calc", "transport": "stdio", "command": python.display().to_string(),
                   "args": [mcp_script().display().to_string(), "stdio"]}),
        )
        .await;
    serve(
        &app,
        &admin,
        agent_graph(
            json!([{"type": "mcp", "server_id": server.body["id"], "require_approval": "always"}]),
        ),
    )
    .await;
    fake.push(Reply::ToolCalls(vec![(
        "add".into(),
        r#"{"a": 2, "b": 2}"#.into(),
    )]));
    fake.push(Reply::Text("It is 4.".into()));
    let created = chatkit(
        &app,
        &user,
        json!({"type": "threads.create", "params": {"input": message("2 + 2?")}}),
    )
    .await;
    let events = frames(&created.text);
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let card = events
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .unwrap_or_else(|| panic!("an approval card: {}", created.text));
    assert!(card["item"]["widget"].to_string().contains("`add` of Calc"));
    let button = &card["item"]["widget"]["children"][1]["children"][0]["onClickAction"];
    assert_eq!(button["type"], "approval.approve");
    let approved = chatkit(
        &app,
        &user,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": card["item"]["id"], "action": {"type": button["type"], "payload": button["payload"]}}}),
    )
    .await;
    // The tool ran and the agent answered (the thread's title takes one of the fake's
    // replies, so which text the answer is does not matter).
    let events = frames(&approved.text);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "assistant_message"),
        "{}",
        approved.text
    );
    let results: Vec<String> = (0..fake.requests().len())
        .map(|n| tool_result(&fake, n))
        .collect();
    assert!(results.iter().any(|r| r == "4"), "{results:?}");
}
