//! `transform`: computes a value from templates and expressions; its output is the next
//! step's `input`. It does not change state.
//!
//! ```json
//! {"expressions": {"summary": "Order {{ state.order_id }}", "total": "{{ state.price * 2.0 }}", "raw": "input.output_parsed"}}
//! ```
//! Every string leaf is a template; a bare `state.…`/`input.…` path is evaluated.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};
use crate::workflows::expr;

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
