//! `user_message`: posts a message on the user's behalf (a template).
//!
//! ```json
//! {"message": "I would like to know more about {{ state.topic }}."}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, first_text, has_extra};
use crate::workflows::expr;

pub(crate) const EXAMPLE: &str =
    r#"{"message": "I would like to know more about {{ state.topic }}."}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct UserMessage {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(UserMessage);

impl UserMessage {
    pub(crate) fn check(&self, problems: &mut Problems) {
        match first_text(&[("message", &self.message), ("text", &self.text)]) {
            Some((name, text)) => {
                expr::check_template(text, &format!("parameters.{name}"), problems)
            }
            None => problems.warning(
                "empty_message",
                Some("parameters.message"),
                "the message is empty",
            ),
        }
    }
}
