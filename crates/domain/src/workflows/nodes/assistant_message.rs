//! `assistant_message`: posts an assistant message (a template) to the conversation.
//!
//! ```json
//! {"message": "Your order {{ state.order_id }} is on its way.", "simulate_stream": true}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, first_text, has_extra};
use crate::workflows::expr;

pub(crate) const EXAMPLE: &str = r#"{"message": "Your order {{ state.order_id }} is on its way.", "simulate_stream": true, "simulate_stream_delay_ms": 10}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct AssistantMessage {
    #[serde(default)]
    pub message: Option<String>,
    /// Seed alias of `message`.
    #[serde(default)]
    pub text: Option<String>,
    /// Stream the message in small chunks, as a model would.
    #[serde(default)]
    pub simulate_stream: bool,
    #[serde(default)]
    pub simulate_stream_delay_ms: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(AssistantMessage);

impl AssistantMessage {
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
