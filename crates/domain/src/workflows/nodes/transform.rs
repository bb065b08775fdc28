//! `transform`: computes a value from templates and expressions; its output is the next
//! step's `input`. It does not change state.
//!
//! ```json
//! {"expressions": {"summary": "Order {{ state.order_id }}", "total": "{{ state.price * 2.0 }}", "raw": "input.output_parsed"}}
//! ```
//! Every string leaf is a template; a bare `state.…`/`input.…` path is evaluated.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, has_extra, ready};
use crate::workflows::expr;
use crate::{
    runs::step::{Log, Next, NodeError, Outcome, RunCtx},
    workflows::{
        Node,
        import::{AbNode, expression},
    },
};

pub(crate) const EXAMPLE: &str = r#"{"expressions": {"summary": "Order {{ state.order_id }}", "total": "{{ state.price * 2.0 }}", "raw": "input.output_parsed"}}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Transform {
    #[serde(default)]
    pub expressions: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Transform);

impl Transform {
    pub(crate) fn check(&self, problems: &mut Problems) {
        match &self.expressions {
            Some(value @ (Value::Object(_) | Value::Array(_) | Value::String(_))) => {
                expr::check_templates_in(value, "parameters.expressions", problems);
            }
            Some(_) => problems.error(
                "invalid_parameter",
                Some("parameters.expressions"),
                "must be an object, a list or a template",
            ),
            None => problems.error(
                "invalid_parameter",
                Some("parameters.expressions"),
                "a transform needs `expressions`",
            ),
        }
    }
}

pub const KIND: Kind = Kind::of(&TransformKind);

struct TransformKind;

impl NodeKind for TransformKind {
    fn name(&self) -> &'static str {
        "transform"
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["Transform"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("out".into(), String::new());
        let source = expression(node.config.get("expr")).unwrap_or_default();
        node.params
            .insert("expressions".into(), json!(format!("{{{{ {source} }}}}")));
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Transform>(params, problems, Transform::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(transform(ctx, log, node))
    }
}

/// The output is `expressions` with every template and expression in it evaluated.
fn transform(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let expressions = node
        .parameters
        .get("expressions")
        .cloned()
        .unwrap_or(Value::Null);
    let output = ctx.scope(log.run).render_tree(&expressions)?;
    Ok(Outcome {
        output,
        next: Next::Follow(None),
    })
}
