//! `user_approval`: asks the user to approve or reject, then follows the `approve` or
//! `reject` edge (Agent Builder's BinaryApproval).
//!
//! ```json
//! {"message": "Refund {{ state.amount }} to {{ user.email }}?", "approve_label": "Refund", "reject_label": "Cancel"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Problems, has_extra};
use crate::workflows::expr;

pub(crate) const EXAMPLE: &str = r#"{"message": "Refund {{ state.amount }} to {{ user.email }}?", "approve_label": "Refund", "reject_label": "Cancel"}"#;

/// The edge labels an approval routes on.
pub const APPROVE: &str = "approve";
pub const REJECT: &str = "reject";

#[derive(Debug, Clone, Deserialize)]
pub struct UserApproval {
    /// The question (a template).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub approve_label: Option<String>,
    #[serde(default)]
    pub reject_label: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(UserApproval);

impl UserApproval {
    pub(crate) fn check(&self, problems: &mut Problems) {
        match &self.message {
            Some(message) => expr::check_template(message, "parameters.message", problems),
            None => problems.warning(
                "empty_message",
                Some("parameters.message"),
                "the approval has no question",
            ),
        }
    }
}
