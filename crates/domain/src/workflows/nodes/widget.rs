//! `widget`: shows a ChatKit widget and, by default, waits for the user's action on it.
//!
//! ```json
//! {"widget": {"source": "library", "slug": "order-card",
//!             "variables": {"title": "state.order.title"}, "await_action": true}}
//! ```
//! A bare string is a library slug; `source: "variable"` takes the definition from
//! `definition_expression`, and `source: "inline"` carries it in `definition`.

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{Kind, NodeKind, Problems, Resumed, StepFuture, check_config, has_extra, refused};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind, Resume, RunResult, Wait, WaitKind,
        step::{Log, RunCtx},
        widget,
    },
    workflows::{Graph, Node, nodes::common::ERROR_LABEL},
};

pub(crate) const EXAMPLE: &str = r#"{"widget": {"source": "library", "slug": "order-card", "variables": {"title": "state.order.title"}, "await_action": true}}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct WidgetNode {
    #[serde(default, alias = "response_widget")]
    pub widget: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(WidgetNode);

const WIDGET_FIELDS: &[&str] = &[
    "source",
    "slug",
    "variables",
    "definition",
    "definition_expression",
    "definitionExpression",
    "await_action",
    "wait_for_action",
];

impl WidgetNode {
    pub(crate) fn check(&self, problems: &mut Problems) {
        let field = "parameters.widget";
        match &self.widget {
            None => problems.error(
                "invalid_parameter",
                Some(field),
                "a widget node needs `widget`",
            ),
            Some(Value::String(slug)) if !slug.trim().is_empty() => {}
            Some(Value::Object(widget)) => {
                for key in widget
                    .keys()
                    .filter(|k| !WIDGET_FIELDS.contains(&k.as_str()))
                {
                    problems.warning(
                        "unknown_parameter",
                        Some(&format!("{field}.{key}")),
                        format!("`{key}` is not a widget setting"),
                    );
                }
                let source = widget
                    .get("source")
                    .and_then(Value::as_str)
                    .unwrap_or("library");
                match source {
                    "library" => {
                        if widget
                            .get("slug")
                            .and_then(Value::as_str)
                            .is_none_or(|s| s.trim().is_empty())
                        {
                            problems.error(
                                "invalid_parameter",
                                Some(&format!("{field}.slug")),
                                "a library widget needs its `slug`",
                            );
                        }
                    }
                    "variable" => {
                        match widget
                            .get("definition_expression")
                            .or_else(|| widget.get("definitionExpression"))
                        {
                            Some(definition) => expr::check_value_expression(
                                definition,
                                &format!("{field}.definition_expression"),
                                problems,
                            ),
                            None => problems.error(
                                "invalid_parameter",
                                Some(&format!("{field}.definition_expression")),
                                "a widget from a variable needs `definition_expression`",
                            ),
                        }
                    }
                    "inline" => match widget.get("definition") {
                        Some(definition) => {
                            for problem in crate::widgets::validate(definition) {
                                let at = if problem.path.is_empty() {
                                    format!("{field}.definition")
                                } else {
                                    format!("{field}.definition.{}", problem.path)
                                };
                                problems.error("invalid_widget", Some(&at), problem.message);
                            }
                        }
                        None => problems.error(
                            "invalid_parameter",
                            Some(&format!("{field}.definition")),
                            "an inline widget needs its `definition`",
                        ),
                    },
                    other => problems.error(
                        "invalid_parameter",
                        Some(&format!("{field}.source")),
                        format!("`{other}` is not a widget source (library, variable or inline)"),
                    ),
                }
                if let Some(variables) = widget.get("variables") {
                    match variables.as_object() {
                        Some(map) => {
                            for (name, value) in map {
                                expr::check_value_expression(
                                    value,
                                    &format!("{field}.variables.{name}"),
                                    problems,
                                );
                            }
                        }
                        None => problems.error(
                            "invalid_parameter",
                            Some(&format!("{field}.variables")),
                            "must be an object",
                        ),
                    }
                }
            }
            Some(_) => problems.error(
                "invalid_parameter",
                Some(field),
                "must be a library slug or a widget object",
            ),
        }
    }
}

pub const KIND: Kind = Kind::of(&WidgetKind);

struct WidgetKind;

impl NodeKind for WidgetKind {
    fn name(&self) -> &'static str {
        "widget"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<WidgetNode>(params, problems, WidgetNode::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        Box::pin(async move {
            let scope = ctx.scope(log.run);
            widget::run(ctx, log, node, &scope).await
        })
    }

    /// An action on the widget: an edge labelled with the action's type routes it,
    /// otherwise the default edge (never the `error` edge).
    fn resume(
        &self,
        log: &mut Log<'_>,
        node: &Node,
        wait: &Wait,
        answer: Resume,
        graph: &Graph,
    ) -> RunResult<Resumed> {
        let (WaitKind::WidgetAction, Resume::WidgetAction(action)) = (wait.kind, answer) else {
            return Err(refused(wait));
        };
        let action = widget::action_context(action, wait.data.as_ref())?;
        log.event(
            EventKind::WidgetAction,
            Some(&node.slug),
            json!({"action": action}),
        );
        let kind = action["type"].as_str().unwrap_or_default().to_string();
        log.run.last_output = json!({"action": action});
        let routed = !kind.eq_ignore_ascii_case(ERROR_LABEL)
            && graph.edges.iter().any(|e| {
                e.source == node.slug
                    && e.condition
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(&kind))
            });
        Ok(Resumed::Follow(routed.then_some(kind)))
    }
}
