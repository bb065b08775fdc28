//! Running workflows, continued: agent tools (client tools that pause, server tools, the
//! loop limit), widgets, parallel branches, nested workflows, live text deltas,
//! cancellation in the middle of a model call, one unfinished run per thread, and
//! bounded step records.

use std::time::Duration;

use axum::{
    body::Body,
    http::{Request, StatusCode, header},
};
use serde_json::{Value, json};
use test_support::{TestApp, TestBackend, backend_tests, fake_llm::Reply};

use crate::runs::{fake_default_model, publish, start, texts};

backend_tests!(
    client_tools_pause_the_agent_across_a_restart,
    server_tools_loop_until_the_limit,
    widgets_wait_for_an_action,
    widget_library_validates_definitions,
    parallel_branches_run_and_merge,
    nested_workflows_run_inline_and_refuse_cycles,
    text_deltas_stream_live,
    cancelling_stops_a_model_call,
    a_thread_has_one_unfinished_run,
    step_records_are_bounded,
    auto_start_model_choice_and_simulated_streaming,
    responses_api_tool_rounds_chain_and_fall_back,
    a_run_past_its_time_limit_fails,
);

async fn a_run_past_its_time_limit_fails(backend: TestBackend) {
    let app = TestApp::with_config(backend, |config| config.engine.max_run_seconds = 1).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    fake.push(Reply::Slow(
        Duration::from_millis(1_300),
        Box::new(Reply::Text("late".into())),
    ));
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("hi")).await;
    assert_eq!(run.body["status"], "failed", "{}", run.text);
    assert_eq!(run.body["error"]["code"], "time_limit");
    assert_eq!(
        run.body["error"]["node"], "end",
        "the step after the slow one is refused"
    );
}

fn linear(nodes: Vec<Value>) -> Value {
    let mut all = vec![json!({"slug": "start", "kind": "start"})];
    all.extend(nodes);
    all.push(json!({"slug": "end", "kind": "end"}));
    let edges: Vec<Value> = all
        .windows(2)
        .map(|pair| json!({"source": pair[0]["slug"], "target": pair[1]["slug"]}))
        .collect();
    json!({"nodes": all, "edges": edges})
}

