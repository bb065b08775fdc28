//! `state`: assigns values to state variables ("set state").
//!
//! ```json
//! {"state": [{"target": "state.order_id", "expression": "input.output_parsed.order_id"},
//!            {"target": "state.attempts", "expression": "state.attempts + 1"}]}
//! ```
//! A non-string `expression` is a literal value.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, has_extra, ready};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind,
        step::{Log, NodeError, Outcome, RunCtx, parse},
        values::{set_path, typed},
    },
    workflows::{
        Node,
        import::{AbNode, expression},
    },
};

pub(crate) const EXAMPLE: &str = r#"{"state": [{"target": "state.order_id", "expression": "input.output_parsed.order_id"}, {"target": "state.attempts", "expression": 0}]}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct SetState {
    #[serde(default)]
    pub state: Vec<Assignment>,
    /// Seed field that its engine never applied; reported, not used.
    #[serde(default)]
    pub global: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(SetState);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// `state.<path>`.
    pub target: String,
    pub expression: Value,
}

/// Whether `target` is `state.` followed by a dotted path of identifiers.
pub fn valid_target(target: &str) -> bool {
    target.strip_prefix("state.").is_some_and(|path| {
        !path.is_empty()
            && path.split('.').all(|segment| {
                !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !segment.starts_with(|c: char| c.is_ascii_digit())
            })
    })
}

impl SetState {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.state.is_empty() {
            problems.warning(
                "empty_assignment",
                Some("parameters.state"),
                "the node assigns nothing",
            );
        }
        if self
            .global
            .as_ref()
            .is_some_and(|g| !g.is_null() && g.as_array().is_none_or(|a| !a.is_empty()))
        {
            problems.warning(
                "ignored_parameter",
                Some("parameters.global"),
                "`global` assignments are not supported; use `state`",
            );
        }
        for (index, assignment) in self.state.iter().enumerate() {
            if !valid_target(assignment.target.trim()) {
                problems.error(
                    "invalid_state_target",
                    Some(&format!("parameters.state[{index}].target")),
                    format!(
                        "`{}` must be `state.` followed by a path such as `state.order.id`",
                        assignment.target
                    ),
                );
            }
            expr::check_value_expression(
                &assignment.expression,
                &format!("parameters.state[{index}].expression"),
                problems,
            );
        }
    }
}

pub const KIND: Kind = Kind::of(&SetStateKind);

struct SetStateKind;

impl NodeKind for SetStateKind {
    fn name(&self) -> &'static str {
        "state"
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["SetState"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("out".into(), String::new());
        let assignments: Vec<Value> = node
            .config
            .get("assignments")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| {
                let name = a.get("name").and_then(Value::as_str).unwrap_or_default().trim();
                json!({"target": format!("state.{name}"), "expression": expression(a.get("expression")).unwrap_or_default()})
            })
            .collect();
        node.params.insert("state".into(), json!(assignments));
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<SetState>(params, problems, SetState::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(assign(ctx, log, node))
    }
}

/// Evaluates each assignment in order (each sees the ones before it), typed by the state
/// schema.
fn assign(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: SetState = parse(node)?;
    for assignment in &config.state {
        let value = ctx.scope(log.run).eval_value(&assignment.expression)?;
        let path = assignment
            .target
            .trim()
            .strip_prefix("state.")
            .unwrap_or(assignment.target.trim());
        let value = typed(ctx.version.graph.state_schema.as_ref(), path, value)?;
        set_path(&mut log.run.state, path, value);
    }
    log.event(
        EventKind::StateUpdated,
        Some(&node.slug),
        log.run.state.clone(),
    );
    Ok(Outcome::pass(log))
}

#[cfg(test)]
mod tests {
    use super::valid_target;

    #[test]
    fn targets_are_state_paths() {
        assert!(valid_target("state.a"));
        assert!(valid_target("state.order.id_2"));
        for bad in [
            "a",
            "state.",
            "state..a",
            "input.a",
            "state.a-b",
            "state.1a",
        ] {
            assert!(!valid_target(bad), "{bad}");
        }
    }
}
