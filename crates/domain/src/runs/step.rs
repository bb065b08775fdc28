//! What a node kind runs against: the run's context ([`RunCtx`]), the buffer of what a
//! step produces until it is saved ([`Log`]), and how a step hands over ([`Outcome`],
//! [`Next`], [`NodeError`]).
//!
//! Invariants: this module knows no node kind and imports nothing of the run loop; the
//! engine and every kind's file (`workflows/nodes/<kind>.rs`) depend on it, never the
//! other way round.

use std::{
    sync::{Arc, atomic::AtomicI64},
    time::Instant,
};

use chrono::Utc;
use serde_json::{Value, json};

use super::{Event, EventKind, HistoryEntry, Run, Step, Wait, live::LiveGuard};
use crate::{
    Services,
    models::usage::UsageRecord,
    users::User,
    workflows::{
        GraphIndex, Node, Version, Workflow,
        eval::{EvalError, Scope},
    },
};

/// How a node hands over.
pub(crate) enum Next {
    /// Follow the edge with this label (or the default edge).
    Follow(Option<String>),
    /// Go to this node.
    Goto(String),
    Wait(Wait),
    End {
        output: Value,
        status: Value,
    },
}

pub(crate) struct Outcome {
    pub output: Value,
    pub next: Next,
}

impl Outcome {
    /// The step's input goes on, unchanged, along the default edge.
    pub fn pass(log: &Log<'_>) -> Outcome {
        Outcome {
            output: log.run.last_output.clone(),
            next: Next::Follow(None),
        }
    }
}

/// Why a step did not finish.
#[derive(Debug)]
pub(crate) enum NodeError {
    /// It failed: a stable code and a message in the author's words.
    Failed { code: &'static str, message: String },
    /// The run was cancelled while the step ran.
    Cancelled,
}

impl std::fmt::Display for NodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeError::Failed { message, .. } => f.write_str(message),
            NodeError::Cancelled => f.write_str("the run was cancelled"),
        }
    }
}

impl From<EvalError> for NodeError {
    fn from(err: EvalError) -> Self {
        node_error("expression_failed", err.to_string())
    }
}

pub(crate) fn node_error(code: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Failed {
        code,
        message: message.into(),
    }
}

/// Everything a running step can see.
pub(crate) struct RunCtx<'a> {
    pub services: &'a Services,
    pub workflow: &'a Workflow,
    pub version: &'a Version,
    pub user: &'a User,
    /// The workflows being run, outermost first: a nested workflow may not call one of them.
    pub stack: Vec<i64>,
    /// The version's graph by slug.
    pub index: GraphIndex<'a>,
    /// What this start or resume may still spend, shared with its branches and nested
    /// workflows.
    pub budget: Arc<Budget>,
}

/// The limits of one start or resume of a run. The step limit counts the steps of this
/// advance, so a long conversation that waits between turns never reaches it.
pub(crate) struct Budget {
    pub steps: AtomicI64,
    pub deadline: Instant,
}

impl<'a> RunCtx<'a> {
    pub fn new(
        services: &'a Services,
        workflow: &'a Workflow,
        version: &'a Version,
        user: &'a User,
    ) -> Self {
        RunCtx {
            services,
            workflow,
            version,
            user,
            stack: vec![workflow.id],
            index: version.graph.index(),
            budget: Arc::new(Budget {
                steps: AtomicI64::new(0),
                deadline: Instant::now()
                    + std::time::Duration::from_secs(services.engine.max_run_seconds),
            }),
        }
    }

    pub fn scope(&self, run: &Run) -> Scope {
        Scope {
            input: run.last_output.clone(),
            state: run.state.clone(),
            workflow: json!({
                "id": self.workflow.id,
                "slug": self.workflow.slug,
                "version": self.version.number,
                "input_as_text": run.input.get("input_as_text").cloned().unwrap_or(Value::Null),
            }),
            user: json!({"id": self.user.id, "email": self.user.email, "is_admin": self.user.is_admin}),
            thread: json!({"id": run.thread_id, "title": Value::Null}),
        }
    }
}

/// Buffers what a step produced until it is saved.
pub(crate) struct Log<'a> {
    pub run: &'a mut Run,
    pub steps: Vec<Step>,
    pub events: Vec<Event>,
    /// A failure of the current node that its `on_error` handled.
    pub handled: Option<String>,
    /// Where events are published live while the run advances in this process.
    pub live: Option<&'a LiveGuard>,
    /// Inside a parallel branch or a nested workflow: the events are re-emitted by the
    /// enclosing run when the part is merged, so only deltas are published from here.
    pub nested: bool,
    /// Usage of model calls not yet on record: written with the next save (see
    /// [`Log::record_usage`]).
    pub usage: Vec<UsageRecord>,
}

