//! `condition`: picks an outgoing edge by label.
//!
//! Two styles. The seed's modes evaluate `path` and branch on `"true"`/`"false"` (or, in
//! `value` mode, on the value itself):
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

use super::{Problems, has_extra};
use crate::workflows::expr;

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
    Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Condition {
    /// Expression evaluated in the modes style.
    #[serde(default)]
    pub path: Option<Value>,
    #[serde(default)]
    pub mode: ConditionMode,
    /// Compared with the value in `equals`/`not_equals` modes.
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
