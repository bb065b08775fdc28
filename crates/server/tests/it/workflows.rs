//! Workflows over HTTP: CRUD, access rules, versions, publishing, concurrency, diff,
//! import and export.

use axum::{
    body::Body,
    http::{Method, Request, StatusCode, header},
};
use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, TestResponse, backend_tests};

backend_tests!(
    fresh_install_has_a_chatkit_default,
    workflows_are_created_edited_and_deleted,
    invalid_graphs_list_every_problem,
    access_follows_ownership_and_shares,
    versions_publish_and_roll_back,
    stale_edits_are_refused,
    versions_diff,
    export_then_import_is_lossless,
    seed_exports_import,
    agent_builder_exports_import,
    graphs_validate_without_saving,
    chatkit_default_is_admin_only_and_published,
    workflows_duplicate,
    references_are_checked,
    node_kinds_are_listed,
);

async fn references_are_checked(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let nested = |workflow: Value| {
        json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "sub", "kind": "agent", "parameters": {"workflow": workflow}},
                {"slug": "ask", "kind": "agent", "parameters": {"model": "gpt-5-mini", "instructions": "Hi"}},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [{"source": "start", "target": "sub"}, {"source": "sub", "target": "ask"}, {"source": "ask", "target": "end"}]
        })
    };
    let unknown = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Outer", "graph": nested(json!({"slug": "ghost"}))}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let problem = unknown.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["code"] == "unknown_reference")
        .unwrap();
    assert_eq!(
        (problem["node"].as_str(), problem["field"].as_str()),
        (Some("sub"), Some("parameters.workflow"))
    );

    // The default workflow is published: referring to it is fine, with a model warning.
    let ok = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Outer", "graph": nested(json!({"slug": "default"}))}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    let warnings: Vec<&str> = ok.body["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["code"].as_str().unwrap())
        .collect();
    assert_eq!(warnings, ["unknown_reference"], "{}", ok.text);
    assert!(
        ok.body["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("model registry")
    );

    // A knowledge base is checked against the stores that exist.
    let validate = |slug: &'static str| {
        json!({"graph": {
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "ask", "kind": "agent", "parameters": {"vector_store_ingestion": {"vector_store_slug": slug}}}
            ],
            "edges": [{"source": "start", "target": "ask"}]
        }})
    };
    let store = app
        .post(
            "/api/vector-stores",
            Some(&token),
            json!({"slug": "handbook", "title": "Handbook"}),
        )
        .await;
    assert!(store.status.is_success(), "{}", store.text);
    for (slug, missing) in [("handbook", false), ("nowhere", true)] {
        let checked = app
            .post("/api/workflows/validate", Some(&token), validate(slug))
            .await;
        let text = checked.text.clone();
        assert_eq!(
            text.contains(&format!("knowledge base `{slug}` does not exist")),
            missing,
            "{text}"
        );
    }

    // A workflow cannot nest itself.
    let id = ok.body["workflow"]["id"].as_i64().unwrap();
    let version = ok.body["version"]["id"].as_i64().unwrap();
    let own = put(
        &app,
        &token,
        &format!("/api/workflows/{id}/versions/{version}"),
        json!({"graph": nested(json!({"id": id}))}),
        None,
    )
    .await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        own.body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "self_reference"),
        "{}",
        own.text
    );
    // Another user's private workflow is reported exactly like a missing one.
    let (_, alice) = app
        .create_user("alice@example.com", "alice-password", false)
        .await;
    let (_, bob) = app
        .create_user("bob@example.com", "bob-password", false)
        .await;
    let (private, private_version) =
        create(&app, &alice, "Private", greeting_graph("secret")).await;
    app.post(
        &format!("/api/workflows/{private}/production"),
        Some(&alice),
        json!({"version_id": private_version}),
    )
    .await;
    let probe = app
        .post(
            "/api/workflows/validate",
            Some(&bob),
            json!({"graph": nested(json!({"id": private}))}),
        )
        .await;
    let codes: Vec<&str> = probe.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"unknown_reference"), "{codes:?}");
    // Kinds are matched without regard to case, so `Agent` is checked too.
    let mut shouty = nested(json!({"slug": "ghost"}));
    shouty["nodes"][1]["kind"] = json!("Agent");
    let probe = app
        .post(
            "/api/workflows/validate",
            Some(&bob),
            json!({"graph": shouty}),
        )
        .await;
    assert_eq!(probe.body["valid"], false, "{}", probe.text);
}

