//! The HTTP model client against the fake OpenAI-compatible server: both API styles,
//! tools, structured output, retries, timeouts, faults and cancellation.

use std::{
    collections::BTreeMap,
    future::poll_fn,
    time::{Duration, Instant},
};

use chrono::Utc;
use domain::{
    llm::{
        self, ChatRequest, ContentPart, EventStream, JsonSchemaFormat, LlmClient, LlmError,
        Message, Role, StreamEvent, TimeoutStage, ToolSpec,
    },
    models::{ApiStyle, Provider, ProviderCredentials, ProviderKind, Timeouts},
};
use providers::HttpLlm;
use serde_json::json;
use test_support::fake_llm::{FakeLlm, Reply};

const STYLES: [(ProviderKind, ApiStyle); 2] = [
    (ProviderKind::OpenAi, ApiStyle::Responses),
    (ProviderKind::OpenAiCompatible, ApiStyle::ChatCompletions),
];

fn provider(
    fake: &FakeLlm,
    kind: ProviderKind,
    style: ApiStyle,
    key: Option<&str>,
) -> ProviderCredentials {
    ProviderCredentials {
        provider: Provider {
            id: 1,
            kind,
            label: "fake".into(),
            api_base: fake.base_url.clone(),
            api_style: style,
            api_key_encrypted: None,
            api_key_hint: None,
            extra_headers_encrypted: None,
            extra_header_names: Vec::new(),
            timeouts: Timeouts {
                connect_secs: 2,
                first_token_secs: 5,
                idle_secs: 5,
                request_secs: 5,
            },
            max_retries: 2,
            is_default: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        },
        api_key: key.map(str::to_string),
        extra_headers: BTreeMap::from([("X-Tenant".to_string(), "tenant-secret-9".to_string())]),
    }
}

fn ask(text: &str) -> ChatRequest {
    ChatRequest {
        model: "fake-gpt".into(),
        instructions: Some("Be brief.".into()),
        messages: vec![Message::text(Role::User, text)],
        ..ChatRequest::default()
    }
}

async fn events(mut stream: EventStream) -> Vec<Result<StreamEvent, LlmError>> {
    let mut out = Vec::new();
    while let Some(event) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
        out.push(event);
    }
    out
}

#[tokio::test]
async fn text_streams_with_usage_in_both_styles() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::with_key("sk-good-key-1234").await;
        let p = provider(&fake, kind, style, Some("sk-good-key-1234"));
        fake.push(Reply::Text("Hello there, traveller!".into()));
        let got = events(HttpLlm::new().stream(&p, &ask("hi")).await.unwrap()).await;
        let deltas: String = got
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta(d)) => Some(d.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(deltas, "Hello there, traveller!", "{style:?}");
        let Some(Ok(StreamEvent::Completed(done))) = got.last() else {
            panic!("{style:?}: {got:?}")
        };
        assert_eq!(done.text, "Hello there, traveller!");
        assert!(
            done.usage.input_tokens > 0 && done.usage.output_tokens == 6,
            "{:?}",
            done.usage
        );
        assert_eq!(done.usage.cached_input_tokens, done.usage.input_tokens / 2);
        let request = &fake.requests()[0];
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer sk-good-key-1234")
        );
        assert_eq!(request.body["model"], "fake-gpt");
        assert_eq!(request.body["stream"], true);
        match style {
            ApiStyle::Responses => {
                assert_eq!(request.path, "/v1/responses");
                assert_eq!(request.body["instructions"], "Be brief.");
                assert_eq!(
                    request.body["input"][0]["content"][0],
                    json!({"type": "input_text", "text": "hi"})
                );
                assert!(
                    done.response_id
                        .as_deref()
                        .is_some_and(|id| id.starts_with("resp_"))
                );
            }
            ApiStyle::ChatCompletions => {
                assert_eq!(request.path, "/v1/chat/completions");
                assert_eq!(
                    request.body["messages"][0],
                    json!({"role": "system", "content": "Be brief."})
                );
                assert_eq!(
                    request.body["messages"][1],
                    json!({"role": "user", "content": "hi"})
                );
            }
        }
    }
}

