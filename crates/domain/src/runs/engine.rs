//! The run loop: executes nodes one at a time, saving them in batches (at most 256 steps,
//! and before any model call while an earlier call is unsaved), until the run waits, ends
//! or fails.
//!
//! Concurrency: a run is advanced by whichever request starts or resumes it. Each save is
//! conditional on the event sequence the advancing process last saw (`RunStore::save_run`),
//! so if two processes ever race on one run, the second save is refused and its caller
//! gets a conflict instead of a forked run.

use std::{sync::atomic::Ordering, time::Instant};

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::{
    Event, EventKind, HistoryEntry, Run, RunError, RunFailure, RunResult, RunStatus, Step,
    live::{LiveGuard, Subscription},
    step::{Log, Next, NodeError, Outcome, RunCtx, node_error},
    values::{bounded, strip_nul},
};
use crate::{
    Services,
    users::User,
    workflows::{
        self, Access, Edge, Graph, Node, Version, Workflow, WorkflowError,
        nodes::{self, Kind, Role},
    },
};

/// The most steps saved in one batch.
const SAVE_EVERY: usize = 256;

/// The default of `engine.max_steps`.
pub const MAX_STEPS: i64 = 1_000;

/// Engine limits (the `[engine]` table of the configuration).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// The most nodes one run may execute; past it the run fails instead of looping forever.
    pub max_steps: i64,
    /// The longest one start or resume of a run may take before it fails (`time_limit`).
    pub max_run_seconds: u64,
    /// The most model calls one agent step makes in its tool-call loop.
    pub max_tool_rounds: u32,
    /// How often a process renews the leases of the runs it advances, in seconds.
    pub lease_renew_secs: u64,
    /// How long a running run's lease lasts without renewal, in seconds: past it, any
    /// replica fails the run as `interrupted` (its process stopped).
    pub lease_expiry_secs: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_steps: MAX_STEPS,
            max_run_seconds: 3_600,
            max_tool_rounds: 10,
            lease_renew_secs: 5,
            lease_expiry_secs: 30,
        }
    }
}

/// What a caller gives to start a run.
#[derive(Debug, Clone, Default)]
pub struct StartRun {
    pub workflow_id: i64,
    /// A draft or older version (write access needed); production by default.
    pub version_id: Option<i64>,
    /// The run's input; a string becomes `{"input_as_text": …}`.
    pub input: Value,
    /// Values over the state schema's defaults.
    pub state: Option<Value>,
    /// The conversation the run belongs to; it may have one unfinished run at a time.
    pub thread_id: Option<String>,
    /// The model the caller chose, for agents that let the user choose theirs.
    pub model: Option<String>,
    /// The conversation before this run, as given.
    pub history: Vec<HistoryEntry>,
    /// In a thread (`thread_id`): the turn's own message. The thread's messages before it
    /// are the conversation before the run (`Run::history_before`).
    pub history_before: Option<String>,
    /// The caller reached the workflow through a channel that serves it to them (a chat
    /// thread they own), so they may run its production version without access to the
    /// graph; see [`workflows::runnable`].
    pub served: bool,
}

/// What resumes a waiting run.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    UserMessage(String),
    Approval(bool),
    /// A click (or submit) on the widget the run waits on: `{type, payload, values}`.
    WidgetAction(Value),
    /// The result of the client tool call the run waits on.
    ClientToolOutput(Value),
    /// The user's message with files (chat attachments).
    UserMessageWithFiles(String, Vec<super::AttachmentRef>),
    /// Answers to the questions the run asked: ChatKit's `StructuredInputSubmission`
    /// `{status, answers: {id: {values, skipped}}}`.
    StructuredInput(Value),
}

fn new_run_id() -> String {
    crate::ordered_id("run")
}

/// The state a run starts with: the schema's defaults, then the caller's values.
pub(super) fn initial_state(graph: &Graph, given: Option<&Value>) -> RunResult<Value> {
    let mut state = Map::new();
    if let Some(properties) = graph
        .state_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, property) in properties {
            state.insert(
                name.clone(),
                property.get("default").cloned().unwrap_or(Value::Null),
            );
        }
    }
    match given {
        None | Some(Value::Null) => {}
        Some(Value::Object(values)) => state.extend(values.clone()),
        Some(_) => return Err(RunError::Invalid("`state` must be an object".into())),
    }
    Ok(Value::Object(state))
}