async fn client_tools_pause_the_agent_across_a_restart(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    fake.push(Reply::ToolCalls(vec![(
        "get_location".into(),
        r#"{"precise": true}"#.into(),
    )]));
    fake.push(Reply::Text("You are in Lyon.".into()));
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {
            "instructions": "Help.",
            "tools": [{"type": "client_tool", "name": "get_location", "description": "Where the user is",
                       "parameters": {"type": "object", "properties": {"precise": {"type": "boolean"}}}}]
        }}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Where am I?")).await;
    assert_eq!(run.body["status"], "waiting", "{}", run.text);
    assert_eq!(run.body["wait"]["kind"], "client_tool_output");
    assert_eq!(run.body["wait"]["data"]["name"], "get_location");
    assert_eq!(run.body["wait"]["data"]["arguments"]["precise"], true);
    let run_id = run.body["id"].as_str().unwrap().to_string();

    // Another server (a restart, or another replica) takes the tool's result.
    let replica = app.restart().await.router();
    let resume = Request::post(format!("/api/runs/{run_id}/resume"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"client_tool_output": {"city": "Lyon"}}).to_string(),
        ))
        .unwrap();
    let done = test_support::send_to(&replica, resume).await;
    assert_eq!(done.body["status"], "completed", "{}", done.text);
    assert_eq!(
        texts(&done.body).last().unwrap(),
        "assistant: You are in Lyon."
    );
    // The second model call carried the call and its result.
    let second = &fake.requests()[1].body;
    let messages = second["messages"].as_array().unwrap();
    let tool = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(tool["content"], r#"{"city":"Lyon"}"#);
    assert!(
        messages
            .iter()
            .any(|m| m["tool_calls"][0]["function"]["name"] == "get_location")
    );
    assert_eq!(second["tools"][0]["function"]["name"], "get_location");
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
    for kind in [
        "tool_call.started",
        "tool_call.output",
        "tool_call.finished",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    // A wrong answer kind is refused.
    fake.push(Reply::ToolCalls(vec![("get_location".into(), "{}".into())]));
    let other = start(&app, &token, id, json!("again?")).await;
    let refused = app
        .post(
            &format!("/api/runs/{}/resume", other.body["id"].as_str().unwrap()),
            Some(&token),
            json!({"user_message": "hello"}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
}

async fn server_tools_loop_until_the_limit(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    // A server tool: the model checks a graph, reads the problems, then answers.
    fake.push(Reply::ToolCalls(vec![(
        "validate_workflow_graph".into(),
        r#"{"graph": {"nodes": [{"slug": "a", "kind": "start"}, {"slug": "a", "kind": "end"}], "edges": []}}"#.into(),
    )]));
    fake.push(Reply::Text("The graph repeats the slug `a`.".into()));
    let tools = json!([{"type": "function", "function": {"name": "validate_workflow_graph"}}, {"type": "web_search"}]);
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {"tools": tools}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Check my graph")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    let result = fake.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    let result: Value = serde_json::from_str(&result).unwrap();
    assert_eq!(result["valid"], false);
    assert!(
        result["problems"].to_string().contains("duplicate_slug"),
        "{result}"
    );
    // The hosted tool this version cannot run is reported, not silently dropped.
    let events = app
        .get(
            &format!("/api/runs/{}/events", run.body["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    assert!(events.body.to_string().contains("web_search"));

    // A model that never stops calling tools hits the loop limit.
    for _ in 0..3 {
        fake.push(Reply::ToolCalls(vec![(
            "validate_workflow_graph".into(),
            r#"{"graph": {}}"#.into(),
        )]));
    }
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {
        "tools": tools, "model_settings": {"max_tool_rounds": 2}}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Loop")).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["error"]["code"], "tool_loop_limit");
    assert_eq!(run.body["error"]["node"], "agent");
}

async fn widgets_wait_for_an_action(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let card = json!({"type": "Card", "children": [
        {"type": "Title", "id": "title", "value": ""},
        {"type": "Button", "label": "Buy", "onClickAction": {"type": "buy", "payload": {"sku": 7}}},
        {"type": "Button", "label": "No", "onClickAction": {"type": "skip"}}
    ]});
    let created = app
        .post(
            "/api/widgets",
            Some(&token),
            json!({"slug": "offer", "title": "Offer", "definition": card}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "offer", "kind": "widget", "parameters": {"widget": {"source": "library", "slug": "offer",
                "variables": {"title": "'Offer for ' + input.input_as_text"}}}},
            {"slug": "bought", "kind": "end", "parameters": {"message": "Bought {{ input.action.payload.sku }}"}},
            {"slug": "skipped", "kind": "end", "parameters": {"message": "Maybe later"}}
        ],
        "edges": [
            {"source": "start", "target": "offer"},
            {"source": "offer", "target": "bought", "condition": "buy"},
            {"source": "offer", "target": "skipped"}
        ]
    });
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Ada")).await;
    assert_eq!(run.body["wait"]["kind"], "widget_action", "{}", run.text);
    assert_eq!(
        run.body["wait"]["data"]["widget"]["children"][0]["value"],
        "Offer for Ada"
    );
    let run_id = run.body["id"].as_str().unwrap();
    // The widget's wait survives a restart: a new server takes the action.
    let replica = app.restart().await.router();
    let bad = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&token),
            json!({"widget_action": {"payload": {}}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Only actions the widget offers are taken.
    let foreign = app
        .post(
            &format!("/api/runs/{run_id}/resume"),
            Some(&token),
            json!({"widget_action": {"type": "error"}}),
        )
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        foreign.text
    );
    assert!(
        foreign.body["message"]
            .as_str()
            .unwrap()
            .contains("buy, skip")
    );
    let action = Request::post(format!("/api/runs/{run_id}/resume"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"widget_action": {"type": "buy", "payload": {"sku": 7}}}).to_string(),
        ))
        .unwrap();
    let done = test_support::send_to(&replica, action).await;
    assert_eq!(done.body["status"], "completed", "{}", done.text);
    assert_eq!(texts(&done.body).last().unwrap(), "assistant: Bought 7");
    // An action without its own edge takes the default one.
    let run = start(&app, &token, id, json!("Bob")).await;
    let done = app
        .post(
            &format!("/api/runs/{}/resume", run.body["id"].as_str().unwrap()),
            Some(&token),
            json!({"widget_action": {"type": "skip"}}),
        )
        .await;
    assert_eq!(texts(&done.body).last().unwrap(), "assistant: Maybe later");

    // Inline definitions, filled from a structured output, and not waiting.
    let graph = linear(vec![
        json!({"slug": "data", "kind": "transform", "parameters": {"expressions": {"output_parsed": {"title": "From data"}}}}),
        json!({"slug": "show", "kind": "widget", "parameters": {"widget": {"source": "inline", "await_action": false,
            "definition": {"type": "Card", "children": [{"type": "Text", "id": "title", "value": ""}]}}}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(
        run.body["output"]["widget"]["children"][0]["value"],
        "From data"
    );

    // A missing library widget fails the step by name.
    let graph = linear(vec![
        json!({"slug": "w", "kind": "widget", "parameters": {"widget": "nope"}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["error"]["code"], "widget_not_found");
}

async fn widget_library_validates_definitions(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let bad = app
        .post(
            "/api/widgets",
            Some(&token),
            json!({"slug": "bad", "definition": {"type": "Card", "children": [{"type": "Text"}, {"type": "Select", "name": "s", "options": [{"value": 1}]}]}}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
    assert_eq!(bad.code(), "invalid_widget");
    let fields: Vec<&str> = bad.body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["children[0].value", "children[1].options[0]"]);

    let card = json!({"type": "Card", "children": [{"type": "Text", "id": "t", "value": "x"}]});
    let ok = app
        .post(
            "/api/widgets",
            Some(&token),
            json!({"slug": "card", "definition": card}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let again = app
        .post(
            "/api/widgets",
            Some(&token),
            json!({"slug": "card", "definition": card}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let patched = app
        .patch(
            "/api/widgets/card",
            Some(&token),
            json!({"title": "A card"}),
        )
        .await;
    assert_eq!(patched.body["title"], "A card");
    let preview = app
        .post(
            "/api/widgets/preview",
            Some(&token),
            json!({"definition": card, "data": {"t": "filled"}}),
        )
        .await;
    assert_eq!(preview.body["definition"]["children"][0]["value"], "filled");

    // Users list them for the builder but cannot change them.
    let (_, user) = app
        .create_user("w@example.com", "password-123", false)
        .await;
    let listed = app.get("/api/workflow-widgets", Some(&user)).await;
    assert_eq!(listed.body[0]["slug"], "card");
    assert!(listed.body[0].get("definition").is_none());
    let refused = app.get("/api/widgets", Some(&user)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.delete("/api/widgets/card", Some(&token)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.get("/api/widgets/card", Some(&token)).await.status,
        StatusCode::NOT_FOUND
    );
}

async fn parallel_branches_run_and_merge(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    // Both branches call the model; the slow one must not hold the other back.
    fake.push(Reply::Slow(
        Duration::from_millis(300),
        Box::new(Reply::Text("left answer".into())),
    ));
    fake.push(Reply::Slow(
        Duration::from_millis(300),
        Box::new(Reply::Text("right answer".into())),
    ));
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "join", "branches": [{"slug": "l", "label": "Left"}, "r"]}},
            {"slug": "left", "kind": "state", "parameters": {"state": [{"target": "state.shared", "expression": "'left'"}, {"target": "state.l", "expression": "1"}]}},
            {"slug": "left_agent", "kind": "agent", "parameters": {"instructions": "Left."}},
            {"slug": "right", "kind": "state", "parameters": {"state": [{"target": "state.shared", "expression": "'right'"}, {"target": "state.r", "expression": "2"}]}},
            {"slug": "right_agent", "kind": "agent", "parameters": {"instructions": "Right."}},
            {"slug": "join", "kind": "parallel_join"},
            {"slug": "end", "kind": "end", "parameters": {"output": "input.output"}}
        ],
        "edges": [
            {"source": "start", "target": "split"},
            {"source": "split", "target": "left"},
            {"source": "split", "target": "right"},
            {"source": "left", "target": "left_agent"},
            {"source": "left_agent", "target": "join"},
            {"source": "right", "target": "right_agent"},
            {"source": "right_agent", "target": "join"},
            {"source": "join", "target": "end"}
        ]
    });
    let id = publish(&app, &token, graph).await;
    let began = std::time::Instant::now();
    let run = start(&app, &token, id, json!("go")).await;
    let elapsed = began.elapsed();
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert!(
        elapsed < Duration::from_millis(590),
        "branches ran one after the other: {elapsed:?}"
    );
    let output = &run.body["output"];
    let answers = [
        output["l"]["output_text"].as_str().unwrap(),
        output["r"]["output_text"].as_str().unwrap(),
    ];
    assert!(
        answers.contains(&"left answer") && answers.contains(&"right answer"),
        "{output}"
    );
    // Both branches' state arrives; on a clash the later edge wins.
    assert_eq!(run.body["state"]["l"], 1);
    assert_eq!(run.body["state"]["r"], 2);
    assert_eq!(run.body["state"]["shared"], "right");
    let steps = app
        .get(
            &format!("/api/runs/{}/steps", run.body["id"].as_str().unwrap()),
            Some(&token),
        )
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
        vec![
            "start",
            "split",
            "left",
            "left_agent",
            "right",
            "right_agent",
            "join",
            "end"
        ]
    );
    let seqs: Vec<i64> = steps
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());

    // A branch that fails fails the split with the branch's node and reason.
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "join", "branches": ["first", "second"]}},
            {"slug": "a", "kind": "state", "parameters": {"state": [{"target": "state.x", "expression": "1 / 0"}]}},
            {"slug": "b", "kind": "wait_for_user_input"},
            {"slug": "join", "kind": "parallel_join"},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [
            {"source": "start", "target": "split"}, {"source": "split", "target": "a"}, {"source": "split", "target": "b"},
            {"source": "a", "target": "join"}, {"source": "b", "target": "join"}, {"source": "join", "target": "end"}
        ]
    });
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!({})).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["error"]["node"], "split");
    assert_eq!(run.body["error"]["code"], "branch_failed", "{}", run.text);
    assert!(
        run.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`a`")
    );
}

async fn nested_workflows_run_inline_and_refuse_cycles(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let child = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"slug": "child", "display_name": "Child", "publish": true, "graph": linear(vec![
                json!({"slug": "say", "kind": "assistant_message", "parameters": {"message": "Child got {{ input.input_as_text }}"}}),
            ])}),
        )
        .await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.text);
    let parent_graph = linear(vec![
        json!({"slug": "sub", "kind": "agent", "parameters": {"workflow": {"slug": "child"}}}),
    ]);
    let parent = app
        .post(
            "/api/workflows",
            Some(&token),
            json!({"slug": "parent", "display_name": "Parent", "publish": true, "graph": parent_graph}),
        )
        .await;
    assert_eq!(parent.status, StatusCode::CREATED, "{}", parent.text);
    let parent_id = parent.body["workflow"]["id"].as_i64().unwrap();
    let run = start(&app, &token, parent_id, json!("cake")).await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(
        texts(&run.body).last().unwrap(),
        "assistant: Child got cake"
    );
    let steps = app
        .get(
            &format!("/api/runs/{}/steps", run.body["id"].as_str().unwrap()),
            Some(&token),
        )
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
        vec![
            "start",
            "sub",
            "child/start",
            "child/say",
            "child/end",
            "end"
        ]
    );

    // The child now calls the parent: the cycle is refused by name, not run forever.
    let child_id = child.body["workflow"]["id"].as_i64().unwrap();
    let looped = linear(vec![
        json!({"slug": "back", "kind": "agent", "parameters": {"workflow": {"slug": "parent"}}}),
    ]);
    let version = app
        .post(
            &format!("/api/workflows/{child_id}/versions"),
            Some(&token),
            json!({"graph": looped}),
        )
        .await;
    assert_eq!(version.status, StatusCode::CREATED, "{}", version.text);
    let published = app
        .post(
            &format!("/api/workflows/{child_id}/production"),
            Some(&token),
            json!({"version_id": version.body["version"]["id"]}),
        )
        .await;
    assert!(published.status.is_success(), "{}", published.text);
    let run = start(&app, &token, parent_id, json!("cake")).await;
    assert_eq!(run.body["status"], "failed");
    assert_eq!(run.body["error"]["code"], "nested_workflow_failed");
    assert!(
        run.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already running"),
        "{}",
        run.text
    );
}