async fn node_kinds_are_listed(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let kinds = app.get("/api/workflows/node-kinds", Some(&token)).await;
    assert_eq!(kinds.status, StatusCode::OK);
    let list = kinds.body.as_array().unwrap();
    let runnable: Vec<&str> = list
        .iter()
        .filter(|k| k["runnable"] == true)
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(runnable.len(), 19);
    for kind in [
        "start",
        "end",
        "agent",
        "while",
        "user_approval",
        "note",
        "file_search",
        "json_vector_store",
        "mcp",
    ] {
        assert!(runnable.contains(&kind), "{kind}");
    }
    assert!(
        list.iter()
            .any(|k| k["kind"] == "computer_use" && k["runnable"] == false)
    );
}

fn greeting_graph(text: &str) -> Value {
    json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "hello", "kind": "assistant_message", "parameters": {"message": text}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "hello"}, {"source": "hello", "target": "end"}]
    })
}

async fn create(app: &TestApp, token: &str, name: &str, graph: Value) -> (i64, i64) {
    let response = app
        .post(
            "/api/workflows",
            Some(token),
            json!({"display_name": name, "graph": graph}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    (
        response.body["workflow"]["id"].as_i64().unwrap(),
        response.body["version"]["id"].as_i64().unwrap(),
    )
}

async fn put(
    app: &TestApp,
    token: &str,
    path: &str,
    body: Value,
    if_match: Option<&str>,
) -> TestResponse {
    let mut request = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(tag) = if_match {
        request = request.header(header::IF_MATCH, tag);
    }
    app.send(request.body(Body::from(body.to_string())).unwrap())
        .await
}

async fn fresh_install_has_a_chatkit_default(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let default = app.get("/api/workflows/chatkit", Some(&admin)).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.text);
    assert_eq!(default.body["slug"], "default");
    assert_eq!(default.body["is_chatkit_default"], true);
    let id = default.body["id"].as_i64().unwrap();
    let version_id = default.body["production_version_id"]
        .as_i64()
        .expect("published");
    let version = app
        .get(
            &format!("/api/workflows/{id}/versions/{version_id}"),
            Some(&admin),
        )
        .await;
    assert_eq!(version.body["status"], "published");
    let kinds: Vec<&str> = version.body["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["start", "assistant_message", "end"]);

    // A restart does not create it again, even after it was deleted.
    assert_eq!(
        app.delete(&format!("/api/workflows/{id}"), Some(&admin))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    app.restart().await.bootstrap().await.unwrap();
    assert_eq!(
        app.get("/api/workflows", Some(&admin)).await.body,
        json!([])
    );

    // Plain users can see which workflow ChatKit serves, but not list it.
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    assert_eq!(app.get("/api/workflows", Some(&user)).await.body, json!([]));
}

async fn workflows_are_created_edited_and_deleted(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let (_, token) = app
        .create_user("ann@example.com", "ann-password", false)
        .await;
    let created = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Order Support!", "description": "Helps with orders"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let workflow = &created.body["workflow"];
    assert_eq!(workflow["slug"], "order-support");
    assert_eq!(workflow["access"], "owner");
    assert_eq!(workflow["production_version_id"], Value::Null);
    assert_eq!(created.body["version"]["number"], 1);
    assert_eq!(created.body["version"]["status"], "draft");
    assert_eq!(
        created.body["version"]["graph"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "start → end"
    );
    let id = workflow["id"].as_i64().unwrap();
    let path = format!("/api/workflows/{id}");

    let patched = app
        .patch(&path, Some(&token), json!({"slug": "orders", "display_name": "Orders", "description": null, "follow_production": true}))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(
        (
            patched.body["slug"].as_str(),
            patched.body["description"].clone()
        ),
        (Some("orders"), Value::Null)
    );
    assert_eq!(patched.body["follow_production"], true);

    let listed = app.get("/api/workflows", Some(&token)).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);

    let again = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Other", "slug": "orders"}),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "slug_taken")
    );
    let bad = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Other", "slug": "Not A Slug"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_slug")
    );
    let empty = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "   "}),
        )
        .await;
    assert_eq!(
        (empty.status, empty.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );
    // A second workflow from the same name gets the next free slug.
    let twin = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Orders"}),
        )
        .await;
    assert_eq!(twin.body["workflow"]["slug"], "orders-2");

    assert_eq!(
        app.delete(&path, Some(&token)).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = app.get(&path, Some(&token)).await;
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "workflow_not_found")
    );
    assert_eq!(
        app.get("/api/workflows", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn invalid_graphs_list_every_problem(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "check", "kind": "condition", "parameters": {"path": "state.x >"}},
            {"slug": "check", "kind": "watch"},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "check"}, {"source": "check", "target": "end"}, {"source": "end", "target": "nowhere"}]
    });
    let response = app
        .post(
            "/api/workflows",
            Some(&admin),
            json!({"display_name": "Broken", "graph": graph}),
        )
        .await;
    assert_eq!(
        (response.status, response.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_workflow")
    );
    let problems = response.body["problems"].as_array().unwrap();
    let codes: Vec<&str> = problems
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    for code in ["invalid_expression", "duplicate_slug", "unknown_edge_node"] {
        assert!(codes.contains(&code), "{code} in {codes:?}");
    }
    let expression = problems
        .iter()
        .find(|p| p["code"] == "invalid_expression")
        .unwrap();
    assert_eq!(expression["node"], "check");
    assert_eq!(expression["field"], "parameters.path");
    assert_eq!(expression["severity"], "error");

    let malformed = app
        .post(
            "/api/workflows",
            Some(&admin),
            json!({"display_name": "Broken", "graph": {"nodes": "many"}}),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(malformed.body["problems"][0]["code"], "malformed_graph");
    assert_eq!(
        app.get("/api/workflows", Some(&admin))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1,
        "only the default"
    );
}

async fn access_follows_ownership_and_shares(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, owner) = app
        .create_user("owner@example.com", "owner-password", false)
        .await;
    let (other_id, other) = app
        .create_user("other@example.com", "other-password", false)
        .await;
    let (id, version) = create(&app, &owner, "Private", greeting_graph("hi")).await;
    let base = format!("/api/workflows/{id}");
    let version_path = format!("{base}/versions/{version}");

    // A stranger learns nothing, not even that it exists.
    for response in [
        app.get(&base, Some(&other)).await,
        app.get(&format!("{base}/versions"), Some(&other)).await,
        app.get(&version_path, Some(&other)).await,
        app.patch(&base, Some(&other), json!({"display_name": "Mine"}))
            .await,
        app.delete(&base, Some(&other)).await,
    ] {
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::NOT_FOUND, "workflow_not_found")
        );
    }
    assert_eq!(
        app.get("/api/workflows", Some(&other)).await.body,
        json!([])
    );

    // Read share: look, do not touch.
    let shared = app
        .post(
            &format!("{base}/shares"),
            Some(&owner),
            json!({"email": "Other@Example.com", "permission": "read"}),
        )
        .await;
    assert_eq!(shared.status, StatusCode::OK, "{}", shared.text);
    assert_eq!(shared.body[0]["email"], "other@example.com");
    assert_eq!(app.get(&base, Some(&other)).await.body["access"], "read");
    assert_eq!(
        app.get(&format!("{version_path}/export"), Some(&other))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/workflows", Some(&other)).await.body[0]["access"],
        "read"
    );
    for response in [
        app.patch(&base, Some(&other), json!({"display_name": "Mine"}))
            .await,
        put(
            &app,
            &other,
            &version_path,
            json!({"graph": greeting_graph("changed")}),
            None,
        )
        .await,
        app.post(&format!("{base}/versions"), Some(&other), json!({}))
            .await,
        app.post(
            &format!("{base}/production"),
            Some(&other),
            json!({"version_id": version}),
        )
        .await,
        app.delete(&base, Some(&other)).await,
        app.get(&format!("{base}/shares"), Some(&other)).await,
    ] {
        assert_eq!(
            (response.status, response.code()),
            (StatusCode::FORBIDDEN, "workflow_forbidden"),
            "{}",
            response.text
        );
    }

    // Write share: edit and publish, but not delete or share.
    app.post(
        &format!("{base}/shares"),
        Some(&owner),
        json!({"email": "other@example.com", "permission": "write"}),
    )
    .await;
    assert_eq!(app.get(&base, Some(&other)).await.body["access"], "write");
    let edited = put(
        &app,
        &other,
        &version_path,
        json!({"graph": greeting_graph("edited by a colleague")}),
        None,
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.text);
    let published = app
        .post(
            &format!("{base}/production"),
            Some(&other),
            json!({"version_id": version}),
        )
        .await;
    assert_eq!(published.status, StatusCode::OK);
    assert_eq!(
        app.delete(&base, Some(&other)).await.status,
        StatusCode::FORBIDDEN
    );
    let reshare = app
        .post(
            &format!("{base}/shares"),
            Some(&other),
            json!({"email": "other@example.com", "permission": "write"}),
        )
        .await;
    assert_eq!(reshare.status, StatusCode::FORBIDDEN);

    // Bad share requests.
    let bad = app
        .post(
            &format!("{base}/shares"),
            Some(&owner),
            json!({"email": "other@example.com", "permission": "admin"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_permission")
    );
    let ghost = app
        .post(
            &format!("{base}/shares"),
            Some(&owner),
            json!({"email": "ghost@example.com", "permission": "read"}),
        )
        .await;
    assert_eq!(
        (ghost.status, ghost.code()),
        (StatusCode::NOT_FOUND, "user_not_found")
    );
    // Only administrators address users by id: ids cannot be walked to harvest emails.
    let by_id = app
        .post(
            &format!("{base}/shares"),
            Some(&owner),
            json!({"user_id": other_id, "permission": "read"}),
        )
        .await;
    assert_eq!(
        (by_id.status, by_id.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_field")
    );
    let by_admin = app
        .post(
            &format!("{base}/shares"),
            Some(&admin),
            json!({"user_id": other_id, "permission": "write"}),
        )
        .await;
    assert_eq!(by_admin.status, StatusCode::OK, "{}", by_admin.text);
    let nul = app
        .post(
            "/api/workflows",
            Some(&owner),
            json!({"display_name": "bad\u{0}name"}),
        )
        .await;
    assert_eq!(
        (nul.status, nul.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );

    // Administrators see and manage everything.
    assert_eq!(app.get(&base, Some(&admin)).await.body["access"], "admin");
    assert_eq!(
        app.get(&format!("{base}/shares"), Some(&admin))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Unsharing takes the access away again.
    assert_eq!(
        app.delete(&format!("{base}/shares/{other_id}"), Some(&owner))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get(&base, Some(&other)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&base, Some(&admin)).await.status,
        StatusCode::NO_CONTENT
    );
}

async fn versions_publish_and_roll_back(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let (id, v1) = create(&app, &token, "Versions", greeting_graph("one")).await;
    let base = format!("/api/workflows/{id}");

    let published = app
        .post(
            &format!("{base}/production"),
            Some(&token),
            json!({"version_id": v1}),
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text);
    assert_eq!(
        (
            published.body["status"].as_str(),
            published.body["is_production"].as_bool()
        ),
        (Some("published"), Some(true))
    );
    assert!(published.body["published_by"].is_i64());

    // Editing the published version makes a new draft; production is untouched.
    let edit = put(
        &app,
        &token,
        &format!("{base}/versions/{v1}"),
        json!({"graph": greeting_graph("two")}),
        None,
    )
    .await;
    assert_eq!(edit.status, StatusCode::CREATED, "{}", edit.text);
    assert_eq!(edit.body["created_draft"], true);
    let v2 = edit.body["version"]["id"].as_i64().unwrap();
    assert_eq!(edit.body["version"]["number"], 2);
    assert_eq!(
        app.get(&base, Some(&token)).await.body["production_version_id"],
        v1
    );
    let still = app
        .get(&format!("{base}/versions/{v1}"), Some(&token))
        .await;
    assert_eq!(still.body["graph"], greeting_graph("one"));

    // A draft is edited in place.
    let in_place = put(
        &app,
        &token,
        &format!("{base}/versions/{v2}"),
        json!({"graph": greeting_graph("two, again"), "name": "Second"}),
        None,
    )
    .await;
    assert_eq!(in_place.status, StatusCode::OK);
    assert_eq!(
        (
            in_place.body["version"]["id"].as_i64(),
            in_place.body["version"]["revision"].as_i64()
        ),
        (Some(v2), Some(2))
    );
    assert_eq!(in_place.body["version"]["name"], "Second");

    let listed = app.get(&format!("{base}/versions"), Some(&token)).await;
    let numbers: Vec<i64> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["number"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [2, 1]);
    assert_eq!(listed.body[1]["is_production"], true);

    let stale = app
        .post(
            &format!("{base}/production"),
            Some(&token),
            json!({"version_id": v2, "revision": 1}),
        )
        .await;
    assert_eq!(
        (stale.status, stale.code()),
        (StatusCode::CONFLICT, "stale_version"),
        "v2 is at revision 2"
    );
    // Publish v2, then roll back to v1.
    app.post(
        &format!("{base}/production"),
        Some(&token),
        json!({"version_id": v2}),
    )
    .await;
    assert_eq!(
        app.get(&base, Some(&token)).await.body["production_version_id"],
        v2
    );
    let rollback = app
        .post(
            &format!("{base}/production"),
            Some(&token),
            json!({"version_id": v1}),
        )
        .await;
    assert_eq!(rollback.status, StatusCode::OK);
    assert_eq!(
        app.get(&base, Some(&token)).await.body["production_version_id"],
        v1
    );
    let v2_now = app
        .get(&format!("{base}/versions/{v2}"), Some(&token))
        .await;
    assert_eq!(
        (
            v2_now.body["status"].as_str(),
            v2_now.body["is_production"].as_bool()
        ),
        (Some("published"), Some(false))
    );

    // A new draft copies production when no graph is given.
    let copy = app
        .post(
            &format!("{base}/versions"),
            Some(&token),
            json!({"name": "Next"}),
        )
        .await;
    assert_eq!(copy.status, StatusCode::CREATED);
    assert_eq!(copy.body["version"]["graph"], greeting_graph("one"));
    assert_eq!(copy.body["version"]["number"], 3);

    let missing = app
        .post(
            &format!("{base}/production"),
            Some(&token),
            json!({"version_id": 999_999}),
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::NOT_FOUND, "version_not_found")
    );
    // Another workflow's version cannot be published here.
    let (_, foreign) = create(&app, &token, "Foreign", greeting_graph("x")).await;
    let cross = app
        .post(
            &format!("{base}/production"),
            Some(&token),
            json!({"version_id": foreign}),
        )
        .await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
}

async fn stale_edits_are_refused(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let (id, v1) = create(&app, &token, "Concurrent", greeting_graph("one")).await;
    let path = format!("/api/workflows/{id}/versions/{v1}");
    let loaded = app.get(&path, Some(&token)).await;
    let etag = loaded.headers[header::ETAG].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{v1}-1\""));

    // A colleague saves first.
    let first = put(
        &app,
        &token,
        &path,
        json!({"graph": greeting_graph("colleague")}),
        Some(&etag),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.headers[header::ETAG].to_str().unwrap(),
        format!("\"{v1}-2\"")
    );

    // My save, based on what I loaded, is refused rather than overwriting theirs.
    let mine = put(
        &app,
        &token,
        &path,
        json!({"graph": greeting_graph("mine")}),
        Some(&etag),
    )
    .await;
    assert_eq!(
        (mine.status, mine.code()),
        (StatusCode::CONFLICT, "stale_version")
    );
    assert_eq!(mine.body["current_revision"], 2);
    let by_body = put(
        &app,
        &token,
        &path,
        json!({"graph": greeting_graph("mine"), "revision": 1}),
        None,
    )
    .await;
    assert_eq!(by_body.status, StatusCode::CONFLICT);
    assert_eq!(
        app.get(&path, Some(&token)).await.body["graph"],
        greeting_graph("colleague")
    );

    let garbage = put(
        &app,
        &token,
        &path,
        json!({"graph": greeting_graph("mine")}),
        Some("\"nonsense\""),
    )
    .await;
    assert_eq!(
        (garbage.status, garbage.code()),
        (StatusCode::PRECONDITION_FAILED, "invalid_if_match")
    );
    let fresh = put(
        &app,
        &token,
        &path,
        json!({"graph": greeting_graph("mine"), "revision": 2}),
        None,
    )
    .await;
    assert_eq!(fresh.status, StatusCode::OK);
}

async fn versions_diff(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let (id, v1) = create(&app, &token, "Diffed", greeting_graph("one")).await;
    let mut changed = greeting_graph("two");
    changed["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"slug": "peek", "kind": "watch"}));
    changed["edges"] = json!([{"source": "start", "target": "hello"}, {"source": "hello", "target": "peek"}, {"source": "peek", "target": "end"}]);
    let v2 = app
        .post(
            &format!("/api/workflows/{id}/versions"),
            Some(&token),
            json!({"graph": changed}),
        )
        .await;
    let v2 = v2.body["version"]["id"].as_i64().unwrap();
    let diff = app
        .get(
            &format!("/api/workflows/{id}/versions/{v1}/diff/{v2}"),
            Some(&token),
        )
        .await;
    assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
    assert_eq!(diff.body["nodes_added"], json!(["peek"]));
    assert_eq!(diff.body["nodes_removed"], json!([]));
    assert_eq!(
        diff.body["nodes_changed"],
        json!([{"slug": "hello", "changes": [{"field": "parameters.message", "before": "one", "after": "two"}]}])
    );
    assert_eq!(diff.body["edges_added"].as_array().unwrap().len(), 2);
    assert_eq!(
        diff.body["edges_removed"],
        json!([{"source": "hello", "target": "end", "condition": null}])
    );
    let missing = app
        .get(
            &format!("/api/workflows/{id}/versions/{v1}/diff/999999"),
            Some(&token),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn export_then_import_is_lossless(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start", "metadata": {"position": {"x": 10, "y": 20}}},
            {"slug": "ask", "kind": "agent", "display_name": "Ask", "parameters": {"instructions": "Be brief, {{ user.email }}.", "model": "gpt-5-mini"}},
            {"slug": "check", "kind": "condition", "parameters": {"cases": [{"label": "long", "predicate": "size(input.output_text) > 100"}]}},
            {"slug": "parked", "kind": "mcp", "is_enabled": false, "parameters": {"server": "x"}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [
            {"source": "start", "target": "ask"}, {"source": "ask", "target": "check"},
            {"source": "check", "target": "parked", "condition": "long", "metadata": {"label": "Long"}},
            {"source": "check", "target": "end", "condition": "else"},
            {"source": "parked", "target": "end"}
        ],
        "state_schema": {"type": "object", "properties": {"count": {"type": "integer", "default": 0}}},
        "input_schema": {"type": "object", "properties": {"input_as_text": {"type": "string"}}}
    });
    let (id, v1) = create(&app, &token, "Round trip", graph.clone()).await;
    let export = app
        .get(
            &format!("/api/workflows/{id}/versions/{v1}/export"),
            Some(&token),
        )
        .await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("round-trip-v1.json")
    );
    assert_eq!(export.body["format"], "switchyard.workflow");

    let imported = app
        .post("/api/workflows/import", Some(&token), export.body.clone())
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.text);
    assert_eq!(
        imported.body["version"]["graph"], graph,
        "export then import gives the same graph"
    );
    assert_eq!(imported.body["workflow"]["slug"], "round-trip-2");
    assert_eq!(imported.body["workflow"]["display_name"], "Round trip");

    // Into an existing workflow, as a new version, published at once.
    let wrapped = app
        .post(
            "/api/workflows/import",
            Some(&token),
            json!({"document": export.body, "workflow_id": id, "publish": true}),
        )
        .await;
    assert_eq!(wrapped.status, StatusCode::CREATED, "{}", wrapped.text);
    assert_eq!(wrapped.body["workflow"]["id"], id);
    assert_eq!(wrapped.body["version"]["number"], 2);
    assert_eq!(wrapped.body["version"]["is_production"], true);

    let junk = app
        .post(
            "/api/workflows/import",
            Some(&token),
            json!({"hello": "world"}),
        )
        .await;
    assert_eq!(
        (junk.status, junk.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_import")
    );
}

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn node<'a>(graph: &'a Value, slug: &str) -> &'a Value {
    graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["slug"] == slug)
        .unwrap_or_else(|| panic!("no node {slug}"))
}

