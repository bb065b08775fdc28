//! Node kinds: one file per kind, each with its typed configuration, its checks, its
//! example, its execution, what it waits for and how it resumes ([`NodeKind`]).
//!
//! To add a kind: a new file with the config struct (with `#[serde(flatten)] extra` so
//! unknown parameters are reported) and a `KIND` implementing [`NodeKind`], and its line
//! in [`REGISTRY`]. Each kind's `example` is a valid configuration; the tests round-trip
//! all of them.

pub mod agent;
pub mod assistant_message;
pub mod common;
pub mod condition;
pub mod end;
pub mod file_search;
pub mod json_vector_store;
pub mod mcp;
pub mod note;
pub mod parallel;
pub mod start;
pub mod state;
pub mod transform;
pub mod user_approval;
pub mod user_message;
pub mod wait_for_user_input;
pub mod watch;
pub mod while_loop;
pub mod widget;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use agent::Agent;
pub use condition::{Condition, ConditionCase, ConditionMode};
pub use end::End;
pub use parallel::{ParallelSplit, SplitBranch};
pub use start::Start;
pub use state::{Assignment, SetState};
pub use while_loop::While;
pub use widget::WidgetNode;

use super::{Edge, Graph, import::AbNode, problems::Problems, references::Reference};
use crate::runs::{
    Resume, Run, RunError, RunResult, Wait,
    step::{Log, NodeError, Outcome, RunCtx},
};

/// Every node kind this version can run, listed once. Adding a kind is its file and one
/// line here.
pub const REGISTRY: &[Kind] = &[
    start::KIND,
    end::KIND,
    agent::KIND,
    assistant_message::KIND,
    user_message::KIND,
    wait_for_user_input::KIND,
    widget::KIND,
    state::KIND,
    transform::KIND,
    condition::KIND,
    while_loop::KIND,
    parallel::SPLIT,
    parallel::JOIN,
    user_approval::KIND,
    watch::KIND,
    note::KIND,
    file_search::KIND,
    json_vector_store::KIND,
    mcp::KIND,
];

/// What a node is to the graph's structure: the checks that look across nodes (one
/// start, reachable ends, loops and their bodies, splits and their joins) ask for roles,
/// never for kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An ordinary step.
    Step,
    /// Where a run begins: exactly one enabled per graph, with no edge into it.
    Entry,
    /// Ends the run; an exit that cannot be reached is an error.
    Exit,
    /// Never executed (a note): it need not be reachable.
    Annotation,
    /// Encloses the nodes whose `parent_slug` names it.
    Loop,
    /// Where a split's branches meet; exactly one split names it.
    Join,
}

/// A node's place in its graph, for [`NodeKind::check_edges`].
pub(crate) struct Place<'a> {
    pub slug: &'a str,
    pub params: &'a Map<String, Value>,
    /// Its outgoing edges (to enabled and disabled nodes).
    pub out: &'a [&'a Edge],
    /// How many edges lead into it.
    pub incoming: usize,
    /// Every node slug of the graph, enabled or not.
    pub slugs: &'a HashSet<&'a str>,
    /// The role of an enabled node, by slug.
    pub role_of: &'a dyn Fn(&str) -> Option<Role>,
    /// The joins claimed so far, with the split that claimed each.
    pub joins: &'a mut HashMap<String, String>,
}

/// A step's execution, boxed so that kinds can be listed as trait objects.
pub(crate) type StepFuture<'s> =
    Pin<Box<dyn Future<Output = Result<Outcome, NodeError>> + Send + 's>>;

/// Where a waiting node goes once it took its answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Resumed {
    /// Along the edge with this label (or the default edge).
    Follow(Option<String>),
    /// Back into the same node (an agent given a tool's result or an approval).
    Reenter,
}

