//! The ChatKit endpoint: threads, items and streamed turns over published workflows,
//! driven the way a ChatKit client drives it.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::Reply};

use crate::runs::fake_default_model;

backend_tests!(
    chat_serves_every_user_without_showing_the_graph,
    no_workflow_id_reaches_the_chatkit_default,
    a_conversation_streams_and_persists,
    widgets_client_tools_and_the_end_status,
    threads_are_private_and_requests_checked,
    retry_replaces_the_answer,
    attachments_upload_in_two_phases_and_reach_the_model,
    the_start_screen_and_appearance,
    reasoning_and_tools_show_as_workflow_tasks,
    a_client_that_leaves_cancels_the_turn,
    embedded_sessions_are_scoped_and_expire,
    questions_are_asked_as_structured_input,
    widgets_stream_in_and_show_what_was_done,
    a_long_thread_is_read_as_far_as_the_model_can_take,
    the_history_follows_the_thread_across_replicas_and_retries,
);

/// The frames of a ChatKit stream, as JSON.
pub(crate) fn frames(text: &str) -> Vec<Value> {
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("event:") || l.starts_with("id:")),
        "ChatKit streams carry data lines only: {text}"
    );
    text.split("\n\n")
        .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).expect("each event is JSON"))
        .collect()
}

fn types(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| match f["type"].as_str().unwrap() {
            "thread.item.done" | "thread.item.added" => {
                format!(
                    "{}({})",
                    f["type"].as_str().unwrap(),
                    f["item"]["type"].as_str().unwrap()
                )
            }
            "thread.item.updated" => format!("updated({})", f["update"]["type"].as_str().unwrap()),
            other => other.to_string(),
        })
        .collect()
}

pub(crate) fn message(text: &str) -> Value {
    json!({"content": [{"type": "input_text", "text": text}], "attachments": [], "inference_options": {}})
}

pub(crate) async fn chatkit(app: &TestApp, token: &str, body: Value) -> test_support::TestResponse {
    app.post("/api/chatkit", Some(token), body).await
}

/// A signed-in user who is not an administrator, as most people who chat are; returns
/// their token.
pub(crate) async fn learner(app: &TestApp) -> String {
    app.create_user("learner@example.com", "a learner's password", false)
        .await
        .1
}

/// Publishes `graph` and makes it the ChatKit default; returns its id.
pub(crate) async fn serve(app: &TestApp, token: &str, graph: Value) -> i64 {
    let id = crate::runs::publish(app, token, graph).await;
    let chosen = app
        .post(
            "/api/workflows/chatkit",
            Some(token),
            json!({"workflow_id": id}),
        )
        .await;
    assert!(chosen.status.is_success(), "{}", chosen.text);
    id
}

/// The text of the assistant messages a stream finished.
fn answers(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "thread.item.done" && f["item"]["type"] == "assistant_message")
        .map(|f| {
            f["item"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn thread_id_of(frames: &[Value]) -> String {
    frames[0]["thread"]["id"].as_str().unwrap().to_string()
}

async fn chat_serves_every_user_without_showing_the_graph(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    // A fresh install serves its default workflow to a user it was never shared with.
    let first = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Hi!")}}),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let events = frames(&first.text);
    assert!(!events.iter().any(|f| f["type"] == "error"), "{events:?}");
    assert!(
        answers(&events)[0].contains("default workflow"),
        "{events:?}"
    );
    let first_thread = thread_id_of(&events);
    let default_id = app.get("/api/chatkit/workflow", Some(&token)).await.body["workflow_id"]
        .as_i64()
        .unwrap();
    // Running it is not seeing or changing it.
    for path in [
        format!("/api/workflows/{default_id}"),
        format!("/api/workflows/{default_id}/versions"),
    ] {
        let hidden = app.get(&path, Some(&token)).await;
        assert_eq!(
            hidden.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            hidden.text
        );
    }
    let listed = app.get("/api/workflows", Some(&token)).await;
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(0),
        "{}",
        listed.text
    );
    let served = app.get("/api/workflows/chatkit", Some(&token)).await;
    assert_eq!(served.body["access"], "served", "{}", served.text);

    // The default may nest a workflow of its author's that the user cannot see.
    let helper = app
        .post(
            "/api/workflows",
            Some(&admin),
            json!({"slug": "helper", "display_name": "Helper", "publish": true, "graph": {
                "nodes": [
                    {"slug": "start", "kind": "start"},
                    {"slug": "say", "kind": "assistant_message", "parameters": {"message": "Helper heard {{ input.input_as_text }}"}}
                ],
                "edges": [{"source": "start", "target": "say"}]
            }}),
        )
        .await;
    assert_eq!(helper.status, StatusCode::CREATED, "{}", helper.text);
    let helper_id = helper.body["workflow"]["id"].as_i64().unwrap();
    let served = serve(&app, &admin, json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "sub", "kind": "agent", "parameters": {"workflow": {"slug": "helper"}}},
            {"slug": "ask", "kind": "wait_for_user_input"},
            {"slug": "again", "kind": "assistant_message", "parameters": {"message": "Again: {{ input.user_message }}"}}
        ],
        "edges": [
            {"source": "start", "target": "sub"},
            {"source": "sub", "target": "ask"},
            {"source": "ask", "target": "again"}
        ]
    }))
    .await;
    let nested = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("cake")}}),
    )
    .await;
    let events = frames(&nested.text);
    assert_eq!(answers(&events), ["Helper heard cake"], "{events:?}");
    let thread_id = thread_id_of(&events);

    // A workflow that is neither the default nor shared is refused, and leaves no thread.
    let threads_before = chatkit(&app, &token, json!({"type": "threads.list", "params": {}}))
        .await
        .body["data"]
        .as_array()
        .unwrap()
        .len();
    let refused = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("let me in")}, "metadata": {"workflow_id": helper_id}}),
    )
    .await;
    assert!(refused.status.is_client_error(), "{}", refused.text);
    assert_eq!(
        refused.body["code"].as_str().map(str::is_empty),
        Some(false),
        "{}",
        refused.text
    );
    // Named in `params.metadata` (where some clients put it), it is read and refused alike.
    let refused_in_params = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("let me in"), "metadata": {"workflow_id": helper_id}}}),
    )
    .await;
    assert_eq!(
        refused_in_params.body["code"], refused.body["code"],
        "{}",
        refused_in_params.text
    );
    let threads_after = chatkit(&app, &token, json!({"type": "threads.list", "params": {}}))
        .await
        .body["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(threads_before, threads_after);
    // Nor through the run API, and no draft of the default either.
    let direct = app
        .post(
            &format!("/api/workflows/{helper_id}/runs"),
            Some(&token),
            json!({"input": "x"}),
        )
        .await;
    assert_eq!(direct.status, StatusCode::NOT_FOUND, "{}", direct.text);
    let draft = app
        .post(
            &format!("/api/workflows/{served}/versions"),
            Some(&admin),
            json!({"graph": agent_graph()}),
        )
        .await;
    assert!(draft.status.is_success(), "{}", draft.text);
    let draft_id = draft.body["version"]["id"].as_i64().unwrap();
    let drafted = app
        .post(
            &format!("/api/workflows/{served}/runs"),
            Some(&token),
            json!({"input": "x", "version_id": draft_id}),
        )
        .await;
    assert_eq!(drafted.status, StatusCode::NOT_FOUND, "{}", drafted.text);

    // Conversations that began go on after the administrator serves another workflow.
    serve(&app, &admin, agent_graph()).await;
    let next = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("pie")}}),
    )
    .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    assert_eq!(
        answers(&frames(&next.text)),
        ["Again: pie"],
        "{}",
        next.text
    );
    let old = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_user_message", "params": {"thread_id": first_thread, "input": message("still there?")}}),
    )
    .await;
    let events = frames(&old.text);
    assert!(!events.iter().any(|f| f["type"] == "error"), "{events:?}");
}

