//! Defined tools: validation, secrets kept out of answers, HTTP tools against a real local
//! server (arguments into the URL and query, the response path, size and time limits,
//! redirects that drop secrets, the private-network guard), and an agent using one with
//! approval.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect},
    routing::get,
};
use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::Reply};

use crate::runs::{fake_default_model, publish, start};

backend_tests!(tools_are_defined_and_guarded, agents_use_defined_tools);

/// A small HTTP service on loopback: `/weather/{city}` echoes what it got.
async fn service() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let port = address.port();
    let app = Router::new()
        .route(
            "/weather/{city}",
            get(
                |Path(city): Path<String>,
                 Query(query): Query<std::collections::BTreeMap<String, String>>,
                 headers: HeaderMap| async move {
                    let auth = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    Json(json!({"data": {"city": city, "temp": 21, "units": query.get("units"), "auth": auth}}))
                },
            ),
        )
        .route(
            // Another origin (`localhost` rather than `127.0.0.1`).
            "/hop",
            get(move || async move { Redirect::temporary(&format!("http://localhost:{port}/weather/elsewhere")) }),
        )
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route("/big", get(|| async { "x".repeat(100_000) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/broken",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down").into_response() }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

async fn define(app: &TestApp, admin: &str, body: Value) -> Value {
    let created = app.post("/api/tools", Some(admin), body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body
}

async fn run(app: &TestApp, id: i64, arguments: Value) -> Value {
    let tool = domain::tools::get_tool(&app.app.services, id)
        .await
        .unwrap();
    domain::tools::run_http(&app.app.services, &tool, arguments).await
}

async fn tools_are_defined_and_guarded(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let address = service().await;
    let base = format!("http://{address}");
    let weather = define(
        &app,
        &admin,
        json!({"name": "get_weather", "kind": "http", "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "units": {"type": "string"}}, "required": ["city"]},
            "config": {"url": format!("{base}/weather/{{city}}"), "response_path": "/data", "allow_private_network": true},
            "secret_headers": {"Authorization": "Bearer tool-secret-123"}}),
    )
    .await;
    assert_eq!(weather["secret_headers"]["Authorization"], "••••-123");
    let listed = app.get("/api/tools", Some(&admin)).await;
    assert!(!listed.text.contains("tool-secret-123"));
    let id = weather["id"].as_i64().unwrap();

    // Arguments fill the path, the rest goes to the query; the secret header is sent.
    let answer = run(
        &app,
        id,
        json!({"city": "Saint Étienne", "units": "metric"}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"city": "Saint Étienne", "temp": 21, "units": "metric", "auth": "Bearer tool-secret-123"})
    );
    // Arguments that break the schema are refused before any call.
    let wrong = run(&app, id, json!({"units": "metric"})).await;
    assert!(
        wrong["error"].as_str().unwrap().contains("schema"),
        "{wrong}"
    );

    // A redirect to another origin does not carry the secret; loops stop.
    let hop = define(
        &app,
        &admin,
        json!({"name": "hop", "kind": "http", "config": {"url": format!("{base}/hop"), "allow_private_network": true},
            "secret_headers": {"Authorization": "Bearer tool-secret-123"}}),
    )
    .await;
    let hopped = run(&app, hop["id"].as_i64().unwrap(), json!({})).await;
    assert_eq!(hopped["data"]["city"], "elsewhere", "{hopped}");
    assert_eq!(hopped["data"]["auth"], Value::Null);
    let looping = define(
        &app,
        &admin,
        json!({"name": "looping", "kind": "http", "config": {"url": format!("{base}/loop"), "allow_private_network": true}}),
    )
    .await;
    let looped = run(&app, looping["id"].as_i64().unwrap(), json!({})).await;
    assert_eq!(looped["error"], "too many redirects");

    // Size and time limits; the server's errors are told to the model.
    let big = define(
        &app,
        &admin,
        json!({"name": "big", "kind": "http", "config": {"url": format!("{base}/big"), "allow_private_network": true, "max_response_bytes": 1000}}),
    )
    .await;
    let cut = run(&app, big["id"].as_i64().unwrap(), json!({})).await;
    assert_eq!(cut["partial"].as_str().unwrap().len(), 1000);
    let slow = define(
        &app,
        &admin,
        json!({"name": "slow", "kind": "http", "config": {"url": format!("{base}/slow"), "allow_private_network": true, "timeout_secs": 1}}),
    )
    .await;
    let late = run(&app, slow["id"].as_i64().unwrap(), json!({})).await;
    assert!(
        late["error"].as_str().unwrap().contains("time limit"),
        "{late}"
    );
    let broken = define(
        &app,
        &admin,
        json!({"name": "broken", "kind": "http", "config": {"url": format!("{base}/broken"), "allow_private_network": true}}),
    )
    .await;
    let down = run(&app, broken["id"].as_i64().unwrap(), json!({})).await;
    assert_eq!(down["error"], "the server answered 500");

    // Loopback, private and link-local addresses are refused unless the tool allows them.
    for url in [
        format!("{base}/weather/x"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://[::1]/".to_string(),
        format!("http://localhost:{}/weather/x", address.port()),
    ] {
        let name = format!("guarded_{}", url.len());
        let guarded = app
            .post(
                "/api/tools",
                Some(&admin),
                json!({"name": name, "kind": "http", "config": {"url": url}}),
            )
            .await;
        let refused = run(&app, guarded.body["id"].as_i64().unwrap(), json!({})).await;
        assert!(
            refused["error"].as_str().unwrap().contains("not allowed"),
            "{url}: {refused}"
        );
        app.delete(&format!("/api/tools/{}", guarded.body["id"]), Some(&admin))
            .await;
    }

    // Refusals.
    for (body, needle) in [
        (
            json!({"name": "x y", "kind": "http", "config": {"url": "https://example.com"}}),
            "name",
        ),
        (
            json!({"name": "h", "kind": "http", "config": {"url": "https://{host}/x"}}),
            "host",
        ),
        (
            json!({"name": "h", "kind": "http", "config": {"url": "https://example.com", "headers": {"Authorization": "Bearer x"}}}),
            "secret_headers",
        ),
        (
            json!({"name": "h", "kind": "http", "config": {"url": "ftp://example.com"}}),
            "url",
        ),
        (
            json!({"name": "h", "kind": "http", "config": {"url": "https://example.com", "timeout_secs": 999}}),
            "timeout",
        ),
        (
            json!({"name": "h", "kind": "workflow", "config": {}}),
            "workflow_id",
        ),
        (
            json!({"name": "h", "kind": "client", "parameters": {"type": "string"}}),
            "parameters",
        ),
        (json!({"name": "h", "kind": "teleport"}), "kind"),
        (
            json!({"name": "h", "kind": "http", "config": {"url": "https://example.com", "response_path": "data.items"}}),
            "write `/data/items`",
        ),
    ] {
        let refused = app.post("/api/tools", Some(&admin), body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.text
        );
        assert!(refused.text.contains(needle), "{body}: {}", refused.text);
    }
    let again = app
        .post(
            "/api/tools",
            Some(&admin),
            json!({"name": "get_weather", "kind": "client"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Users list active tools without their configuration; only administrators change them.
    let (_, user) = app
        .create_user("user@example.com", "user-password", false)
        .await;
    let seen = app.get("/api/tools", Some(&user)).await;
    assert!(
        seen.body
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t.get("config").is_none())
    );
    assert!(!seen.text.contains("127.0.0.1"));
    assert_eq!(
        app.post(
            "/api/tools",
            Some(&user),
            json!({"name": "mine", "kind": "client"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}

async fn agents_use_defined_tools(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let address = service().await;
    define(
        &app,
        &admin,
        json!({"name": "get_weather", "kind": "http", "approval": "always",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            "config": {"url": format!("http://{address}/weather/{{city}}"), "response_path": "/data/temp", "allow_private_network": true}}),
    )
    .await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "parameters": {"instructions": "Help.",
                "tools": [{"type": "function", "function": {"name": "get_weather"}}]}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "agent"}, {"source": "agent", "target": "end"}]
    });
    let id = publish(&app, &admin, graph).await;
    fake.push(Reply::ToolCalls(vec![(
        "get_weather".into(),
        r#"{"city": "Lyon"}"#.into(),
    )]));
    fake.push(Reply::Text("It is 21 degrees.".into()));
    let run = start(&app, &admin, id, json!("Weather in Lyon?")).await;
    assert_eq!(run.body["status"], "waiting", "{}", run.text);
    assert_eq!(run.body["wait"]["kind"], "approval");
    assert_eq!(run.body["wait"]["data"]["tool"], "get_weather");
    let resumed = app
        .post(
            &format!("/api/runs/{}/resume", run.body["id"].as_str().unwrap()),
            Some(&admin),
            json!({"approval": "approve"}),
        )
        .await;
    assert_eq!(resumed.body["status"], "completed", "{}", resumed.text);
    let second = fake.requests()[1].body.clone();
    assert_eq!(second["tools"][0]["function"]["name"], "get_weather");
    let tool = second["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert_eq!(tool["content"], "21");
}

/// The tool services keep managing tools to administrators, whatever channel calls them.
#[tokio::test]
async fn the_tool_services_check_who_asks() {
    use domain::tools::{self, ToolError};
    let h = test_support::steps::StepHarness::new().await;
    let (services, user) = (&h.services, &h.user);
    assert!(matches!(
        tools::tool_for(services, user, 1).await,
        Err(ToolError::Forbidden)
    ));
    assert!(matches!(
        tools::delete_tool(services, user, 1).await,
        Err(ToolError::Forbidden)
    ));
    assert!(matches!(
        tools::tool_for(services, &h.admin, 1).await,
        Err(ToolError::NotFound(_))
    ));
    assert!(tools::list_tools(services, user).await.unwrap().is_empty());
}
