//! Every node kind, one step at a time: the step harness runs a node of a small graph by
//! itself (nothing saved, the model scripted in the test process) and the tests check its
//! output, where the run goes next, what it said and what it waits for.

use domain::{
    llm::{Completion, ToolCall},
    runs::{EventKind, HistoryEntry, Resume, RunStatus, Trial, Tried, WaitKind},
    workflows::nodes::Kind,
};
use serde_json::{Value, json};
use test_support::steps::StepHarness;

/// The kinds this file tests; a kind added to the registry must be tested here too.
const TESTED: &[&str] = &[
    "start",
    "end",
    "agent",
    "assistant_message",
    "user_message",
    "wait_for_user_input",
    "widget",
    "state",
    "transform",
    "condition",
    "while",
    "parallel_split",
    "parallel_join",
    "user_approval",
    "watch",
    "note",
    "file_search",
    "json_vector_store",
    "mcp",
];

#[test]
fn every_kind_in_the_registry_is_tested_here() {
    let registered: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(registered, TESTED);
}

/// A graph of `node` (with `params`) between a start and an end, with extra edges.
fn around(kind: &str, params: Value, extra: Value) -> Value {
    let mut nodes = vec![
        json!({"slug": "start", "kind": "start"}),
        json!({"slug": "step", "kind": kind, "parameters": params}),
        json!({"slug": "done", "kind": "end"}),
    ];
    let mut edges = vec![
        json!({"source": "start", "target": "step"}),
        json!({"source": "step", "target": "done"}),
    ];
    if let Some(more) = extra.get("nodes").and_then(Value::as_array) {
        nodes.extend(more.iter().cloned());
    }
    if let Some(more) = extra.get("edges").and_then(Value::as_array) {
        edges.extend(more.iter().cloned());
    }
    json!({"nodes": nodes, "edges": edges})
}