async fn no_workflow_id_reaches_the_chatkit_default(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    for who in [&token, &admin] {
        for _ in 0..3 {
            let zero = app.get("/api/workflows/0", Some(who)).await;
            assert_eq!(zero.status, StatusCode::NOT_FOUND, "{}", zero.text);
            assert_eq!(zero.body["code"], "workflow_not_found", "{}", zero.text);
            let chat = chatkit(
                &app,
                &token,
                json!({"type": "threads.create", "params": {"input": message("Hi")}}),
            )
            .await;
            assert_eq!(chat.status, StatusCode::OK, "{}", chat.text);
            assert!(
                !frames(&chat.text).iter().any(|f| f["type"] == "error"),
                "{}",
                chat.text
            );
        }
    }
    let negative = app.get("/api/workflows/-1", Some(&admin)).await;
    assert_eq!(negative.status, StatusCode::NOT_FOUND, "{}", negative.text);
}

pub(crate) fn agent_graph() -> Value {
    json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "display_name": "Thinking", "parameters": {"instructions": "Be brief."}}
        ],
        "edges": [{"source": "start", "target": "agent"}]
    })
}

async fn a_conversation_streams_and_persists(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    fake.push(Reply::Text("Hello there, how can I help?".into()));
    fake.push(Reply::Text("Greeting the user".into()));
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Hi!")}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    assert!(
        created.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = frames(&created.text);
    let kinds = types(&events);
    assert_eq!(
        kinds[..3],
        [
            "thread.created",
            "thread.item.done(user_message)",
            "stream_options"
        ],
        "{kinds:?}"
    );
    let added = kinds
        .iter()
        .position(|k| k == "thread.item.added(assistant_message)")
        .expect("an assistant message");
    let deltas: String = events
        .iter()
        .filter(|e| e["update"]["type"] == "assistant_message.content_part.text_delta")
        .map(|e| e["update"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello there, how can I help?");
    let done = kinds
        .iter()
        .position(|k| k == "thread.item.done(assistant_message)")
        .unwrap();
    assert!(added < done);
    assert!(kinds.contains(&"progress_update".to_string()), "{kinds:?}");
    assert_eq!(
        kinds.last().unwrap(),
        "thread.updated",
        "the title comes last: {kinds:?}"
    );
    let thread = &events[0]["thread"];
    assert_eq!(thread["items"], json!({"data": [], "has_more": false}));
    assert_eq!(thread["status"], json!({"type": "active"}));
    assert_eq!(thread["metadata"], json!({}));
    assert!(thread.get("title").is_none(), "null fields are omitted");
    let thread_id = thread["id"].as_str().unwrap().to_string();
    assert_eq!(
        events.last().unwrap()["thread"]["title"],
        "Greeting the user"
    );
    // Every item event belongs to the thread, and updates only follow `added`.
    let assistant_id = events[done]["item"]["id"].as_str().unwrap();
    assert_eq!(events[added]["item"]["id"], assistant_id);
    assert_eq!(
        events[done]["item"]["content"][0]["text"],
        "Hello there, how can I help?"
    );

    // A second message continues the conversation, with the first turn as history.
    fake.push(Reply::Text("Sure.".into()));
    let second = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("And now?")}}),
    )
    .await;
    let kinds = types(&frames(&second.text));
    assert_eq!(
        kinds[..2],
        ["thread.item.done(user_message)", "stream_options"],
        "{kinds:?}"
    );
    let sent = fake.requests().last().unwrap().body["messages"].clone();
    let said: Vec<&str> = sent
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        said,
        vec!["Hi!", "Hello there, how can I help?", "And now?"]
    );

    // Reading it back.
    let got = chatkit(
        &app,
        &token,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    let items: Vec<&str> = got.body["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        items,
        vec![
            "user_message",
            "assistant_message",
            "user_message",
            "assistant_message"
        ]
    );
    let listed = chatkit(&app, &token, json!({"type": "threads.list", "params": {}})).await;
    assert_eq!(listed.body["data"][0]["id"], thread_id);
    assert_eq!(
        listed.body["data"][0]["items"],
        json!({"data": [], "has_more": false})
    );
    assert_eq!(listed.body["has_more"], false);
    assert!(listed.body.get("after").is_none());
    // Pagination both ways: `after` is the last id of a page that has more.
    let first = chatkit(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 3, "order": "asc"}})).await;
    assert_eq!(first.body["data"].as_array().unwrap().len(), 3);
    assert_eq!(first.body["has_more"], true);
    assert_eq!(first.body["after"], first.body["data"][2]["id"]);
    let rest = chatkit(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 3, "order": "asc", "after": first.body["after"]}})).await;
    assert_eq!(rest.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["has_more"], false);
    let newest = chatkit(
        &app,
        &token,
        json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 1}}),
    )
    .await;
    assert_eq!(newest.body["data"][0]["content"][0]["text"], "Sure.");

    // Rename, feedback, delete.
    let renamed = chatkit(
        &app,
        &token,
        json!({"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed"}}),
    )
    .await;
    assert_eq!(renamed.body["title"], "Renamed");
    let feedback = chatkit(&app, &token, json!({"type": "items.feedback", "params": {"thread_id": thread_id, "item_ids": [assistant_id], "kind": "positive"}})).await;
    assert_eq!(
        (feedback.status, feedback.body.clone()),
        (StatusCode::OK, json!({}))
    );
    let deleted = chatkit(
        &app,
        &token,
        json!({"type": "threads.delete", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(deleted.body, json!({}));
    let gone = chatkit(
        &app,
        &token,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.code(), "thread_not_found");
}

async fn widgets_client_tools_and_the_end_status(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "pick", "kind": "widget", "parameters": {"widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Text", "value": "Pick a size"},
                {"type": "Button", "label": "Large", "onClickAction": {"type": "size.large", "payload": {"size": "L"}}}
            ]}}}},
            {"slug": "agent", "kind": "agent", "parameters": {"tools": [{"type": "client_tool", "name": "get_cart"}]}},
            {"slug": "check", "kind": "user_approval", "parameters": {"message": "Place the order?"}},
            {"slug": "end", "kind": "end", "parameters": {"message": "Ordered a {{ state.size }}.", "status": {"type": "closed", "reason": "Order placed"}}},
            {"slug": "size", "kind": "state", "parameters": {"state": [{"target": "state.size", "expression": "input.action.payload.size"}]}}
        ],
        "edges": [
            {"source": "start", "target": "pick"}, {"source": "pick", "target": "size"},
            {"source": "size", "target": "agent"}, {"source": "agent", "target": "check"},
            {"source": "check", "target": "end", "condition": "approve"}
        ]
    });
    serve(&app, &admin, graph).await;
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("I want a shirt")}}),
    )
    .await;
    let events = frames(&created.text);
    let widget = events
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .expect("a widget item");
    assert_eq!(widget["type"], "thread.item.done");
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let widget_id = widget["item"]["id"].as_str().unwrap().to_string();

    // The click resumes the run, whose agent asks the client for its cart.
    fake.push(Reply::ToolCalls(vec![("get_cart".into(), "{}".into())]));
    let clicked = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": widget_id, "action": {"type": "size.large", "payload": {"size": "L"}}}}),
    )
    .await;
    let events = frames(&clicked.text);
    assert_eq!(events[0]["type"], "stream_options", "{}", clicked.text);
    let call = events
        .iter()
        .find(|e| e["item"]["type"] == "client_tool_call")
        .expect("a client tool call");
    assert_eq!(call["item"]["status"], "pending");
    assert_eq!(call["item"]["name"], "get_cart");
    assert_eq!(call["item"]["arguments"], json!({}));

    // The client's result goes back to the agent; then the approval widget.
    fake.push(Reply::Text("Your cart has one shirt.".into()));
    let answered = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {"items": 1}}}),
    )
    .await;
    let events = frames(&answered.text);
    assert!(
        events
            .iter()
            .any(|e| e["item"]["content"][0]["text"] == "Your cart has one shirt."),
        "{}",
        answered.text
    );
    let approval = events
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .expect("an approval widget");
    assert!(
        approval["item"]["widget"]
            .to_string()
            .contains("approval.approve")
    );
    let stored = chatkit(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 20, "order": "asc"}})).await;
    let call_item = stored.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "client_tool_call")
        .unwrap();
    assert_eq!(call_item["status"], "completed");
    assert_eq!(call_item["output"], json!({"items": 1}));

    // Approving reaches the end node, which closes the thread.
    let stale = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": approval["item"]["id"], "action": {"type": "approval.approve", "payload": {"node": "elsewhere"}}}}),
    )
    .await;
    // A card answers only the approval it was shown for.
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stale.text
    );
    let button = &approval["item"]["widget"]["children"][1]["children"][0]["onClickAction"];
    let approved = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": approval["item"]["id"], "action": {"type": button["type"], "payload": button["payload"]}}}),
    )
    .await;
    let events = frames(&approved.text);
    assert!(
        events
            .iter()
            .any(|e| e["item"]["content"][0]["text"] == "Ordered a L."),
        "{}",
        approved.text
    );
    let updated = events
        .iter()
        .find(|e| e["type"] == "thread.updated")
        .expect("the status changes");
    assert_eq!(
        updated["thread"]["status"],
        json!({"type": "closed", "reason": "Order placed"})
    );
    let refused = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("more?")}}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
}