/// Server-sent events, with or without `id:` (live deltas have none).
fn sse_frames(text: &str) -> Vec<(Option<i64>, Value)> {
    text.split("\n\n")
        .filter(|frame| frame.contains("data:"))
        .map(|frame| {
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            (
                field("id:").map(|id| id.parse().unwrap()),
                serde_json::from_str(&field("data:").unwrap()).unwrap(),
            )
        })
        .collect()
}

async fn text_deltas_stream_live(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    fake.push(Reply::Slow(
        Duration::from_millis(200),
        Box::new(Reply::Text("Hello there, how are you today?".into())),
    ));
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let request = Request::post(format!("/api/workflows/{id}/runs"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"input": "hi", "stream": true}).to_string(),
        ))
        .unwrap();
    let streamed = app.send(request).await;
    let frames = sse_frames(&streamed.text);
    let deltas: Vec<&str> = frames
        .iter()
        .filter(|(id, e)| id.is_none() && e["type"] == "assistant.delta")
        .map(|(_, e)| e["data"]["delta"].as_str().unwrap())
        .collect();
    assert!(deltas.len() > 1, "{}", streamed.text);
    assert_eq!(deltas.concat(), "Hello there, how are you today?");
    // Saved events keep their order and numbering around the deltas.
    let ids: Vec<i64> = frames.iter().filter_map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "{}",
        streamed.text
    );
    let message_at = frames
        .iter()
        .position(|(_, e)| e["type"] == "assistant_message")
        .unwrap();
    let last_delta = frames
        .iter()
        .rposition(|(_, e)| e["type"] == "assistant.delta")
        .unwrap();
    assert!(last_delta < message_at);
    assert_eq!(frames.last().unwrap().1["type"], "run.completed");
    // The saved log has the whole message and no deltas.
    let run_id = app.get("/api/runs", Some(&token)).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let log = app
        .get(&format!("/api/runs/{run_id}/events"), Some(&token))
        .await;
    assert!(!log.text.contains("assistant.delta"));
}