/// Starts a run of a workflow and advances it until it waits or ends.
///
/// The work runs in its own task: a caller that goes away (a closed connection) does not
/// stop a run halfway.
pub async fn start(services: &Services, actor: &User, req: StartRun) -> RunResult<Run> {
    let (services, actor) = (services.clone(), actor.clone());
    tokio::spawn(async move { start_here(&services, &actor, req).await })
        .await
        .map_err(|err| RunError::Internal(format!("the run's task failed: {err}")))?
}

async fn start_here(services: &Services, actor: &User, req: StartRun) -> RunResult<Run> {
    let (mut run, workflow, version, _) = begin(services, actor, req).await?;
    let ctx = RunCtx::new(services, &workflow, &version, actor);
    advance_or_fail(&ctx, &mut run).await?;
    Ok(run)
}

/// Starts a run and advances it in the background; returns it as it starts, with a live
/// subscription taken before its first step (so a reader misses nothing, deltas
/// included). Its progress can also be read from its event log, in any process.
pub async fn start_detached(
    services: &Services,
    actor: &User,
    req: StartRun,
) -> RunResult<(Run, Subscription)> {
    let (run, workflow, version, first) = begin(services, actor, req).await?;
    let started = run.clone();
    let mut subscription = spawn_advance(services, run, workflow, version, actor.clone());
    // The events saved with the run come first, so a reader need not read them back.
    subscription.unsaved.splice(0..0, first);
    Ok((started, subscription))
}

/// Advances a run in its own task, registered live (and subscribed to) before it starts.
pub(super) fn spawn_advance(
    services: &Services,
    mut run: Run,
    workflow: Workflow,
    version: Version,
    user: User,
) -> Subscription {
    let guard = services.live.open(&run.id);
    let subscription = services
        .live
        .subscribe(&run.id)
        .expect("the run was registered above");
    let services = services.clone();
    tokio::spawn(async move {
        let ctx = RunCtx::new(&services, &workflow, &version, &user);
        if let Err(err) = advance_or_fail_with(&ctx, &mut run, Some(guard)).await {
            tracing::error!(run_id = %run.id, error = %err, "a background run stopped before finishing");
        }
    });
    subscription
}

/// What the node after `start` gets as `input`: the run's input, where the user's text is
/// both `input.input_as_text` (Agent Builder's name) and `input.user_message`, as after a
/// wait for a message, so a chat loop reads one name on every pass.
fn with_text_aliases(mut input: Value) -> Value {
    if let Value::Object(map) = &mut input
        && let Some(text) = map.get("input_as_text").filter(|t| t.is_string()).cloned()
    {
        map.entry("user_message").or_insert(text);
    }
    input
}