async fn threads_are_private_and_requests_checked(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    let (_, alice) = app
        .create_user("alice@example.com", "password-123", false)
        .await;
    let (_, bob) = app
        .create_user("bob@example.com", "password-123", false)
        .await;
    let created = chatkit(
        &app,
        &alice,
        json!({"type": "threads.create", "params": {"input": message("Hi")}}),
    )
    .await;
    let thread_id = frames(&created.text)[0]["thread"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob sees nothing of Alice's thread.
    let peek = chatkit(
        &app,
        &bob,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    let write = chatkit(&app, &bob, json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("hey")}})).await;
    assert_eq!(
        write.status,
        StatusCode::NOT_FOUND,
        "a stream on a foreign thread is refused before it starts"
    );
    let listed = chatkit(
        &app,
        &bob,
        json!({"type": "threads.list", "params": {"limit": 5}}),
    )
    .await;
    assert_eq!(listed.body["data"], json!([]));
    // An administrator may open it (for support).
    let support = chatkit(
        &app,
        &admin,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(support.status, StatusCode::OK);
    // Malformed requests get JSON 400s; the server keeps answering.
    for body in [
        json!({"type": "threads.list"}),
        json!({"type": "threads.nope", "params": {}}),
        json!({"params": {}}),
        json!([1, 2]),
        json!({"type": "threads.create", "params": {"input": {"content": "x"}}}),
    ] {
        let bad = chatkit(&app, &alice, body.clone()).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{body} → {}", bad.text);
        assert!(bad.body["code"].is_string() && bad.body["message"].is_string());
    }
    // Well-formed but meaningless: 422.
    let empty = chatkit(
        &app,
        &alice,
        json!({"type": "threads.create", "params": {"input": message("   ")}}),
    )
    .await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.text
    );
    let raw = app
        .send(
            axum::http::Request::post("/api/chatkit")
                .header("authorization", format!("Bearer {alice}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(raw.status, StatusCode::BAD_REQUEST);
    // Only JSON is taken: a cross-site form or text post never reaches a thread.
    let valid = json!({"type": "threads.create", "params": {"input": message("Hi")}}).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
    ] {
        let mut request = axum::http::Request::post("/api/chatkit")
            .header("authorization", format!("Bearer {alice}"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let refused = app
            .send(request.body(axum::body::Body::from(valid.clone())).unwrap())
            .await;
        assert_eq!(
            refused.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(refused.body["code"], "unsupported_media_type");
    }
    let still = chatkit(&app, &alice, json!({"type": "threads.list", "params": {}})).await;
    assert_eq!(still.body["data"].as_array().unwrap().len(), 1);
    // Without a token, nothing.
    let anonymous = app
        .post(
            "/api/chatkit",
            None,
            json!({"type": "threads.list", "params": {}}),
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

async fn retry_replaces_the_answer(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    fake.push(Reply::Text("First answer".into()));
    fake.push(Reply::Text("Title".into()));
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Question")}}),
    )
    .await;
    let events = frames(&created.text);
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let user_id = events[1]["item"]["id"].as_str().unwrap().to_string();
    assert_eq!(events.last().unwrap()["thread"]["title"], "Title");
    // With generated titles off, a new thread is named after its first message from the
    // start, no model call needed.
    let off = app
        .patch(
            "/api/admin/settings",
            Some(&admin),
            json!({"thread_titles": false}),
        )
        .await;
    assert_eq!(off.body["thread_titles"], false, "{}", off.text);
    fake.push(Reply::Text("Plain".into()));
    let calls = fake.requests().len();
    let plain = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Where is my order?")}}),
    )
    .await;
    assert_eq!(fake.requests().len(), calls + 1, "one call: the answer");
    let plain = frames(&plain.text);
    assert_eq!(plain[0]["type"], "thread.created");
    assert_eq!(plain[0]["thread"]["title"], "Where is my order?");
    assert!(
        plain.iter().all(|e| e["type"] != "thread.updated"),
        "nothing to update afterwards"
    );
    fake.push(Reply::Slow(
        Duration::from_millis(10),
        Box::new(Reply::Text("Second answer".into())),
    ));
    let retried = chatkit(&app, &token, json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": user_id}})).await;
    let events = frames(&retried.text);
    assert_eq!(events[0]["type"], "stream_options");
    assert!(
        events.iter().all(|e| e["type"] != "thread.item.removed"),
        "the client drops the old answer itself"
    );
    let items = chatkit(
        &app,
        &token,
        json!({"type": "items.list", "params": {"thread_id": thread_id, "order": "asc"}}),
    )
    .await;
    let texts: Vec<String> = items.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["content"][0]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts, vec!["Question", "Second answer"]);
    // The retried turn did not see the old answer.
    let sent = fake.requests().last().unwrap().body["messages"].clone();
    assert!(!sent.to_string().contains("First answer"), "{sent}");
    // Retrying from something that is not a user message is refused.
    let assistant = items.body["data"][1]["id"].clone();
    let bad = chatkit(&app, &token, json!({"type": "threads.retry_after_item", "params": {"thread_id": thread_id, "item_id": assistant}})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
}

/// The path and query of an absolute URL the server gave.
fn local(url: &Value) -> String {
    let url = url.as_str().expect("a URL");
    let rest = url.split_once("://").expect("an absolute URL").1;
    format!("/{}", rest.split_once('/').expect("a path").1)
}

async fn attachments_upload_in_two_phases_and_reach_the_model(backend: TestBackend) {
    use axum::{body::Body, http::Request};
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({"supports_vision": true})).await;
    serve(&app, &admin, agent_graph()).await;

    // Phase one: declare the file; phase two: send the bytes where the server says.
    let image = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "dot.png", "size": 4, "mime_type": "image/png"}})).await;
    assert_eq!(image.status, StatusCode::OK, "{}", image.text);
    assert_eq!(image.body["type"], "image");
    assert_eq!(image.body["upload_descriptor"]["method"], "POST");
    assert!(image.body["preview_url"].is_string());
    let upload = local(&image.body["upload_descriptor"]["url"]);
    let sent = app
        .send(
            Request::post(&upload)
                .header("content-type", "image/png")
                .body(Body::from(vec![137u8, 80, 78, 71]))
                .unwrap(),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    assert!(
        sent.body.get("upload_descriptor").is_none(),
        "uploaded: {}",
        sent.text
    );
    let again = app
        .send(Request::post(&upload).body(Body::from("x")).unwrap())
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.body["code"], "already_uploaded", "{}", again.text);
    let forged = app
        .send(
            Request::post(upload.replace("token=", "token=0"))
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    let preview = app.get(&local(&image.body["preview_url"]), None).await;
    assert_eq!(preview.status, StatusCode::OK);
    assert_eq!(preview.headers["content-type"], "image/png");

    // A text file, sent as a form the way the ChatKit docs describe.
    let notes = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "notes.txt", "size": 20, "mime_type": "text/plain"}})).await;
    assert_eq!(notes.body["type"], "file");
    let boundary = "XBOUNDARYX";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\nThe code is 4217.\r\n--{boundary}--\r\n"
    );
    let sent = app
        .send(
            Request::post(local(&notes.body["upload_descriptor"]["url"]))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);

    // Declared types and sizes are checked.
    let refused = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "x.exe", "size": 10, "mime_type": "application/x-msdownload"}})).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    let huge = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "big.png", "size": 1_000_000_000, "mime_type": "image/png"}})).await;
    assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", huge.text);
    let negative = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "neg.png", "size": -1, "mime_type": "image/png"}})).await;
    assert_eq!(negative.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        !negative.text.contains("larger"),
        "a negative size is not too large: {}",
        negative.text
    );
    // No more bytes than were declared: told by Content-Length, or found once read (raw
    // or in a form), and the attachment still takes the right bytes afterwards.
    let small = chatkit(&app, &token, json!({"type": "attachments.create", "params": {"name": "small.txt", "size": 10, "mime_type": "text/plain"}})).await;
    let small_url = local(&small.body["upload_descriptor"]["url"]);
    let declared_more = app
        .send(
            Request::post(&small_url)
                .header("content-length", "3145728")
                .body(Body::from(vec![b'a'; 3 * 1024 * 1024]))
                .unwrap(),
        )
        .await;
    assert_eq!(
        declared_more.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        declared_more.text
    );
    let raw_more = app
        .send(
            Request::post(&small_url)
                .body(Body::from(vec![b'a'; 11]))
                .unwrap(),
        )
        .await;
    assert_eq!(
        raw_more.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        raw_more.text
    );
    let form_more = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"small.txt\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        "b".repeat(4096)
    );
    let form_more = app
        .send(
            Request::post(&small_url)
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(Body::from(form_more))
                .unwrap(),
        )
        .await;
    assert_eq!(
        form_more.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        form_more.text
    );
    let exact = app
        .send(
            Request::post(&small_url)
                .body(Body::from(vec![b'a'; 10]))
                .unwrap(),
        )
        .await;
    assert_eq!(exact.status, StatusCode::OK, "{}", exact.text);

    // The message carries both; the model sees the image and reads the text.
    fake.push(Reply::Text("The code is 4217.".into()));
    let mut input = message("What does the note say?");
    input["attachments"] = json!([image.body["id"], notes.body["id"]]);
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": input}}),
    )
    .await;
    let events = frames(&created.text);
    let user = &events[1]["item"];
    assert_eq!(
        user["attachments"].as_array().unwrap().len(),
        2,
        "{}",
        created.text
    );
    assert_eq!(
        user["attachments"][0]["thread_id"],
        events[0]["thread"]["id"]
    );
    let request = fake.requests()[0].body.clone();
    let content = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "user")
        .unwrap()["content"]
        .clone();
    assert!(
        content
            .to_string()
            .contains("data:image/png;base64,iVBORw=="),
        "{content}"
    );
    assert!(
        content.to_string().contains("The code is 4217."),
        "{content}"
    );

    // The database keeps no usable link: the attachment's token is stored as a hash and
    // the stored message has no URL, which the thread's answers give back.
    let image_id = image.body["id"].as_str().unwrap();
    let preview_token = local(&image.body["preview_url"])
        .split("token=")
        .nth(1)
        .unwrap()
        .to_string();
    let stored = app
        .app
        .services
        .store
        .chat_attachment(image_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.token.starts_with("sha256:"), "{}", stored.token);
    assert!(!stored.token.contains(&preview_token));
    let thread_id = events[0]["thread"]["id"].as_str().unwrap();
    let (kept, _) = app
        .app
        .services
        .store
        .list_chat_items(
            thread_id,
            &domain::chat::PageRequest {
                limit: 5,
                order: chatkit::Order::Asc,
                after: None,
            },
            false,
        )
        .await
        .unwrap();
    let kept = serde_json::to_string(&kept).unwrap();
    assert!(
        !kept.contains(&preview_token) && !kept.contains("preview_url"),
        "{kept}"
    );
    let listed = chatkit(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 5, "order": "asc"}})).await;
    let again = &listed.body["data"][0]["attachments"][0]["preview_url"];
    let shown = app.get(&local(again), None).await;
    assert_eq!(shown.status, StatusCode::OK, "{again}");
    // An attachment from before tokens were hashed keeps its link, and its token is
    // hashed at the next start.
    let mut legacy = stored.clone();
    legacy.id = "atc_legacy".into();
    legacy.token = "legacy-plain-token".into();
    app.app
        .services
        .store
        .insert_chat_attachment(&legacy)
        .await
        .unwrap();
    domain::blobs::Blobs::put(app.app.services.blobs.as_ref(), "atc_legacy", b"\x89PNG")
        .await
        .unwrap();
    app.restart().await.bootstrap().await.unwrap();
    let hashed = app
        .app
        .services
        .store
        .chat_attachment("atc_legacy")
        .await
        .unwrap()
        .unwrap();
    assert!(hashed.token.starts_with("sha256:"), "{}", hashed.token);
    let old_link = app
        .get(
            "/api/chatkit/attachments/atc_legacy/content?token=legacy-plain-token",
            None,
        )
        .await;
    assert_eq!(old_link.status, StatusCode::OK, "{}", old_link.text);

    // Someone else cannot use or delete them; the owner can delete.
    let (_, other) = app
        .create_user("other@example.com", "password-123", false)
        .await;
    let mut stolen = message("mine now");
    stolen["attachments"] = json!([image.body["id"]]);
    let theft = chatkit(
        &app,
        &other,
        json!({"type": "threads.create", "params": {"input": stolen}}),
    )
    .await;
    assert_eq!(
        theft.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        theft.text
    );
    let deleted = chatkit(
        &app,
        &token,
        json!({"type": "attachments.delete", "params": {"attachment_id": notes.body["id"]}}),
    )
    .await;
    assert_eq!(deleted.body, json!({}));
    let gone = app
        .get(
            &local(&image.body["preview_url"]).replace(
                image.body["id"].as_str().unwrap(),
                notes.body["id"].as_str().unwrap(),
            ),
            None,
        )
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn the_start_screen_and_appearance(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start", "parameters": {"auto_start": true, "auto_start_assistant_message": "Welcome!"}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "end"}]
    });
    let id = serve(&app, &admin, graph).await;
    let (_, user) = app
        .create_user("u@example.com", "password-123", false)
        .await;
    let workflow = app.get("/api/chatkit/workflow", Some(&user)).await;
    assert_eq!(workflow.status, StatusCode::OK, "{}", workflow.text);
    assert_eq!(workflow.body["workflow_id"], id);
    assert_eq!(workflow.body["auto_start"], true);
    assert_eq!(workflow.body["auto_start_assistant_message"], "Welcome!");
    assert!(workflow.body.get("auto_start_user_message").is_none());

    // Global settings, then a workflow override on top, field by field.
    let public = app.get("/api/appearance-settings", None).await;
    assert_eq!(public.body["color_scheme"], "system");
    let set = app
        .patch(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"accent_color": "#ff0000", "start_screen_greeting": "Hello"}),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let bad = app
        .patch(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"accent_color": "red"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // PATCH merges: one field sent, the others stay; null clears one; unknown keys are
    // refused. PUT replaces the whole.
    let one = app
        .patch(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"start_screen_placeholder": "Ask away"}),
        )
        .await;
    assert_eq!(
        (
            one.body["accent_color"].as_str(),
            one.body["start_screen_greeting"].as_str(),
            one.body["start_screen_placeholder"].as_str()
        ),
        (Some("#ff0000"), Some("Hello"), Some("Ask away")),
        "{}",
        one.text
    );
    let cleared = app
        .patch(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"start_screen_placeholder": null}),
        )
        .await;
    assert_eq!(cleared.body["start_screen_placeholder"], Value::Null);
    assert_eq!(cleared.body["start_screen_greeting"], "Hello");
    let unknown = app
        .patch(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"accent_colour": "#00ff00"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let replaced = app
        .put(
            "/api/admin/appearance-settings",
            Some(&admin),
            json!({"accent_color": "#00ff00"}),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);
    assert_eq!(replaced.body["start_screen_greeting"], Value::Null);
    app.patch(
        "/api/admin/appearance-settings",
        Some(&admin),
        json!({"accent_color": "#ff0000", "start_screen_greeting": "Hello"}),
    )
    .await;
    let forbidden = app
        .patch("/api/admin/appearance-settings", Some(&user), json!({}))
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    let over = app
        .patch(
            &format!("/api/workflows/{id}/appearance"),
            Some(&admin),
            json!({"start_screen_greeting": "Bonjour"}),
        )
        .await;
    assert_eq!(over.status, StatusCode::OK, "{}", over.text);
    let merged = app
        .get(&format!("/api/appearance-settings?workflow_id={id}"), None)
        .await;
    assert_eq!(merged.body["accent_color"], "#ff0000");
    assert_eq!(merged.body["start_screen_greeting"], "Bonjour");
    let global = app.get("/api/appearance-settings", None).await;
    assert_eq!(global.body["start_screen_greeting"], "Hello");
    // A workflow that is not the user's is not found; one they may read is not theirs
    // to change.
    for path in [
        "/api/workflows/999/appearance".to_string(),
        format!("/api/workflows/{id}/appearance"),
    ] {
        let hidden = app.get(&path, Some(&user)).await;
        assert_eq!(
            hidden.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            hidden.text
        );
        assert_eq!(hidden.body["code"], "workflow_not_found");
    }
    let shared = app
        .post(
            &format!("/api/workflows/{id}/shares"),
            Some(&admin),
            json!({"email": "u@example.com", "permission": "read"}),
        )
        .await;
    assert!(shared.status.is_success(), "{}", shared.text);
    let read_only = app
        .patch(
            &format!("/api/workflows/{id}/appearance"),
            Some(&user),
            json!({}),
        )
        .await;
    assert_eq!(
        read_only.status,
        StatusCode::FORBIDDEN,
        "{}",
        read_only.text
    );
}

