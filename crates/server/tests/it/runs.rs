//! Running workflows: every deterministic node kind, pauses that survive a restart,
//! failures that name their node, agents through the fake model server, and access.

use axum::http::StatusCode;
use serde_json::{Value, json};
use test_support::{
    TestApp, TestBackend, TestResponse, backend_tests,
    fake_llm::{FakeLlm, Reply},
};

backend_tests!(
    the_users_text_has_one_name_on_every_pass,
    deterministic_nodes_run_to_completion,
    waits_survive_a_restart,
    failures_name_their_node,
    endless_loops_hit_the_step_limit,
    agents_call_the_model_and_repair_structured_output,
    runs_are_private_and_cancellable,
    abandoned_runs_fail_at_startup,
    runs_stream_their_events,
    node_errors_retry_continue_or_route,
    two_instances_share_runs,
    a_stream_follows_a_run_through_its_waits_on_any_replica,
    waiting_runs_follow_production_when_asked,
    writes_are_all_or_nothing,
);

async fn waiting_runs_follow_production_when_asked(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let pinned = start(&app, &token, id, json!({})).await;
    let following = start(&app, &token, id, json!({})).await;
    let pinned_id = pinned.body["id"].as_str().unwrap().to_string();
    let following_id = following.body["id"].as_str().unwrap().to_string();

    // Version 2 greets differently and goes to production.
    let mut graph = conversation_graph();
    graph["nodes"][4]["parameters"]["message"] = json!("Welcome, {{ state.name }}!");
    let v2 = app
        .post(
            &format!("/api/workflows/{id}/versions"),
            Some(&token),
            json!({"graph": graph}),
        )
        .await;
    let v2_id = v2.body["version"]["id"].as_i64().unwrap();
    app.post(
        &format!("/api/workflows/{id}/production"),
        Some(&token),
        json!({"version_id": v2_id}),
    )
    .await;

    // Without `follow_production`, a conversation stays on the version it started with.
    app.post(
        &format!("/api/runs/{pinned_id}/resume"),
        Some(&token),
        json!({"user_message": "Ada"}),
    )
    .await;
    let done = app
        .post(
            &format!("/api/runs/{pinned_id}/resume"),
            Some(&token),
            json!({"approval": "approve"}),
        )
        .await;
    assert_eq!(
        done.body["messages"].as_array().unwrap().last().unwrap()["text"],
        "Hello Ada!"
    );
    assert_ne!(done.body["version_id"], v2_id);

    // With it, the next turn moves to the new production version.
    app.patch(
        &format!("/api/workflows/{id}"),
        Some(&token),
        json!({"follow_production": true}),
    )
    .await;
    let moved = app
        .post(
            &format!("/api/runs/{following_id}/resume"),
            Some(&token),
            json!({"user_message": "Bob"}),
        )
        .await;
    assert_eq!(moved.body["version_id"], v2_id, "{}", moved.text);
    let done = app
        .post(
            &format!("/api/runs/{following_id}/resume"),
            Some(&token),
            json!({"approval": "approve"}),
        )
        .await;
    assert_eq!(
        done.body["messages"].as_array().unwrap().last().unwrap()["text"],
        "Welcome, Bob!"
    );
    let events = app
        .get(&format!("/api/runs/{following_id}/events"), Some(&token))
        .await;
    assert!(
        events
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "run.version_changed")
    );
}