#[tokio::test]
async fn tool_calls_stream_with_arguments() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::start().await;
        let p = provider(&fake, kind, style, None);
        fake.push(Reply::ToolCalls(vec![
            ("search".into(), r#"{"q": "rust"}"#.into()),
            ("lookup".into(), r#"{"id": 7}"#.into()),
        ]));
        let mut request = ask("find rust");
        request.tools = vec![ToolSpec {
            name: "search".into(),
            description: Some("Search".into()),
            parameters: json!({"type": "object"}),
            strict: true,
        }];
        request.parallel_tool_calls = Some(true);
        let got = events(HttpLlm::new().stream(&p, &request).await.unwrap()).await;
        let started: Vec<(usize, String)> = got
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::ToolCallStarted { index, name, .. }) => {
                    Some((*index, name.clone()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            started,
            [(0, "search".to_string()), (1, "lookup".to_string())],
            "{style:?}"
        );
        let Some(Ok(StreamEvent::Completed(done))) = got.last() else {
            panic!("{got:?}")
        };
        assert_eq!(done.tool_calls.len(), 2);
        assert_eq!(
            (
                done.tool_calls[0].id.as_str(),
                done.tool_calls[0].arguments.as_str()
            ),
            ("call_0", r#"{"q": "rust"}"#)
        );
        assert_eq!(done.tool_calls[1].arguments, r#"{"id": 7}"#);
        let body = &fake.requests()[0].body;
        assert_eq!(body["parallel_tool_calls"], true);
        match style {
            ApiStyle::Responses => assert_eq!(body["tools"][0]["name"], "search"),
            ApiStyle::ChatCompletions => assert_eq!(body["tools"][0]["function"]["name"], "search"),
        }

        // A turn that answers the calls sends them back in each API's shape.
        let mut follow = ask("find rust");
        follow.messages.push(Message {
            role: Role::Assistant,
            content: Vec::new(),
            tool_calls: done.tool_calls.clone(),
            tool_call_id: None,
        });
        follow
            .messages
            .push(Message::tool_result("call_0", "3 results"));
        llm::complete(&HttpLlm::new(), &p, &follow).await.unwrap();
        let body = &fake.requests()[1].body;
        match style {
            ApiStyle::Responses => {
                assert_eq!(
                    body["input"][1],
                    json!({"type": "function_call", "call_id": "call_0", "name": "search", "arguments": "{\"q\": \"rust\"}"})
                );
                assert_eq!(
                    body["input"][3],
                    json!({"type": "function_call_output", "call_id": "call_0", "output": "3 results"})
                );
            }
            ApiStyle::ChatCompletions => {
                assert_eq!(
                    body["messages"][2]["tool_calls"][0]["function"]["name"],
                    "search"
                );
                assert_eq!(body["messages"][2]["content"], serde_json::Value::Null);
                assert_eq!(
                    body["messages"][3],
                    json!({"role": "tool", "tool_call_id": "call_0", "content": "3 results"})
                );
            }
        }
    }
}

fn answer_format() -> JsonSchemaFormat {
    JsonSchemaFormat {
        name: "answer".into(),
        schema: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"], "additionalProperties": false}),
        strict: true,
    }
}

#[tokio::test]
async fn structured_output_native_and_instructed() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::start().await;
        let p = provider(&fake, kind, style, None);
        let mut request = ask("where?");
        request.response_format = Some(answer_format());
        request.native_structured_output = true;
        fake.push(Reply::Text(r#"{"city": "Montréal"}"#.into()));
        let done = llm::complete(&HttpLlm::new(), &p, &request).await.unwrap();
        assert_eq!(done.parsed, Some(json!({"city": "Montréal"})));
        let body = &fake.requests()[0].body;
        match style {
            ApiStyle::Responses => assert_eq!(body["text"]["format"]["type"], "json_schema"),
            ApiStyle::ChatCompletions => {
                assert_eq!(body["response_format"]["json_schema"]["name"], "answer")
            }
        }

        // Without native support the schema becomes an instruction, and the answer is checked.
        request.native_structured_output = false;
        fake.push(Reply::Text(r#"{"town": "Laval"}"#.into()));
        let err = llm::complete(&HttpLlm::new(), &p, &request)
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::InvalidOutput(_)), "{err}");
        let body = &fake.requests()[1].body;
        assert!(body.get("response_format").is_none() && body["text"].get("format").is_none());
        assert!(body.to_string().contains("JSON Schema"), "{body}");
    }
}

#[tokio::test]
async fn reasoning_summaries_stream() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::start().await;
        fake.push(Reply::Reasoning(
            "Thinking it over.".into(),
            Box::new(Reply::Text("Done.".into())),
        ));
        let p = provider(&fake, kind, style, None);
        let mut request = ask("think");
        request.reasoning_effort = Some("low".into());
        let done = llm::complete(&HttpLlm::new(), &p, &request).await.unwrap();
        assert_eq!(
            (done.reasoning.as_str(), done.text.as_str()),
            ("Thinking it over.", "Done.")
        );
        let body = &fake.requests()[0].body;
        match style {
            ApiStyle::Responses => assert_eq!(body["reasoning"]["effort"], "low"),
            ApiStyle::ChatCompletions => assert_eq!(body["reasoning_effort"], "low"),
        }
    }
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_wait_they_ask() {
    let fake = FakeLlm::start().await;
    let p = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        None,
    );
    fake.push(Reply::Status {
        status: 429,
        message: "slow down".into(),
        retry_after: Some("0.4".into()),
    });
    fake.push(Reply::Text("ok".into()));
    let done = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap();
    assert_eq!(done.text, "ok");
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    let gap = log[1].at.duration_since(log[0].at);
    assert!(gap >= Duration::from_millis(380), "waited {gap:?}");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let fake = FakeLlm::start().await;
    let p = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        Some("sk-secret-abcdef"),
    );
    for _ in 0..3 {
        fake.push(Reply::Status {
            status: 503,
            message: "overloaded for key sk-secret-abcdef".into(),
            retry_after: None,
        });
    }
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(fake.requests().len(), 3, "one try and two retries");
    match &err {
        LlmError::Provider {
            status: 503,
            message,
        } => {
            assert!(message.contains("overloaded"), "{message}");
            assert!(
                !message.contains("sk-secret"),
                "the key is scrubbed: {message}"
            );
        }
        other => panic!("{other}"),
    }
    // A client error is not retried.
    fake.push(Reply::Status {
        status: 400,
        message: "bad parameter `temperature`".into(),
        retry_after: None,
    });
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        LlmError::Provider {
            status: 400,
            message: "bad parameter `temperature`".into()
        }
    );
    assert_eq!(fake.requests().len(), 4);
}