async fn reasoning_and_tools_show_as_workflow_tasks(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "parameters": {"tools": [{"type": "function", "function": {"name": "validate_workflow_graph"}}]}}
        ],
        "edges": [{"source": "start", "target": "agent"}]
    });
    serve(&app, &admin, graph).await;
    fake.push(Reply::Reasoning(
        "The user wants a check.".into(),
        Box::new(Reply::ToolCalls(vec![(
            "validate_workflow_graph".into(),
            r#"{"graph": {"nodes": [], "edges": []}}"#.into(),
        )])),
    ));
    fake.push(Reply::Text("The graph is empty.".into()));
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Check my graph")}}),
    )
    .await;
    let events = frames(&created.text);
    let kinds = types(&events);
    let added = kinds
        .iter()
        .position(|k| k == "thread.item.added(workflow)")
        .expect("a workflow item");
    let done = kinds
        .iter()
        .position(|k| k == "thread.item.done(workflow)")
        .expect("closed");
    let message = kinds
        .iter()
        .position(|k| k == "thread.item.added(assistant_message)")
        .unwrap();
    assert!(added < done && done < message, "{kinds:?}");
    let tasks = &events[done]["item"]["workflow"]["tasks"];
    assert_eq!(tasks[0]["type"], "thought");
    assert_eq!(tasks[0]["content"], "The user wants a check.");
    assert_eq!(tasks[1]["title"], "Calling validate_workflow_graph");
    assert_eq!(tasks[1]["status_indicator"], "complete");
    assert!(
        tasks[1]["content"].as_str().unwrap().contains("\"valid\""),
        "{tasks}"
    );
    assert!(events[done]["item"]["workflow"]["summary"]["duration"].is_number());
    // Updates only name the item after it was added.
    for (index, event) in events.iter().enumerate() {
        if event["type"] == "thread.item.updated" {
            let id = &event["item_id"];
            assert!(
                events[..index]
                    .iter()
                    .any(|e| e["type"] == "thread.item.added" && &e["item"]["id"] == id),
                "update before add at {index}: {kinds:?}"
            );
        }
    }
    let stored = chatkit(
        &app,
        &token,
        json!({"type": "threads.get_by_id", "params": {"thread_id": events[0]["thread"]["id"]}}),
    )
    .await;
    let items: Vec<&str> = stored.body["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(items, vec!["user_message", "workflow", "assistant_message"]);
}