async fn two_instances_share_runs(backend: TestBackend) {
    use axum::{
        body::Body,
        http::{Request, header},
    };
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    // A second server on the same database, both alive (two replicas).
    let replica = app.restart().await.router();
    let id = publish(&app, &token, conversation_graph()).await;
    let run = start(&app, &token, id, json!({})).await;
    let run_id = run.body["id"].as_str().unwrap().to_string();
    let resume = |body: Value| {
        Request::post(format!("/api/runs/{run_id}/resume"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let on_replica = test_support::send_to(&replica, resume(json!({"user_message": "Ada"}))).await;
    assert_eq!(on_replica.status, StatusCode::OK, "{}", on_replica.text);
    assert_eq!(on_replica.body["wait"]["kind"], "approval");
    let back_home = app.send(resume(json!({"approval": "approve"}))).await;
    assert_eq!(back_home.body["status"], "completed", "{}", back_home.text);

    // Two resumes of one waiting run at once: exactly one wins.
    let second = start(&app, &token, id, json!({})).await;
    let second_id = second.body["id"].as_str().unwrap().to_string();
    let resume_second = |text: &str| {
        Request::post(format!("/api/runs/{second_id}/resume"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json!({"user_message": text}).to_string()))
            .unwrap()
    };
    let (a, b) = tokio::join!(
        app.send(resume_second("one")),
        test_support::send_to(&replica, resume_second("two"))
    );
    // The loser either met the winner mid-save (409) or came after it and found the run
    // waiting for something else (422).
    let statuses = [a.status, b.status];
    let lost =
        |s: &StatusCode| *s == StatusCode::CONFLICT || *s == StatusCode::UNPROCESSABLE_ENTITY;
    assert!(
        statuses.contains(&StatusCode::OK) && statuses.iter().any(lost),
        "{statuses:?}: {} / {}",
        a.text,
        b.text
    );
    let state = app
        .get(&format!("/api/runs/{second_id}"), Some(&token))
        .await;
    let name = state.body["state"]["name"].as_str().unwrap().to_string();
    assert!(name == "one" || name == "two");
    let users: Vec<String> = texts(&state.body)
        .into_iter()
        .filter(|t| t.starts_with("user:"))
        .collect();
    assert_eq!(users.len(), 1, "only one answer was taken: {users:?}");
}

/// A stream opened with `until=finished` on one replica stays open while the run waits,
/// and carries what another replica's resumes saved; it costs no reads while quiet, since
/// a save wakes it (on PostgreSQL through LISTEN/NOTIFY from the other replica).
async fn a_stream_follows_a_run_through_its_waits_on_any_replica(backend: TestBackend) {
    use axum::{
        body::Body,
        http::{Request, header},
    };
    let postgres = matches!(backend, TestBackend::Postgres(_));
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let replica = app.restart().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let run = start(&app, &token, id, json!({})).await;
    let run_id = run.body["id"].as_str().unwrap().to_string();
    let stream = |until: &str| {
        Request::get(format!("/api/runs/{run_id}/events?until={until}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "text/event-stream")
            .body(Body::empty())
            .unwrap()
    };
    // Until it stops (the default): the stream ends at the wait.
    let stopped = test_support::send_to(&replica.router(), stream("stopped")).await;
    assert!(stopped.text.contains("run.waiting"), "{}", stopped.text);
    let refused = test_support::send_to(&replica.router(), stream("later")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.text);

    // On PostgreSQL the other replica follows; on SQLite (one server per file) the same.
    let (services, router) = if postgres {
        (replica.services.clone(), replica.router())
    } else {
        (app.app.services.clone(), app.router.clone())
    };
    let mut watch = services.run_signals.watch(&run_id);
    let request = stream("finished");
    let following = tokio::spawn(async move { test_support::send_to(&router, request).await });
    // The stream is open on the replica while the run waits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!following.is_finished(), "the stream waits with the run");
    let answered = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&token),
            json!({"user_message": "Ada"}),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text);
    // The save woke the follower's side (on PostgreSQL through the other replica's
    // NOTIFY and this one's listener).
    tokio::time::timeout(std::time::Duration::from_secs(10), watch.saved())
        .await
        .expect("the save is heard");
    let approved = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&token),
            json!({"approval": "approve"}),
        )
        .await;
    assert_eq!(approved.body["status"], "completed", "{}", approved.text);
    // Well before the 30 s safety net: the stream was woken.
    let followed = tokio::time::timeout(std::time::Duration::from_secs(20), following)
        .await
        .expect("the stream ends with the run")
        .unwrap();
    let kinds: Vec<String> = followed
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|e| e["type"].as_str().map(str::to_string))
        .collect();
    let waits = kinds.iter().filter(|k| *k == "run.waiting").count();
    assert_eq!(waits, 2, "both waits were followed: {kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("run.completed"),
        "{kinds:?}"
    );
}

