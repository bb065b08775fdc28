//! `watch`: a debugging step that shows the previous step's output in the conversation.
//!
//! ```json
//! {}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::has_extra;

pub(crate) const EXAMPLE: &str = "{}";

#[derive(Debug, Clone, Deserialize)]
pub struct Watch {
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Watch);