/// Creates a run and saves its `run.started` event; returns the events saved.
async fn begin(
    services: &Services,
    actor: &User,
    req: StartRun,
) -> RunResult<(Run, Workflow, Version, Vec<Event>)> {
    let (workflow, access) =
        workflows::runnable(services, actor, req.workflow_id, req.served).await?;
    let version = match (req.version_id, access) {
        (Some(version_id), Access::Served) => {
            // Those a workflow is only served to run what is in production.
            services
                .store
                .production_version(workflow.id)
                .await?
                .filter(|v| v.id == version_id)
                .ok_or(WorkflowError::VersionNotFound(version_id))?
        }
        (Some(version_id), access) => {
            let version = workflows::get_version(services, actor, workflow.id, version_id).await?;
            if !version.is_production && !access.can_write() {
                return Err(WorkflowError::Forbidden(
                    "running a version other than production needs write access",
                )
                .into());
            }
            version
        }
        (None, _) => services
            .store
            .production_version(workflow.id)
            .await?
            .ok_or(WorkflowError::NotPublished(workflow.id))?,
    };
    let graph = &version.graph;
    let start_node = graph
        .nodes
        .iter()
        .find(|n| nodes::role_of(n) == Some(Role::Entry))
        .ok_or_else(|| RunError::Invalid("the version has no enabled start node".into()))?;
    let mut input = match req.input {
        Value::String(text) => json!({"input_as_text": text}),
        Value::Null => json!({}),
        other => other,
    };
    strip_nul(&mut input);
    let mut req_state = req.state.clone();
    if let Some(state) = req_state.as_mut() {
        strip_nul(state);
    }
    let mut history = req.history.clone();
    let attachments: Vec<super::AttachmentRef> = input
        .get("attachments")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default();
    let text = input
        .get("input_as_text")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !text.is_empty() || !attachments.is_empty() {
        history.push(HistoryEntry {
            role: "user".into(),
            text: text.to_string(),
            attachments,
        });
    }
    let now = Utc::now();
    let mut run = Run {
        id: new_run_id(),
        workflow_id: workflow.id,
        version_id: version.id,
        user_id: Some(actor.id),
        thread_id: req.thread_id.clone(),
        status: RunStatus::Running,
        current_node: Some(start_node.slug.clone()),
        state: initial_state(graph, req_state.as_ref())?,
        last_output: with_text_aliases(input.clone()),
        input,
        history,
        history_before: req.thread_id.as_ref().and(req.history_before.clone()),
        scratch: match req
            .model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
        {
            Some(model) => json!({"model": model}),
            None => json!({}),
        },
        wait: None,
        output: None,
        error: None,
        step_count: 0,
        event_seq: 0,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    // The run is written with its first event, in one transaction.
    let run_id = run.id.clone();
    let mut log = Log::new(&mut run);
    log.event(
        EventKind::RunStarted,
        None,
        json!({"workflow_id": workflow.id, "version": version.number, "run_id": run_id}),
    );
    let events = std::mem::take(&mut log.events);
    match services.store.insert_run(&run, &events).await {
        Err(crate::store::StoreError::Conflict { .. }) if run.thread_id.is_some() => {
            return Err(RunError::Conflict(
                "this thread already has a run that has not finished; resume or cancel it first"
                    .into(),
            ));
        }
        other => other?,
    }
    Ok((run, workflow, version, events))
}

pub(super) async fn save(
    services: &Services,
    log: &mut Log<'_>,
    expected_seq: i64,
) -> RunResult<()> {
    log.run.updated_at = Utc::now();
    let saved = services
        .store
        .save_run(log.run, &log.steps, &log.events, &log.usage, expected_seq)
        .await;
    // Usage is on record whatever became of the save.
    if matches!(saved, Ok(true)) {
        log.usage.clear();
    } else {
        log.flush_usage(services).await;
    }
    let saved = saved?;
    if !saved {
        return Err(RunError::Conflict(
            "the run was advanced by another request; reload it".into(),
        ));
    }
    if let Some(live) = log.live {
        live.saved(log.run.event_seq);
    }
    log.steps.clear();
    log.events.clear();
    Ok(())
}

pub(super) fn fail(log: &mut Log<'_>, node: Option<&str>, code: &str, message: String) {
    log.event(
        EventKind::RunFailed,
        node,
        json!({"code": code, "message": message}),
    );
    log.run.status = RunStatus::Failed;
    log.run.error = Some(RunFailure {
        node: node.map(str::to_string),
        code: code.into(),
        message,
    });
    log.run.finished_at = Some(Utc::now());
    log.run.current_node = None;
}

fn complete(log: &mut Log<'_>, output: Value, thread_status: Value) {
    log.event(
        EventKind::RunCompleted,
        None,
        json!({"output": output, "thread_status": thread_status}),
    );
    log.run.status = RunStatus::Completed;
    log.run.output = Some(output);
    log.run.finished_at = Some(Utc::now());
    log.run.current_node = None;
}

/// The node after `node`: the edge with `label` (or the fallback edge), else the default
/// edge; a body node with nowhere to go returns to its loop; `None` ends the run.
pub(super) fn next_node(
    out: &[&Edge],
    node: &Node,
    label: Option<&str>,
) -> Result<Option<String>, String> {
    let unlabelled = || out.iter().find(|e| e.condition.is_none());
    let chosen = match label {
        Some(label) => out
            .iter()
            .find(|e| {
                e.condition
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(label))
            })
            .or_else(|| {
                out.iter().find(|e| {
                    e.condition.as_deref().is_some_and(|c| {
                        c.eq_ignore_ascii_case("else") || c.eq_ignore_ascii_case("default")
                    })
                })
            })
            .or_else(unlabelled)
            .copied(),
        // The default edge: unlabelled, else one labelled `else`/`default`. An `error`
        // edge is taken only for a failure, and other labels only when chosen.
        None => unlabelled()
            .or_else(|| {
                out.iter().find(|e| {
                    e.condition.as_deref().is_some_and(|c| {
                        c.eq_ignore_ascii_case("else") || c.eq_ignore_ascii_case("default")
                    })
                })
            })
            .copied(),
    };
    let branches_only = out.iter().any(|e| {
        !e.condition
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(nodes::common::ERROR_LABEL))
    });
    if chosen.is_none() && label.is_none() && branches_only {
        return Err(format!(
            "no default edge leaves `{}`; its edges are all branch labels",
            node.slug
        ));
    }
    match (chosen, label) {
        (Some(edge), _) => Ok(Some(edge.target.clone())),
        (None, Some(label)) if !out.is_empty() => Err(format!(
            "no edge leaves `{}` for the branch `{label}`",
            node.slug
        )),
        (None, _) => Ok(node.parent_slug.clone()),
    }
}