async fn a_client_that_leaves_cancels_the_turn(backend: TestBackend) {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    // The model writes a little, then nothing, until it is hung up on.
    fake.push(Reply::Stall {
        text: "Once upon a time there was a long story".into(),
        chunks: 3,
    });
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let body = json!({"type": "threads.create", "params": {"input": message("Tell me a story")}})
        .to_string();
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /api/chatkit HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(body.as_bytes()).await.unwrap();
    // Read until the answer's three pieces ("Once", " upo", "n a ") are out, then hang up.
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !seen.contains("n a ") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let thread_id = seen
        .split("\"thr_")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|rest| format!("thr_{rest}"))
        .expect("the thread id");
    drop(socket);

    // The run stops, the partial answer is kept, and the next turn is told.
    let store = &app.app.services.store;
    let mut settled = false;
    for _ in 0..100 {
        let runs = app.get("/api/runs", Some(&token)).await;
        if runs.body[0]["status"] == "cancelled" && fake.disconnects() > 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "the run was cancelled and the model call aborted");
    let mut items = Vec::new();
    for _ in 0..100 {
        let page = domain::chat::PageRequest {
            limit: 20,
            order: chatkit::Order::Asc,
            after: None,
        };
        items = store
            .list_chat_items(&thread_id, &page, true)
            .await
            .unwrap()
            .0;
        if items.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kinds: Vec<&str> = items.iter().map(|i| i.kind()).collect();
    assert_eq!(
        kinds,
        vec!["user_message", "assistant_message", "sdk_hidden_context"]
    );
    let visible = chatkit(
        &app,
        &token,
        json!({"type": "items.list", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(
        visible.body["data"].as_array().unwrap().len(),
        2,
        "hidden context is never sent"
    );
    // The thread takes a new message, and the model hears about the cancellation.
    fake.push(Reply::Text("Sorry.".into()));
    let next = chatkit(&app, &token, json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("Never mind")}})).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text);
    let answered = fake
        .requests()
        .into_iter()
        .map(|r| r.body.to_string())
        .find(|body| body.contains("Never mind") && !body.contains("descriptive title"))
        .expect("the next turn called the model");
    assert!(
        answered.contains("The user cancelled the stream"),
        "{answered}"
    );
    assert!(
        answered.contains("Once upon"),
        "the partial answer is part of the history: {answered}"
    );
}

