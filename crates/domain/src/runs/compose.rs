//! Runs inside a run: parallel branches and nested workflows.
//!
//! Both execute nodes on a copy of the run held in memory ([`engine::walk`]) and merge
//! the copy's steps, events and history back, so the run's saved record reads as if the
//! nodes had run in place. Neither may pause: a branch or nested workflow that waits for
//! the user fails the step with a clear error.
//!
//! A split's edges are its branches, named in order by its `branches` list. Merge rule:
//! every branch starts from the state at the split;
//! afterwards each top-level state key a branch changed is copied into the run, branch by
//! branch in the order of the split's edges, so when two branches set one key the later
//! edge wins. Messages the branches said are appended in the same order.

use futures_util::future::join_all;
use serde_json::{Map, Value, json};

use super::{
    Event, EventKind, Run, RunError, RunStatus, Step,
    engine::{initial_state, walk},
    step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
};
use crate::Services;
use crate::workflows::{
    self, Node, Workflow,
    nodes::{self, Role},
};

/// A reference to another workflow: `{id}`, `{slug}` or a bare slug.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WorkflowRef {
    Id(i64),
    Slug(String),
}

impl WorkflowRef {
    pub fn parse(value: &Value) -> Option<WorkflowRef> {
        if let Some(id) = value.get("id").and_then(Value::as_i64).filter(|id| *id > 0) {
            return Some(WorkflowRef::Id(id));
        }
        value
            .get("slug")
            .and_then(Value::as_str)
            .or_else(|| value.as_str())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| WorkflowRef::Slug(s.to_string()))
    }

    pub fn label(&self) -> String {
        match self {
            WorkflowRef::Id(id) => format!("workflow_{id}"),
            WorkflowRef::Slug(slug) => slug.clone(),
        }
    }
}

/// An agent node with `workflow`: runs that workflow in the conversation; its messages
/// become the conversation's, and its final output is the node's output.
pub(crate) async fn nested_node(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    reference: &WorkflowRef,
) -> Result<Outcome, NodeError> {
    let input = log.run.last_output.clone();
    let output = nested(ctx, log, reference, input, &node.slug, true).await?;
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}

/// A workflow called as an agent's tool: it starts a conversation of its own from
/// `input`; its events are recorded, its messages are not added to the run's.
pub(crate) async fn run_nested(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    reference: &WorkflowRef,
    input: Value,
    label: &str,
) -> Result<Value, NodeError> {
    nested(ctx, log, reference, input, label, false).await
}