impl<'a> Log<'a> {
    pub fn new(run: &'a mut Run) -> Self {
        Log {
            run,
            steps: Vec::new(),
            events: Vec::new(),
            handled: None,
            live: None,
            nested: false,
            usage: Vec::new(),
        }
    }

    /// Puts a model call's usage on record: with the run's next save, which follows at
    /// once unless another call of the same step comes first (that call writes it before
    /// it starts, see [`Log::flush_usage`]). Inside a branch or nested workflow, whose log
    /// is merged rather than saved, it is written at once.
    pub async fn record_usage(&mut self, services: &Services, record: UsageRecord) {
        if self.nested {
            write_usage(services, &[record]).await;
        } else {
            self.usage.push(record);
        }
    }

    /// Writes the usage not yet on record by itself.
    pub async fn flush_usage(&mut self, services: &Services) {
        let pending = std::mem::take(&mut self.usage);
        write_usage(services, &pending).await;
    }

    pub fn event(&mut self, kind: EventKind, node: Option<&str>, data: Value) {
        debug_assert!(!kind.is_ephemeral(), "{kind} is never saved");
        self.run.event_seq += 1;
        let event = Event {
            seq: self.run.event_seq,
            kind,
            node: node.map(str::to_string),
            data,
            at: Utc::now(),
        };
        if let Some(live) = self.live.filter(|_| !self.nested) {
            live.publish(event.clone());
        }
        self.events.push(event);
    }

    /// An event shown live and never saved (a text delta).
    pub fn ephemeral(&mut self, kind: EventKind, node: &str, data: Value) {
        debug_assert!(kind.is_ephemeral(), "{kind} is saved");
        if let Some(live) = self.live.filter(|l| l.has_readers()) {
            live.publish(Event {
                seq: 0,
                kind,
                node: Some(node.to_string()),
                data,
                at: Utc::now(),
            });
        }
    }

    /// Whether anyone follows the run live.
    pub fn has_readers(&self) -> bool {
        self.live.is_some_and(LiveGuard::has_readers)
    }

    /// Whether the run was cancelled while this process advances it.
    pub fn cancel_requested(&self) -> bool {
        self.live.is_some_and(LiveGuard::is_cancelled)
    }

    /// An assistant message citing `sources` (ChatKit sources, numbered from 1 in order).
    pub fn say_cited(&mut self, node: &str, text: String, sources: &[Value]) {
        if sources.is_empty() {
            return self.say("assistant", node, text);
        }
        let text = text.replace('\0', "");
        self.event(
            EventKind::AssistantMessage,
            Some(node),
            json!({"text": text, "sources": sources}),
        );
        self.run.history.push(HistoryEntry {
            role: "assistant".into(),
            text,
            ..Default::default()
        });
    }

    pub fn say(&mut self, role: &str, node: &str, text: String) {
        // PostgreSQL cannot store NUL characters; a model may produce them.
        let text = if text.contains('\0') {
            text.replace('\0', "")
        } else {
            text
        };
        self.event(
            if role == "user" {
                EventKind::UserMessage
            } else {
                EventKind::AssistantMessage
            },
            Some(node),
            json!({"text": text}),
        );
        self.run.history.push(HistoryEntry {
            role: role.into(),
            text,
            ..Default::default()
        });
    }
}

/// Writes usage records; a failure is logged, not the run's (the calls were paid for).
pub(crate) async fn write_usage(services: &Services, records: &[UsageRecord]) {
    for record in records {
        if let Err(err) = services.store.insert_usage(record).await {
            tracing::error!(run_id = ?record.run_id, error = %err, "could not record a model call's usage");
        }
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(node: &Node) -> Result<T, NodeError> {
    serde_json::from_value(Value::Object(node.parameters.clone())).map_err(|err| {
        node_error(
            "invalid_parameters",
            format!("the node's parameters are invalid: {err}"),
        )
    })
}

pub(crate) fn text_param(node: &Node) -> Option<String> {
    ["message", "text"].iter().find_map(|k| {
        node.parameters
            .get(*k)
            .and_then(Value::as_str)
            .map(str::to_string)
    })
}