/// What the step said, as (role, text).
fn said(tried: &Tried) -> Vec<(&'static str, String)> {
    tried
        .events
        .iter()
        .filter_map(|e| {
            let role = match e.kind {
                EventKind::UserMessage => "user",
                EventKind::AssistantMessage => "assistant",
                _ => return None,
            };
            Some((
                role,
                e.data["text"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// Runs a node of `kind` between a start and an end.
async fn step(h: &StepHarness, kind: &str, params: Value, input: Value) -> Tried {
    h.run(around(kind, params, json!({})), "step", input).await
}

fn kinds(tried: &Tried) -> Vec<EventKind> {
    tried.events.iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn start_passes_the_input_on_and_auto_starts_an_empty_conversation() {
    let h = StepHarness::new().await;
    let graph = |params: Value| {
        json!({"nodes": [{"slug": "start", "kind": "start", "parameters": params}, {"slug": "done", "kind": "end"}],
               "edges": [{"source": "start", "target": "done"}]})
    };
    let tried = h
        .run(graph(json!({})), "start", json!({"input_as_text": "hi"}))
        .await;
    assert_eq!(
        (tried.status, tried.next.as_deref()),
        (RunStatus::Running, Some("done"))
    );
    assert_eq!(tried.output["input_as_text"], "hi");
    assert!(said(&tried).is_empty());

    let auto =
        json!({"auto_start": true, "auto_start_assistant_message": "Hello {{ user.email }}"});
    let tried = h.run(graph(auto.clone()), "start", json!({})).await;
    assert_eq!(
        said(&tried),
        [("assistant", "Hello author@example.com".to_string())]
    );
    // A user who wrote something is not greeted.
    let tried = h
        .run(graph(auto), "start", json!({"input_as_text": "hi"}))
        .await;
    assert!(said(&tried).is_empty());
}

#[tokio::test]
async fn end_says_its_message_and_completes_with_its_output_and_status() {
    let h = StepHarness::new().await;
    let graph = json!({"nodes": [{"slug": "start", "kind": "start"},
        {"slug": "done", "kind": "end", "parameters": {"message": "Bye {{ input.name }}", "output": "{'n': input.n + 1}", "status": {"type": "locked", "reason": "over"}}}],
        "edges": [{"source": "start", "target": "done"}]});
    let tried = h.run(graph, "done", json!({"name": "Ada", "n": 1})).await;
    assert_eq!(tried.status, RunStatus::Completed);
    assert_eq!(tried.next, None);
    assert_eq!(said(&tried), [("assistant", "Bye Ada".to_string())]);
    assert_eq!(tried.run_output, Some(json!({"n": 2})));
    let completed = tried
        .events
        .iter()
        .find(|e| e.kind == EventKind::RunCompleted)
        .unwrap();
    assert_eq!(
        completed.data["thread_status"],
        json!({"type": "locked", "reason": "over"})
    );
}

#[tokio::test]
async fn agent_calls_the_model_with_its_instructions_and_answers() {
    let h = StepHarness::new().await;
    h.llm.say("Paris.");
    let graph = around(
        "agent",
        json!({"instructions": "Answer {{ user.email }} in one word."}),
        json!({}),
    );
    let tried = h
        .run(
            graph,
            "step",
            json!({"input_as_text": "Capital of France?"}),
        )
        .await;
    assert_eq!(
        (tried.status, tried.next.as_deref()),
        (RunStatus::Running, Some("done"))
    );
    assert_eq!(tried.output["output_text"], "Paris.");
    assert_eq!(said(&tried), [("assistant", "Paris.".to_string())]);
    let request = format!("{:?}", h.llm.requests()[0]);
    assert!(
        request.contains("Answer author@example.com in one word."),
        "{request}"
    );
}

/// A conversation longer than the model's context budget: the agent is given the newest
/// messages that fit, whole, and the run says how many it left out.
#[tokio::test]
async fn agent_history_fits_the_models_context_budget() {
    let h = StepHarness::new().await;
    let admin = h.app.admin_token().await;
    let models = h.app.get("/api/admin/models", Some(&admin)).await;
    let id = models.body[0]["id"].as_i64().unwrap();
    let small = h
        .app
        .patch(
            &format!("/api/admin/models/{id}"),
            Some(&admin),
            json!({"context_window": 5000}),
        )
        .await;
    assert_eq!(small.status.as_u16(), 200, "{}", small.text);
    h.llm.say("Noted.");
    // Ten messages of about 1,000 tokens each; 5,000 tokens less the answer's room
    // (a quarter) leave room for three.
    let history: Vec<HistoryEntry> = (0..10)
        .map(|i| HistoryEntry {
            role: if i % 2 == 0 { "user" } else { "assistant" }.into(),
            text: format!("message {i} ") + &"x".repeat(4_000),
            attachments: Vec::new(),
        })
        .collect();
    let tried = h
        .trial(Trial {
            graph: serde_json::from_value(around(
                "agent",
                json!({"instructions": "Be brief."}),
                json!({}),
            ))
            .unwrap(),
            node: "step".into(),
            input: json!({"input_as_text": "message 9"}),
            history,
            ..Trial::default()
        })
        .await;
    assert_eq!(tried.status, RunStatus::Running, "{:?}", tried.failure);
    let sent = &h.llm.requests()[0].messages;
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(format!("{:?}", sent[0]).contains("message 7"));
    let warned = tried
        .events
        .iter()
        .find(|e| e.kind == EventKind::Warning)
        .map(|e| e.data["message"].to_string())
        .unwrap_or_default();
    assert!(
        warned.contains("its 7 oldest messages were left out"),
        "{warned}"
    );
}

/// The model's call of the client tool `locate`.
fn locate() -> Completion {
    Completion {
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "locate".into(),
            arguments: "{}".into(),
        }],
        finish_reason: Some("tool_calls".into()),
        ..Completion::default()
    }
}

#[tokio::test]
async fn an_agent_waits_for_a_client_tool_and_goes_on_with_its_result() {
    let h = StepHarness::new().await;
    h.llm.push(locate());
    let graph = around(
        "agent",
        json!({"instructions": "Help.", "tools": [{"type": "client", "name": "locate", "parameters": {"type": "object", "properties": {}}}]}),
        json!({}),
    );
    let asked = h
        .run(
            graph.clone(),
            "step",
            json!({"input_as_text": "Where am I?"}),
        )
        .await;
    assert_eq!(asked.status, RunStatus::Waiting);
    assert_eq!(
        asked.wait.as_ref().map(|w| w.kind),
        Some(WaitKind::ClientToolOutput)
    );
    h.llm.push(locate());
    h.llm.say("You are in Lyon.");
    let answered = h
        .answer(
            graph,
            "step",
            json!({"input_as_text": "Where am I?"}),
            Resume::ClientToolOutput(json!({"city": "Lyon"})),
        )
        .await;
    assert_eq!(
        (answered.status, answered.next.as_deref()),
        (RunStatus::Running, Some("done")),
        "{:?}",
        answered.failure
    );
    assert_eq!(answered.output["output_text"], "You are in Lyon.");
    assert!(kinds(&answered).contains(&EventKind::ToolCallOutput));
}

#[tokio::test]
async fn assistant_and_user_messages_are_said_from_templates() {
    let h = StepHarness::new().await;
    let tried = step(
        &h,
        "assistant_message",
        json!({"message": "Order {{ input.id }} ships."}),
        json!({"id": 7}),
    )
    .await;
    assert_eq!(said(&tried), [("assistant", "Order 7 ships.".to_string())]);
    assert_eq!(tried.output, json!({"id": 7}), "the input goes on");
    assert_eq!(tried.history.last().unwrap().text, "Order 7 ships.");

    let tried = step(
        &h,
        "user_message",
        json!({"text": "I want {{ input.id }}"}),
        json!({"id": 7}),
    )
    .await;
    assert_eq!(said(&tried), [("user", "I want 7".to_string())]);
}

#[tokio::test]
async fn wait_for_user_input_asks_and_takes_the_message_or_the_answers() {
    let h = StepHarness::new().await;
    let graph = around(
        "wait_for_user_input",
        json!({"message": "Your name?"}),
        json!({}),
    );
    let asked = h.run(graph.clone(), "step", json!({})).await;
    assert_eq!(asked.status, RunStatus::Waiting);
    assert_eq!(
        asked.wait.as_ref().map(|w| w.kind),
        Some(WaitKind::UserMessage)
    );
    assert_eq!(said(&asked), [("assistant", "Your name?".to_string())]);
    let answered = h
        .answer(
            graph.clone(),
            "step",
            json!({}),
            Resume::UserMessage("Ada".into()),
        )
        .await;
    assert_eq!(answered.next.as_deref(), Some("done"));
    assert_eq!(
        answered.output,
        json!({"input_as_text": "Ada", "user_message": "Ada"})
    );
    // An answer of another sort is refused.
    let refused = domain::runs::try_node(
        &h.services,
        &h.user,
        domain::runs::Trial {
            graph: serde_json::from_value(graph).unwrap(),
            node: "step".into(),
            answer: Some(Resume::Approval(true)),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("waits for user message"),
        "{refused}"
    );

    let questions = around(
        "wait_for_user_input",
        json!({"inputs": [{"id": "size", "question": "Size?", "options": ["S", "M"]}]}),
        json!({}),
    );
    let asked = h.run(questions.clone(), "step", json!({})).await;
    assert_eq!(
        asked.wait.as_ref().map(|w| w.kind),
        Some(WaitKind::StructuredInput)
    );
    let answered = h
        .answer(
            questions,
            "step",
            json!({}),
            Resume::StructuredInput(
                json!({"status": "answered", "answers": {"size": {"values": ["M"]}}}),
            ),
        )
        .await;
    assert_eq!(
        answered.output["values"]["size"], "M",
        "{}",
        answered.output
    );
    assert!(kinds(&answered).contains(&EventKind::StructuredInputAnswered));
}

#[tokio::test]
async fn a_widget_shows_its_definition_and_routes_the_action_taken() {
    let h = StepHarness::new().await;
    let definition = json!({"type": "Card", "children": [
        {"type": "Text", "value": "Title"},
        {"type": "Button", "label": "Buy", "onClickAction": {"type": "buy"}}]});
    let graph = around(
        "widget",
        json!({"widget": {"source": "inline", "definition": definition}}),
        json!({"nodes": [{"slug": "bought", "kind": "end"}],
               "edges": [{"source": "step", "target": "bought", "condition": "buy"}]}),
    );
    let shown = h.run(graph.clone(), "step", json!({})).await;
    assert_eq!(
        shown.wait.as_ref().map(|w| w.kind),
        Some(WaitKind::WidgetAction)
    );
    assert!(kinds(&shown).contains(&EventKind::Widget));
    let clicked = h
        .answer(
            graph.clone(),
            "step",
            json!({}),
            Resume::WidgetAction(json!({"type": "buy", "payload": {"sku": 1}})),
        )
        .await;
    assert_eq!(clicked.next.as_deref(), Some("bought"));
    assert_eq!(clicked.output["action"]["payload"]["sku"], 1);
    // An action the widget does not offer is refused.
    let refused = domain::runs::try_node(
        &h.services,
        &h.user,
        domain::runs::Trial {
            graph: serde_json::from_value(graph).unwrap(),
            node: "step".into(),
            answer: Some(Resume::WidgetAction(json!({"type": "steal"}))),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("offers no `steal`"),
        "{refused}"
    );
}

#[tokio::test]
async fn state_assigns_in_order_and_types_by_the_schema() {
    let h = StepHarness::new().await;
    let mut graph = around(
        "state",
        json!({"state": [{"target": "state.count", "expression": "input.n + 1"},
                         {"target": "state.twice", "expression": "state.count * 2"}]}),
        json!({}),
    );
    graph["state_schema"] = json!({"type": "object", "properties": {"count": {"type": "integer", "default": 0}, "twice": {"type": "integer"}}});
    let tried = h.run(graph, "step", json!({"n": 4})).await;
    assert_eq!(tried.state["count"], 5);
    assert_eq!(tried.state["twice"], 10);
    assert!(kinds(&tried).contains(&EventKind::StateUpdated));
}

#[tokio::test]
async fn transform_evaluates_its_expressions_into_the_output() {
    let h = StepHarness::new().await;
    let tried = step(&h, "transform", json!({"expressions": {"label": "Order {{ input.id }}", "double": "{{ input.id * 2 }}", "same": "input.id"}}), json!({"id": 21})).await;
    assert_eq!(
        tried.output,
        json!({"label": "Order 21", "double": 42, "same": 21})
    );
    assert_eq!(tried.next.as_deref(), Some("done"));
}

#[tokio::test]
async fn condition_follows_the_first_case_that_holds_else_the_fallback() {
    let h = StepHarness::new().await;
    let graph = around(
        "condition",
        json!({"cases": [{"label": "big", "predicate": "input.n > 10"}]}),
        json!({"nodes": [{"slug": "big", "kind": "end"}],
               "edges": [{"source": "step", "target": "big", "condition": "big"}]}),
    );
    let big = h.run(graph.clone(), "step", json!({"n": 11})).await;
    assert_eq!(big.next.as_deref(), Some("big"));
    assert_eq!(big.events[0].data["label"], "big");
    let small = h.run(graph, "step", json!({"n": 1})).await;
    assert_eq!(small.next.as_deref(), Some("done"), "the unlabelled edge");

    // The `contains` mode: a text holding the value (any case), a list with the item.
    let quits = around(
        "condition",
        json!({"path": "input.text", "mode": "contains", "value": "/quit"}),
        json!({"nodes": [{"slug": "bye", "kind": "end"}],
               "edges": [{"source": "step", "target": "bye", "condition": "true"}]}),
    );
    for (text, next) in [
        (json!("ok /QUIT now"), "bye"),
        (json!("go on"), "done"),
        (json!(["a", "/quit"]), "bye"),
    ] {
        let tried = h.run(quits.clone(), "step", json!({"text": text})).await;
        assert_eq!(tried.next.as_deref(), Some(next), "{text}");
    }
}

#[tokio::test]
async fn while_enters_its_body_until_the_condition_fails() {
    let h = StepHarness::new().await;
    let graph = json!({"nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "loop", "kind": "while", "parameters": {"condition": "input.go", "max_iterations": 3, "iteration_var": "turn"}},
            {"slug": "body", "kind": "transform", "parent_slug": "loop", "parameters": {"expressions": {"go": false}}},
            {"slug": "done", "kind": "end"}],
        "edges": [{"source": "start", "target": "loop"}, {"source": "loop", "target": "body"},
                  {"source": "loop", "target": "done", "condition": "exit"}]});
    let entered = h.run(graph.clone(), "loop", json!({"go": true})).await;
    assert_eq!(entered.next.as_deref(), Some("body"));
    assert_eq!(entered.state["turn"], 1);
    assert!(kinds(&entered).contains(&EventKind::LoopIteration));
    let left = h.run(graph, "loop", json!({"go": false})).await;
    assert_eq!(left.next.as_deref(), Some("done"));
}

#[tokio::test]
async fn a_split_runs_its_branches_and_the_join_gathers_their_outputs() {
    let h = StepHarness::new().await;
    let graph = json!({"nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "split", "kind": "parallel_split", "parameters": {"join_slug": "join", "branches": ["a", "b"]}},
            {"slug": "left", "kind": "transform", "parameters": {"expressions": {"side": "left"}}},
            {"slug": "right", "kind": "transform", "parameters": {"expressions": {"side": "right"}}},
            {"slug": "join", "kind": "parallel_join"},
            {"slug": "done", "kind": "end"}],
        "edges": [{"source": "start", "target": "split"}, {"source": "split", "target": "left"},
                  {"source": "split", "target": "right"}, {"source": "left", "target": "join"},
                  {"source": "right", "target": "join"}, {"source": "join", "target": "done"}]});
    let split = h.run(graph, "split", json!({})).await;
    assert_eq!(
        (split.status, split.next.as_deref()),
        (RunStatus::Running, Some("join")),
        "{:?}",
        split.failure
    );
    let text = split.output.to_string();
    assert!(text.contains("left") && text.contains("right"), "{text}");
    let stepped: Vec<&str> = split.steps.iter().map(|s| s.node.as_str()).collect();
    assert!(stepped.iter().any(|s| s.ends_with("left")), "{stepped:?}");
}

#[tokio::test]
async fn parallel_join_publishes_what_the_split_left() {
    let h = StepHarness::new().await;
    let graph = json!({"nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "join", "kind": "parallel_join"},
            {"slug": "done", "kind": "end"}],
        "edges": [{"source": "start", "target": "join"}, {"source": "join", "target": "done"}]});
    // Reached without its split (a path around it), the join passes its input on.
    let tried = h.run(graph, "join", json!({"x": 1})).await;
    assert_eq!(tried.next.as_deref(), Some("done"));
    assert_eq!(tried.output, json!({"x": 1}));
}

#[tokio::test]
async fn user_approval_waits_and_follows_approve_or_reject() {
    let h = StepHarness::new().await;
    let graph = json!({"nodes": [
            {"slug": "start", "kind": "start"},
            {"slug": "ask", "kind": "user_approval", "parameters": {"message": "Refund {{ input.amount }}?"}},
            {"slug": "yes", "kind": "end"}, {"slug": "no", "kind": "end"}],
        "edges": [{"source": "start", "target": "ask"},
                  {"source": "ask", "target": "yes", "condition": "approve"},
                  {"source": "ask", "target": "no", "condition": "reject"}]});
    let asked = h.run(graph.clone(), "ask", json!({"amount": 5})).await;
    let wait = asked.wait.unwrap();
    assert_eq!(
        (wait.kind, wait.prompt.as_deref()),
        (WaitKind::Approval, Some("Refund 5?"))
    );
    let approved = h
        .answer(
            graph.clone(),
            "ask",
            json!({"amount": 5}),
            Resume::Approval(true),
        )
        .await;
    assert_eq!(approved.next.as_deref(), Some("yes"));
    assert_eq!(approved.output, json!({"approved": true}));
    let rejected = h
        .answer(graph, "ask", json!({"amount": 5}), Resume::Approval(false))
        .await;
    assert_eq!(rejected.next.as_deref(), Some("no"));
}

#[tokio::test]
async fn watch_shows_its_input_and_a_note_passes_it_on() {
    let h = StepHarness::new().await;
    let watched = step(&h, "watch", json!({}), json!({"a": 1})).await;
    let text = &said(&watched)[0].1;
    assert!(
        text.starts_with("```json") && text.contains("\"a\": 1"),
        "{text}"
    );
    let noted = step(&h, "note", json!({"text": "why"}), json!({"a": 1})).await;
    assert_eq!(
        (noted.output.clone(), noted.next.as_deref()),
        (json!({"a": 1}), Some("done"))
    );
    assert!(said(&noted).is_empty());
}

/// The failure a step ended the run with.
fn failed(tried: &Tried) -> (String, String) {
    assert_eq!(tried.status, RunStatus::Failed, "{:?}", tried.output);
    let failure = tried.failure.clone().unwrap();
    (failure.code, failure.message)
}

#[tokio::test]
async fn knowledge_steps_search_and_ingest_only_for_an_administrators_workflow() {
    let h = StepHarness::new().await;
    let search = around(
        "file_search",
        json!({"vector_store_slug": "missing", "query": "{{ input.q }}"}),
        json!({}),
    );
    // The author is not an administrator: their workflows use no knowledge base.
    let refused = h.run(search.clone(), "step", json!({"q": "refunds"})).await;
    assert_eq!(failed(&refused).0, "forbidden");
    // An administrator's workflow reaches the stores, and one that is not there is named.
    let searched = h
        .run_as_admin(search, "step", json!({"q": "refunds"}))
        .await;
    let (code, message) = failed(&searched);
    assert!(message.contains("missing"), "{code}: {message}");
    let empty = h
        .run_as_admin(
            around(
                "file_search",
                json!({"vector_store_slug": "missing"}),
                json!({}),
            ),
            "step",
            json!({}),
        )
        .await;
    assert_eq!(failed(&empty).0, "empty_query");

    let ingest = around(
        "json_vector_store",
        json!({"vector_store_slug": "missing", "document_expression": "input"}),
        json!({}),
    );
    let refused = h
        .run(ingest.clone(), "step", json!({"title": "Refunds"}))
        .await;
    assert_eq!(failed(&refused).0, "forbidden");
    let ingested = h
        .run_as_admin(ingest, "step", json!({"title": "Refunds"}))
        .await;
    let (code, message) = failed(&ingested);
    assert!(message.contains("missing"), "{code}: {message}");
}

#[tokio::test]
async fn an_mcp_step_names_what_it_misses() {
    let h = StepHarness::new().await;
    let tried = step(&h, "mcp", json!({"tool": "echo"}), json!({})).await;
    let (code, message) = failed(&tried);
    assert_eq!(code, "invalid_parameters", "{message}");
    assert!(message.contains("server_id"), "{message}");
    let tried = step(
        &h,
        "mcp",
        json!({"server_id": 999, "tool": "echo"}),
        json!({}),
    )
    .await;
    let (_, message) = failed(&tried);
    assert!(
        message.contains("999") || message.contains("server"),
        "{message}"
    );
}