async fn node_errors_retry_continue_or_route(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "shaky", "kind": "transform", "parameters": {"expressions": {"x": "{{ state.nope.deeper }}"},
                "on_error": "continue", "default_output": {"fallback": true}}},
            {"slug": "ask", "kind": "agent", "parameters": {"instructions": "Hi", "on_error": "route",
                "retry": {"max_attempts": 2, "backoff_ms": 10}}},
            {"slug": "done", "kind": "end", "parameters": {"output": "input.output_text"}},
            {"slug": "sorry", "kind": "end", "parameters": {"message": "Sorry ({{ input.error.code }})"}}
        ],
        "edges": [
            {"source": "start", "target": "shaky"}, {"source": "shaky", "target": "ask"},
            {"source": "ask", "target": "done"}, {"source": "ask", "target": "sorry", "condition": "error"}
        ]
    });
    let id = publish(&app, &token, graph.clone()).await;

    // The first attempt fails, the retry succeeds.
    fake.push(Reply::Status {
        status: 400,
        message: "try again".into(),
        retry_after: None,
    });
    fake.push(Reply::Text("recovered".into()));
    let run = start(&app, &token, id, json!("go")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(run.body["output"], "recovered");
    let run_id = run.body["id"].as_str().unwrap();
    let steps = app
        .get(&format!("/api/runs/{run_id}/steps"), Some(&token))
        .await;
    assert_eq!(
        steps.body[1]["status"], "failed",
        "the handled failure is on the step"
    );
    assert_eq!(
        steps.body[1]["output"],
        json!({"fallback": true}),
        "continue hands the default output on"
    );
    let events = app
        .get(&format!("/api/runs/{run_id}/events"), Some(&token))
        .await;
    let kinds: Vec<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"node.retry") && kinds.contains(&"node.error_handled"),
        "{kinds:?}"
    );

    // Every attempt fails: the failure is routed to the `error` edge.
    fake.push(Reply::Status {
        status: 400,
        message: "no".into(),
        retry_after: None,
    });
    fake.push(Reply::Status {
        status: 400,
        message: "still no".into(),
        retry_after: None,
    });
    let routed = start(&app, &token, id, json!("go")).await;
    assert_eq!(routed.body["status"], "completed", "{}", routed.text);
    assert_eq!(routed.body["output"], "Sorry (provider_error)");

    // Routing needs an error edge.
    let mut broken = graph;
    broken["edges"].as_array_mut().unwrap().pop();
    let refused = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "No route", "graph": broken}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "missing_error_edge")
    );
}

/// (id, event type) of each server-sent event in a body.
/// The saved events of a stream (live-only ones, without `id:`, are left out).
fn sse_events(text: &str) -> Vec<(i64, Value)> {
    text.split("\n\n")
        .filter(|frame| frame.contains("data:") && frame.lines().any(|l| l.starts_with("id:")))
        .map(|frame| {
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            (
                field("id:").parse().unwrap(),
                serde_json::from_str(&field("data:")).unwrap(),
            )
        })
        .collect()
}

async fn runs_stream_their_events(backend: TestBackend) {
    use axum::{
        body::Body,
        http::{Request, header},
    };
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let request = Request::post(format!("/api/workflows/{id}/runs"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"input": "hi", "stream": true}).to_string(),
        ))
        .unwrap();
    let streamed = app.send(request).await;
    assert_eq!(streamed.status, StatusCode::OK);
    assert!(
        streamed.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_events(&streamed.text);
    let ids: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "{}",
        streamed.text
    );
    let types: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"run.started"));
    assert_eq!(
        types.last(),
        Some(&"run.waiting"),
        "the stream ends when the run waits: {types:?}"
    );
    assert!(events.iter().any(
        |(_, e)| e["type"] == "assistant_message" && e["data"]["text"] == "What is your name?"
    ));

    // Reconnecting with Last-Event-ID continues after it; the stream follows the resumed run.
    let run_id = app.get("/api/runs", Some(&token)).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The streamed start told the client which run it is: in a header, in `Location` and
    // in its first event.
    assert_eq!(streamed.headers["x-run-id"].to_str().unwrap(), run_id);
    assert_eq!(
        streamed.headers[header::LOCATION].to_str().unwrap(),
        format!("/api/runs/{run_id}")
    );
    assert_eq!(events[0].1["data"]["run_id"], run_id.as_str());
    app.post(
        &format!("/api/runs/{run_id}/resume"),
        Some(&token),
        json!({"user_message": "Ada"}),
    )
    .await;
    let request = Request::get(format!("/api/runs/{run_id}/events"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::ACCEPT, "text/event-stream")
        .header("last-event-id", "2")
        .body(Body::empty())
        .unwrap();
    let resumed = app.send(request).await;
    let events = sse_events(&resumed.text);
    assert_eq!(events.first().map(|(id, _)| *id), Some(3));
    assert!(
        events
            .iter()
            .any(|(_, e)| e["type"] == "user_message" && e["data"]["text"] == "Ada")
    );
    assert_eq!(events.last().unwrap().1["type"], "run.waiting");
    // Without the header, the JSON log.
    let json_log = app
        .get(&format!("/api/runs/{run_id}/events?after=2"), Some(&token))
        .await;
    assert_eq!(json_log.body[0]["seq"], 3);
}

