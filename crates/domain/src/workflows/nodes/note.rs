//! `note`: a sticky note on the canvas. Never executed, never connected.
//!
//! ```json
//! {"text": "Remember to update the refund policy.", "color": "yellow"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Place, Problems, Role, StepFuture, check_config, has_extra, ready};
use crate::{
    runs::step::{Log, Outcome, RunCtx},
    workflows::Node,
};

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

pub const KIND: Kind = Kind::of(&NoteKind);

struct NoteKind;

impl NodeKind for NoteKind {
    fn name(&self) -> &'static str {
        "note"
    }

    fn role(&self) -> Role {
        Role::Annotation
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["note", "Note"]
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Note>(params, problems, |_, _| {})
    }

    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        if !place.out.is_empty() || place.incoming > 0 {
            problems.warning_on(
                place.slug,
                "note_connected",
                "notes are never executed; their edges are ignored",
            );
        }
    }

    /// A note reached by an edge passes its input on.
    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        _ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        _node: &'s Node,
    ) -> StepFuture<'s> {
        ready(Ok(Outcome::pass(log)))
    }
}
