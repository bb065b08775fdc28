//! Storage: what is stored, retention (off until an administrator sets it, then swept in
//! batches, never touching unfinished runs) and the confirmed bulk deletes, as an
//! administrator and as a regular user.

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::Reply};

use crate::{
    chatkit::{agent_graph, chatkit, learner, message, serve},
    runs::{fake_default_model, publish},
};

backend_tests!(
    retention_deletes_what_is_past_it,
    bulk_deletes_are_confirmed
);

fn waiting_graph() -> Value {
    json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "Your name?"}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}]
    })
}

async fn stored(app: &TestApp, admin: &str) -> Value {
    let got = app.get("/api/admin/storage", Some(admin)).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    got.body
}

async fn retention_deletes_what_is_past_it(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let user = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    for i in 0..3 {
        fake.push(Reply::Text(format!("Answer {i}")));
        fake.push(Reply::Text(format!("Title {i}")));
        let turn = chatkit(
            &app,
            &user,
            json!({"type": "threads.create", "params": {"input": message("Hello")}}),
        )
        .await;
        assert_eq!(turn.status, StatusCode::OK, "{}", turn.text);
    }
    let waiting = publish(&app, &admin, waiting_graph()).await;
    let started = app
        .post(
            &format!("/api/workflows/{waiting}/runs"),
            Some(&admin),
            json!({}),
        )
        .await;
    assert_eq!(started.body["status"], "waiting", "{}", started.text);

    // Regular users neither see nor set any of it.
    assert_eq!(
        app.get("/api/admin/storage", Some(&user)).await.status,
        StatusCode::FORBIDDEN
    );
    let refused = app
        .put(
            "/api/admin/storage/retention",
            Some(&user),
            json!({"runs_days": 1}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);

    let before = stored(&app, &admin).await;
    assert_eq!(before["stored"]["threads"], 3, "{before}");
    assert!(before["stored"]["thread_items"].as_i64().unwrap() >= 6);
    assert_eq!(before["stored"]["runs"], 4);
    assert_eq!(before["stored"]["unfinished_runs"], 1);
    assert!(before["stored"]["run_events"].as_i64().unwrap() > 4);
    assert!(before["stored"]["usage_records"].as_i64().unwrap() >= 3);
    assert!(before["stored"]["database_bytes"].as_i64().unwrap() > 0);
    // Off by default: a sweep far in the future deletes nothing.
    assert_eq!(
        before["retention"],
        json!({"threads_days": null, "runs_days": null, "usage_days": null, "unreferenced_uploads_days": null})
    );
    let services = &app.app.services;
    let later = Utc::now() + Duration::days(400);
    let nothing = domain::storage::sweep(services, later).await.unwrap();
    assert_eq!(nothing.total(), 0);

    let bad = app
        .put(
            "/api/admin/storage/retention",
            Some(&admin),
            json!({"runs_days": 0}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert!(bad.body["message"].as_str().unwrap().contains("runs_days"));
    let unknown = app
        .put(
            "/api/admin/storage/retention",
            Some(&admin),
            json!({"forever": 1}),
        )
        .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.text
    );
    let set = app
        .put(
            "/api/admin/storage/retention",
            Some(&admin),
            json!({"threads_days": 30, "runs_days": 30, "usage_days": 30, "unreferenced_uploads_days": 7}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    assert_eq!(set.body["runs_days"], 30);
    // Nothing is 30 days old yet.
    let today = domain::storage::sweep(services, Utc::now()).await.unwrap();
    assert_eq!(today.total(), 0);
    // In 40 days, all of it is, but the waiting run.
    let swept = domain::storage::sweep(services, Utc::now() + Duration::days(40))
        .await
        .unwrap();
    assert_eq!(swept.threads, 3, "{swept:?}");
    assert_eq!(swept.runs, 3, "{swept:?}");
    assert!(swept.usage_records >= 3, "{swept:?}");
    let after = stored(&app, &admin).await;
    assert_eq!(after["stored"]["threads"], 0, "{after}");
    assert_eq!(after["stored"]["thread_items"], 0);
    assert_eq!(after["stored"]["runs"], 1);
    assert_eq!(after["stored"]["unfinished_runs"], 1);
    assert_eq!(after["stored"]["usage_records"], 0);
    let run_id = started.body["id"].as_str().unwrap();
    let kept = app.get(&format!("/api/runs/{run_id}"), Some(&admin)).await;
    assert_eq!(kept.body["status"], "waiting", "{}", kept.text);
    // The threads' events and steps went with their runs.
    let events = after["stored"]["run_events"].as_i64().unwrap();
    let kept_events = app
        .get(&format!("/api/runs/{run_id}/events"), Some(&admin))
        .await;
    assert_eq!(events, kept_events.body.as_array().unwrap().len() as i64);
}

async fn bulk_deletes_are_confirmed(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let user = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    fake.push(Reply::Text("Hi".into()));
    fake.push(Reply::Text("A title".into()));
    serve(&app, &admin, agent_graph()).await;
    let turn = chatkit(
        &app,
        &user,
        json!({"type": "threads.create", "params": {"input": message("Hello")}}),
    )
    .await;
    assert_eq!(turn.status, StatusCode::OK, "{}", turn.text);
    // A workflow with three versions: the first in production, the third the latest.
    let other = publish(&app, &admin, waiting_graph()).await;
    for _ in 0..2 {
        let version = app
            .post(
                &format!("/api/workflows/{other}/versions"),
                Some(&admin),
                json!({"graph": waiting_graph()}),
            )
            .await;
        assert!(version.status.is_success(), "{}", version.text);
    }
    let stats = app.get("/api/admin/cleanup/stats", Some(&admin)).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.text);
    assert_eq!(stats.body["conversations"], 1, "{}", stats.text);
    assert_eq!(stats.body["workflow_history"], 1, "{}", stats.text);
    assert!(stats.body["workflows"].as_i64().unwrap() >= 1);
    assert_eq!(
        app.get("/api/admin/cleanup/stats", Some(&user))
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    for path in ["conversations", "workflow-history", "workflows"] {
        let url = format!("/api/admin/cleanup/{path}");
        let as_user = app.post(&url, Some(&user), json!({"confirm": path})).await;
        assert_eq!(as_user.status, StatusCode::FORBIDDEN, "{path}");
        let unconfirmed = app.post(&url, Some(&admin), json!({})).await;
        assert_eq!(
            unconfirmed.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}"
        );
        assert!(
            unconfirmed.body["message"].as_str().unwrap().contains(path),
            "{}",
            unconfirmed.text
        );
        let wrong = app
            .post(&url, Some(&admin), json!({"confirm": "yes"}))
            .await;
        assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY, "{path}");
    }
    let conversations = app
        .post(
            "/api/admin/cleanup/conversations",
            Some(&admin),
            json!({"confirm": "conversations"}),
        )
        .await;
    assert_eq!(
        conversations.status,
        StatusCode::OK,
        "{}",
        conversations.text
    );
    assert_eq!(conversations.body["threads"], 1);
    let history = app
        .post(
            "/api/admin/cleanup/workflow-history",
            Some(&admin),
            json!({"confirm": "workflow-history"}),
        )
        .await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    assert_eq!(history.body["workflow_versions"], 1, "{}", history.text);
    assert_eq!(
        history.body["runs"], 1,
        "the chat turn's run: {}",
        history.text
    );
    let versions = app
        .get(&format!("/api/workflows/{other}/versions"), Some(&admin))
        .await;
    assert_eq!(
        versions.body.as_array().unwrap().len(),
        2,
        "{}",
        versions.text
    );
    let workflows = app
        .post(
            "/api/admin/cleanup/workflows",
            Some(&admin),
            json!({"confirm": "workflows"}),
        )
        .await;
    assert_eq!(workflows.status, StatusCode::OK, "{}", workflows.text);
    assert!(workflows.body["workflows"].as_i64().unwrap() >= 1);
    let left = app.get("/api/admin/cleanup/stats", Some(&admin)).await;
    assert_eq!(
        left.body,
        json!({"conversations": 0, "conversation_items": 0, "workflow_history": 0, "workflows": 0})
    );
    // The ChatKit default stays, and still answers.
    let default = app.get("/api/workflows/chatkit", Some(&admin)).await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.text);
}
