//! `watch`: a debugging step that shows the previous step's output in the conversation.
//!
//! ```json
//! {}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Place, Problems, StepFuture, check_config, has_extra, ready};
use crate::{
    runs::step::{Log, NodeError, Outcome, RunCtx},
    workflows::Node,
};

pub(crate) const EXAMPLE: &str = "{}";

#[derive(Debug, Clone, Deserialize)]
pub struct Watch {
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Watch);

pub const KIND: Kind = Kind::of(&WatchKind);

struct WatchKind;

impl NodeKind for WatchKind {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Watch>(params, problems, |_, _| {})
    }

    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        if place.incoming != 1 {
            problems.error_on(
                place.slug,
                "watch_incoming",
                None,
                "a watch node needs exactly one incoming edge",
            );
        }
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        _ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(show(log, node))
    }
}

/// Shows the step's input to the user as JSON.
fn show(log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let text = format!(
        "```json\n{}\n```",
        serde_json::to_string_pretty(&log.run.last_output).unwrap_or_default()
    );
    log.say("assistant", &node.slug, text);
    Ok(Outcome::pass(log))
}
