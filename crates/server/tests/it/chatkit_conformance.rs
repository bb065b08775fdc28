//! ChatKit conformance: a whole scenario through `/api/chatkit`, every request, JSON answer
//! and stream event recorded, then checked by `scripts/chatkit-conformance.py` against
//! the official `openai-chatkit` 1.6.5 types (and key by key against what the reference
//! server would write).
//!
//! The Python interpreter comes from `CHATKIT_PYTHON` (CI installs the package into a
//! virtual environment and sets it), else `python3` when it can import `chatkit`. Without
//! either the test says so and passes, unless `CHATKIT_CONFORMANCE=required`.

use std::{path::PathBuf, process::Command};

use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::Reply};

use crate::{
    chatkit::{chatkit, frames, learner, message, serve},
    runs::fake_default_model,
};

backend_tests!(the_protocol_matches_the_reference_types);

struct Recorder {
    lines: Vec<Value>,
}

impl Recorder {
    fn record(&mut self, what: &str, document: &Value) {
        self.lines.push(json!({"what": what, "json": document}));
    }

    /// Sends a request, recording it and what came back as `answer` (`"stream"` for SSE).
    async fn call(&mut self, app: &TestApp, token: &str, body: Value, answer: &str) -> Vec<Value> {
        self.record("request", &body);
        let response = chatkit(app, token, body.clone()).await;
        assert!(response.status.is_success(), "{body} → {}", response.text);
        if answer == "stream" {
            let events = frames(&response.text);
            for event in &events {
                self.record("event", event);
            }
            events
        } else {
            self.record(answer, &response.body);
            vec![response.body]
        }
    }
}

fn python() -> Option<String> {
    if let Ok(python) = std::env::var("CHATKIT_PYTHON") {
        return Some(python);
    }
    let found = Command::new("python3")
        .args(["-c", "import chatkit.types"])
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| "python3".to_string())
}

