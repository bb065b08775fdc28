//! `condition`: picks an outgoing edge by label.
//!
//! Two styles. The seed's modes (`truthy`, `falsy`, `equals`, `not_equals`, `contains`,
//! `value`) evaluate `path` and branch on `"true"`/`"false"` (or, in `value` mode, on the
//! value itself):
//! ```json
//! {"path": "state.score", "mode": "equals", "value": "10"}
//! ```
//! Agent Builder's ordered cases take the first case whose predicate holds, else the edge
//! labelled `else` (or unlabelled):
//! ```json
//! {"cases": [{"label": "refund", "predicate": "input.output_parsed.intent == 'refund'"}]}
//! ```

use serde::Deserialize;
use serde_json::{Map, Value};

use serde_json::json;

use super::{
    Kind, NodeKind, Place, Problems, StepFuture, check_config, config_of, has_extra, ready,
};
use crate::workflows::expr;
use crate::{
    runs::{
        EventKind,
        step::{Log, Next, NodeError, Outcome, RunCtx, parse},
    },
    workflows::{
        Node,
        eval::{Scope, as_text, truthy},
        import::{AbNode, expression},
        slugify,
        validate::check_labels,
    },
};

pub(crate) const EXAMPLE: &str = r#"{"cases": [{"label": "refund", "predicate": "input.output_parsed.intent == 'refund'"}, {"label": "question", "predicate": "input.output_parsed.intent == 'question'"}]}"#;

/// The label of the fallback edge in the cases style (an unlabelled edge works too).
pub const ELSE: &str = "else";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConditionMode {
    #[default]
    Truthy,
    Falsy,
    Equals,
    NotEquals,
    /// The text holds `value` (case-insensitive), or the list has an item equal to it.
    Contains,
    Value,
}

impl ConditionMode {
    const NAMES: &'static [&'static str] = &[
        "truthy",
        "falsy",
        "equals",
        "not_equals",
        "contains",
        "value",
    ];
}

#[derive(Debug, Clone, Deserialize)]
pub struct Condition {
    /// Expression evaluated in the modes style.
    #[serde(default)]
    pub path: Option<Value>,
    #[serde(default)]
    pub mode: ConditionMode,
    /// Compared with the value in `equals`/`not_equals` modes, looked for in `contains`.
    #[serde(default)]
    pub value: Option<Value>,
    /// Ordered cases; when present, `path`/`mode` are not used.
    #[serde(default)]
    pub cases: Vec<ConditionCase>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
has_extra!(Condition);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionCase {
    pub label: String,
    /// A CEL expression that must be true for this case.
    pub predicate: Value,
}

impl Condition {
    pub fn uses_cases(&self) -> bool {
        !self.cases.is_empty()
    }

    /// The labels this condition can produce, when they are known in advance.
    pub fn known_labels(&self) -> Option<Vec<String>> {
        if self.uses_cases() {
            let mut labels: Vec<String> = self
                .cases
                .iter()
                .map(|c| c.label.trim().to_lowercase())
                .collect();
            labels.push(ELSE.to_string());
            return Some(labels);
        }
        match self.mode {
            ConditionMode::Value => None,
            _ => Some(vec!["true".into(), "false".into()]),
        }
    }

    pub(crate) fn check(&self, problems: &mut Problems) {
        if self.uses_cases() {
            let mut seen = std::collections::HashSet::new();
            for (index, case) in self.cases.iter().enumerate() {
                let field = format!("parameters.cases[{index}]");
                let label = case.label.trim();
                if label.is_empty() {
                    problems.error(
                        "invalid_parameter",
                        Some(&format!("{field}.label")),
                        "a case needs a label",
                    );
                } else if label.eq_ignore_ascii_case(ELSE) {
                    problems.error(
                        "invalid_parameter",
                        Some(&format!("{field}.label")),
                        "`else` is reserved for the fallback edge",
                    );
                } else if !seen.insert(label.to_lowercase()) {
                    problems.error(
                        "duplicate_branch_label",
                        Some(&format!("{field}.label")),
                        format!("the label `{label}` is used by two cases"),
                    );
                }
                match &case.predicate {
                    Value::String(_) => expr::check_value_expression(
                        &case.predicate,
                        &format!("{field}.predicate"),
                        problems,
                    ),
                    Value::Bool(_) => {}
                    _ => problems.error(
                        "invalid_parameter",
                        Some(&format!("{field}.predicate")),
                        "a predicate is a CEL expression",
                    ),
                }
            }
            return;
        }
        match &self.path {
            Some(path) => expr::check_value_expression(path, "parameters.path", problems),
            None => problems.error(
                "invalid_parameter",
                Some("parameters.path"),
                "a condition needs `path` (or `cases`)",
            ),
        }
    }
}

pub const KIND: Kind = Kind::of(&ConditionKind);

struct ConditionKind;

impl NodeKind for ConditionKind {
    fn name(&self) -> &'static str {
        "condition"
    }