async fn abandoned_runs_fail_at_startup(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let waiting = start(&app, &token, id, json!({})).await;
    let waiting_id = waiting.body["id"].as_str().unwrap().to_string();
    // A run that a crashed process left mid-step an hour ago.
    let store = &app.app.services.store;
    let mut stuck = store.run(&waiting_id).await.unwrap().unwrap();
    stuck.id = "run_stuck".into();
    stuck.status = domain::runs::RunStatus::Running;
    stuck.wait = None;
    stuck.created_at = chrono::Utc::now() - chrono::Duration::hours(4);
    stuck.updated_at = stuck.created_at;
    store.insert_run(&stuck, &[]).await.unwrap();
    // Another replica's run, saved as long ago but whose lease that replica renews.
    let mut alive = stuck.clone();
    alive.id = "run_alive".into();
    alive.thread_id = None;
    store.insert_run(&alive, &[]).await.unwrap();
    store
        .renew_run_leases(
            &[domain::runs::RunLease {
                run_id: "run_alive".into(),
                partial: None,
            }],
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    app.restart().await.bootstrap().await.unwrap();
    let alive = app.get("/api/runs/run_alive", Some(&token)).await;
    assert_eq!(
        alive.body["status"], "running",
        "a renewed lease keeps its run"
    );
    let failed = app.get("/api/runs/run_stuck", Some(&token)).await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(failed.body["error"]["code"], "interrupted");
    let events = app.get("/api/runs/run_stuck/events", Some(&token)).await;
    let last = events.body.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["type"].as_str(), last["data"]["code"].as_str()),
        (Some("run.failed"), Some("interrupted"))
    );
    let still = app
        .get(&format!("/api/runs/{waiting_id}"), Some(&token))
        .await;
    assert_eq!(still.body["status"], "waiting", "paused runs are kept");
}

