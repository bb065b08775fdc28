//! `user_approval`: asks the user to approve or reject, then follows the `approve` or
//! `reject` edge (Agent Builder's BinaryApproval).
//!
//! ```json
//! {"message": "Refund {{ state.amount }} to {{ user.email }}?", "approve_label": "Refund", "reject_label": "Cancel"}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{
    Kind, NodeKind, Place, Problems, Resumed, StepFuture, check_config, has_extra, ready, refused,
};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind, Resume, RunResult, Wait, WaitKind,
        step::{Log, Next, NodeError, Outcome, RunCtx, text_param},
    },
    workflows::{Graph, Node, import::AbNode, validate::check_labels},
};

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

pub const KIND: Kind = Kind::of(&UserApprovalKind);

struct UserApprovalKind;

impl NodeKind for UserApprovalKind {
    fn name(&self) -> &'static str {
        "user_approval"
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["BinaryApproval"]
    }

    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("on_approve".into(), APPROVE.into());
        node.ports.insert("on_reject".into(), REJECT.into());
        if let Some(message) = node.config.get("message").and_then(Value::as_str) {
            node.params.insert("message".into(), json!(message));
        }
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<UserApproval>(params, problems, UserApproval::check)
    }

    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        check_labels(place.slug, place.out, &[APPROVE, REJECT], problems);
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(ask(ctx, log, node))
    }

    fn resume(
        &self,
        log: &mut Log<'_>,
        node: &Node,
        wait: &Wait,
        answer: Resume,
        _graph: &Graph,
    ) -> RunResult<Resumed> {
        let (WaitKind::Approval, Resume::Approval(approved)) = (wait.kind, answer) else {
            return Err(refused(wait));
        };
        log.event(
            EventKind::Approval,
            Some(&node.slug),
            json!({"approved": approved}),
        );
        log.run.last_output = json!({"approved": approved});
        Ok(Resumed::Follow(Some(
            if approved { APPROVE } else { REJECT }.to_string(),
        )))
    }
}

/// Asks the question and waits for the decision.
fn ask(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let prompt = text_param(node)
        .map(|t| ctx.scope(log.run).render_text(&t))
        .transpose()?;
    Ok(Outcome {
        output: log.run.last_output.clone(),
        next: Next::Wait(Wait {
            kind: WaitKind::Approval,
            node: node.slug.clone(),
            prompt,
            data: None,
        }),
    })
}
