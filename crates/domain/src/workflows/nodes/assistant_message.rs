//! `assistant_message`: posts an assistant message (a template) to the conversation.
//!
//! ```json
//! {"message": "Your order {{ state.order_id }} is on its way.", "simulate_stream": true}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{Kind, NodeKind, Problems, StepFuture, check_config, first_text, has_extra};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind,
        step::{Log, NodeError, Outcome, RunCtx, parse},
    },
    workflows::Node,
};

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

pub const KIND: Kind = Kind::of(&AssistantMessageKind);

struct AssistantMessageKind;

impl NodeKind for AssistantMessageKind {
    fn name(&self) -> &'static str {
        "assistant_message"
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<AssistantMessage>(params, problems, AssistantMessage::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        Box::pin(say(ctx, log, node))
    }
}

async fn say(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: AssistantMessage = parse(node)?;
    let template = first_text(&[("message", &config.message), ("text", &config.text)])
        .map(|(_, text)| text)
        .unwrap_or_default();
    let text = ctx.scope(log.run).render_text(template)?;
    if config.simulate_stream {
        simulate_stream(log, node, &text, config.simulate_stream_delay_ms).await;
    }
    log.say("assistant", &node.slug, text);
    Ok(Outcome::pass(log))
}

/// Shows a message the way a model would write it: chunks of at most 8 characters,
/// `simulate_stream_delay_ms` apart (15 ms by default), to live readers.
async fn simulate_stream(log: &mut Log<'_>, node: &Node, text: &str, delay_ms: Option<u64>) {
    if !log.has_readers() {
        return;
    }
    let delay = delay_ms.unwrap_or(15).min(1_000);
    let chars: Vec<char> = text.chars().collect();
    for chunk in chars.chunks(8) {
        let delta: String = chunk.iter().collect();
        log.ephemeral(
            EventKind::AssistantDelta,
            &node.slug,
            json!({"delta": delta}),
        );
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
}
