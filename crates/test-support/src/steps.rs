//! The node kinds' test harness: one step run by itself ([`domain::runs::try_node`]) on
//! the real services over a fresh SQLite database, with a model in the test process
//! ([`ScriptedLlm`]) instead of a provider: no HTTP anywhere.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use domain::{
    Services,
    llm::{ChatRequest, Completion, Embeddings, EventStream, LlmClient, LlmError, StreamEvent},
    models::{ProviderCredentials, RemoteModel},
    runs::{Resume, Trial, Tried, try_node},
    users::User,
    workflows::Graph,
};
use serde_json::{Value, json};

use crate::{TestApp, TestBackend};

/// A model whose answers the test queues; it records what it was asked.
#[derive(Default)]
pub struct ScriptedLlm {
    replies: Mutex<VecDeque<Completion>>,
    requests: Mutex<Vec<ChatRequest>>,
}

impl ScriptedLlm {
    /// Queues an answer that is plain text.
    pub fn say(&self, text: &str) {
        self.push(Completion {
            text: text.to_string(),
            finish_reason: Some("stop".into()),
            ..Completion::default()
        });
    }

    /// Queues a whole answer (tool calls, structured output).
    pub fn push(&self, completion: Completion) {
        self.replies.lock().unwrap().push_back(completion);
    }

    /// The requests made so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl LlmClient for ScriptedLlm {
    async fn stream(
        &self,
        _provider: &ProviderCredentials,
        request: &ChatRequest,
    ) -> Result<EventStream, LlmError> {
        self.requests.lock().unwrap().push(request.clone());
        let completion =
            self.replies
                .lock()
                .unwrap()
                .pop_front()
                .ok_or_else(|| LlmError::Provider {
                    status: 500,
                    message: "the test queued no answer".into(),
                })?;
        let mut events = Vec::new();
        if !completion.text.is_empty() {
            events.push(StreamEvent::TextDelta(completion.text.clone()));
        }
        for (index, call) in completion.tool_calls.iter().enumerate() {
            events.push(StreamEvent::ToolCallStarted {
                index,
                id: call.id.clone(),
                name: call.name.clone(),
            });
            events.push(StreamEvent::ToolCallArgumentsDelta {
                index,
                delta: call.arguments.clone(),
            });
        }
        events.push(StreamEvent::Completed(completion));
        Ok(Box::pin(futures_util::stream::iter(
            events.into_iter().map(Ok),
        )))
    }

    async fn list_models(
        &self,
        _provider: &ProviderCredentials,
    ) -> Result<Vec<RemoteModel>, LlmError> {
        Ok(Vec::new())
    }

    async fn embed(
        &self,
        _provider: &ProviderCredentials,
        _model: &str,
        _inputs: &[String],
        _dimensions: Option<u32>,
    ) -> Result<Embeddings, LlmError> {
        Err(LlmError::NotFound(
            "the scripted model has no embeddings".into(),
        ))
    }

    async fn transcribe(
        &self,
        _provider: &ProviderCredentials,
        _model: &str,
        _audio: Vec<u8>,
        _filename: &str,
        _language: Option<&str>,
    ) -> Result<String, LlmError> {
        Err(LlmError::NotFound(
            "the scripted model does not transcribe".into(),
        ))
    }
}

/// Runs single steps as a user who is not an administrator.
pub struct StepHarness {
    pub app: TestApp,
    pub services: Services,
    pub llm: Arc<ScriptedLlm>,
    /// The author the steps run as (not an administrator).
    pub user: User,
    /// The bootstrapped administrator.
    pub admin: User,
}

impl StepHarness {
    /// A fresh SQLite application with `scripted` as its default model (served by
    /// [`ScriptedLlm`]) and a user who is not an administrator.
    pub async fn new() -> StepHarness {
        let app = TestApp::new(TestBackend::Sqlite).await;
        let admin = app.admin_token().await;
        let provider = app
            .post(
                "/api/admin/model-providers",
                Some(&admin),
                json!({"kind": "openai_compatible", "label": "Scripted", "api_base": "http://127.0.0.1:9/v1", "max_retries": 0}),
            )
            .await;
        assert_eq!(provider.status.as_u16(), 201, "{}", provider.text);
        let model = app
            .post(
                "/api/admin/models",
                Some(&admin),
                json!({"provider_id": provider.body["id"], "name": "scripted", "is_default": true}),
            )
            .await;
        assert_eq!(model.status.as_u16(), 201, "{}", model.text);
        let (user_id, _) = app
            .create_user("author@example.com", "author-password", false)
            .await;
        let llm = Arc::new(ScriptedLlm::default());
        let mut services = app.app.services.clone();
        services.llm = llm.clone();
        let user = services
            .store
            .user_by_id(user_id)
            .await
            .expect("the store answers")
            .expect("the user exists");
        let admin = services
            .store
            .user_by_id(1)
            .await
            .expect("the store answers")
            .filter(|u| u.is_admin)
            .expect("the first user is the administrator");
        StepHarness {
            app,
            services,
            llm,
            user,
            admin,
        }
    }

    /// Runs the node `node` of `graph` (JSON, as the API takes it) with `input`.
    pub async fn run(&self, graph: Value, node: &str, input: Value) -> Tried {
        self.trial(Trial {
            graph: graph_of(graph),
            node: node.into(),
            input,
            ..Trial::default()
        })
        .await
    }

    /// Runs the node, then gives it `answer` once it waits.
    pub async fn answer(&self, graph: Value, node: &str, input: Value, answer: Resume) -> Tried {
        self.trial(Trial {
            graph: graph_of(graph),
            node: node.into(),
            input,
            answer: Some(answer),
            ..Trial::default()
        })
        .await
    }

    /// Runs the node as an administrator.
    pub async fn run_as_admin(&self, graph: Value, node: &str, input: Value) -> Tried {
        try_node(
            &self.services,
            &self.admin,
            Trial {
                graph: graph_of(graph),
                node: node.into(),
                input,
                ..Trial::default()
            },
        )
        .await
        .expect("the step runs")
    }

    /// Runs a trial as it is.
    pub async fn trial(&self, trial: Trial) -> Tried {
        try_node(&self.services, &self.user, trial)
            .await
            .expect("the step runs")
    }
}

fn graph_of(graph: Value) -> Graph {
    serde_json::from_value(graph).expect("a graph")
}