    fn agent_builder_types(&self) -> &'static [&'static str] {
        &["IfElse"]
    }

    /// The seed system falls back to `truthy` for a mode it does not know; so does the
    /// import, with a warning.
    fn import_seed(&self, params: &mut Map<String, Value>, problems: &mut Problems) {
        let Some(mode) = params.get("mode").and_then(Value::as_str) else {
            return;
        };
        if !ConditionMode::NAMES.contains(&mode) {
            problems.warning(
                "seed_mode_unknown",
                Some("parameters.mode"),
                format!(
                    "the mode `{mode}` is not one the seed system knew; it fell back to `truthy`, and so does this import (pick {} to mean something else)",
                    ConditionMode::NAMES.join(", ")
                ),
            );
            params.insert("mode".into(), Value::String("truthy".into()));
        }
    }

    /// Each case's port becomes an edge label named after the case, the fallback `else`.
    fn import_agent_builder(&self, node: &mut AbNode<'_, '_>) -> Result<(), String> {
        let names: Vec<String> = node
            .data
            .get("caseNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let mut cases = Vec::new();
        let mut labels = std::collections::HashSet::new();
        for (index, case) in node
            .config
            .get("cases")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let port = case
                .get("output_port_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let named = names
                .get(index)
                .map(|n| slugify(n))
                .filter(|n| !n.is_empty() && n != "workflow");
            let base = named.filter(|n| n != ELSE).unwrap_or_else(|| port.clone());
            let mut case_label = base.clone();
            let mut n = 2;
            while !labels.insert(case_label.clone()) {
                case_label = format!("{base}-{n}");
                n += 1;
            }
            node.ports.insert(port, case_label.clone());
            cases.push(json!({"label": case_label, "predicate": expression(case.get("predicate")).unwrap_or_default()}));
        }
        let fallback = node
            .config
            .get("fallback")
            .and_then(|f| f.get("output_port_id"))
            .and_then(Value::as_str)
            .unwrap_or("fallback")
            .to_string();
        node.ports.insert(fallback, ELSE.into());
        node.params.insert("cases".into(), json!(cases));
        Ok(())
    }

    fn example(&self) -> &'static str {
        EXAMPLE
    }

    fn check(&self, params: &Map<String, Value>, problems: &mut Problems) -> bool {
        check_config::<Condition>(params, problems, Condition::check)
    }

    /// Branch labels are unique and, when the condition's labels are known in advance,
    /// among them.
    fn check_edges(&self, place: &mut Place<'_>, problems: &mut Problems) {
        let allowed = config_of::<Condition>(place.params).and_then(|c| c.known_labels());
        let allowed: Vec<&str> = allowed.iter().flatten().map(String::as_str).collect();
        check_labels(place.slug, place.out, &allowed, problems);
    }

    fn execute<'s, 'c: 's, 'l: 's>(
        &'s self,
        ctx: &'s RunCtx<'c>,
        log: &'s mut Log<'l>,
        node: &'s Node,
    ) -> StepFuture<'s> {
        ready(branch(ctx, log, node))
    }
}

/// Follows the edge labelled with the branch the condition chose.
fn branch(ctx: &RunCtx<'_>, log: &mut Log<'_>, node: &Node) -> Result<Outcome, NodeError> {
    let config: Condition = parse(node)?;
    let label = label(&ctx.scope(log.run), &config)?;
    log.event(EventKind::Branch, Some(&node.slug), json!({"label": label}));
    Ok(Outcome {
        output: log.run.last_output.clone(),
        next: Next::Follow(label),
    })
}

fn label(scope: &Scope, config: &Condition) -> Result<Option<String>, NodeError> {
    if config.uses_cases() {
        for case in &config.cases {
            let holds = match &case.predicate {
                Value::Bool(b) => *b,
                other => truthy(&scope.eval_value(other)?),
            };
            if holds {
                return Ok(Some(case.label.trim().to_lowercase()));
            }
        }
        return Ok(Some(ELSE.into()));
    }
    let value = match &config.path {
        Some(path) => scope.eval_value(path)?,
        None => Value::Null,
    };
    let flag = |b: bool| Some(if b { "true" } else { "false" }.to_string());
    let compare = || {
        let expected = config.value.as_ref().map(as_text).unwrap_or_default();
        config.value.is_some() && as_text(&value).trim().eq_ignore_ascii_case(expected.trim())
    };
    Ok(match config.mode {
        ConditionMode::Truthy => flag(truthy(&value)),
        ConditionMode::Falsy => flag(!truthy(&value)),
        ConditionMode::Equals => flag(compare()),
        ConditionMode::NotEquals => flag(!compare()),
        ConditionMode::Contains => flag(config.value.as_ref().is_some_and(|wanted| {
            match &value {
                Value::Array(items) => items.iter().any(|item| {
                    item == wanted || as_text(item).eq_ignore_ascii_case(&as_text(wanted))
                }),
                other => as_text(other)
                    .to_lowercase()
                    .contains(&as_text(wanted).to_lowercase()),
            }
        })),
        ConditionMode::Value => match &value {
            Value::Bool(b) => flag(*b),
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.trim().to_string()),
            _ => None,
        },
    })
}