/// [`advance`], and if it stops on an error (the database went away, say), a best-effort
/// attempt to record the run as failed, so it does not stay `running`. A run cancelled
/// meanwhile is returned as cancelled.
pub(super) async fn advance_or_fail(ctx: &RunCtx<'_>, run: &mut Run) -> RunResult<()> {
    advance_or_fail_with(ctx, run, None).await
}

async fn advance_or_fail_with(
    ctx: &RunCtx<'_>,
    run: &mut Run,
    live: Option<LiveGuard>,
) -> RunResult<()> {
    use futures_util::FutureExt;
    // A panic inside a step (a bug) fails the run like any internal error, instead of
    // leaving it `running` until the next restart.
    let outcome = std::panic::AssertUnwindSafe(advance(ctx, run, live))
        .catch_unwind()
        .await;
    let err = match outcome {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(err)) => err,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(run_id = %run.id, panic = %what, "a run's step panicked");
            RunError::Internal(format!("a step panicked: {what}"))
        }
    };
    let Ok(Some(mut stored)) = ctx.services.store.run(&run.id).await else {
        return Err(err);
    };
    if stored.status == RunStatus::Cancelled {
        *run = stored;
        return Ok(());
    }
    if !matches!(err, RunError::Conflict(_) | RunError::Cancelled)
        && stored.status == RunStatus::Running
    {
        let saved = stored.event_seq;
        // Past every number this advance published.
        stored.event_seq = stored.event_seq.max(run.event_seq);
        let mut log = Log::new(&mut stored);
        let node = log.run.current_node.clone();
        fail(
            &mut log,
            node.as_deref(),
            "engine_error",
            format!("the run stopped on an internal error: {err}"),
        );
        if save(ctx.services, &mut log, saved).await.is_ok() {
            *run = stored;
        }
    }
    Err(err)
}

/// Where a disabled node hands its input on: its default edge, else any edge but an
/// `error` one (a bypassed node must lead somewhere), else back to its loop.
fn bypass_target(out: &[&Edge], node: &Node) -> Option<String> {
    match next_node(out, node, None) {
        Ok(Some(target)) => Some(target),
        _ => out
            .iter()
            .find(|e| {
                !e.condition
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(nodes::common::ERROR_LABEL))
            })
            .map(|e| e.target.clone())
            .or_else(|| node.parent_slug.clone()),
    }
}

/// Kinds whose steps have outside effects or take long: one such step's record is saved
/// before the next one starts.
fn is_effectful(node: &Node) -> bool {
    node.is_enabled && Kind::parse(&node.kind).is_some_and(|k| k.behaviour().effectful())
}

/// The error that stops advancing a run someone cancelled; [`advance_or_fail`] then
/// returns the cancelled run.
fn cancelled() -> RunError {
    RunError::Cancelled
}

/// Executes nodes until the run waits, ends or fails, saving after each.
async fn advance(ctx: &RunCtx<'_>, run: &mut Run, live: Option<LiveGuard>) -> RunResult<()> {
    let live = live.unwrap_or_else(|| ctx.services.live.open(&run.id));
    let mut log = Log::new(run);
    log.live = Some(&live);
    let advanced = advance_log(ctx, &mut log).await;
    // A run stopped between a model call and its save (cancelled, failed) still records
    // what the call used.
    if !log.usage.is_empty() {
        log.flush_usage(ctx.services).await;
    }
    advanced
}