/// The seed system's own example workflows (`workflows/*.json` in its repository) import
/// with every node whose kind runs enabled: provider keys given twice, an unknown
/// condition mode, Python expressions and Jinja filters are adapted, each with a warning.
#[tokio::test]
async fn the_seed_systems_own_workflows_import_faithfully() {
    let app = TestApp::new(TestBackend::Sqlite).await;
    let token = app.admin_token().await;
    for file in [
        "seed_coding_agent_ssh.json",
        "seed_demo_blocs_pedagogiques.json",
    ] {
        let imported = app
            .post("/api/workflows/import", Some(&token), fixture(file))
            .await;
        assert_eq!(
            imported.status,
            StatusCode::CREATED,
            "{file}: {}",
            imported.text
        );
        let graph = &imported.body["version"]["graph"];
        for node in graph["nodes"].as_array().unwrap() {
            let kind = node["kind"].as_str().unwrap();
            let runs = domain::workflows::nodes::Kind::parse(kind).is_some();
            assert_eq!(
                node["is_enabled"] != false,
                runs,
                "{file}: {} ({kind}) in {}",
                node["slug"],
                imported.text
            );
        }
        if file == "seed_demo_blocs_pedagogiques.json" {
            continue;
        }
        // A key given twice, as written: the last one counts, with a warning.
        let raw = r#"{"nodes": [{"slug": "start", "kind": "start"},
            {"slug": "end", "kind": "end", "parameters": {"message": "first", "message": "second"}}],
            "edges": [{"source": "start", "target": "end"}]}"#;
        let twice = app
            .send(
                Request::post("/api/workflows/import")
                    .header(header::AUTHORIZATION, format!("Bearer {token}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(raw))
                    .unwrap(),
            )
            .await;
        assert_eq!(twice.status, StatusCode::CREATED, "{}", twice.text);
        assert!(
            twice.body["warnings"]
                .to_string()
                .contains("gives the key `message` twice"),
            "{}",
            twice.text
        );
        assert_eq!(
            node(&twice.body["version"]["graph"], "end")["parameters"]["message"],
            "second"
        );
        if file == "seed_coding_agent_ssh.json" {
            let warnings = imported.body["warnings"].to_string();
            for said in ["`False` → `false`", "int(state.task_index)"] {
                assert!(warnings.contains(said), "{said} in {warnings}");
            }
            assert_eq!(
                node(graph, "state-init")["parameters"]["state"][3]["expression"],
                "false"
            );
            assert_eq!(
                node(graph, "condition-quit")["parameters"]["mode"],
                "contains"
            );
        }
    }
}