async fn nested(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    reference: &WorkflowRef,
    input: Value,
    label: &str,
    shared_history: bool,
) -> Result<Value, NodeError> {
    let services = ctx.services;
    let missing = || {
        node_error(
            "workflow_not_found",
            format!(
                "the workflow `{}` does not exist or is not shared with this user",
                reference.label()
            ),
        )
    };
    let found: Option<Workflow> = match reference {
        WorkflowRef::Id(id) => services.store.workflow_by_id(*id).await,
        WorkflowRef::Slug(slug) => services.store.workflow_by_slug(slug).await,
    }
    .map_err(|err| node_error("internal_error", err.to_string()))?;
    let workflow = found.ok_or_else(missing)?;
    if ctx.stack.contains(&workflow.id) {
        return Err(node_error(
            "workflow_cycle",
            format!(
                "the workflow `{}` is already running in this run (a nested workflow may not call itself)",
                workflow.slug
            ),
        ));
    }
    // The user may run it, or the author of the calling workflow chose it: a workflow
    // served to users who cannot see it (the ChatKit default) runs its nested workflows
    // for them too.
    let allowed = workflows::runnable(services, ctx.user, workflow.id, false)
        .await
        .is_ok()
        || author_may_run(services, ctx.workflow, workflow.id).await;
    if !allowed {
        return Err(missing());
    }
    let version = services
        .store
        .production_version(workflow.id)
        .await
        .map_err(|err| node_error("internal_error", err.to_string()))?
        .ok_or_else(|| {
            node_error(
                "workflow_not_published",
                format!("the workflow `{}` has no production version", workflow.slug),
            )
        })?;
    let graph = &version.graph;
    let start = graph
        .nodes
        .iter()
        .find(|n| n.is_enabled && nodes::role_of(n) == Some(Role::Entry))
        .ok_or_else(|| {
            node_error(
                "invalid_workflow",
                format!("the workflow `{}` has no enabled start node", workflow.slug),
            )
        })?;
    let mut child_ctx = RunCtx::new(services, &workflow, &version, ctx.user);
    child_ctx.stack = ctx.stack.iter().copied().chain([workflow.id]).collect();
    child_ctx.budget = ctx.budget.clone();
    let mut child = log.run.clone();
    child.current_node = Some(start.slug.clone());
    child.state = initial_state(graph, None)
        .map_err(|err| node_error("invalid_workflow", err.to_string()))?;
    child.scratch = json!({});
    child.last_output = input.clone();
    child.input = input;
    if !shared_history {
        child.history = child
            .input
            .get("input_as_text")
            .and_then(Value::as_str)
            .map(|text| super::HistoryEntry {
                role: "user".into(),
                text: text.to_string(),
                ..Default::default()
            })
            .into_iter()
            .collect();
    }
    let (result, steps, events) = {
        let mut child_log = Log::new(&mut child);
        child_log.live = log.live;
        child_log.nested = true;
        let result = walk(&child_ctx, &mut child_log, None).await;
        (result, child_log.steps, child_log.events)
    };
    stopped_by(&result)?;
    let prefix = format!("{}/", workflow.slug);
    merge(log, steps, events, &prefix, label, !shared_history);
    if shared_history {
        log.run.history = child.history;
    }
    match child.status {
        RunStatus::Completed => Ok(child.output.unwrap_or(Value::Null)),
        RunStatus::Waiting => Err(node_error(
            "nested_workflow_waits",
            format!(
                "the nested workflow `{}` waits at `{}`; a nested workflow must run to its end without pausing",
                workflow.slug,
                child.wait.map(|w| w.node).unwrap_or_default()
            ),
        )),
        _ => {
            let failure = child.error.unwrap_or_else(|| super::RunFailure {
                node: None,
                code: "engine_error".into(),
                message: "it stopped".into(),
            });
            Err(node_error(
                "nested_workflow_failed",
                format!(
                    "the nested workflow `{}` failed at `{}`: {}",
                    workflow.slug,
                    failure.node.unwrap_or_default(),
                    failure.message
                ),
            ))
        }
    }
}

/// A walk's own error: a cancellation stops the step; anything else fails it.
fn stopped_by(result: &Result<(), RunError>) -> Result<(), NodeError> {
    match result {
        Ok(()) => Ok(()),
        Err(RunError::Cancelled) => Err(NodeError::Cancelled),
        Err(err) => Err(node_error("engine_error", err.to_string())),
    }
}

/// Appends a part's steps and events to the run, renumbered. Run-level events of the
/// part (its start, end or failure) are left out: the step reports them.
fn merge(
    log: &mut Log<'_>,
    steps: Vec<Step>,
    events: Vec<Event>,
    node_prefix: &str,
    part: &str,
    skip_messages: bool,
) {
    for event in events {
        if event.kind.is_lifecycle()
            || (skip_messages
                && matches!(
                    event.kind,
                    EventKind::AssistantMessage | EventKind::UserMessage
                ))
        {
            continue;
        }
        let mut data = event.data;
        if let Value::Object(map) = &mut data {
            map.insert("part".into(), json!(part));
        }
        let node = event.node.map(|n| format!("{node_prefix}{n}"));
        log.event(event.kind, node.as_deref(), data);
    }
    for mut step in steps {
        log.run.step_count += 1;
        step.seq = log.run.step_count;
        step.node = format!("{node_prefix}{}", step.node);
        log.steps.push(step);
    }
}

