//! `end`: finishes the run, optionally with a message, a thread status and an LTI grade.
//!
//! ```json
//! {"message": "Thanks, {{ user.email }}!", "status": {"type": "closed", "reason": "Done"},
//!  "ags": {"score_variable_id": "quiz", "value": "state.score", "maximum": "10"}}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{Kind, NodeKind, Place, Problems, Role, StepFuture, check_config, has_extra, ready};
use crate::workflows::expr;
use crate::{
    runs::step::{Log, Next, NodeError, Outcome, RunCtx, parse},
    workflows::{
        Node,
        import::{AbNode, expression},
    },
};

pub(crate) const EXAMPLE: &str = r#"{"message": "Thanks, {{ user.email }}!", "status": {"type": "closed", "reason": "Done"}, "ags": {"score_variable_id": "quiz", "value": "state.score", "maximum": 10}}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct End {
    /// Final message (a template).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<EndStatus>,
    /// Seed fallbacks for `status.reason`.
    #[serde(default)]
    pub status_reason: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The run's output for headless callers (an expression; Agent Builder's End `expr`).
    #[serde(default)]
    pub output: Option<Value>,
    /// An LTI Assignment and Grade Services score.
    #[serde(default)]
    pub ags: Option<Ags>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(End);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StatusType {
    #[default]
    Closed,
    Locked,
    Waiting,
    Active,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndStatus {
    #[serde(default, rename = "type")]
    pub status_type: StatusType,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ags {
    #[serde(default, alias = "variable_id")]
    pub score_variable_id: Option<String>,
    /// Expression giving the score.
    #[serde(default, alias = "score", alias = "score_value")]
    pub value: Option<Value>,
    /// Expression giving the maximum score.
    #[serde(default, alias = "max_score")]
    pub maximum: Option<Value>,
}

impl End {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if let Some(message) = &self.message {
            expr::check_template(message, "parameters.message", problems);
        }
        if let Some(output) = &self.output {
            expr::check_value_expression(output, "parameters.output", problems);
        }
        if let Some(ags) = &self.ags {
            if ags
                .score_variable_id
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
            {
                problems.error(
                    "invalid_parameter",
                    Some("parameters.ags.score_variable_id"),
                    "an LTI grade needs the score variable (line item) id",
                );
            }
            match &ags.value {
                Some(value) => {
                    expr::check_value_expression(value, "parameters.ags.value", problems)
                }
                None => problems.error(
                    "invalid_parameter",
                    Some("parameters.ags.value"),
                    "an LTI grade needs a score expression",
                ),
            }
            if let Some(maximum) = &ags.maximum {
                expr::check_value_expression(maximum, "parameters.ags.maximum", problems);
            }
        }
    }
}

pub const KIND: Kind = Kind::of(&EndKind);

struct EndKind;

impl NodeKind for EndKind {
    fn name(&self) -> &'static str {
        "end"
    }

    fn role(&self) -> Role {
        Role::Exit
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["End"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        if let Some(output) = expression(node.config.get("expr")).filter(|e| e != "input") {
            node.params.insert("output".into(), json!(output));
        }
        if let Some(schema) = node
            .data
            .get("workflowOutput")
            .filter(|v| !v.is_null())
            .cloned()
        {
            node.params.insert("output_schema".into(), schema);
            node.warn(
                "ignored_parameter",
                "the End node's declared output schema is kept in `output_schema` but not enforced"
                    .into(),
            );
        }
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<End>(params, problems, End::check)
    }

    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        if !place.out.is_empty() {
            problems.error_on(
                place.slug,
                "end_has_outgoing",
                None,
                "an end node cannot have outgoing edges",
            );
        }
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(end(ctx, log, node))
    }
}

/// Says the final message and ends the run with its output and the thread's status.
fn end(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: End = parse(node)?;
    let scope = ctx.scope(log.run);
    let message = config
        .message
        .as_deref()
        .map(|m| scope.render_text(m))
        .transpose()?;
    if let Some(message) = message.clone().filter(|m| !m.is_empty()) {
        log.say("assistant", &node.slug, message);
    }
    let output = match &config.output {
        Some(expression) => scope.eval_value(expression)?,
        None => message
            .map(Value::String)
            .unwrap_or_else(|| log.run.last_output.clone()),
    };
    let status = config
        .status
        .as_ref()
        .map(|s| format!("{:?}", s.status_type).to_lowercase())
        .unwrap_or_else(|| "closed".into());
    let reason = config
        .status
        .as_ref()
        .and_then(|s| s.reason.clone())
        .or(config.status_reason)
        .or(config.reason);
    Ok(Outcome {
        output: output.clone(),
        next: Next::End {
            output,
            status: json!({"type": status, "reason": reason}),
        },
    })
}