#[tokio::test]
async fn wrong_keys_are_reported_without_the_key() {
    let fake = FakeLlm::with_key("sk-right-key-0000").await;
    let p = provider(
        &fake,
        ProviderKind::OpenAi,
        ApiStyle::Responses,
        Some("sk-wrong-key-9999"),
    );
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    match &err {
        LlmError::Unauthorized(message) => assert!(
            message.contains("Incorrect API key") && !message.contains("sk-wrong-key"),
            "{message}"
        ),
        other => panic!("{other}"),
    }
    assert_eq!(fake.requests().len(), 0, "rejected before logging");
    let err = HttpLlm::new().list_models(&p).await.unwrap_err();
    assert!(matches!(err, LlmError::Unauthorized(_)));
}

#[tokio::test]
async fn output_already_streamed_is_never_retried() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::start().await;
        let p = provider(&fake, kind, style, None);
        fake.push(Reply::Cut {
            text: "This answer will be cut short".into(),
            chunks: 2,
        });
        let got = events(HttpLlm::new().stream(&p, &ask("hi")).await.unwrap()).await;
        assert!(
            got.iter()
                .any(|e| matches!(e, Ok(StreamEvent::TextDelta(_)))),
            "text came first"
        );
        assert!(
            matches!(got.last(), Some(Err(LlmError::MalformedStream(_)))),
            "{style:?}: {got:?}"
        );
        assert_eq!(fake.requests().len(), 1);

        fake.push(Reply::Malformed);
        let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
            .await
            .unwrap_err();
        assert!(matches!(err, LlmError::MalformedStream(_)), "{err}");
    }
}

#[tokio::test]
async fn slow_first_tokens_time_out() {
    let fake = FakeLlm::start().await;
    let mut p = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        None,
    );
    p.provider.timeouts.first_token_secs = 1;
    fake.push(Reply::Slow(
        Duration::from_secs(4),
        Box::new(Reply::Text("late".into())),
    ));
    let started = Instant::now();
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(err, LlmError::Timeout(TimeoutStage::FirstToken));
    assert!(started.elapsed() < Duration::from_secs(4));

    // A stream that goes quiet after its head times out too.
    p.provider.timeouts.idle_secs = 1;
    fake.push(Reply::Hang);
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    assert_eq!(err, LlmError::Timeout(TimeoutStage::FirstToken));
}