async fn embedded_sessions_are_scoped_and_expire(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let served = serve(&app, &admin, agent_graph()).await;
    // Another published workflow, for the session.
    let graph = json!({
        "nodes": [{"slug": "start", "kind": "start"}, {"slug": "hello", "kind": "assistant_message", "parameters": {"message": "Hello {{ state.plan }} customer"}}],
        "edges": [{"source": "start", "target": "hello"}],
        "state_schema": {"type": "object", "properties": {"plan": {"type": "string", "default": "free"}}}
    });
    let embedded = crate::runs::publish(&app, &admin, graph).await;

    // An API key, shown once, acts as the administrator who made it.
    let key = app
        .post(
            "/api/admin/api-keys",
            Some(&admin),
            json!({"name": "shop backend"}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    let secret = key.body["secret"].as_str().unwrap().to_string();
    let listed = app.get("/api/admin/api-keys", Some(&admin)).await;
    assert!(listed.body[0].get("secret").is_none());
    assert!(secret.starts_with(listed.body[0]["prefix"].as_str().unwrap()));
    assert_eq!(
        app.get("/api/runs", Some(&secret)).await.status,
        StatusCode::OK
    );

    // The integrator's server opens a session for its end user.
    let session = app
        .post(
            "/api/chatkit/sessions",
            Some(&secret),
            json!({"workflow": {"id": embedded, "state_variables": {"plan": "gold"}}, "user": "customer-42",
                   "expires_after": {"anchor": "created_at", "seconds": 600}, "rate_limits": {"max_requests_per_1_minute": 6}}),
        )
        .await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.text);
    let client = session.body["client_secret"].as_str().unwrap().to_string();
    assert_eq!(session.body["status"], "active");

    // The session's chat runs its workflow, whatever the request asks, with its state.
    let created = chatkit(
        &app,
        &client,
        json!({"type": "threads.create", "params": {"input": message("Hi")}, "metadata": {"workflow_id": served}}),
    )
    .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.text);
    let events = frames(&created.text);
    assert!(
        created.text.contains("Hello gold customer"),
        "{}",
        created.text
    );
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let mine = chatkit(&app, &client, json!({"type": "threads.list", "params": {}})).await;
    assert_eq!(mine.body["data"].as_array().unwrap().len(), 1);
    // The administrator's own chat list does not mix in the end user's threads …
    fake.push(Reply::Text("Admin chat".into()));
    chatkit(
        &app,
        &admin,
        json!({"type": "threads.create", "params": {"input": message("mine")}}),
    )
    .await;
    let admins = chatkit(&app, &admin, json!({"type": "threads.list", "params": {}})).await;
    assert!(
        admins.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != thread_id)
    );
    // … and another end user sees nothing of this one.
    let other = app
        .post(
            "/api/chatkit/sessions",
            Some(&secret),
            json!({"workflow_id": embedded, "user": "customer-7"}),
        )
        .await;
    let other_client = other.body["client_secret"].as_str().unwrap().to_string();
    let peek = chatkit(
        &app,
        &other_client,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    assert_eq!(peek.status, StatusCode::NOT_FOUND);
    let empty = chatkit(
        &app,
        &other_client,
        json!({"type": "threads.list", "params": {}}),
    )
    .await;
    assert_eq!(empty.body["data"], json!([]));
    // End users of one integrator do not share attachments.
    let theirs = chatkit(&app, &client, json!({"type": "attachments.create", "params": {"name": "a.txt", "size": 1, "mime_type": "text/plain"}})).await;
    assert_eq!(theirs.status, StatusCode::OK, "{}", theirs.text);
    let deleted = chatkit(
        &app,
        &other_client,
        json!({"type": "attachments.delete", "params": {"attachment_id": theirs.body["id"]}}),
    )
    .await;
    assert_eq!(
        deleted.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        deleted.text
    );
    // A session secret opens the chat only.
    assert_eq!(
        app.get("/api/runs", Some(&client)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Its rate limit: 6 requests a minute (2 used so far).
    let mut limited = None;
    for _ in 0..6 {
        let answer = chatkit(&app, &client, json!({"type": "threads.list", "params": {}})).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("the limit applies");
    assert!(limited.headers.contains_key("retry-after"));

    // Cancelled or expired, the secret stops working.
    let cancelled = app
        .post(
            &format!(
                "/api/chatkit/sessions/{}/cancel",
                other.body["id"].as_str().unwrap()
            ),
            Some(&secret),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.text);
    let refused = chatkit(
        &app,
        &other_client,
        json!({"type": "threads.list", "params": {}}),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNAUTHORIZED, "session_expired")
    );
    let short = app
        .post("/api/chatkit/sessions", Some(&secret), json!({"workflow_id": embedded, "user": "u", "expires_after": {"anchor": "created_at", "seconds": 1}}))
        .await;
    let short_client = short.body["client_secret"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = chatkit(
        &app,
        &short_client,
        json!({"type": "threads.list", "params": {}}),
    )
    .await;
    assert_eq!(expired.code(), "session_expired");

    // A revoked key stops at once; users cannot make keys or sessions.
    let id = key.body["id"].as_i64().unwrap();
    assert_eq!(
        app.delete(&format!("/api/admin/api-keys/{id}"), Some(&admin))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/runs", Some(&secret)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (_, user) = app
        .create_user("plain@example.com", "password-123", false)
        .await;
    assert_eq!(
        app.post(
            "/api/chatkit/sessions",
            Some(&user),
            json!({"workflow_id": embedded, "user": "x"})
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post("/api/admin/api-keys", Some(&user), json!({"name": "x"}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
}

async fn questions_are_asked_as_structured_input(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "details", "kind": "wait_for_user_input", "parameters": {"message": "A few details.", "inputs": [
                {"id": "size", "question": "Which size for {{ user.email }}?", "options": ["S", "M", "L"]},
                {"id": "extras", "question": "Extras?", "options": [{"value": "gift wrap"}, {"value": "card"}], "multiple": true},
                {"id": "note", "question": "Any note?", "type": "freeform", "description": "Optional"}
            ]}},
            {"slug": "keep", "kind": "state", "parameters": {"state": [
                {"target": "state.size", "expression": "input.values.size"},
                {"target": "state.extras", "expression": "input.values.extras.size()"}
            ]}},
            {"slug": "agent", "kind": "agent", "parameters": {"instructions": "Confirm.", "model_settings": {"include_chat_history": true}}},
            {"slug": "more", "kind": "wait_for_user_input", "parameters": {"message": "Size {{ state.size }}, {{ state.extras }} extras."}}
        ],
        "edges": [
            {"source": "start", "target": "details"}, {"source": "details", "target": "keep"},
            {"source": "keep", "target": "agent"}, {"source": "agent", "target": "more"}
        ]
    });
    serve(&app, &admin, graph).await;
    let (events, thread_id, asked) = ask(&app, &token, "A shirt please").await;
    assert_eq!(asked["type"], "thread.item.done");
    assert_eq!(asked["item"]["status"], "pending");
    assert_eq!(
        asked["item"]["inputs"],
        json!([
            {"type": "multiple_choice", "id": "size", "question": "Which size for learner@example.com?",
             "options": [{"value": "S"}, {"value": "M"}, {"value": "L"}], "multiple": false},
            {"type": "multiple_choice", "id": "extras", "question": "Extras?",
             "options": [{"value": "gift wrap"}, {"value": "card"}], "multiple": true},
            {"type": "freeform", "id": "note", "question": "Any note?", "description": "Optional"}
        ]),
        "{asked}"
    );
    let item_id = asked["item"]["id"].as_str().unwrap().to_string();
    let user_item = events[1]["item"]["id"].as_str().unwrap().to_string();

    // Answers go to a pending questions item, in the submission's shape.
    for (body, status) in [
        (
            json!({"thread_id": thread_id, "item_id": user_item, "input": {"answers": {}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            json!({"thread_id": thread_id, "item_id": "msg_nope", "input": {"answers": {}}}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"thread_id": thread_id, "item_id": item_id, "input": {"answers": {"size": "M"}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let refused = chatkit(
            &app,
            &token,
            json!({"type": "threads.add_structured_input", "params": body}),
        )
        .await;
        assert_eq!(refused.status, status, "{body} → {}", refused.text);
        assert!(refused.body["code"].is_string(), "{}", refused.text);
    }

    fake.push(Reply::Text("Confirmed.".into()));
    let answered = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": item_id, "input": {
            "status": "answered",
            "answers": {"size": {"values": ["M", "L"]}, "extras": {"values": ["gift wrap", "card"]}, "ghost": {"values": ["x"]}}
        }}}),
    )
    .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.text);
    let events = frames(&answered.text);
    assert_eq!(
        events[0]["type"], "thread.item.replaced",
        "{}",
        answered.text
    );
    let replaced = &events[0]["item"];
    assert_eq!(replaced["id"], item_id.as_str());
    assert_eq!(replaced["status"], "answered");
    assert_eq!(
        replaced["inputs"][0]["answer"],
        json!({"values": ["M"], "skipped": false})
    );
    assert_eq!(
        replaced["inputs"][1]["answer"],
        json!({"values": ["gift wrap", "card"], "skipped": false})
    );
    assert_eq!(
        replaced["inputs"][2]["answer"],
        json!({"values": [], "skipped": true})
    );
    // The answers are not shown again as a message; the run goes on with them.
    assert!(
        !events.iter().any(|e| e["item"]["type"] == "user_message"),
        "{}",
        answered.text
    );
    assert!(
        events
            .iter()
            .any(|e| e["item"]["content"][0]["text"] == "Size M, 2 extras."),
        "{}",
        answered.text
    );
    // The model saw the answers as the user's turn.
    let request = fake.requests().last().unwrap().body.clone();
    assert!(
        request
            .to_string()
            .contains("Which size for learner@example.com?: M"),
        "{request}"
    );

    // Answered once: a second submission is refused, and the item stays answered.
    let again = chatkit(
        &app,
        &token,
        json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": item_id, "input": {"status": "skipped"}}}),
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        again.text
    );
    let item = stored_item(&app, &token, &thread_id, &item_id).await;
    assert_eq!(item["status"], "answered");
    assert_eq!(item["inputs"][0]["answer"]["values"], json!(["M"]));

    // Two answers at once: the run takes one, and the stored item shows that one.
    fake.push(Reply::Text("Confirmed.".into()));
    let (_, thread_id, asked) = ask(&app, &token, "Another shirt").await;
    let item_id = asked["item"]["id"].as_str().unwrap().to_string();
    let answer = |size: &str| {
        json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": item_id,
            "input": {"answers": {"size": {"values": [size]}}}}})
    };
    let (small, large) = tokio::join!(
        chatkit(&app, &token, answer("S")),
        chatkit(&app, &token, answer("L"))
    );
    let winners: Vec<&str> = [("S", &small), ("L", &large)]
        .into_iter()
        .filter(|(_, r)| r.text.contains("thread.item.replaced"))
        .map(|(size, _)| size)
        .collect();
    assert_eq!(winners.len(), 1, "{}\n{}", small.text, large.text);
    let item = stored_item(&app, &token, &thread_id, &item_id).await;
    assert_eq!(item["inputs"][0]["answer"]["values"], json!([winners[0]]));

    // The run API takes the same submission.
    let id = crate::runs::publish(
        &app,
        &token,
        json!({"nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"inputs": [{"id": "ok", "question": "OK?", "options": ["yes", "no"]}]}},
            {"slug": "end", "kind": "end", "parameters": {"output": "input.values.ok"}}
        ], "edges": [{"source": "start", "target": "ask"}, {"source": "ask", "target": "end"}]}),
    )
    .await;
    let run = crate::runs::start(&app, &token, id, json!("go")).await;
    assert_eq!(run.body["wait"]["kind"], "structured_input", "{}", run.text);
    let run_id = run.body["id"].as_str().unwrap();
    let done = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&token),
            json!({"structured_input": {"answers": {"ok": {"values": ["yes"]}}}}),
        )
        .await;
    assert_eq!(done.body["status"], "completed", "{}", done.text);
    assert_eq!(done.body["output"], "yes", "{}", done.text);
}