/// A kind of node: everything about it lives in its own file and reaches the rest of the
/// platform through this trait. The engine, validation and answering a wait know no kind
/// by name.
pub(crate) trait NodeKind: Sync {
    /// Its name in graphs.
    fn name(&self) -> &'static str;
    /// Other names a graph may use for it (the seed's).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    fn role(&self) -> Role {
        Role::Step
    }
    /// A valid configuration, as JSON parameters (the tests round-trip every one).
    fn example(&self) -> &'static str;
    /// Checks its parameters; false when they do not parse.
    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool;
    /// Checks its edges (labels, counts) and what its parameters name in the graph.
    fn check_edges(&self, _place: &mut Place<'_>, _problems: &mut Problems) {}
    /// Whether a step has outside effects or takes long (a model call, a search): its
    /// record is saved before the next such step starts.
    fn effectful(&self) -> bool {
        false
    }
    /// Runs one step.
    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s super::Node,
    ) -> StepFuture<'s>;
    /// Takes the answer to what a step of this kind waits for; records it in `log`.
    fn resume(
        &self,
        _log: &mut Log<'_>,
        _node: &super::Node,
        wait: &Wait,
        _answer: Resume,
        _graph: &Graph,
    ) -> RunResult<Resumed> {
        Err(refused(wait))
    }
    /// Forgets what a failed attempt of a step left in the run's scratch space, before a
    /// retry or a handled failure.
    fn forget_attempt(&self, _run: &mut Run, _node: &super::Node) {}
    /// What its parameters point at beyond what every kind's are scanned for (models,
    /// widgets, knowledge bases): the field and the reference.
    fn references(&self, _params: &Map<String, Value>) -> Vec<(&'static str, Reference)> {
        Vec::new()
    }
    /// The Agent Builder node types this kind imports (`Agent`, `SetState`, …).
    fn agent_builder_types(&self) -> &'static [&'static str] {
        &[]
    }
    /// Converts an Agent Builder node of one of those types: our parameters, and its
    /// output ports as our edge labels.
    fn import_agent_builder(&self, _node: &mut AbNode<'_, '_>) -> Result<(), String> {
        Ok(())
    }
    /// Adapts a node of the seed system's own graphs: settings it read differently
    /// (warned about in `problems`, which point at the node).
    fn import_seed(&self, _params: &mut Map<String, Value>, _problems: &mut Problems) {}
    /// Whether the node searches the knowledge base `slug`.
    fn uses_store(&self, _params: &Map<String, Value>, _slug: &str) -> bool {
        false
    }
}

/// The answer does not fit what the run waits for.
pub(crate) fn refused(wait: &Wait) -> RunError {
    RunError::Invalid(format!(
        "the run waits for {}",
        wait.kind.as_str().replace('_', " ")
    ))
}

/// A step that finished at once.
pub(crate) fn ready<'s>(result: Result<Outcome, NodeError>) -> StepFuture<'s> {
    Box::pin(std::future::ready(result))
}

/// A node kind from the registry.
#[derive(Clone, Copy)]
pub struct Kind(&'static dyn NodeKind);

impl Kind {
    /// Every kind, in the registry's order.
    pub const ALL: &'static [Kind] = REGISTRY;

    pub(crate) const fn of(kind: &'static dyn NodeKind) -> Kind {
        Kind(kind)
    }

    pub fn as_str(self) -> &'static str {
        self.0.name()
    }

    /// Parses a kind name; case-insensitive, as the seed system lower-cases kinds.
    pub fn parse(name: &str) -> Option<Kind> {
        let name = name.trim().to_ascii_lowercase();
        REGISTRY
            .iter()
            .copied()
            .find(|k| k.as_str() == name || k.0.aliases().contains(&name.as_str()))
    }

    /// A valid configuration of this kind, as JSON parameters.
    pub fn example(self) -> &'static str {
        self.0.example()
    }

    pub fn role(self) -> Role {
        self.0.role()
    }

    /// What the kind does.
    pub(crate) fn behaviour(self) -> &'static dyn NodeKind {
        self.0
    }
}

