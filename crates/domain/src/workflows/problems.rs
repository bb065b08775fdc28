//! Validation problems: every issue found in a graph, with where it is and a stable code.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The graph cannot be saved or published.
    Error,
    /// Saved, but worth the author's attention.
    Warning,
}

/// One finding of validation or import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Stable snake_case code, e.g. `duplicate_slug`.
    pub code: &'static str,
    /// The node concerned, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The field concerned, as a path inside the node (`parameters.cases[1].predicate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl Problem {
    /// The same finding as a warning.
    pub fn downgraded(self) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..self
        }
    }
}

/// Collects problems, remembering which node is being looked at.
#[derive(Debug, Default)]
pub struct Problems {
    items: Vec<Problem>,
    node: Option<String>,
}

impl Problems {
    pub fn new() -> Problems {
        Problems::default()
    }

    /// Attributes the following problems to `slug`.
    pub fn at_node(&mut self, slug: Option<&str>) {
        self.node = slug.map(str::to_string);
    }

    pub fn error(&mut self, code: &'static str, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Error, code, field, message.into());
    }

    pub fn warning(&mut self, code: &'static str, field: Option<&str>, message: impl Into<String>) {
        self.push(Severity::Warning, code, field, message.into());
    }

    /// A problem about another node than the current one.
    pub fn error_on(
        &mut self,
        node: &str,
        code: &'static str,
        field: Option<&str>,
        message: impl Into<String>,
    ) {
        self.items.push(Problem {
            severity: Severity::Error,
            code,
            node: Some(node.to_string()),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }

    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        field: Option<&str>,
        message: String,
    ) {
        self.items.push(Problem {
            severity,
            code,
            node: self.node.clone(),
            field: field.map(str::to_string),
            message,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn extend(&mut self, other: Vec<Problem>) {
        self.items.extend(other);
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.items
    }

    pub fn as_slice(&self) -> &[Problem] {
        &self.items
    }
}