async fn widgets_stream_in_and_show_what_was_done(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "recipe", "kind": "agent", "parameters": {"instructions": "Suggest a recipe.", "widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Title", "id": "title", "value": ""},
                {"type": "Text", "id": "body", "value": ""}
            ]}}}},
            {"slug": "order", "kind": "widget", "parameters": {"widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Form", "onSubmitAction": {"type": "order.place", "handler": "server"}, "children": [
                    {"type": "Input", "name": "qty", "defaultValue": "1"},
                    {"type": "Button", "label": "Order", "submit": true}
                ]}
            ]}}}},
            {"slug": "check", "kind": "user_approval", "parameters": {"message": "Order {{ input.action.payload.qty }}?"}},
            {"slug": "end", "kind": "end", "parameters": {"message": "Done."}}
        ],
        "edges": [
            {"source": "start", "target": "recipe"}, {"source": "recipe", "target": "order"},
            {"source": "order", "target": "check"}, {"source": "check", "target": "end", "condition": "approve"}
        ]
    });
    serve(&app, &admin, graph).await;
    fake.push(Reply::Text(
        r#"{"body": "Boil the pasta for ten minutes, then add the sauce.", "title": "Pasta"}"#
            .into(),
    ));
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message("Dinner?")}}),
    )
    .await;
    let events = frames(&created.text);
    // The answer's schema comes from the widget's bindings.
    let sent = fake
        .requests()
        .iter()
        .find(|r| r.body.to_string().contains("Suggest a recipe."))
        .unwrap()
        .body
        .clone();
    assert!(
        sent.to_string()
            .contains("\"required\":[\"body\",\"title\"]"),
        "{sent}"
    );
    let added = events
        .iter()
        .position(|e| e["type"] == "thread.item.added" && e["item"]["type"] == "widget")
        .expect("the widget is added first");
    let item_id = events[added]["item"]["id"].as_str().unwrap().to_string();
    let done = events
        .iter()
        .position(|e| e["type"] == "thread.item.done" && e["item"]["id"] == item_id.as_str())
        .expect("then done");
    let between = &events[added + 1..done];
    assert!(
        between
            .iter()
            .all(|e| e["type"] == "thread.item.updated" && e["item_id"] == item_id.as_str()),
        "{}",
        created.text
    );
    // The body streams as text deltas on its component: a client applying the updates
    // in order sees the text grow to its end.
    let mut shown = events[added]["item"]["widget"].clone();
    let mut seen = Vec::new();
    for event in between {
        let update = &event["update"];
        match update["type"].as_str().unwrap() {
            "widget.root.updated" => shown = update["widget"].clone(),
            "widget.streaming_text.value_delta" => {
                assert_eq!(update["component_id"], "body");
                let body = &mut shown["children"][1];
                assert_eq!(body["streaming"], true);
                let grown = format!(
                    "{}{}",
                    body["value"].as_str().unwrap(),
                    update["delta"].as_str().unwrap()
                );
                body["value"] = json!(grown);
            }
            other => panic!("unexpected update {other}"),
        }
        seen.push(shown["children"][1]["value"].as_str().unwrap().to_string());
    }
    assert!(
        between
            .iter()
            .filter(|e| e["update"]["type"] == "widget.streaming_text.value_delta")
            .count()
            >= 3,
        "{}",
        created.text
    );
    assert!(
        seen.windows(2).all(|w| w[1].starts_with(w[0].as_str())),
        "{seen:?}"
    );
    assert!(
        between
            .iter()
            .any(|e| e["update"]["type"] == "widget.root.updated"),
        "the title and the end of streaming replace the root: {}",
        created.text
    );
    let last = &events[done]["item"]["widget"];
    assert_eq!(
        last,
        &json!({"type": "Card", "children": [
            {"type": "Title", "id": "title", "value": "Pasta"},
            {"type": "Text", "id": "body", "value": "Boil the pasta for ten minutes, then add the sauce."}
        ]})
    );
    // The JSON answer is not shown as a message.
    assert!(
        !events
            .iter()
            .any(|e| e["item"]["type"] == "assistant_message"),
        "{}",
        created.text
    );
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let stored = chatkit(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 20, "order": "asc"}})).await;
    let widgets: Vec<&Value> = stored.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "widget")
        .collect();
    assert_eq!(widgets[0]["id"], item_id.as_str());
    assert_eq!(&widgets[0]["widget"], last);

    // A submitted form keeps the values sent.
    let form_id = widgets[1]["id"].as_str().unwrap().to_string();
    let submitted = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": form_id, "action": {"type": "order.place", "payload": {"qty": "3"}}}}),
    )
    .await;
    let events = frames(&submitted.text);
    let update = events
        .iter()
        .find(|e| e["type"] == "thread.item.updated")
        .expect("the form is updated");
    assert_eq!(update["item_id"], form_id.as_str());
    assert_eq!(update["update"]["type"], "widget.root.updated");
    assert_eq!(
        update["update"]["widget"]["children"][0]["children"][0]["defaultValue"],
        "3"
    );
    // A decided approval shows its decision, its buttons off.
    let approval = events
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .expect("an approval card");
    let approval_id = approval["item"]["id"].as_str().unwrap().to_string();
    let approved = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": approval_id, "action": {"type": "approval.approve", "payload": {"node": "check"}}}}),
    )
    .await;
    let events = frames(&approved.text);
    let update = events
        .iter()
        .find(|e| e["type"] == "thread.item.updated")
        .expect("the card is updated");
    let card = &update["update"]["widget"];
    assert_eq!(card["children"][1]["children"][0]["disabled"], true);
    assert_eq!(card["children"][1]["children"][1]["disabled"], true);
    assert_eq!(
        card["children"][2],
        json!({"type": "Caption", "value": "Approved"})
    );
    let kept = stored_item(&app, &token, &thread_id, &approval_id).await;
    assert_eq!(&kept["widget"], card);
    // A click that is refused (the run ended, closing the thread) changes nothing.
    let refused = chatkit(
        &app,
        &token,
        json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": form_id, "action": {"type": "order.place", "payload": {"qty": "9"}}}}),
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    let form = stored_item(&app, &token, &thread_id, &form_id).await;
    assert_eq!(
        form["widget"]["children"][0]["children"][0]["defaultValue"],
        "3"
    );
}

