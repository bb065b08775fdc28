//! Trying one node by itself: a run held in memory executes that node once and, when it
//! pauses and an answer is given, takes the answer the way a waiting run does. Nothing is
//! saved (no run, no event, no usage). The node kinds' tests run on it; trying a step in
//! place in the builder needs the same.

use chrono::Utc;
use serde_json::{Value, json};

use super::{
    Event, HistoryEntry, Resume, Run, RunError, RunFailure, RunResult, RunStatus, Step, Wait,
    engine::{initial_state, next_node, run_node},
    step::{Log, RunCtx},
};
use crate::{
    Services,
    users::User,
    workflows::{
        Graph, Version, Workflow,
        nodes::{Kind, Resumed},
    },
};

/// A node to try, in its graph.
#[derive(Debug, Clone, Default)]
pub struct Trial {
    /// The graph the node belongs to: its edges, loops and state schema count.
    pub graph: Graph,
    /// The slug of the node to run.
    pub node: String,
    /// What the node gets as `input`.
    pub input: Value,
    /// The run's state over the state schema's defaults.
    pub state: Option<Value>,
    /// The conversation so far.
    pub history: Vec<HistoryEntry>,
    /// The answer to give when the node waits: the node then takes it and, if it asks to
    /// be entered again (an agent given a tool's result), runs once more.
    pub answer: Option<Resume>,
}

/// What the node did.
#[derive(Debug, Clone)]
pub struct Tried {
    /// `running` when the run goes on to [`Tried::next`]; `waiting`, `completed` or
    /// `failed` when it stopped there.
    pub status: RunStatus,
    /// The node the run goes to next.
    pub next: Option<String>,
    /// The node's output: the next node's `input`.
    pub output: Value,
    pub wait: Option<Wait>,
    pub failure: Option<RunFailure>,
    /// The run's output, when the node ended it.
    pub run_output: Option<Value>,
    pub events: Vec<Event>,
    pub steps: Vec<Step>,
    pub state: Value,
    pub history: Vec<HistoryEntry>,
}

/// Runs `trial.node` of `trial.graph` once as `actor`, as a step of a run that is never
/// saved.
pub async fn try_node(services: &Services, actor: &User, trial: Trial) -> RunResult<Tried> {
    let now = Utc::now();
    let workflow = Workflow {
        id: 0,
        slug: "trial".into(),
        display_name: "Trial".into(),
        description: None,
        owner_id: Some(actor.id),
        is_chatkit_default: false,
        follow_production: false,
        production_version_id: None,
        created_at: now,
        updated_at: now,
    };
    let version = Version {
        id: 0,
        workflow_id: 0,
        number: 0,
        name: None,
        graph: trial.graph,
        revision: 0,
        is_production: false,
        published_at: None,
        published_by: None,
        created_by: Some(actor.id),
        created_at: now,
        updated_by: None,
        updated_at: now,
    };
    let node = version
        .graph
        .node(&trial.node)
        .ok_or_else(|| RunError::Invalid(format!("the graph has no node `{}`", trial.node)))?;
    let mut run = Run {
        id: crate::ordered_id("trial"),
        workflow_id: 0,
        version_id: 0,
        user_id: Some(actor.id),
        thread_id: None,
        status: RunStatus::Running,
        current_node: Some(node.slug.clone()),
        input: trial.input.clone(),
        state: initial_state(&version.graph, trial.state.as_ref())?,
        last_output: trial.input,
        history: trial.history,
        history_before: None,
        scratch: json!({}),
        wait: None,
        output: None,
        error: None,
        step_count: 0,
        event_seq: 0,
        created_at: now,
        updated_at: now,
        finished_at: None,
    };
    let ctx = RunCtx::new(services, &workflow, &version, actor);
    let mut log = Log::new(&mut run);
    run_node(&ctx, &mut log, node).await?;
    if let Some(answer) = trial.answer
        && log.run.status == RunStatus::Waiting
        && let Some(wait) = log.run.wait.take()
    {
        let kind = Kind::parse(&node.kind)
            .ok_or_else(|| RunError::Invalid(format!("`{}` nodes cannot run", node.kind)))?;
        let resumed = kind
            .behaviour()
            .resume(&mut log, node, &wait, answer, &version.graph)?;
        log.run.status = RunStatus::Running;
        match resumed {
            Resumed::Reenter => {
                log.run.current_node = Some(node.slug.clone());
                run_node(&ctx, &mut log, node).await?;
            }
            Resumed::Follow(label) => {
                match next_node(ctx.index.outgoing(&node.slug), node, label.as_deref()) {
                    Ok(next) => log.run.current_node = next,
                    Err(message) => {
                        super::engine::fail(&mut log, Some(&node.slug), "missing_edge", message)
                    }
                }
            }
        }
    }
    let (events, steps) = (log.events, log.steps);
    Ok(Tried {
        status: run.status,
        next: run.current_node,
        output: run.last_output,
        wait: run.wait,
        failure: run.error,
        run_output: run.output,
        events,
        steps,
        state: run.state,
        history: run.history,
    })
}
