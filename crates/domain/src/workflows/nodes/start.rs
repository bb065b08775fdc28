//! `start`: where a run begins. Exactly one enabled start per graph.
//!
//! ```json
//! {"auto_start": true, "auto_start_assistant_message": "Hello! How can I help?"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Kind, NodeKind, Problems, Role, StepFuture, check_config, has_extra, ready};
use crate::{
    runs::step::{Log, NodeError, Outcome, RunCtx, parse},
    workflows::{Node, import::AbNode},
};

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

pub const KIND: Kind = Kind::of(&StartKind);

struct StartKind;

impl NodeKind for StartKind {
    fn name(&self) -> &'static str {
        "start"
    }

    fn role(&self) -> Role {
        Role::Entry
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["Start"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("out".into(), String::new());
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Start>(params, problems, Start::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(start(ctx, log, node))
    }
}

/// Auto-start: a run that begins without a message shows the configured one (the user's
/// wins over the assistant's, as in the seed system).
fn start(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: Start = parse(node)?;
    let empty = log
        .run
        .input
        .get("input_as_text")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty());
    if empty && log.run.history.is_empty() && config.auto_starts() {
        let scope = ctx.scope(log.run);
        if let Some(text) = config
            .auto_start_user_message
            .filter(|t| !t.trim().is_empty())
        {
            log.say("user", &node.slug, scope.render_text(&text)?);
        } else if let Some(text) = config
            .auto_start_assistant_message
            .filter(|t| !t.trim().is_empty())
        {
            log.say("assistant", &node.slug, scope.render_text(&text)?);
        }
    }
    Ok(Outcome::pass(log))
}