#[tokio::test]
async fn dropping_a_stream_aborts_the_request() {
    let fake = FakeLlm::start().await;
    let p = provider(&fake, ProviderKind::OpenAi, ApiStyle::Responses, None);
    fake.push(Reply::Hang);
    let stream = HttpLlm::new().stream(&p, &ask("hi")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.disconnects(), 0);
    drop(stream);
    let started = Instant::now();
    while fake.disconnects() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the fake never saw the connection close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn stale_previous_response_falls_back_to_full_history() {
    let fake = FakeLlm::start().await;
    let p = provider(&fake, ProviderKind::OpenAi, ApiStyle::Responses, None);
    let mut request = ask("first");
    request
        .messages
        .push(Message::text(Role::Assistant, "first answer"));
    request.messages.push(Message::text(Role::User, "second"));
    request.previous_response_id = Some("resp_gone".into());
    fake.push(Reply::StalePreviousResponse);
    fake.push(Reply::Text("second answer".into()));
    let done = llm::complete(&HttpLlm::new(), &p, &request).await.unwrap();
    assert_eq!(done.text, "second answer");
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].body["previous_response_id"], "resp_gone");
    assert_eq!(
        log[0].body["input"].as_array().unwrap().len(),
        1,
        "only the new turn"
    );
    assert!(log[1].body.get("previous_response_id").is_none());
    assert_eq!(
        log[1].body["input"].as_array().unwrap().len(),
        3,
        "the whole history"
    );
}

#[tokio::test]
async fn images_and_files_go_in_each_apis_shape() {
    for (kind, style) in STYLES {
        let fake = FakeLlm::start().await;
        let p = provider(&fake, kind, style, None);
        let mut request = ask("");
        request.messages = vec![Message {
            role: Role::User,
            content: vec![
                ContentPart::Text("what is this?".into()),
                ContentPart::Image {
                    url: "data:image/png;base64,AAAA".into(),
                    detail: Some("low".into()),
                },
            ],
            tool_calls: Vec::new(),
            tool_call_id: None,
        }];
        llm::complete(&HttpLlm::new(), &p, &request).await.unwrap();
        let body = &fake.requests()[0].body;
        match style {
            ApiStyle::Responses => assert_eq!(
                body["input"][0]["content"][1],
                json!({"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"})
            ),
            ApiStyle::ChatCompletions => assert_eq!(
                body["messages"][1]["content"][1],
                json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}})
            ),
        }
    }
}

#[tokio::test]
async fn models_embeddings_and_transcription() {
    let fake = FakeLlm::start().await;
    let client = HttpLlm::new();
    let compatible = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        None,
    );
    let names: Vec<String> = client
        .list_models(&compatible)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["fake-gpt", "fake-embed"]);

    let litellm = provider(
        &fake,
        ProviderKind::LiteLlm,
        ApiStyle::ChatCompletions,
        None,
    );
    let models = client.list_models(&litellm).await.unwrap();
    assert_eq!(models[0].name, "fake-gpt");
    assert_eq!(models[0].pricing.input_per_mtok, Some(2.5));
    assert_eq!(models[0].pricing.output_per_mtok, Some(10.0));
    assert_eq!(models[0].pricing.cached_input_per_mtok, Some(1.25));
    assert_eq!(models[0].context_window, Some(128000));
    assert!(models[0].capabilities.unwrap().vision);

    let inputs: Vec<String> = (0..300).map(|i| format!("text number {i}")).collect();
    let embedded = client
        .embed(&compatible, "fake-embed", &inputs, Some(16))
        .await
        .unwrap();
    assert_eq!(embedded.vectors.len(), 300);
    assert!(embedded.vectors.iter().all(|v| v.len() == 16));
    let again = client
        .embed(&compatible, "fake-embed", &inputs[..1], Some(16))
        .await
        .unwrap();
    assert_eq!(
        again.vectors[0], embedded.vectors[0],
        "sorted back into input order"
    );
    assert_eq!(
        fake.requests()
            .iter()
            .filter(|r| r.path == "/v1/embeddings")
            .count(),
        3,
        "batches of 256"
    );
    assert!(embedded.usage.input_tokens > 0);

    let text = client
        .transcribe(
            &compatible,
            "whisper-1",
            vec![1, 2, 3, 4],
            "clip.wav",
            Some("fr"),
        )
        .await
        .unwrap();
    assert!(text.starts_with("transcribed "), "{text}");
    let logged = fake
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/audio/transcriptions")
        .unwrap();
    assert!(
        logged.body["multipart"]
            .as_str()
            .unwrap()
            .contains("whisper-1")
    );
}