impl PartialEq for Kind {
    fn eq(&self, other: &Kind) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Kind {}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of a node of a graph when it is enabled and of a known kind.
pub fn role_of(node: &super::Node) -> Option<Role> {
    node.is_enabled
        .then(|| Kind::parse(&node.kind))
        .flatten()
        .map(Kind::role)
}

/// Kinds that later parts of the platform add. A graph may hold them disabled (imports do
/// that); enabled, they cannot run yet.
pub const PLANNED_KINDS: &[&str] = &[
    "computer_use",
    "voice_agent",
    "outbound_call",
    "guardrails",
    "evaluated_step",
    "lab",
    "help_loop",
    "guided_exercise",
];

/// Reads `params` into `T`, reporting a type error and every unknown parameter.
pub(crate) fn parse<T: DeserializeOwned + HasExtra>(
    params: &Map<String, Value>,
    problems: &mut Problems,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(Value::Object(params.clone())) {
        Ok(config) => {
            for key in config
                .extra()
                .keys()
                .filter(|k| !common::KEYS.contains(&k.as_str()))
            {
                problems.warning(
                    "unknown_parameter",
                    Some(&format!("parameters.{key}")),
                    format!(
                        "`{key}` is not a parameter of this kind of node; it is kept but ignored"
                    ),
                );
            }
            Some(config)
        }
        Err(err) => {
            let path = err.path().to_string();
            let field = if path == "." {
                "parameters".to_string()
            } else {
                format!("parameters.{path}")
            };
            problems.error("invalid_parameter", Some(&field), err.inner().to_string());
            None
        }
    }
}

/// Config structs keep the parameters they do not know, to report them.
pub(crate) trait HasExtra {
    fn extra(&self) -> &Map<String, Value>;
}

macro_rules! has_extra {
    ($($ty:ty),* $(,)?) => {
        $(impl $crate::workflows::nodes::HasExtra for $ty {
            fn extra(&self) -> &serde_json::Map<String, serde_json::Value> {
                &self.extra
            }
        })*
    };
}
pub(crate) use has_extra;

/// Checks a node's parameters against its kind; false when they do not parse.
pub fn check(kind: Kind, params: &Map<String, Value>, problems: &mut Problems) -> bool {
    common::ErrorHandling::check(params, problems).is_some() && kind.0.check(params, problems)
}

/// Parses and checks a kind's typed configuration ([`NodeKind::check`] for most kinds).
pub(crate) fn check_config<T: DeserializeOwned + HasExtra>(
    params: &Map<String, Value>,
    problems: &mut Problems,
    check: impl FnOnce(&T, &mut Problems),
) -> bool {
    parse::<T>(params, problems)
        .map(|config| check(&config, problems))
        .is_some()
}

/// A kind's typed configuration when it parses (checks report why it does not).
pub(crate) fn config_of<T: DeserializeOwned>(params: &Map<String, Value>) -> Option<T> {
    serde_json::from_value(Value::Object(params.clone())).ok()
}

/// A text field that the seed system also accepted under another name (`message`/`text`).
pub(crate) fn first_text<'a>(
    fields: &[(&'a str, &'a Option<String>)],
) -> Option<(&'a str, &'a str)> {
    fields
        .iter()
        .find_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_valid_example_that_round_trips() {
        for kind in Kind::ALL {
            let params: Map<String, Value> = serde_json::from_str(kind.example())
                .unwrap_or_else(|err| panic!("{} example is not JSON: {err}", kind.as_str()));
            let mut problems = Problems::new();
            assert!(check(*kind, &params, &mut problems), "{}", kind.as_str());
            assert!(
                problems.as_slice().is_empty(),
                "{}: {:?}",
                kind.as_str(),
                problems.as_slice()
            );
            assert_eq!(Kind::parse(kind.as_str()), Some(*kind));
            assert_eq!(Kind::parse(&kind.as_str().to_uppercase()), Some(*kind));
        }
    }

    #[test]
    fn unknown_and_mistyped_parameters_are_reported() {
        let params: Map<String, Value> = serde_json::from_value(
            serde_json::json!({"max_iterations": "many", "condition": "true"}),
        )
        .unwrap();
        let mut problems = Problems::new();
        assert!(!check(while_loop::KIND, &params, &mut problems));
        let problem = &problems.as_slice()[0];
        assert_eq!(
            (problem.code, problem.field.as_deref()),
            ("invalid_parameter", Some("parameters.max_iterations"))
        );

        let params: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"colour": "red"})).unwrap();
        let mut problems = Problems::new();
        assert!(check(watch::KIND, &params, &mut problems));
        assert_eq!(problems.as_slice()[0].code, "unknown_parameter");
        assert_eq!(
            problems.as_slice()[0].field.as_deref(),
            Some("parameters.colour")
        );
    }
}