async fn the_protocol_matches_the_reference_types(backend: TestBackend) {
    let Some(python) = python() else {
        assert_ne!(
            std::env::var("CHATKIT_CONFORMANCE").as_deref(),
            Ok("required"),
            "CHATKIT_CONFORMANCE=required but no Python with openai-chatkit (set CHATKIT_PYTHON)"
        );
        eprintln!(
            "NOTE: ChatKit conformance skipped: no Python with openai-chatkit (set CHATKIT_PYTHON)"
        );
        return;
    };
    let app = TestApp::new(backend).await;
    // Chat as most people do: a user who is not an administrator.
    let admin = app.admin_token().await;
    let token = learner(&app).await;
    let fake = fake_default_model(&app, &admin, json!({"supports_audio": true})).await;
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "agent", "kind": "agent", "display_name": "Answering", "parameters": {"tools": [{"type": "client_tool", "name": "get_time"}]}},
            {"slug": "offer", "kind": "widget", "parameters": {"widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Title", "value": "Continue?"},
                {"type": "Button", "label": "Yes", "onClickAction": {"type": "go", "payload": {"n": 1}, "handler": "server", "loadingBehavior": "auto", "streaming": true}}
            ]}}}},
            {"slug": "check", "kind": "user_approval", "parameters": {"message": "Really?"}},
            {"slug": "details", "kind": "wait_for_user_input", "parameters": {"message": "A few details.", "inputs": [
                {"id": "size", "question": "Which size?", "options": ["S", "M"]},
                {"id": "note", "question": "Any note?", "description": "Optional"}
            ]}},
            {"slug": "card", "kind": "agent", "parameters": {"widget": {"source": "inline", "definition": {"type": "Card", "children": [
                {"type": "Title", "id": "title", "value": ""},
                {"type": "Markdown", "id": "body", "value": ""}
            ]}}}},
            {"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "Anything else?"}},
            {"slug": "end", "kind": "end", "parameters": {"message": "Bye.", "status": {"type": "locked", "reason": "Done"}}}
        ],
        "edges": [
            {"source": "start", "target": "agent"}, {"source": "agent", "target": "offer"},
            {"source": "offer", "target": "check"}, {"source": "check", "target": "details", "condition": "approve"},
            {"source": "details", "target": "card"}, {"source": "card", "target": "ask"},
            {"source": "ask", "target": "end"}
        ]
    });
    serve(&app, &admin, graph).await;
    let mut r = Recorder { lines: Vec::new() };

    // A turn that calls a client tool, then answers and shows a widget.
    fake.push(Reply::ToolCalls(vec![(
        "get_time".into(),
        r#"{"zone": "UTC"}"#.into(),
    )]));
    let created = r
        .call(&app, &token, json!({"type": "threads.create", "params": {"input": message("What time is it?")}, "metadata": {}}), "stream")
        .await;
    let thread_id = created[0]["thread"]["id"].as_str().unwrap().to_string();
    fake.push(Reply::Text("It is noon.".into()));
    fake.push(Reply::Text("Time question".into()));
    let answered = r
        .call(&app, &token, json!({"type": "threads.add_client_tool_output", "params": {"thread_id": thread_id, "result": {"time": "12:00"}}}), "stream")
        .await;
    let widget_id = answered
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .map(|e| e["item"]["id"].clone())
        .expect("a widget");
    let clicked = r
        .call(&app, &token, json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": widget_id, "action": {"type": "go", "payload": {"n": 1}}}}), "stream")
        .await;
    let approval_id = clicked
        .iter()
        .find(|e| e["item"]["type"] == "widget")
        .map(|e| e["item"]["id"].clone())
        .expect("an approval widget");
    let approved = r.call(&app, &token, json!({"type": "threads.custom_action", "params": {"thread_id": thread_id, "item_id": approval_id, "action": {"type": "approval.approve", "payload": {"node": "check"}}}}), "stream")
        .await;
    let questions_id = approved
        .iter()
        .find(|e| e["item"]["type"] == "structured_input")
        .map(|e| e["item"]["id"].clone())
        .expect("a structured input");
    fake.push(Reply::Text(
        r#"{"title": "Your order", "body": "One **medium** shirt, shipped tomorrow."}"#.into(),
    ));
    r.call(&app, &token, json!({"type": "threads.add_structured_input", "params": {"thread_id": thread_id, "item_id": questions_id, "input": {"status": "answered", "answers": {"size": {"values": ["M"], "skipped": false}}}}}), "stream")
        .await;
    r.call(&app, &token, json!({"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": message("No, thanks")}}), "stream")
        .await;

    // Reading, paging, renaming, feedback.
    r.call(
        &app,
        &token,
        json!({"type": "threads.get_by_id", "params": {"thread_id": thread_id}}),
        "thread",
    )
    .await;
    r.call(
        &app,
        &token,
        json!({"type": "threads.list", "params": {"limit": 10, "order": "desc"}}),
        "threads",
    )
    .await;
    let page = r
        .call(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 2, "order": "asc"}}), "items")
        .await;
    r.call(&app, &token, json!({"type": "items.list", "params": {"thread_id": thread_id, "limit": 50, "order": "desc", "after": page[0]["after"]}}), "items")
        .await;
    r.call(
        &app,
        &token,
        json!({"type": "threads.update", "params": {"thread_id": thread_id, "title": "Renamed"}}),
        "thread",
    )
    .await;
    let first_item = page[0]["data"][0]["id"].clone();
    r.call(&app, &token, json!({"type": "items.feedback", "params": {"thread_id": thread_id, "item_ids": [first_item], "kind": "negative"}}), "empty")
        .await;
    r.call(&app, &token, json!({"type": "input.transcribe", "params": {"audio_base64": "AAAA", "mime_type": "audio/webm;codecs=opus"}}), "transcription")
        .await;

    // Attachments: declared (with an upload descriptor), uploaded, then used.
    let declared = r
        .call(&app, &token, json!({"type": "attachments.create", "params": {"name": "a.png", "size": 3, "mime_type": "image/png"}}), "attachment")
        .await;
    let url = declared[0]["upload_descriptor"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!(
        "/{}",
        url.split_once("://").unwrap().1.split_once('/').unwrap().1
    );
    let uploaded = app
        .send(
            axum::http::Request::post(path)
                .body(axum::body::Body::from("abc"))
                .unwrap(),
        )
        .await;
    r.record("attachment", &uploaded.body);
    let file = r
        .call(&app, &token, json!({"type": "attachments.create", "params": {"name": "b.txt", "size": 3, "mime_type": "text/plain"}}), "attachment")
        .await;
    r.call(
        &app,
        &token,
        json!({"type": "attachments.delete", "params": {"attachment_id": file[0]["id"]}}),
        "empty",
    )
    .await;

    // A second thread: a plain answer, then a retry.
    fake.push(Reply::Text("Hello!".into()));
    fake.push(Reply::Text("Greeting".into()));
    let second = r
        .call(
            &app,
            &token,
            json!({"type": "threads.create", "params": {"input": message("Hi")}}),
            "stream",
        )
        .await;
    let second_id = second[0]["thread"]["id"].as_str().unwrap().to_string();
    let user_item = second[1]["item"]["id"].clone();
    fake.push(Reply::ToolCalls(vec![("get_time".into(), "{}".into())]));
    r.call(&app, &token, json!({"type": "threads.retry_after_item", "params": {"thread_id": second_id, "item_id": user_item}}), "stream")
        .await;
    r.call(
        &app,
        &token,
        json!({"type": "threads.delete", "params": {"thread_id": second_id}}),
        "empty",
    )
    .await;

    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    // The SQLite and PostgreSQL variants run at once in one process: a file each.
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let file = dir.join(format!(
        "chatkit-conformance-{}-{unique}.jsonl",
        std::process::id()
    ));
    let text: String = r.lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/chatkit-conformance.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ChatKit conformance failed:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(" documents checked, 0 problems"),
        "{report}"
    );
    let _ = std::fs::remove_file(file);
}