async fn seed_exports_import(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let imported = app
        .post(
            "/api/workflows/import",
            Some(&token),
            fixture("seed_export.json"),
        )
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.text);
    assert_eq!(imported.body["workflow"]["slug"], "support-etudiants");
    assert_eq!(
        imported.body["workflow"]["display_name"],
        "Support étudiants"
    );
    let graph = &imported.body["version"]["graph"];
    assert_eq!(graph["nodes"].as_array().unwrap().len(), 13);
    assert_eq!(graph["edges"].as_array().unwrap().len(), 15);
    // The vector-store ingestion node runs, as authored.
    assert_ne!(node(graph, "indexer")["is_enabled"], false);
    assert_eq!(
        node(graph, "indexer")["parameters"]["vector_store_slug"],
        "faq"
    );
    // Everything else arrives as authored.
    assert_eq!(
        node(graph, "attendre-reponse")["parent_slug"],
        "boucle-devoir"
    );
    assert_eq!(
        node(graph, "agent-triage")["parameters"]["response_format"]["name"],
        "triage"
    );
    assert_eq!(node(graph, "debug")["is_enabled"], false);
    let labels: Vec<Value> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "aiguillage")
        .map(|e| e["condition"].clone())
        .collect();
    assert_eq!(labels, [json!("devoir"), json!("question"), Value::Null]);
    // It validates, so it can be published.
    let id = imported.body["workflow"]["id"].as_i64().unwrap();
    let version = imported.body["version"]["id"].as_i64().unwrap();
    let published = app
        .post(
            &format!("/api/workflows/{id}/production"),
            Some(&token),
            json!({"version_id": version}),
        )
        .await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text);
}