/// A run's row and its events are written together or not at all, a save that lost the
/// race changes nothing, and a failed write leaves the database usable.
async fn writes_are_all_or_nothing(backend: TestBackend) {
    use domain::runs::{Event, RunStatus};
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let waiting = start(&app, &token, id, json!({})).await;
    let store = &app.app.services.store;
    let template = store
        .run(waiting.body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    let event = |seq: i64| Event {
        seq,
        kind: domain::runs::EventKind::Warning,
        node: None,
        data: json!({"n": seq}),
        at: chrono::Utc::now(),
    };
    let mut first = template.clone();
    first.id = "run_first".into();
    first.thread_id = Some("thr_shared".into());
    first.status = RunStatus::Running;
    first.event_seq = 1;
    store.insert_run(&first, &[event(1)]).await.unwrap();
    // A second unfinished run on the same thread is refused, its event with it.
    let mut second = first.clone();
    second.id = "run_second".into();
    let refused = store.insert_run(&second, &[event(1), event(2)]).await;
    assert!(
        matches!(refused, Err(domain::store::StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert!(store.run("run_second").await.unwrap().is_none());
    assert!(store.run_events("run_second", 0).await.unwrap().is_empty());
    // A save from a stale read changes nothing; one from the current read goes through.
    let mut saved = first.clone();
    saved.event_seq = 3;
    saved.current_node = Some("elsewhere".into());
    let stale = store
        .save_run(&saved, &[], &[event(2), event(3)], &[], 0)
        .await
        .unwrap();
    assert!(!stale, "the expected sequence was 1");
    let unchanged = store.run("run_first").await.unwrap().unwrap();
    assert_eq!(unchanged.event_seq, 1);
    assert_eq!(store.run_events("run_first", 0).await.unwrap().len(), 1);
    assert!(
        store
            .save_run(&saved, &[], &[event(2), event(3)], &[], 1)
            .await
            .unwrap()
    );
    let events = store.run_events("run_first", 0).await.unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    // A save whose rows collide (an event number taken) fails whole, and writes go on.
    saved.event_seq = 4;
    let collided = store
        .save_run(&saved, &[], &[event(3), event(4)], &[], 3)
        .await;
    assert!(collided.is_err(), "{collided:?}");
    assert_eq!(store.run("run_first").await.unwrap().unwrap().event_seq, 3);
    assert!(
        store
            .save_run(&saved, &[], &[event(4)], &[], 3)
            .await
            .unwrap()
    );
    assert_eq!(store.run_events("run_first", 3).await.unwrap().len(), 1);
}

/// A fake model server registered as the provider of the default model `fake-gpt`,
/// with `extra` fields on the model.
pub(crate) async fn fake_default_model(app: &TestApp, token: &str, extra: Value) -> FakeLlm {
    let fake = FakeLlm::start().await;
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(token),
            json!({"kind": "openai_compatible", "label": "Fake", "api_base": fake.base_url}),
        )
        .await;
    let mut model =
        json!({"provider_id": provider.body["id"], "name": "fake-gpt", "is_default": true});
    model
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let created = app.post("/api/admin/models", Some(token), model).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    fake
}

/// Creates and publishes a workflow; returns its id.
pub(crate) async fn publish(app: &TestApp, token: &str, graph: Value) -> i64 {
    let created = app
        .post(
            "/api/workflows",
            Some(token),
            json!({"display_name": "Run me", "graph": graph, "publish": true}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.body["workflow"]["id"].as_i64().unwrap()
}

pub(crate) async fn start(app: &TestApp, token: &str, id: i64, input: Value) -> TestResponse {
    let response = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(token),
            json!({"input": input}),
        )
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text);
    response
}

pub(crate) fn texts(run: &Value) -> Vec<String> {
    run["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}: {}",
                m["role"].as_str().unwrap(),
                m["text"].as_str().unwrap()
            )
        })
        .collect()
}

async fn deterministic_nodes_run_to_completion(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "greet", "kind": "state", "parameters": {"state": [{"target": "state.greeting", "expression": "Hi {{ input.input_as_text }}"}]}},
            {"slug": "loop", "kind": "while", "parameters": {"condition": "state.count < 3", "max_iterations": 10, "iteration_var": "round"}},
            {"slug": "inc", "kind": "state", "parent_slug": "loop", "parameters": {"state": [{"target": "state.count", "expression": "state.count + 1"}]}},
            {"slug": "sum", "kind": "transform", "parameters": {"expressions": {"total": "{{ state.count * 10 }}", "who": "state.greeting"}}},
            {"slug": "size", "kind": "condition", "parameters": {"cases": [{"label": "big", "predicate": "input.total >= 30"}]}},
            {"slug": "peek", "kind": "watch"},
            {"slug": "big", "kind": "end", "parameters": {"message": "Done with {{ state.count }} rounds", "output": "input.total", "status": {"type": "closed", "reason": "finished"}}},
            {"slug": "small", "kind": "end"},
            {"slug": "parked", "kind": "mcp", "is_enabled": false}
        ],
        "edges": [
            {"source": "start", "target": "greet"}, {"source": "greet", "target": "loop"},
            {"source": "loop", "target": "inc", "condition": "loop"}, {"source": "loop", "target": "sum", "condition": "exit"},
            {"source": "sum", "target": "size"},
            {"source": "size", "target": "peek", "condition": "big"}, {"source": "size", "target": "small", "condition": "else"},
            {"source": "peek", "target": "parked"}, {"source": "parked", "target": "big"}
        ],
        "state_schema": {"type": "object", "properties": {"count": {"type": "integer", "default": 0}, "greeting": {"type": "string"}}}
    });
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Ada")).await;
    let body = &run.body;
    assert_eq!(body["status"], "completed", "{}", run.text);
    assert_eq!(body["output"], 30);
    assert_eq!(body["state"]["count"], 3);
    assert_eq!(body["state"]["round"], 3);
    assert_eq!(body["state"]["greeting"], "Hi Ada");
    let messages = texts(body);
    assert_eq!(messages.first().map(String::as_str), Some("user: Ada"));
    assert!(
        messages.iter().any(|m| m.contains("\"total\": 30")),
        "watch posted its input: {messages:?}"
    );
    assert_eq!(
        messages.last().map(String::as_str),
        Some("assistant: Done with 3 rounds")
    );

    let run_id = body["id"].as_str().unwrap();
    let steps = app
        .get(&format!("/api/runs/{run_id}/steps"), Some(&token))
        .await;
    let nodes: Vec<&str> = steps
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "start", "greet", "loop", "inc", "loop", "inc", "loop", "inc", "loop", "sum", "size",
            "peek", "parked", "big"
        ]
    );
    assert_eq!(
        steps.body[9]["output"],
        json!({"total": 30, "who": "Hi Ada"})
    );
    assert_eq!(body["step_count"], 14);

    let events = app
        .get(&format!("/api/runs/{run_id}/events"), Some(&token))
        .await;
    let list = events.body.as_array().unwrap();
    let seqs: Vec<i64> = list.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "one gapless sequence"
    );
    assert_eq!(list.first().unwrap()["type"], "run.started");
    assert_eq!(list.last().unwrap()["type"], "run.completed");
    assert_eq!(
        list.last().unwrap()["data"]["thread_status"],
        json!({"type": "closed", "reason": "finished"})
    );
    let tail = app
        .get(
            &format!("/api/runs/{run_id}/events?after={}", seqs.len() - 2),
            Some(&token),
        )
        .await;
    assert_eq!(tail.body.as_array().unwrap().len(), 2);
}

