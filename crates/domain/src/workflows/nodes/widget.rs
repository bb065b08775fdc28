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

use super::{Problems, has_extra};
use crate::workflows::expr;

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
