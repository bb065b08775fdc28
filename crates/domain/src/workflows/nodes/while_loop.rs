//! `while`: repeats its body (the nodes whose `parent_slug` is this node) while a CEL
//! condition holds, at most `max_iterations` times.
//!
//! ```json
//! {"condition": "state.attempts < 3", "max_iterations": 10, "iteration_var": "attempt"}
//! ```
//! Edges: from the loop into its body's entry node, and the loop's exit edge (labelled
//! `exit`, or unlabelled) to the node after the loop.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};
use crate::workflows::expr;

pub(crate) const EXAMPLE: &str =
    r#"{"condition": "state.attempts < 3", "max_iterations": 10, "iteration_var": "attempt"}"#;

/// The largest `max_iterations` accepted.
pub const MAX_ITERATIONS: u32 = 10_000;

fn default_max_iterations() -> u32 {
    100
}

#[derive(Debug, Clone, Deserialize)]
pub struct While {
    /// CEL condition; empty means always true (bounded by `max_iterations`).
    #[serde(default)]
    pub condition: Option<Value>,
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// State key that receives the iteration counter.
    #[serde(default)]
    pub iteration_var: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(While);

impl While {
    pub(crate) fn check(&self, problems: &mut Problems) {
        match &self.condition {
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(condition @ Value::String(_)) => {
                expr::check_value_expression(condition, "parameters.condition", problems)
            }
            Some(Value::Bool(_)) | None => {}
            Some(_) => problems.error(
                "invalid_parameter",
                Some("parameters.condition"),
                "the condition is a CEL expression",
            ),
        }
        if self.max_iterations == 0 || self.max_iterations > MAX_ITERATIONS {
            problems.error(
                "invalid_parameter",
                Some("parameters.max_iterations"),
                format!("must be between 1 and {MAX_ITERATIONS}"),
            );
        }
        if let Some(name) = &self.iteration_var {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                problems.error(
                    "invalid_parameter",
                    Some("parameters.iteration_var"),
                    "must be an identifier such as `attempt`",
                );
            }
        }
    }
}