fn conversation_graph() -> Value {
    json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "What is your name?"}},
            {"slug": "remember", "kind": "state", "parameters": {"state": [{"target": "state.name", "expression": "input.user_message"}]}},
            {"slug": "check", "kind": "user_approval", "parameters": {"message": "Greet {{ state.name }}?"}},
            {"slug": "hello", "kind": "assistant_message", "parameters": {"message": "Hello {{ state.name }}!"}},
            {"slug": "done", "kind": "end"},
            {"slug": "bye", "kind": "end", "parameters": {"message": "Bye then."}}
        ],
        "edges": [
            {"source": "start", "target": "ask"}, {"source": "ask", "target": "remember"}, {"source": "remember", "target": "check"},
            {"source": "check", "target": "hello", "condition": "approve"}, {"source": "check", "target": "bye", "condition": "reject"},
            {"source": "hello", "target": "done"}
        ]
    })
}

async fn waits_survive_a_restart(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, conversation_graph()).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["status"], "waiting");
    assert_eq!(
        run.body["wait"],
        json!({"kind": "user_message", "node": "ask", "prompt": "What is your name?"})
    );
    let run_id = run.body["id"].as_str().unwrap().to_string();
    let resume_path = format!("/api/runs/{run_id}/resume");

    let wrong = app
        .post(&resume_path, Some(&token), json!({"approval": "approve"}))
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    let nothing = app.post(&resume_path, Some(&token), json!({})).await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);

    // A new server process on the same database picks the run up.
    app.app.db.close().await;
    let restarted = app.restart().await;
    let app = TestApp {
        router: restarted.router(),
        ..app
    };
    let named = app
        .post(&resume_path, Some(&token), json!({"user_message": "Ada"}))
        .await;
    assert_eq!(named.status, StatusCode::OK, "{}", named.text);
    assert_eq!(named.body["status"], "waiting");
    assert_eq!(named.body["wait"]["prompt"], "Greet Ada?");
    assert_eq!(named.body["state"]["name"], "Ada");

    let approved = app
        .post(&resume_path, Some(&token), json!({"approval": "approve"}))
        .await;
    assert_eq!(approved.body["status"], "completed", "{}", approved.text);
    assert_eq!(
        texts(&approved.body),
        [
            "assistant: What is your name?",
            "user: Ada",
            "assistant: Hello Ada!"
        ]
    );
    let again = app
        .post(&resume_path, Some(&token), json!({"user_message": "more"}))
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "run_conflict")
    );

    // The other branch.
    let second = start(&app, &token, id, json!({})).await;
    let second_path = format!("/api/runs/{}/resume", second.body["id"].as_str().unwrap());
    app.post(&second_path, Some(&token), json!({"user_message": "Bob"}))
        .await;
    let rejected = app
        .post(&second_path, Some(&token), json!({"approval": "reject"}))
        .await;
    assert_eq!(rejected.body["status"], "completed");
    assert_eq!(rejected.body["output"], "Bye then.");
}

async fn failures_name_their_node(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "broken", "kind": "transform", "parameters": {"expressions": {"x": "{{ state.missing.deeper }}"}}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "broken"}, {"source": "broken", "target": "end"}]
    });
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["error"]["node"], "broken");
    assert_eq!(run.body["error"]["code"], "expression_failed");
    assert!(
        run.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("state.missing.deeper"),
        "{}",
        run.text
    );
    let steps = app
        .get(
            &format!("/api/runs/{}/steps", run.body["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert_eq!(steps.body[1]["status"], "failed");

    // Running needs a published version.
    let draft = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"display_name": "Draft only"}),
        )
        .await;
    let draft_id = draft.body["workflow"]["id"].as_i64().unwrap();
    let refused = app
        .post(
            &format!("/api/workflows/{draft_id}/runs"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "workflow_not_published")
    );
    let version = draft.body["version"]["id"].as_i64().unwrap();
    let draft_run = app
        .post(
            &format!("/api/workflows/{draft_id}/runs"),
            Some(&token),
            json!({"version_id": version}),
        )
        .await;
    assert_eq!(
        draft_run.body["status"], "completed",
        "owners may run a draft explicitly"
    );
    let bad_state = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            json!({"state": [1]}),
        )
        .await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn endless_loops_hit_the_step_limit(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "spin", "kind": "condition", "parameters": {"path": "true"}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [
            {"source": "start", "target": "spin"},
            {"source": "spin", "target": "spin", "condition": "true"},
            {"source": "spin", "target": "end", "condition": "false"}
        ]
    });
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["error"]["code"], "step_limit");
    assert_eq!(run.body["step_count"], domain::runs::MAX_STEPS);
}

