//! HTTP basics: error bodies for bad requests, headers, CORS, OpenAPI and docs, health, metrics.

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use serde_json::json;
use test_support::{TestApp, TestBackend, backend_tests};

backend_tests!(
    malformed_requests_get_json_errors,
    unknown_routes_and_methods,
    request_ids_and_security_headers,
    cors_follows_the_allow_list,
    openapi_covers_every_route,
    docs_are_served_offline,
    health_and_readiness,
    metrics_are_exported,
);

fn raw(
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).unwrap()
}

async fn malformed_requests_get_json_errors(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| config.http.max_body_bytes = 4096).await;
    let cases = [
        (
            raw(
                Method::POST,
                "/api/auth/login",
                Some("application/json"),
                "{\"email\": ",
            ),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            raw(Method::POST, "/api/auth/login", Some("text/plain"), "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(Method::POST, "/api/auth/login", None, "{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(
                Method::POST,
                "/api/auth/login",
                Some("application/json"),
                "[1, 2]",
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            raw(
                Method::POST,
                "/api/auth/login",
                Some("application/json"),
                json!({"email": "a@b.c", "password": "x".repeat(10_000)}).to_string(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (request, status, code) in cases {
        let response = app.send(request).await;
        assert_eq!(
            (response.status, response.code()),
            (status, code),
            "{}",
            response.text
        );
        assert_eq!(response.headers[header::CONTENT_TYPE], "application/json");
        assert!(response.body["message"].is_string());
    }
}

async fn unknown_routes_and_methods(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let missing = app.get("/api/no-such-thing", None).await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "route_not_found")
    );
    let wrong_method = app
        .request(Method::PUT, "/api/auth/login", None, Some(json!({})))
        .await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let wrong_method = app.delete("/health", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
}

async fn request_ids_and_security_headers(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let response = app.get("/health", None).await;
    let generated = response.headers["x-request-id"].to_str().unwrap();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    assert_eq!(response.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(response.headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(
        response.headers[header::REFERRER_POLICY],
        "strict-origin-when-cross-origin"
    );

    let request = Request::builder()
        .uri("/health")
        .header("x-request-id", "client-chosen-id")
        .body(Body::empty())
        .unwrap();
    let response = app.send(request).await;
    assert_eq!(response.headers["x-request-id"], "client-chosen-id");

    // LTI launches are embedded in LMS frames.
    let lti = app.get("/api/lti/launch", None).await;
    assert!(!lti.headers.contains_key(header::X_FRAME_OPTIONS));
    assert_eq!(lti.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

async fn cors_follows_the_allow_list(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| {
        config.http.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/users/me")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = app.send(preflight("https://app.example.com")).await;
    assert_eq!(
        allowed.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example.com"
    );
    assert_eq!(
        allowed.headers[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
        "true"
    );
    let denied = app.send(preflight("https://evil.example.com")).await;
    assert!(
        !denied
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
}

async fn openapi_covers_every_route(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let response = app.get("/api/openapi.json", None).await;
    assert_eq!(response.status, StatusCode::OK);
    let doc = &response.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let expected: &[(&str, &[&str])] = &[
        ("/health", &["get"]),
        ("/health/ready", &["get"]),
        ("/metrics", &["get"]),
        ("/api/auth/login", &["post"]),
        ("/api/users/me", &["get", "patch"]),
        ("/api/users/me/password", &["post"]),
        ("/api/users", &["get", "post"]),
        ("/api/users/{id}", &["get", "patch", "delete"]),
        ("/api/workflows", &["get", "post"]),
        ("/api/workflows/validate", &["post"]),
        ("/api/workflows/node-kinds", &["get"]),
        ("/api/workflows/import", &["post"]),
        ("/api/workflows/chatkit", &["get", "post"]),
        ("/api/workflows/{id}", &["get", "patch", "delete"]),
        ("/api/workflows/{id}/duplicate", &["post"]),
        ("/api/workflows/{id}/versions", &["get", "post"]),
        ("/api/workflows/{id}/versions/{version_id}", &["get", "put"]),
        ("/api/workflows/{id}/versions/{version_id}/export", &["get"]),
        ("/api/workflows/{id}/versions/{a}/diff/{b}", &["get"]),
        ("/api/workflows/{id}/production", &["post"]),
        ("/api/workflows/{id}/shares", &["get", "post"]),
        ("/api/workflows/{id}/shares/{user_id}", &["delete"]),
        ("/api/models", &["get"]),
        ("/api/admin/model-providers", &["get", "post"]),
        (
            "/api/admin/model-providers/{id}",
            &["get", "patch", "delete"],
        ),
        ("/api/admin/models", &["get", "post"]),
        ("/api/admin/models/{id}", &["get", "patch", "delete"]),
        ("/api/admin/model-providers/{id}/test", &["post"]),
        ("/api/admin/models/import", &["post"]),
        ("/api/admin/settings", &["get", "patch"]),
        ("/api/admin/usage", &["get"]),
        ("/api/workflows/{id}/runs", &["post"]),
        ("/api/runs", &["get"]),
        ("/api/runs/{id}", &["get"]),
        ("/api/runs/{id}/steps", &["get"]),
        ("/api/runs/{id}/events", &["get"]),
        ("/api/runs/{id}/resume", &["post"]),
        ("/api/runs/{id}/cancel", &["post"]),
        ("/api/widgets", &["get", "post"]),
        ("/api/widgets/preview", &["post"]),
        ("/api/widgets/{slug}", &["get", "patch", "delete"]),
        ("/api/workflow-widgets", &["get"]),
        ("/api/chatkit", &["post"]),
        ("/api/chatkit/attachments/{id}/upload", &["post"]),
        ("/api/chatkit/attachments/{id}/content", &["get"]),
        ("/api/chatkit/workflow", &["get"]),
        ("/api/appearance-settings", &["get"]),
        ("/api/admin/appearance-settings", &["get", "patch", "put"]),
        ("/api/workflows/{id}/appearance", &["get", "patch", "put"]),
        ("/api/chatkit/sessions", &["post"]),
        ("/api/chatkit/sessions/{id}/cancel", &["post"]),
        ("/api/admin/api-keys", &["get", "post"]),
        ("/api/admin/api-keys/{id}", &["delete"]),
        ("/api/admin/chat-feedback", &["get"]),
        ("/api/vector-stores", &["get", "post"]),
        ("/api/vector-stores/{slug}", &["get", "patch", "delete"]),
        ("/api/vector-stores/{slug}/documents", &["get", "post"]),
        (
            "/api/vector-stores/{slug}/documents/{doc_id}",
            &["get", "delete"],
        ),
        (
            "/api/vector-stores/{slug}/documents/{doc_id}/search",
            &["post"],
        ),
        ("/api/vector-stores/{slug}/files", &["post"]),
        ("/api/vector-stores/{slug}/jobs", &["get"]),
        ("/api/vector-stores/{slug}/jobs/{id}", &["get"]),
        ("/api/vector-stores/{slug}/search_json", &["post"]),
        ("/api/vector-stores/{slug}/search_documents", &["post"]),
        ("/api/admin/mcp-servers", &["get", "post"]),
        ("/api/admin/mcp-servers/{id}", &["get", "patch", "delete"]),
        ("/api/admin/mcp-servers/{id}/probe", &["post"]),
        ("/api/admin/mcp-servers/probe", &["post"]),
        ("/api/mcp/servers", &["get"]),
        ("/api/admin/mcp-tools", &["get"]),
        ("/api/admin/mcp-tools/{workflow_id}", &["put", "delete"]),
        ("/mcp", &["post", "get", "delete"]),
        ("/api/tools", &["get", "post"]),
        ("/api/admin/mcp-servers/{id}/oauth/start", &["post"]),
        ("/api/admin/mcp-servers/oauth/{state}", &["get"]),
        ("/api/mcp/oauth/callback", &["get"]),
        ("/api/tools/{id}", &["get", "patch", "delete"]),
        ("/api/admin/login-throttles", &["get", "delete"]),
        ("/api/admin/storage", &["get"]),
        ("/api/admin/storage/retention", &["get", "put"]),
        ("/api/admin/storage/blobs", &["get", "put"]),
        ("/api/admin/storage/blobs/move", &["post"]),
        ("/api/admin/cleanup/stats", &["get"]),
        ("/api/admin/cleanup/conversations", &["post"]),
        ("/api/admin/cleanup/workflow-history", &["post"]),
        ("/api/admin/cleanup/workflows", &["post"]),
    ];
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<String> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| format!("{m} {path}"))
        })
        .collect();
    documented.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(move |m| format!("{m} {path}")))
        .collect();
    wanted.sort();
    assert_eq!(documented, wanted);
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            // What the extractors answer is listed too.
            let secured = operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty());
            if secured {
                assert!(responses.contains_key("401"), "{method} {path}: 401");
            }
            let json_body = operation["requestBody"]["content"]
                .as_object()
                .is_some_and(|c| c.keys().any(|k| k.contains("json")));
            if json_body {
                for status in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(status), "{method} {path}: {status}");
                }
            }
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    // Parameters sit where the routes read them: a path's `{names}` are `in: path`, and
    // nothing else is.
    let mut misplaced = Vec::new();
    for (path, item) in paths {
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, operation) in item.as_object().unwrap() {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for parameter in &parameters {
                let (name, place) = (
                    parameter["name"].as_str().unwrap(),
                    parameter["in"].as_str().unwrap(),
                );
                if (place == "path") != names.contains(&name) {
                    misplaced.push(format!("{method} {path}: {name} in {place}"));
                }
            }
            for name in &names {
                if !parameters
                    .iter()
                    .any(|p| p["name"] == *name && p["in"] == "path")
                {
                    misplaced.push(format!("{method} {path}: {{{name}}} undeclared"));
                }
            }
        }
    }
    assert!(misplaced.is_empty(), "{misplaced:#?}");
    let runs = &paths["/api/runs"]["get"]["parameters"];
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "from" && p["in"] == "query"),
        "{runs}"
    );
    // The event streams are described, and the graph has a schema.
    let events = &paths["/api/runs/{id}/events"]["get"];
    assert!(events["responses"]["200"]["content"]["text/event-stream"].is_object());
    assert!(
        events["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "Last-Event-ID" && p["in"] == "header")
    );
    assert!(
        paths["/api/chatkit"]["post"]["responses"]["200"]["content"]["text/event-stream"]
            .is_object()
    );
    for schema in ["Graph", "Node", "Edge"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} in {}",
            doc["components"]["schemas"]
        );
    }
}

async fn docs_are_served_offline(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let redirect = app.get("/docs", None).await;
    assert!(redirect.status.is_redirection(), "{}", redirect.status);
    let page = app.get("/docs/", None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text.contains("swagger-ui"),
        "{}",
        &page.text[..200.min(page.text.len())]
    );
    assert!(!page.text.contains("cdn."), "no CDN references");
    let bundle = app.get("/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.text.len() > 100_000);
    let init = app.get("/docs/swagger-initializer.js", None).await;
    assert!(init.text.contains("/api/openapi.json"), "{}", init.text);
}

async fn health_and_readiness(backend: TestBackend) {
    let app = TestApp::new(backend.clone()).await;
    let live = app.get("/health", None).await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    assert_eq!(ready.body["status"], "ready");
    let database = &ready.body["components"]["database"];
    assert_eq!(database["status"], "up");
    assert_eq!(database["migrations_pending"], 0);
    let backend_name = match backend {
        TestBackend::Sqlite => "sqlite",
        TestBackend::Postgres(_) => "postgres",
    };
    assert_eq!(database["backend"], backend_name);

    app.app.db.close().await;
    let down = app.get("/health/ready", None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.body["status"], "not_ready");
    assert_eq!(down.body["components"]["database"]["status"], "down");
    // Liveness does not depend on the database; a request needing it gets a clean 503.
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    let login = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "a@b.c", "password": "whatever"}),
        )
        .await;
    assert_eq!(
        (login.status, login.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
    );
}

async fn metrics_are_exported(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    app.get("/health", None).await;
    app.get("/api/users/me", None).await;
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = &response.text;
    assert!(text.contains("http_requests_total{"), "{text}");
    assert!(text.contains("route=\"/api/users/me\""), "{text}");
    assert!(text.contains("status=\"401\""), "{text}");
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("db_pool_connections{state=\"idle\"}"),
        "{text}"
    );
}
