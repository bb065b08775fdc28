//! `wait_for_user_input`: pauses the run until the user's next message.
//!
//! ```json
//! {"message": "What is your order number?", "masked": false}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, first_text, has_extra};
use crate::workflows::expr;

pub(crate) const EXAMPLE: &str = r#"{"message": "What is your order number?", "masked": false}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct WaitForUserInput {
    /// A prompt posted before waiting (a template).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// The answer is secret: not echoed into history or logs.
    #[serde(default)]
    pub masked: bool,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(WaitForUserInput);

impl WaitForUserInput {
    pub(crate) fn check(&self, problems: &mut Problems) {
        if let Some((name, text)) = first_text(&[("message", &self.message), ("text", &self.text)])
        {
            expr::check_template(text, &format!("parameters.{name}"), problems);
        }
    }
}
