//! `note`: a sticky note on the canvas. Never executed, never connected.
//!
//! ```json
//! {"text": "Remember to update the refund policy.", "color": "yellow"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::has_extra;

pub(crate) const EXAMPLE: &str =
    r#"{"text": "Remember to update the refund policy.", "color": "yellow"}"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Note {
    #[serde(default, alias = "content")]
    pub text: Option<String>,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Note);