async fn agents_call_the_model_and_repair_structured_output(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(
        &app,
        &token,
        json!({"price_input_per_mtok": 1.0, "price_output_per_mtok": 4.0}),
    )
    .await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "extract", "kind": "agent", "parameters": {
                "instructions": "Extract the city for {{ user.email }}.",
                "model": "fake-gpt",
                "response_format": {"type": "json_schema", "name": "place",
                    "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}}}},
            {"slug": "reply", "kind": "agent", "parameters": {"instructions": "Answer briefly."}},
            {"slug": "end", "kind": "end", "parameters": {"output": "state.last_agent_output_text"}}
        ],
        "edges": [{"source": "start", "target": "extract"}, {"source": "extract", "target": "reply"}, {"source": "reply", "target": "end"}]
    });
    let id = publish(&app, &token, graph).await;
    fake.push(Reply::Text(r#"{"town": "Laval"}"#.into()));
    fake.push(Reply::Text(r#"{"city": "Laval"}"#.into()));
    fake.push(Reply::Text("Laval is lovely.".into()));
    let run = start(&app, &token, id, json!("I live in Laval")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(run.body["output"], "Laval is lovely.");
    assert_eq!(run.body["state"]["last_agent_key"], "reply");

    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "one repair, then the second agent");
    assert_eq!(
        requests[0].body["messages"][0]["content"],
        "Extract the city for admin@example.com."
    );
    assert_eq!(
        requests[0].body["messages"][1]["content"],
        "I live in Laval"
    );
    assert!(
        requests[1]
            .body
            .to_string()
            .contains("did not match the required JSON Schema")
    );
    let run_id = run.body["id"].as_str().unwrap();
    let steps = app
        .get(&format!("/api/runs/{run_id}/steps"), Some(&token))
        .await;
    assert_eq!(
        steps.body[1]["output"],
        json!({"output_text": "{\"city\": \"Laval\"}", "output_parsed": {"city": "Laval"}})
    );
    let events = app
        .get(&format!("/api/runs/{run_id}/events"), Some(&token))
        .await;
    let kinds: Vec<&str> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"agent.repair") && kinds.contains(&"usage"),
        "{kinds:?}"
    );

    let by_run = app.get("/api/admin/usage?group_by=run", Some(&token)).await;
    let line = by_run.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["key"] == run_id)
        .unwrap()
        .clone();
    assert_eq!(line["calls"], 2);
    assert!(line["cost_usd"].as_f64().unwrap() > 0.0);

    // A model that is not in the registry fails the step, naming it.
    fake.push(Reply::Status {
        status: 401,
        message: "nope".into(),
        retry_after: None,
    });
    let failed = start(&app, &token, id, json!("again")).await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(failed.body["error"]["node"], "extract");
    assert_eq!(failed.body["error"]["code"], "provider_unauthorized");
}