async fn cancelling_stops_a_model_call(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    fake.push(Reply::Hang);
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let app = std::sync::Arc::new(app);
    let starter = {
        let (app, token) = (app.clone(), token.clone());
        tokio::spawn(async move { start(&app, &token, id, json!("hi")).await })
    };
    // Wait until the model call is under way.
    let mut run_id = None;
    for _ in 0..100 {
        if !fake.requests().is_empty() {
            let listed = app.get("/api/runs", Some(&token)).await;
            run_id = listed.body[0]["id"].as_str().map(str::to_string);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run_id = run_id.expect("the model was called");
    let cancelled = app
        .post(
            &format!("/api/runs/{run_id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.body["status"], "cancelled", "{}", cancelled.text);
    // The start returns the cancelled run instead of hanging.
    let started = tokio::time::timeout(Duration::from_secs(10), starter)
        .await
        .expect("the start returns")
        .unwrap();
    assert_eq!(started.body["status"], "cancelled", "{}", started.text);
    for _ in 0..100 {
        if fake.disconnects() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fake.disconnects() > 0,
        "the HTTP request to the model was aborted"
    );
    let again = app
        .post(
            &format!("/api/runs/{run_id}/cancel"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

async fn a_thread_has_one_unfinished_run(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let graph = linear(vec![
        json!({"slug": "ask", "kind": "wait_for_user_input", "parameters": {"message": "Name?"}}),
    ]);
    let id = publish(&app, &token, graph).await;
    let body = json!({"input": "hi", "thread_id": "thread-1"});
    let first = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            body.clone(),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    assert_eq!(first.body["thread_id"], "thread-1");
    let second = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            body.clone(),
        )
        .await;
    assert_eq!(second.status, StatusCode::CONFLICT, "{}", second.text);
    assert_eq!(second.code(), "run_conflict");
    // Other threads are free.
    let other = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            json!({"thread_id": "thread-2"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
    // Once the first run finishes, the thread takes a new one.
    let done = app
        .post(
            &format!("/api/runs/{}/resume", first.body["id"].as_str().unwrap()),
            Some(&token),
            json!({"user_message": "Ada"}),
        )
        .await;
    assert_eq!(done.body["status"], "completed");
    let third = app
        .post(&format!("/api/workflows/{id}/runs"), Some(&token), body)
        .await;
    assert_eq!(third.status, StatusCode::CREATED, "{}", third.text);
}

async fn step_records_are_bounded(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let id = publish(&app, &token, linear(vec![])).await;
    // NUL characters (which PostgreSQL cannot store) are refused at the door.
    let nul = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            json!({"input": "a\u{0}b"}),
        )
        .await;
    assert_eq!(nul.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(nul.code(), "invalid_body");
    let big = "x".repeat(200_000);
    let run = start(&app, &token, id, json!(big)).await;
    assert_eq!(
        run.body["input"]["input_as_text"].as_str().unwrap().len(),
        200_000
    );
    let steps = app
        .get(
            &format!("/api/runs/{}/steps", run.body["id"].as_str().unwrap()),
            Some(&token),
        )
        .await;
    let input = &steps.body[0]["input"];
    assert_eq!(
        input["truncated"],
        true,
        "{}",
        &steps.text[..200.min(steps.text.len())]
    );
    assert!(input["bytes"].as_u64().unwrap() > 200_000);
    assert!(input["preview"].as_str().unwrap().len() <= 4096);
    assert_eq!(
        run.body["output"]["input_as_text"].as_str().unwrap().len(),
        200_000
    );
}

async fn auto_start_model_choice_and_simulated_streaming(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = fake_default_model(&app, &token, json!({})).await;
    // A second model the user may pick.
    let provider = app
        .get("/api/admin/model-providers", Some(&token))
        .await
        .body[0]["id"]
        .clone();
    let other = app
        .post(
            "/api/admin/models",
            Some(&token),
            json!({"provider_id": provider, "name": "fake-large"}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
    let graph = json!({
        "nodes": [
            {"slug": "start", "kind": "start", "parameters": {"auto_start": "yes", "auto_start_assistant_message": "Welcome!"}},
            {"slug": "say", "kind": "assistant_message", "parameters": {"message": "Streaming this sentence slowly.", "simulate_stream": true, "simulate_stream_delay_ms": 1}},
            {"slug": "agent", "kind": "agent", "parameters": {"model": "fake-gpt", "user_model_options": [{"id": "big", "model": "fake-large"}]}},
            {"slug": "end", "kind": "end"}
        ],
        "edges": [{"source": "start", "target": "say"}, {"source": "say", "target": "agent"}, {"source": "agent", "target": "end"}]
    });
    let id = publish(&app, &token, graph).await;
    fake.push(Reply::Text("ok".into()));
    let request = Request::post(format!("/api/workflows/{id}/runs"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"stream": true, "model": "big"}).to_string(),
        ))
        .unwrap();
    let streamed = app.send(request).await;
    let frames = sse_frames(&streamed.text);
    assert_eq!(
        frames.last().unwrap().1["type"],
        "run.completed",
        "{}",
        streamed.text
    );
    let simulated: String = frames
        .iter()
        .filter(|(_, e)| e["type"] == "assistant.delta" && e["node"] == "say")
        .map(|(_, e)| e["data"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(simulated, "Streaming this sentence slowly.");
    let started: Vec<&str> = frames
        .iter()
        .filter(|(id, e)| id.is_none() && e["type"] == "node.started")
        .map(|(_, e)| e["node"].as_str().unwrap())
        .collect();
    assert!(started.contains(&"agent"), "{started:?}");
    // The chosen option's model answered.
    assert_eq!(fake.requests()[0].body["model"], "fake-large");
    let run_id = app.get("/api/runs", Some(&token)).await.body[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let run = app.get(&format!("/api/runs/{run_id}"), Some(&token)).await;
    assert_eq!(texts(&run.body)[0], "assistant: Welcome!");

    // A model the agent does not offer is ignored, with a warning.
    fake.push(Reply::Text("ok".into()));
    let run = app
        .post(
            &format!("/api/workflows/{id}/runs"),
            Some(&token),
            json!({"model": "gpt-unknown"}),
        )
        .await;
    assert_eq!(run.body["status"], "completed", "{}", run.text);
    assert_eq!(fake.requests()[1].body["model"], "fake-gpt");
}

async fn responses_api_tool_rounds_chain_and_fall_back(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let fake = test_support::fake_llm::FakeLlm::start().await;
    // An OpenAI provider (the Responses API) with structured output.
    let provider = app
        .post(
            "/api/admin/model-providers",
            Some(&token),
            json!({"kind": "openai", "label": "OpenAI", "api_base": fake.base_url, "api_key": "sk-test-123"}),
        )
        .await;
    assert_eq!(provider.status, StatusCode::CREATED, "{}", provider.text);
    let model = app
        .post(
            "/api/admin/models",
            Some(&token),
            json!({"provider_id": provider.body["id"], "name": "gpt-test", "is_default": true,
                   "supports_structured_output": true, "supports_tools": true}),
        )
        .await;
    assert_eq!(model.status, StatusCode::CREATED, "{}", model.text);
    fake.push(Reply::ToolCalls(vec![(
        "validate_workflow_graph".into(),
        r#"{"graph": {"nodes": [], "edges": []}}"#.into(),
    )]));
    // The provider forgot the first answer: the call is replayed with the whole history.
    fake.push(Reply::StalePreviousResponse);
    fake.push(Reply::Text(r#"{"verdict": "empty"}"#.into()));
    let graph = linear(vec![
        json!({"slug": "agent", "kind": "agent", "parameters": {
            "tools": [{"type": "function", "function": {"name": "validate_workflow_graph"}}],
            "response_format": {"type": "json_schema", "name": "verdict",
                "schema": {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}}
        }}),
    ]);
    let id = publish(&app, &token, graph).await;
    let run = start(&app, &token, id, json!("Check an empty graph")).await;
    assert_eq!(
        run.body["status"],
        "completed",
        "{}\n{:#?}",
        run.text,
        fake.requests()
            .iter()
            .map(|r| (&r.path, &r.body))
            .collect::<Vec<_>>()
    );
    assert_eq!(run.body["output"]["output_parsed"]["verdict"], "empty");
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.path == "/v1/responses"));
    // The second round continued from the first answer and sent only the tool's output.
    let chained = &requests[1].body;
    assert_eq!(chained["previous_response_id"], "resp_0");
    let input = chained["input"].as_array().unwrap();
    assert_eq!(input.len(), 1, "{chained}");
    assert_eq!(input[0]["type"], "function_call_output");
    // The replay carries the whole conversation, the call included.
    let replay = &requests[2].body;
    assert!(replay.get("previous_response_id").is_none());
    let kinds: Vec<&str> = replay["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap_or("message"))
        .collect();
    assert_eq!(
        kinds,
        vec!["message", "function_call", "function_call_output"]
    );
    assert_eq!(replay["text"]["format"]["type"], "json_schema");
}