/// `parallel_split`: runs every outgoing branch concurrently up to the join, merges them
/// (see the module's rule), and goes to the join with the branches' outputs.
pub(crate) async fn split(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
) -> Result<Outcome, NodeError> {
    let config: nodes::ParallelSplit = parse(node)?;
    let join = config.join_slug.trim().to_string();
    if ctx.index.node(&join).is_none() {
        return Err(node_error(
            "invalid_parameters",
            format!("the join `{join}` is not in the graph"),
        ));
    }
    // Every edge is a branch, except the `error` edge of the split's own error handling.
    let targets: Vec<String> = ctx
        .index
        .outgoing(&node.slug)
        .iter()
        .filter(|e| {
            !e.condition
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case(nodes::common::ERROR_LABEL))
        })
        .map(|e| e.target.clone())
        .collect();
    let base: Run = log.run.clone();
    let mut runs: Vec<Run> = targets
        .iter()
        .map(|target| {
            let mut run = base.clone();
            run.current_node = Some(target.clone());
            run
        })
        .collect();
    let live = log.live;
    let join_ref = join.as_str();
    let results = join_all(runs.iter_mut().map(|run| async move {
        let mut branch = Log::new(run);
        branch.live = live;
        branch.nested = true;
        let result = walk(ctx, &mut branch, Some(join_ref)).await;
        (result, branch.steps, branch.events)
    }))
    .await;
    // Every branch is checked before any is merged: a failure leaves the run as it was.
    for ((target, run), (result, _, _)) in targets.iter().zip(&runs).zip(&results) {
        stopped_by(result)?;
        match run.status {
            RunStatus::Failed => {
                let failure = run.error.clone().unwrap_or_else(|| super::RunFailure {
                    node: None,
                    code: "engine_error".into(),
                    message: "it stopped".into(),
                });
                return Err(node_error(
                    "branch_failed",
                    format!(
                        "the branch `{target}` failed at `{}`: {}",
                        failure.node.unwrap_or_default(),
                        failure.message
                    ),
                ));
            }
            RunStatus::Waiting => {
                return Err(node_error(
                    "branch_waits",
                    format!(
                        "the branch `{target}` waits at `{}`; parallel branches must run to the join without pausing",
                        run.wait
                            .as_ref()
                            .map(|w| w.node.as_str())
                            .unwrap_or_default()
                    ),
                ));
            }
            _ => {}
        }
    }
    let mut outputs = Map::new();
    for (index, ((target, run), (_, steps, events))) in
        targets.iter().zip(runs).zip(results).enumerate()
    {
        // The split's `branches` name its edges in order; unnamed edges go by their target.
        let (branch, label) = match config.branches.get(index) {
            Some(nodes::SplitBranch::Full { slug, label }) => (
                slug.trim().to_string(),
                label.clone().unwrap_or_else(|| slug.trim().to_string()),
            ),
            Some(nodes::SplitBranch::Slug(slug)) => {
                (slug.trim().to_string(), slug.trim().to_string())
            }
            None => (target.clone(), target.clone()),
        };
        merge(log, steps, events, "", &branch, false);
        for entry in run.history.iter().skip(base.history.len()) {
            log.run.history.push(entry.clone());
        }
        if let (Some(after), Some(before)) = (run.state.as_object(), base.state.as_object()) {
            for (key, value) in after {
                if before.get(key) != Some(value) {
                    log.run.state[key.as_str()] = value.clone();
                }
            }
        }
        outputs.insert(
            branch,
            json!({"label": label, "target": target, "output": run.output.unwrap_or(run.last_output)}),
        );
    }
    let payload = json!({"split_slug": node.slug, "join_slug": join, "branches": outputs});
    if !log.run.scratch.is_object() {
        log.run.scratch = json!({});
    }
    let scratch = &mut log.run.scratch;
    if !scratch.get("parallel").is_some_and(Value::is_object) {
        scratch["parallel"] = json!({});
    }
    scratch["parallel"][join.as_str()] = payload.clone();
    Ok(Outcome {
        output: json!({"parallel_split": payload}),
        next: Next::Goto(join),
    })
}

/// `parallel_join`: publishes what the split left for it, `{parallel_join, output}`
/// where `output` maps each branch to its output.
pub(crate) fn join(log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let payload = log
        .run
        .scratch
        .get_mut("parallel")
        .and_then(Value::as_object_mut)
        .and_then(|p| p.remove(&node.slug));
    let output = match payload {
        Some(payload) => {
            let outputs: Map<String, Value> = payload["branches"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(slug, branch)| (slug.clone(), branch["output"].clone()))
                .collect();
            json!({"parallel_join": payload, "output": outputs})
        }
        // Reached without its split (a path around it): the input goes on.
        None => log.run.last_output.clone(),
    };
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}

/// Whether the owner of `caller` may run the workflow `id` (a system workflow, with no
/// owner, vouches for nothing).
async fn author_may_run(services: &Services, caller: &Workflow, id: i64) -> bool {
    let Some(owner_id) = caller.owner_id else {
        return false;
    };
    match services.store.user_by_id(owner_id).await {
        Ok(Some(owner)) => workflows::runnable(services, &owner, id, false)
            .await
            .is_ok(),
        _ => false,
    }
}