async fn runs_are_private_and_cancellable(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let (_, user) = app
        .create_user("u@example.com", "user-password", false)
        .await;
    let (_, other) = app
        .create_user("o@example.com", "other-password", false)
        .await;
    let created = app
        .post(
            "/api/workflows",
            Some(&user),
            json!({"display_name": "Mine", "graph": conversation_graph(), "publish": true}),
        )
        .await;
    let id = created.body["workflow"]["id"].as_i64().unwrap();
    let run = start(&app, &user, id, json!({})).await;
    let run_id = run.body["id"].as_str().unwrap().to_string();

    assert_eq!(
        app.get(&format!("/api/runs/{run_id}"), Some(&other))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.post(
            &format!("/api/workflows/{id}/runs"),
            Some(&other),
            json!({})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/api/runs/{run_id}"), Some(&admin))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(app.get("/api/runs", Some(&other)).await.body, json!([]));
    let mine = app
        .get(
            &format!("/api/runs?workflow_id={id}&status=waiting"),
            Some(&user),
        )
        .await;
    assert_eq!(mine.body.as_array().unwrap().len(), 1);
    assert_eq!(
        app.get("/api/runs?status=sleeping", Some(&user))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // Periods take dates (midnight UTC) as well as RFC 3339 times; `to` is exclusive.
    let created = mine.body[0]["created_at"].as_str().unwrap();
    let today = chrono::NaiveDate::parse_from_str(&created[..10], "%Y-%m-%d").unwrap();
    let tomorrow = today.succ_opt().unwrap();
    let by_dates = app
        .get(
            &format!("/api/runs?workflow_id={id}&from={today}&to={tomorrow}"),
            Some(&user),
        )
        .await;
    assert_eq!(
        by_dates.body.as_array().unwrap().len(),
        1,
        "{}",
        by_dates.text
    );
    let before = app
        .get(
            &format!("/api/runs?workflow_id={id}&to={today}"),
            Some(&user),
        )
        .await;
    assert_eq!(before.body, json!([]));
    let bad = app.get("/api/runs?from=yesterday", Some(&user)).await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );

    // A colleague with write access sees the run, but cannot answer in it.
    app.post(
        &format!("/api/workflows/{id}/shares"),
        Some(&user),
        json!({"email": "o@example.com", "permission": "write"}),
    )
    .await;
    assert_eq!(
        app.get(&format!("/api/runs/{run_id}"), Some(&other))
            .await
            .status,
        StatusCode::OK
    );
    let meddling = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&other),
            json!({"user_message": "hi"}),
        )
        .await;
    assert_eq!(
        (meddling.status, meddling.code()),
        (StatusCode::FORBIDDEN, "run_forbidden")
    );
    assert_eq!(
        app.post(
            &format!("/api/runs/{run_id}/cancel"),
            Some(&other),
            json!({})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );

    let cancelled = app
        .post(
            &format!("/api/runs/{run_id}/cancel"),
            Some(&user),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled");
    let late = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&user),
            json!({"user_message": "hi"}),
        )
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
    let twice = app
        .post(
            &format!("/api/runs/{run_id}/cancel"),
            Some(&user),
            json!({}),
        )
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    assert_eq!(
        app.get("/api/runs/run_nope", Some(&user)).await.status,
        StatusCode::NOT_FOUND
    );
}

/// A chat loop (reply, wait, reply again) reads the user's text under one name on every
/// pass: `input.input_as_text`, with `input.user_message` as an alias, after the start and
/// after a wait alike.
async fn the_users_text_has_one_name_on_every_pass(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(
        &app,
        &token,
        json!({
            "nodes": [
                {"slug": "start", "kind": "start"},
                {"slug": "reply", "kind": "assistant_message", "parameters": {"message": "You said {{ input.input_as_text }} ({{ input.user_message }})"}},
                {"slug": "wait", "kind": "wait_for_user_input"},
                {"slug": "done", "kind": "condition", "parameters": {"cases": [{"label": "bye", "predicate": "input.input_as_text == 'bye'"}]}},
                {"slug": "end", "kind": "end"}
            ],
            "edges": [
                {"source": "start", "target": "reply"},
                {"source": "reply", "target": "wait"},
                {"source": "wait", "target": "done"},
                {"source": "done", "target": "end", "condition": "bye"},
                {"source": "done", "target": "reply", "condition": "else"}
            ]
        }),
    )
    .await;
    let run = start(&app, &token, id, json!("one")).await;
    assert_eq!(run.body["status"], "waiting", "{}", run.text);
    let run_id = run.body["id"].as_str().unwrap().to_string();
    for said in ["two", "three"] {
        let resumed = app
            .post(
                &format!("/api/runs/{run_id}/resume"),
                Some(&token),
                json!({"user_message": said}),
            )
            .await;
        assert_eq!(resumed.body["status"], "waiting", "{}", resumed.text);
    }
    let run = app.get(&format!("/api/runs/{run_id}"), Some(&token)).await;
    let replies: Vec<String> = texts(&run.body)
        .into_iter()
        .filter(|t| t.starts_with("assistant:"))
        .collect();
    assert_eq!(
        replies,
        [
            "assistant: You said one (one)",
            "assistant: You said two (two)",
            "assistant: You said three (three)"
        ],
        "{}",
        run.text
    );
}