#[tokio::test]
async fn unreachable_providers_are_reported() {
    let fake = FakeLlm::start().await;
    let mut p = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        None,
    );
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    p.provider.api_base = format!("http://127.0.0.1:{port}/v1");
    p.provider.max_retries = 1;
    let err = llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Connection(_)), "{err}");
}

/// Collects what one test thread logs, for the secrets check.
///
/// The subscriber is the binary's global default, set once: a scoped `set_default`
/// races with other test threads over tracing's per-callsite interest cache, and a
/// callsite first reached on another thread could then stay silent here. Lines go
/// to the capture of the thread that logged them (a `#[tokio::test]` runs its
/// server and client on its own thread), and elsewhere nowhere.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
}

impl Capture {
    /// Starts capturing this thread's log lines.
    fn this_thread() -> Capture {
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(ThreadWriter)
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this binary");
        });
        let capture = Capture::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(capture.clone()));
        capture
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Writes to the current thread's capture, if it has one.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(capture) = c.borrow().as_ref() {
                capture.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ThreadWriter {
    type Writer = ThreadWriter;

    fn make_writer(&'a self) -> ThreadWriter {
        ThreadWriter
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let capture = Capture::this_thread();

    let fake = FakeLlm::with_key("sk-live-secret-7777").await;
    let p = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        Some("sk-live-secret-7777"),
    );
    fake.push(Reply::Status {
        status: 502,
        message: "upstream failed for sk-live-secret-7777".into(),
        retry_after: None,
    });
    fake.push(Reply::Text("fine".into()));
    llm::complete(&HttpLlm::new(), &p, &ask("hi"))
        .await
        .unwrap();
    let wrong = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        Some("sk-wrong-secret-8888"),
    );
    let err = llm::complete(&HttpLlm::new(), &wrong, &ask("hi"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("sk-wrong-secret"));

    let logs = capture.text();
    assert!(
        logs.contains("retrying a model call"),
        "the retry was logged: {logs}"
    );
    for secret in [
        "sk-live-secret-7777",
        "sk-wrong-secret-8888",
        "tenant-secret-9",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} leaked into the logs:\n{logs}"
        );
    }
}

/// `Clients` sends other kinds over HTTP, and says so when a build has no local models
/// rather than calling the provider's address.
#[tokio::test]
async fn clients_route_by_provider_kind() {
    let fake = FakeLlm::start().await;
    let clients = providers::Clients::new(HttpLlm::new(), None);
    let remote = provider(
        &fake,
        ProviderKind::OpenAiCompatible,
        ApiStyle::ChatCompletions,
        None,
    );
    let embedded = clients
        .embed(&remote, "fake-embed", &["hello".to_string()], None)
        .await
        .unwrap();
    assert_eq!(embedded.vectors.len(), 1);
    let local = provider(&fake, ProviderKind::Local, ApiStyle::ChatCompletions, None);
    let err = clients
        .embed(&local, "all-MiniLM-L6-v2", &["hello".to_string()], None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Misconfigured(m) if m.contains("without local models")),
        "{err}"
    );
}

/// A real call to OpenAI, only when `SWITCHYARD_LIVE_OPENAI_KEY` is set (never in CI).
#[tokio::test]
async fn live_openai_when_a_key_is_given() {
    let Ok(key) = std::env::var("SWITCHYARD_LIVE_OPENAI_KEY") else {
        eprintln!("skipped: SWITCHYARD_LIVE_OPENAI_KEY is not set");
        return;
    };
    let fake = FakeLlm::start().await;
    for (kind, style) in STYLES {
        let mut p = provider(&fake, kind, style, Some(&key));
        p.provider.api_base = "https://api.openai.com/v1".into();
        p.provider.kind = ProviderKind::OpenAi;
        p.extra_headers.clear();
        let mut request = ask("Say the single word: pong");
        request.model = "gpt-4o-mini".into();
        let done = llm::complete(&HttpLlm::new(), &p, &request).await.unwrap();
        assert!(
            done.text.to_lowercase().contains("pong"),
            "{style:?}: {}",
            done.text
        );
        assert!(done.usage.input_tokens > 0);
    }
}
