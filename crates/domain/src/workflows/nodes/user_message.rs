//! `user_message`: posts a message on the user's behalf (a template).
//!
//! ```json
//! {"message": "I would like to know more about {{ state.topic }}."}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Problems, StepFuture, check_config, first_text, has_extra, ready};
use crate::workflows::expr;
use crate::{
    runs::step::{Log, NodeError, Outcome, RunCtx, text_param},
    workflows::Node,
};

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

pub const KIND: Kind = Kind::of(&UserMessageKind);

struct UserMessageKind;

impl NodeKind for UserMessageKind {
    fn name(&self) -> &'static str {
        "user_message"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<UserMessage>(params, problems, UserMessage::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(say(ctx, log, node))
    }
}

/// Adds the message to the conversation as the user's.
fn say(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let text = ctx
        .scope(log.run)
        .render_text(&text_param(node).unwrap_or_default())?;
    log.say("user", &node.slug, text);
    Ok(Outcome::pass(log))
}
