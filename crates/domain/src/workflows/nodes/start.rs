//! `start`: where a run begins. Exactly one enabled start per graph.
//!
//! ```json
//! {"auto_start": true, "auto_start_assistant_message": "Hello! How can I help?"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};

pub(crate) const EXAMPLE: &str =
    r#"{"auto_start": false, "auto_start_assistant_message": "Hello! How can I help?"}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Start {
    /// Start the conversation without waiting for the user (bool or "true"/"yes"/…).
    #[serde(default, alias = "start_automatically")]
    pub auto_start: Option<Value>,
    /// A user message injected when a thread starts empty.
    #[serde(default)]
    pub auto_start_user_message: Option<String>,
    /// An assistant message shown instead (the user message wins when both are set).
    #[serde(default)]
    pub auto_start_assistant_message: Option<String>,
    /// Telephony settings (used by the voice issue).
    #[serde(default)]
    pub telephony: Option<Map<String, Value>>,
    /// OpenAI-hosted workflows offered next to this one (seed compatibility).
    #[serde(default)]
    pub hosted_workflows: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Start);

impl Start {
    /// Whether the run starts by itself: `true`, or "true", "1", "yes", "on".
    pub fn auto_starts(&self) -> bool {
        match &self.auto_start {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => {
                ["true", "1", "yes", "on"].contains(&s.trim().to_lowercase().as_str())
            }
            _ => false,
        }
    }

    pub(crate) fn check(&self, problems: &mut Problems) {
        if let Some(flag) = &self.auto_start {
            let valid = match flag {
                Value::Bool(_) => true,
                Value::String(s) => ["true", "false", "1", "0", "yes", "no", "on", "off"]
                    .contains(&s.trim().to_lowercase().as_str()),
                _ => false,
            };
            if !valid {
                problems.error(
                    "invalid_parameter",
                    Some("parameters.auto_start"),
                    "must be true or false",
                );
            }
        }
    }
}
