//! Node kinds: one file per kind, each with its typed configuration and its checks.
//!
//! To add a kind: a new file with the config struct (with `#[serde(flatten)] extra` so
//! unknown parameters are reported), a `Kind` variant, and the match arms below.
//! Each file's `EXAMPLE` is a valid configuration; the tests round-trip all of them.

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

use super::problems::Problems;

/// The node kinds this version of Switchyard can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Start,
    End,
    Agent,
    AssistantMessage,
    UserMessage,
    WaitForUserInput,
    Widget,
    State,
    Transform,
    Condition,
    While,
    ParallelSplit,
    ParallelJoin,
    UserApproval,
    Watch,
    Note,
    FileSearch,
    JsonVectorStore,
    Mcp,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Start,
        Kind::End,
        Kind::Agent,
        Kind::AssistantMessage,
        Kind::UserMessage,
        Kind::WaitForUserInput,
        Kind::Widget,
        Kind::State,
        Kind::Transform,
        Kind::Condition,
        Kind::While,
        Kind::ParallelSplit,
        Kind::ParallelJoin,
        Kind::UserApproval,
        Kind::Watch,
        Kind::Note,
        Kind::FileSearch,
        Kind::JsonVectorStore,
        Kind::Mcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::End => "end",
            Kind::Agent => "agent",
            Kind::AssistantMessage => "assistant_message",
            Kind::UserMessage => "user_message",
            Kind::WaitForUserInput => "wait_for_user_input",
            Kind::Widget => "widget",
            Kind::State => "state",
            Kind::Transform => "transform",
            Kind::Condition => "condition",
            Kind::While => "while",
            Kind::ParallelSplit => "parallel_split",
            Kind::ParallelJoin => "parallel_join",
            Kind::UserApproval => "user_approval",
            Kind::Watch => "watch",
            Kind::Note => "note",
            Kind::FileSearch => "file_search",
            Kind::JsonVectorStore => "json_vector_store",
            Kind::Mcp => "mcp",
        }
    }

    /// Parses a kind name; case-insensitive, as the seed system lower-cases kinds.
    pub fn parse(name: &str) -> Option<Kind> {
        let name = name.trim().to_ascii_lowercase();
        // The seed's planned name for a store search.
        if name == "vector_store_search" {
            return Some(Kind::FileSearch);
        }
        Kind::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    /// A valid configuration of this kind, as JSON parameters.
    pub fn example(self) -> &'static str {
        match self {
            Kind::Start => start::EXAMPLE,
            Kind::End => end::EXAMPLE,
            Kind::Agent => agent::EXAMPLE,
            Kind::AssistantMessage => assistant_message::EXAMPLE,
            Kind::UserMessage => user_message::EXAMPLE,
            Kind::WaitForUserInput => wait_for_user_input::EXAMPLE,
            Kind::Widget => widget::EXAMPLE,
            Kind::State => state::EXAMPLE,
            Kind::Transform => transform::EXAMPLE,
            Kind::Condition => condition::EXAMPLE,
            Kind::While => while_loop::EXAMPLE,
            Kind::ParallelSplit => parallel::SPLIT_EXAMPLE,
            Kind::ParallelJoin => parallel::JOIN_EXAMPLE,
            Kind::UserApproval => user_approval::EXAMPLE,
            Kind::Watch => watch::EXAMPLE,
            Kind::Note => note::EXAMPLE,
            Kind::FileSearch => file_search::EXAMPLE,
            Kind::JsonVectorStore => json_vector_store::EXAMPLE,
            Kind::Mcp => mcp::EXAMPLE,
        }
    }
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

/// The typed configuration of a node, for the checks that look across nodes.
#[derive(Debug, Clone)]
pub enum Config {
    Condition(Condition),
    While(While),
    ParallelSplit(ParallelSplit),
    End(End),
    Other,
}

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

/// Checks a node's parameters against its kind; returns the typed config when it parses.
pub fn check(kind: Kind, params: &Map<String, Value>, problems: &mut Problems) -> Option<Config> {
    common::ErrorHandling::check(params, problems)?;
    match kind {
        Kind::Start => parse::<start::Start>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::End => parse::<End>(params, problems).map(|c| {
            c.check(problems);
            Config::End(c)
        }),
        Kind::Agent => parse::<Agent>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::AssistantMessage => parse::<assistant_message::AssistantMessage>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::UserMessage => parse::<user_message::UserMessage>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::WaitForUserInput => parse::<wait_for_user_input::WaitForUserInput>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::Widget => parse::<widget::WidgetNode>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::State => parse::<SetState>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::Transform => parse::<transform::Transform>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::Condition => parse::<Condition>(params, problems).map(|c| {
            c.check(problems);
            Config::Condition(c)
        }),
        Kind::While => parse::<While>(params, problems).map(|c| {
            c.check(problems);
            Config::While(c)
        }),
        Kind::ParallelSplit => parse::<ParallelSplit>(params, problems).map(|c| {
            c.check(problems);
            Config::ParallelSplit(c)
        }),
        Kind::ParallelJoin => {
            parse::<parallel::ParallelJoin>(params, problems).map(|_| Config::Other)
        }
        Kind::UserApproval => parse::<user_approval::UserApproval>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::Watch => parse::<watch::Watch>(params, problems).map(|_| Config::Other),
        Kind::Note => parse::<note::Note>(params, problems).map(|_| Config::Other),
        Kind::FileSearch => parse::<file_search::FileSearch>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::JsonVectorStore => parse::<json_vector_store::JsonVectorStore>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
        Kind::Mcp => parse::<mcp::McpCall>(params, problems)
            .map(|c| c.check(problems))
            .map(|()| Config::Other),
    }
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
            assert!(
                check(*kind, &params, &mut problems).is_some(),
                "{}",
                kind.as_str()
            );
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
        assert!(check(Kind::While, &params, &mut problems).is_none());
        let problem = &problems.as_slice()[0];
        assert_eq!(
            (problem.code, problem.field.as_deref()),
            ("invalid_parameter", Some("parameters.max_iterations"))
        );

        let params: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"colour": "red"})).unwrap();
        let mut problems = Problems::new();
        assert!(check(Kind::Watch, &params, &mut problems).is_some());
        assert_eq!(problems.as_slice()[0].code, "unknown_parameter");
        assert_eq!(
            problems.as_slice()[0].field.as_deref(),
            Some("parameters.colour")
        );
    }
}
