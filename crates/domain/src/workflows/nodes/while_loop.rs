//! `while`: repeats its body (the nodes whose `parent_slug` is this node) while a CEL
//! condition holds, at most `max_iterations` times.
//!
//! ```json
//! {"condition": "state.attempts < 3", "max_iterations": 10, "iteration_var": "attempt"}
//! ```
//! Edges: from the loop into its body's entry node, and the loop's exit edge (labelled
//! `exit`, or unlabelled) to the node after the loop.

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{Kind, NodeKind, Problems, Role, StepFuture, check_config, has_extra, ready};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind,
        step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
        values::set_path,
    },
    workflows::{
        Node,
        eval::truthy,
        import::{AbNode, expression},
    },
};

pub(crate) const EXAMPLE: &str =
    r#"{"condition": "state.attempts < 3", "max_iterations": 10, "iteration_var": "attempt"}"#;

/// The largest `max_iterations` accepted.
pub const MAX_ITERATIONS: u32 = 10_000;

fn default_max_iterations() -> u32 {
    100
}

#[derive(Debug, Clone, Deserialize)]
pub struct While {
    /// CEL condition; empty means always true (bounded by `max_iterations`).
    #[serde(default)]
    pub condition: Option<Value>,
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// State key that receives the iteration counter.
    #[serde(default)]
    pub iteration_var: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(While);

impl While {
    pub(crate) fn check(&self, problems: &mut Problems) {
        match &self.condition {
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(condition @ Value::String(_)) => {
                expr::check_value_expression(condition, "parameters.condition", problems)
            }
            Some(Value::Bool(_)) | None => {}
            Some(_) => problems.error(
                "invalid_parameter",
                Some("parameters.condition"),
                "the condition is a CEL expression",
            ),
        }
        if self.max_iterations == 0 || self.max_iterations > MAX_ITERATIONS {
            problems.error(
                "invalid_parameter",
                Some("parameters.max_iterations"),
                format!("must be between 1 and {MAX_ITERATIONS}"),
            );
        }
        if let Some(name) = &self.iteration_var {
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                problems.error(
                    "invalid_parameter",
                    Some("parameters.iteration_var"),
                    "must be an identifier such as `attempt`",
                );
            }
        }
    }
}

pub const KIND: Kind = Kind::of(&WhileKind);

struct WhileKind;

impl NodeKind for WhileKind {
    fn name(&self) -> &'static str {
        "while"
    }

    fn role(&self) -> Role {
        Role::Loop
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["While"]
    }

    /// Agent Builder loops have no limit: the import adds one.
    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        node.ports.insert("out".into(), "exit".into());
        let condition = expression(node.config.get("condition")).unwrap_or_default();
        node.params.insert("condition".into(), json!(condition));
        node.params.insert("max_iterations".into(), json!(100));
        node.warn(
            "loop_limit_added",
            "Agent Builder loops have no iteration limit; this one stops after 100 iterations"
                .into(),
        );
        let body = node.config.get("body").cloned().unwrap_or(json!({}));
        node.body(&body)
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<While>(params, problems, While::check)
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(pass(ctx, log, node))
    }
}

/// One pass of a loop: enter the body while the condition holds (up to the limit),
/// otherwise leave by the exit edge.
fn pass(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: While = parse(node)?;
    let input = log.run.last_output.clone();
    let holds = match &config.condition {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) if s.trim().is_empty() => true,
        Some(Value::Bool(b)) => *b,
        Some(other) => truthy(&ctx.scope(log.run).eval_value(other)?),
    };
    if !log.run.scratch.is_object() {
        log.run.scratch = json!({});
    }
    let Value::Object(counters) = &mut log.run.scratch else {
        unreachable!("made an object above")
    };
    let loops = counters.entry("loops").or_insert_with(|| json!({}));
    if !loops.is_object() {
        *loops = json!({});
    }
    let count = loops.get(&node.slug).and_then(Value::as_u64).unwrap_or(0);
    let in_body = |slug: &str| {
        ctx.index
            .node(slug)
            .is_some_and(|n| n.parent_slug.as_deref() == Some(node.slug.as_str()))
    };
    let out = ctx.index.outgoing(&node.slug);
    if holds && count < u64::from(config.max_iterations) {
        loops[&node.slug] = json!(count + 1);
        if let Some(var) = &config.iteration_var {
            set_path(&mut log.run.state, var, json!(count + 1));
        }
        let entry = out
            .iter()
            .find(|e| {
                e.condition
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("loop"))
            })
            .or_else(|| out.iter().find(|e| in_body(&e.target)))
            .ok_or_else(|| {
                node_error(
                    "missing_edge",
                    format!("the loop `{}` has no edge into its body", node.slug),
                )
            })?;
        log.event(
            EventKind::LoopIteration,
            Some(&node.slug),
            json!({"iteration": count + 1}),
        );
        return Ok(Outcome {
            output: input,
            next: Next::Goto(entry.target.clone()),
        });
    }
    if let Some(map) = loops.as_object_mut() {
        map.remove(&node.slug);
    }
    if holds {
        log.event(
            EventKind::LoopLimitReached,
            Some(&node.slug),
            json!({"max_iterations": config.max_iterations}),
        );
    }
    let exit = out
        .iter()
        .find(|e| {
            e.condition
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("exit"))
        })
        .or_else(|| {
            out.iter()
                .find(|e| !in_body(&e.target) && e.condition.is_none())
        });
    Ok(Outcome {
        output: input,
        next: match exit {
            Some(edge) => Next::Goto(edge.target.clone()),
            None => match &node.parent_slug {
                Some(parent) => Next::Goto(parent.clone()),
                None => Next::End {
                    output: log.run.last_output.clone(),
                    status: json!({"type": "active"}),
                },
            },
        },
    })
}