async fn agent_builder_exports_import(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let imported = app
        .post(
            "/api/workflows/import",
            Some(&token),
            fixture("agent_builder_order_support.json"),
        )
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.text);
    assert_eq!(
        imported.body["workflow"]["display_name"],
        "Order support assistant"
    );
    let graph = &imported.body["version"]["graph"];
    let nodes = graph["nodes"].as_array().unwrap();
    let by_kind = |kind: &str| {
        nodes
            .iter()
            .filter(|n| n["kind"] == kind)
            .collect::<Vec<_>>()
    };

    assert_eq!(by_kind("start").len(), 1);
    let agents = by_kind("agent");
    assert!(agents.len() >= 2);
    let triage = agents
        .iter()
        .find(|a| a["display_name"] == "Triage")
        .unwrap();
    assert_eq!(
        triage["parameters"]["model"], "gpt-5-mini",
        "CEL string literals are unquoted"
    );
    assert!(
        triage["parameters"]["instructions"]
            .as_str()
            .unwrap()
            .starts_with("Classify the customer's message.\n")
    );
    assert_eq!(
        triage["parameters"]["response_format"]["type"],
        "json_schema"
    );

    let conditions = by_kind("condition");
    assert_eq!(conditions.len(), 1);
    assert!(
        conditions[0]["parameters"]["cases"]
            .as_array()
            .unwrap()
            .len()
            >= 2
    );
    let loops = by_kind("while");
    assert_eq!(loops.len(), 1);
    let loop_slug = loops[0]["slug"].as_str().unwrap();
    assert!(
        nodes
            .iter()
            .filter(|n| n["parent_slug"] == loop_slug)
            .count()
            >= 3,
        "the loop body came along"
    );
    assert_eq!(by_kind("user_approval").len(), 1);
    assert!(by_kind("state").len() >= 3);
    assert_eq!(by_kind("transform").len(), 1);
    assert_eq!(by_kind("note").len(), 1);

    // File search runs, against the knowledge base named by the store's id.
    let search = by_kind("file_search");
    assert_eq!(search.len(), 1);
    assert_ne!(search[0]["is_enabled"], false);
    assert_eq!(
        search[0]["parameters"]["vector_store_slug"],
        "vs_68f0aa11bb22cc33dd44ee55ff660011"
    );
    assert_eq!(search[0]["parameters"]["top_k"], 5);
    assert_eq!(
        search[0]["parameters"]["query"],
        "shipping and returns policy {{state.customer.last_message}}"
    );
    // Guardrails cannot run yet, and an MCP node names no registered server: both are kept
    // disabled, with a warning each.
    for kind in ["guardrails", "mcp"] {
        let parked = by_kind(kind);
        assert_eq!(parked.len(), 1, "{kind}");
        assert_eq!(parked[0]["is_enabled"], false, "{kind}");
    }
    let warnings = imported.body["warnings"].as_array().unwrap();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w["code"] == "node_disabled")
            .count(),
        2,
        "{warnings:?}"
    );

    let labels: Vec<&str> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["condition"].as_str())
        .collect();
    for label in ["approve", "reject", "else", "exit", "loop", "pass"] {
        assert!(labels.contains(&label), "{label} in {labels:?}");
    }
    assert_eq!(
        graph["state_schema"]["properties"]["attempts"]["default"],
        0
    );
    assert!(
        nodes
            .iter()
            .all(|n| n["metadata"]["agent_builder_id"].is_string())
    );
}