async fn advance_log(ctx: &RunCtx<'_>, log: &mut Log<'_>) -> RunResult<()> {
    // Steps are saved in batches: at most `SAVE_EVERY`, when the run stops running, and
    // before a node with effects (a model call) when an earlier effect is not saved yet.
    // So an effect is on record before the next one starts and the run goes on from
    // there; the steps between are deterministic and take microseconds. A crash inside a
    // batch loses only deterministic work or one effect's record; the run is then failed
    // as interrupted at the next start, never resumed from a half-saved state. Readers in
    // this process see unsaved events through the live hub.
    let mut saved = log.run.event_seq;
    let mut unsaved_effect = false;
    while log.run.status == RunStatus::Running {
        if log.cancel_requested() {
            return Err(cancelled());
        }
        let Some(node) = next_to_run(ctx, log) else {
            break;
        };
        let effectful = is_effectful(node);
        if effectful && unsaved_effect {
            save(ctx.services, log, saved).await?;
            saved = log.run.event_seq;
            unsaved_effect = false;
        }
        run_node(ctx, log, node).await?;
        unsaved_effect |= effectful;
        if log.run.status != RunStatus::Running || log.steps.len() >= SAVE_EVERY {
            save(ctx.services, log, saved).await?;
            saved = log.run.event_seq;
            unsaved_effect = false;
        }
    }
    if !log.events.is_empty() {
        save(ctx.services, log, saved).await?;
    }
    Ok(())
}

/// The node to execute next, or `None` when the run stopped: it completed (no node
/// left) or failed a limit.
fn next_to_run<'g>(ctx: &RunCtx<'g>, log: &mut Log<'_>) -> Option<&'g Node> {
    let Some(slug) = log.run.current_node.clone() else {
        let output = log.run.last_output.clone();
        complete(log, output, json!({"type": "active"}));
        return None;
    };
    let max_steps = ctx.services.engine.max_steps;
    if ctx.budget.steps.load(Ordering::Relaxed) >= max_steps {
        fail(
            log,
            Some(&slug),
            "step_limit",
            format!(
                "the run executed {max_steps} steps without finishing; is a loop missing its exit?"
            ),
        );
        return None;
    }
    if Instant::now() > ctx.budget.deadline {
        let limit = ctx.services.engine.max_run_seconds;
        fail(
            log,
            Some(&slug),
            "time_limit",
            format!("the run went on for more than {limit} seconds (`engine.max_run_seconds`)"),
        );
        return None;
    }
    match ctx.index.node(&slug) {
        Some(node) => Some(node),
        None => {
            fail(
                log,
                Some(&slug),
                "unknown_node",
                format!("the graph has no node `{slug}`"),
            );
            None
        }
    }
}

/// Executes nodes of a run held in memory (a parallel branch, a nested workflow) until it
/// waits, ends, fails or reaches `stop_at`. Nothing is saved: the caller merges the log.
pub(super) fn walk<'f>(
    ctx: &'f RunCtx<'_>,
    log: &'f mut Log<'_>,
    stop_at: Option<&'f str>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = RunResult<()>> + Send + 'f>> {
    Box::pin(async move {
        while log.run.status == RunStatus::Running {
            if log.cancel_requested() {
                return Err(cancelled());
            }
            if stop_at.is_some() && log.run.current_node.as_deref() == stop_at {
                break;
            }
            let Some(node) = next_to_run(ctx, log) else {
                break;
            };
            run_node(ctx, log, node).await?;
        }
        Ok(())
    })
}