/// Starts a thread whose workflow asks questions first: the stream's events, the thread's
/// id and the event that brought the questions.
async fn ask(app: &TestApp, token: &str, text: &str) -> (Vec<Value>, String, Value) {
    let created = chatkit(
        app,
        token,
        json!({"type": "threads.create", "params": {"input": message(text)}}),
    )
    .await;
    let events = frames(&created.text);
    let thread_id = events[0]["thread"]["id"].as_str().unwrap().to_string();
    let asked = events
        .iter()
        .find(|e| e["item"]["type"] == "structured_input")
        .cloned()
        .unwrap_or_else(|| panic!("no structured input item in {}", created.text));
    (events, thread_id, asked)
}

/// A thread's stored item, as `threads.get_by_id` shows it.
async fn stored_item(app: &TestApp, token: &str, thread_id: &str, item_id: &str) -> Value {
    let stored = chatkit(
        app,
        token,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
    )
    .await;
    stored.body["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == item_id)
        .cloned()
        .unwrap_or_else(|| panic!("no item {item_id} in {}", stored.text))
}

/// A chat run does not copy its thread: it keeps what it added, and its agent reads the
/// thread newest first, only as far as its model's context budget goes, so a thread far
/// longer than that costs a turn the same as one that just fills it.
async fn a_long_thread_is_read_as_far_as_the_model_can_take(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    // About four messages of 1,000 tokens fit, once the answer's room is set aside.
    let fake = fake_default_model(&app, &admin, json!({"context_window": 5000})).await;
    serve(&app, &admin, agent_graph()).await;
    let long = |i: usize| format!("message {i} ") + &"x".repeat(4_000);
    fake.push(Reply::Text("ok 0".into()));
    fake.push(Reply::Text("A title".into()));
    let created = chatkit(
        &app,
        &token,
        json!({"type": "threads.create", "params": {"input": message(&long(0))}}),
    )
    .await;
    let thread_id = thread_id_of(&frames(&created.text));
    let mut sent = Vec::new();
    for i in 1..16 {
        fake.push(Reply::Text(format!("ok {i}")));
        let turn = chatkit(
            &app,
            &token,
            json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message(&long(i))}}),
        )
        .await;
        assert_eq!(turn.status, StatusCode::OK, "{}", turn.text);
        // The run holds only what it added: the turn's message and its answer.
        let runs = app
            .get(
                &format!("/api/runs?thread_id={thread_id}&limit=1"),
                Some(&admin),
            )
            .await;
        let texts: Vec<String> = runs.body[0]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(texts.len(), 2, "{texts:.30?}");
        assert!(texts[0].starts_with(&format!("message {i} ")));
        assert_eq!(texts[1], format!("ok {i}"));
        // The model got the conversation's newest messages, the turn's own last, once.
        let request = fake.requests().last().unwrap().body["messages"].clone();
        let said: Vec<String> = request
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(said.last().unwrap().starts_with(&format!("message {i} ")));
        let own = said
            .iter()
            .filter(|t| t.starts_with(&format!("message {i} ")))
            .count();
        assert_eq!(own, 1, "the turn's message is sent once");
        if i > 1 {
            assert_eq!(said[said.len() - 2], format!("ok {}", i - 1), "in order");
        }
        sent.push(said.len());
    }
    // What the model is sent grows with the thread until the budget is full, then
    // stays put.
    assert_eq!(sent[0], 3, "{sent:?}");
    let full = *sent.last().unwrap();
    assert!((4..=8).contains(&full), "{sent:?}");
    assert_eq!(sent[8..], vec![full; sent.len() - 8], "{sent:?}");
}

/// Each replica keeps the history it read; the next turn reads only what the thread
/// gained, whichever replica added it, and a retry on another replica that rewrote the
/// end of the thread is noticed.
async fn the_history_follows_the_thread_across_replicas_and_retries(backend: TestBackend) {
    use axum::{
        body::Body,
        http::{Request, header},
    };
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({})).await;
    serve(&app, &admin, agent_graph()).await;
    app.patch(
        "/api/admin/settings",
        Some(&admin),
        json!({"thread_titles": false}),
    )
    .await;
    let replica = app.restart().await;
    let on = |router: axum::Router, body: Value| {
        let request = Request::post("/api/chatkit")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        async move {
            let response = test_support::send_to(&router, request).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
            frames(&response.text)
        }
    };
    // What the model was sent last, without the instructions.
    let said = || -> Vec<String> {
        fake.requests().last().unwrap().body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let user_item = |events: &[Value]| -> String {
        events
            .iter()
            .find(|e| e["type"] == "thread.item.done" && e["item"]["type"] == "user_message")
            .map(|e| e["item"]["id"].as_str().unwrap().to_string())
            .expect("the user's message")
    };
    let turn = |router: axum::Router, thread: &str, text: &str| {
        on(
            router,
            json!({"type": "threads.add_user_message", "params": {"thread_id": thread, "input": message(text)}}),
        )
    };

    fake.push(Reply::Text("a1".into()));
    let created = on(
        app.router.clone(),
        json!({"type": "threads.create", "params": {"input": message("u1")}}),
    )
    .await;
    let thread = thread_id_of(&created);
    fake.push(Reply::Text("a2".into()));
    let second = turn(app.router.clone(), &thread, "u2").await;
    assert_eq!(said(), ["u1", "a1", "u2"]);
    fake.push(Reply::Text("a3".into()));
    turn(replica.router(), &thread, "u3").await;
    assert_eq!(said(), ["u1", "a1", "u2", "a2", "u3"]);
    // The first replica has the thread up to a1; it reads what the other added.
    fake.push(Reply::Text("a4".into()));
    turn(app.router.clone(), &thread, "u4").await;
    assert_eq!(said(), ["u1", "a1", "u2", "a2", "u3", "a3", "u4"]);

    // The other replica retries u2: what came after it is gone, for both replicas.
    fake.push(Reply::Text("a2 again".into()));
    on(
        replica.router(),
        json!({"type": "threads.retry_after_item", "params": {"thread_id": thread, "item_id": user_item(&second)}}),
    )
    .await;
    assert_eq!(said(), ["u1", "a1", "u2"]);
    fake.push(Reply::Text("a5".into()));
    turn(app.router.clone(), &thread, "u5").await;
    assert_eq!(said(), ["u1", "a1", "u2", "a2 again", "u5"]);
    fake.push(Reply::Text("a6".into()));
    turn(replica.router(), &thread, "u6").await;
    assert_eq!(said(), ["u1", "a1", "u2", "a2 again", "u5", "a5", "u6"]);
}