async fn graphs_validate_without_saving(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let ok = app
        .post(
            "/api/workflows/validate",
            Some(&token),
            json!({"graph": greeting_graph("hi {{ user.email }}")}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.body, json!({"valid": true, "problems": []}));
    let bad = app
        .post(
            "/api/workflows/validate",
            Some(&token),
            json!({"graph": {"nodes": [{"slug": "end", "kind": "end"}], "edges": []}}),
        )
        .await;
    assert_eq!(bad.body["valid"], false);
    assert_eq!(bad.body["problems"][0]["code"], "missing_start");
    let malformed = app
        .post(
            "/api/workflows/validate",
            Some(&token),
            json!({"graph": [1]}),
        )
        .await;
    assert_eq!(malformed.body["problems"][0]["code"], "malformed_graph");
    assert_eq!(
        app.get("/api/workflows", Some(&token))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1,
        "nothing saved"
    );
}

async fn chatkit_default_is_admin_only_and_published(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    let (id, version) = create(&app, &user, "Mine", greeting_graph("hi")).await;

    let refused = app
        .post(
            "/api/workflows/chatkit",
            Some(&user),
            json!({"workflow_id": id}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let unpublished = app
        .post(
            "/api/workflows/chatkit",
            Some(&admin),
            json!({"workflow_id": id}),
        )
        .await;
    assert_eq!(
        (unpublished.status, unpublished.code()),
        (StatusCode::CONFLICT, "workflow_not_published")
    );

    app.post(
        &format!("/api/workflows/{id}/production"),
        Some(&user),
        json!({"version_id": version}),
    )
    .await;
    let chosen = app
        .post(
            "/api/workflows/chatkit",
            Some(&admin),
            json!({"workflow_id": id}),
        )
        .await;
    assert_eq!(chosen.status, StatusCode::OK, "{}", chosen.text);
    assert_eq!(chosen.body["is_chatkit_default"], true);
    assert_eq!(
        app.get("/api/workflows/chatkit", Some(&user)).await.body["id"],
        id
    );
    let all = app.get("/api/workflows", Some(&admin)).await;
    let defaults = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["is_chatkit_default"] == true)
        .count();
    assert_eq!(defaults, 1, "exactly one default");
    let owner_delete = app
        .delete(&format!("/api/workflows/{id}"), Some(&user))
        .await;
    assert_eq!(
        (owner_delete.status, owner_delete.code()),
        (StatusCode::FORBIDDEN, "workflow_forbidden")
    );
    let missing = app
        .post(
            "/api/workflows/chatkit",
            Some(&admin),
            json!({"workflow_id": 999_999}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn workflows_duplicate(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (id, version) = create(&app, &admin, "Source", greeting_graph("copied")).await;
    app.post(
        &format!("/api/workflows/{id}/production"),
        Some(&admin),
        json!({"version_id": version}),
    )
    .await;
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    // Users can duplicate only what they can see.
    assert_eq!(
        app.post(
            &format!("/api/workflows/{id}/duplicate"),
            Some(&user),
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );

    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/workflows/{id}/duplicate"))
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    let copy = app.send(request).await;
    assert_eq!(copy.status, StatusCode::CREATED, "{}", copy.text);
    assert_eq!(copy.body["workflow"]["slug"], "source-copy");
    assert_eq!(copy.body["workflow"]["display_name"], "Source (copy)");
    assert_eq!(copy.body["version"]["status"], "draft");
    assert_eq!(copy.body["version"]["graph"], greeting_graph("copied"));
    let named = app
        .post(
            &format!("/api/workflows/{id}/duplicate"),
            Some(&admin),
            json!({"slug": "named", "display_name": "Named"}),
        )
        .await;
    assert_eq!(named.body["workflow"]["slug"], "named");
}