/// Executes one node and records its step and where the run goes next.
pub(super) async fn run_node(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> RunResult<()> {
    let slug = node.slug.clone();
    let started_at = Utc::now();
    let timer = Instant::now();
    let input = log.run.last_output.clone();
    // Live readers see a node start; the saved log records it when it finishes.
    if log.has_readers() {
        let title = node.display_name.as_deref().unwrap_or(&node.slug);
        log.ephemeral(
            EventKind::NodeStarted,
            &slug,
            json!({"kind": node.kind, "title": title}),
        );
    }
    // The step's number is taken before it runs: the steps of a parallel branch or a
    // nested workflow inside it come after it.
    log.run.step_count += 1;
    ctx.budget.steps.fetch_add(1, Ordering::Relaxed);
    let seq = log.run.step_count;
    let outcome = if node.is_enabled {
        execute_handled(ctx, log, node).await
    } else {
        // A disabled node is bypassed: its input goes on along its default edge.
        Ok(Outcome {
            output: input.clone(),
            next: match bypass_target(ctx.index.outgoing(&node.slug), node) {
                Some(target) => Next::Goto(target),
                None => Next::Follow(None),
            },
        })
    };
    let duration_ms = i64::try_from(timer.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut step = Step {
        seq,
        node: slug.clone(),
        kind: node.kind.clone(),
        status: if node.is_enabled { "ok" } else { "skipped" }.into(),
        input: bounded(input),
        output: Value::Null,
        error: None,
        started_at,
        duration_ms,
    };
    match outcome {
        Err(NodeError::Cancelled) => return Err(cancelled()),
        Err(NodeError::Failed { code, message }) => {
            step.status = "failed".into();
            step.error = Some(message.clone());
            log.steps.push(step);
            fail(log, Some(&slug), code, message);
        }
        Ok(Outcome { output, next }) => {
            if let Some(message) = log.handled.take() {
                step.status = "failed".into();
                step.error = Some(message);
            }
            step.output = bounded(output.clone());
            log.run.last_output = output;
            let status = if matches!(next, Next::Wait(_)) {
                "waiting"
            } else if !node.is_enabled {
                "skipped"
            } else {
                "ok"
            };
            log.event(
                EventKind::NodeFinished,
                Some(&slug),
                json!({"kind": node.kind, "status": status, "duration_ms": duration_ms}),
            );
            match next {
                Next::Follow(label) => {
                    match next_node(ctx.index.outgoing(&node.slug), node, label.as_deref()) {
                        Ok(next) => log.run.current_node = next,
                        Err(message) => {
                            step.status = "failed".into();
                            step.error = Some(message.clone());
                            fail(log, Some(&slug), "missing_edge", message);
                        }
                    }
                }
                Next::Goto(target) => log.run.current_node = Some(target),
                Next::Wait(wait) => {
                    step.status = "waiting".into();
                    log.event(
                        EventKind::RunWaiting,
                        Some(&slug),
                        json!({"kind": wait.kind, "prompt": wait.prompt, "data": wait.data}),
                    );
                    log.run.status = RunStatus::Waiting;
                    log.run.wait = Some(wait);
                }
                Next::End { output, status } => {
                    log.run.last_output = output.clone();
                    complete(log, output, status);
                }
            }
            log.steps.push(step);
        }
    }
    Ok(())
}

/// Executes a node under its error handling: retries with backoff, then fail, continue
/// with a default output, or route to the `error` edge.
async fn execute_handled(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
) -> Result<Outcome, NodeError> {
    use nodes::common::{ERROR_LABEL, ErrorHandling, OnError};
    let kind = Kind::parse(&node.kind)
        .ok_or_else(|| {
            node_error(
                "unsupported_node",
                format!("`{}` nodes cannot run in this version", node.kind),
            )
        })?
        .behaviour();
    let handling = ErrorHandling::of(&node.parameters).unwrap_or_default();
    let attempts = handling.retry.map_or(1, |r| r.max_attempts.max(1));
    let mut attempt = 1;
    loop {
        // What a failed attempt did (a message, some assignments, a loop count) is undone
        // before a retry or a handled failure.
        // Event numbers are never taken back: live readers may have seen them.
        let before = (
            log.run.state.clone(),
            log.run.history.clone(),
            log.run.scratch.clone(),
            log.events.len(),
            log.steps.len(),
            log.run.step_count,
        );
        let (code, message) = match kind.execute(ctx, log, node).await {
            Ok(outcome) => return Ok(outcome),
            Err(NodeError::Cancelled) => return Err(NodeError::Cancelled),
            Err(NodeError::Failed { code, message }) => (code, message),
        };
        (log.run.state, log.run.history, log.run.scratch) = (before.0, before.1, before.2);
        log.events.truncate(before.3);
        log.steps.truncate(before.4);
        log.run.step_count = before.5;
        kind.forget_attempt(log.run, node);
        if attempt < attempts {
            let base = handling.retry.map_or(0, |r| r.backoff_ms);
            let backoff = base.saturating_mul(1 << (attempt - 1).min(16)).min(60_000);
            log.event(EventKind::NodeRetry, Some(&node.slug), json!({"attempt": attempt, "code": code, "message": message, "backoff_ms": backoff}));
            tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
            attempt += 1;
            continue;
        }
        let error = json!({"code": code, "message": message});
        return match handling.on_error {
            OnError::Fail => Err(NodeError::Failed { code, message }),
            OnError::Continue => {
                log.event(
                    EventKind::NodeErrorHandled,
                    Some(&node.slug),
                    json!({"action": "continue", "error": error}),
                );
                log.handled = Some(message);
                Ok(Outcome {
                    output: handling.default_output.clone().unwrap_or(Value::Null),
                    next: Next::Follow(None),
                })
            }
            OnError::Route => {
                log.event(
                    EventKind::NodeErrorHandled,
                    Some(&node.slug),
                    json!({"action": "route", "error": error}),
                );
                log.handled = Some(message);
                Ok(Outcome {
                    output: json!({"error": error}),
                    next: Next::Follow(Some(ERROR_LABEL.into())),
                })
            }
        };
    }
}
