//! Expressions and templates: CEL everywhere, compiled at save time.
//!
//! - An *expression* field holds CEL source (`state.count > 3`); a non-string JSON value in
//!   such a field is a literal.
//! - A *template* field holds text with `{{ cel }}` placeholders; a template that is a single
//!   placeholder yields the typed value.
//!
//! The variables in scope are [`SCOPE`]. The seed system's path forms (`state.x.y`,
//! `input.output_parsed.doc_id`) are valid CEL and keep working.

use serde_json::Value;

use super::problems::Problems;

/// The variables every expression may use.
pub const SCOPE: &[&str] = &["input", "state", "workflow", "user", "thread"];

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    Text(&'a str),
    Expr(&'a str),
}

/// Splits a template into text and `{{ expression }}` parts.
pub fn template_parts(text: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let Some(close) = placeholder_end(after) else {
            return Err(format!(
                "`{{{{` at byte {} is never closed with `}}}}`",
                text.len() - rest.len() + open
            ));
        };
        let source = after[..close].trim();
        if source.is_empty() {
            return Err("a `{{ }}` placeholder is empty".to_string());
        }
        parts.push(Part::Expr(source));
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

/// Where the `}}` closing a placeholder starts. Braces of map literals and braces inside
/// string literals do not close it: `{{ {"a": {"b": 1}} }}` is one placeholder.
fn placeholder_end(source: &str) -> Option<usize> {
    let bytes = source.as_bytes();
    let (mut depth, mut quote, mut index) = (0usize, None::<u8>, 0);
    while index < bytes.len() {
        let byte = bytes[index];
        match quote {
            Some(q) => {
                if byte == b'\\' {
                    index += 1;
                } else if byte == q {
                    quote = None;
                }
            }
            None => match byte {
                b'"' | b'\'' => quote = Some(byte),
                b'{' => depth += 1,
                b'}' if depth > 0 => depth -= 1,
                b'}' if bytes.get(index + 1) == Some(&b'}') => return Some(index),
                _ => {}
            },
        }
        index += 1;
    }
    None
}

/// Compiles one CEL expression, reporting a syntax error (error) or a variable outside
/// [`SCOPE`] (warning) against `field`.
pub fn check_expression(source: &str, field: &str, problems: &mut Problems) {
    let source = source.trim();
    if source.is_empty() {
        problems.error("empty_expression", Some(field), "the expression is empty");
        return;
    }
    match cel::Program::compile(source) {
        Err(err) => {
            let detail = err
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            problems.error(
                "invalid_expression",
                Some(field),
                format!("`{source}` is not a valid CEL expression: {detail}"),
            );
        }
        Ok(program) => {
            // Comprehension macros (`exists`, `map`, …) bind their own names, which the
            // reference list cannot tell from free variables.
            let has_comprehension = [".exists(", ".all(", ".map(", ".filter(", ".exists_one("]
                .iter()
                .any(|m| source.contains(m));
            if has_comprehension {
                return;
            }
            let references = program.references();
            let mut unknown: Vec<&str> = references
                .variables()
                .into_iter()
                .filter(|name| !SCOPE.contains(name))
                .collect();
            unknown.sort_unstable();
            if !unknown.is_empty() {
                problems.warning(
                    "unknown_variable",
                    Some(field),
                    format!(
                        "`{source}` uses {}, which is not among the variables in scope ({})",
                        unknown.join(", "),
                        SCOPE.join(", ")
                    ),
                );
            }
        }
    }
}

/// Checks a template: well-formed placeholders, each a valid expression.
pub fn check_template(text: &str, field: &str, problems: &mut Problems) {
    match template_parts(text) {
        Err(message) => problems.error("invalid_template", Some(field), message),
        Ok(parts) => {
            for part in parts {
                if let Part::Expr(source) = part {
                    check_expression(source, field, problems);
                }
            }
        }
    }
}

/// An expression field: CEL source when a string, a literal otherwise.
pub fn check_value_expression(value: &Value, field: &str, problems: &mut Problems) {
    if let Value::String(source) = value {
        if source.contains("{{") {
            check_template(source, field, problems);
        } else {
            check_expression(source, field, problems);
        }
    }
}

/// Whether `text` is a bare `state`/`input` path, which transform values evaluate (as the
/// seed system did) rather than keep as text.
pub fn is_bare_path(text: &str) -> bool {
    let text = text.trim();
    let root_ok = ["state", "input"].iter().any(|root| {
        text == *root
            || text
                .strip_prefix(root)
                .is_some_and(|rest| rest.starts_with('.'))
    });
    root_ok
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Whether a string that is no template reads like an expression meant to be computed
/// (`input.count + 1`, `state.items[0]`): it names `input.`, `state.` or `workflow.` at
/// its start and is not a bare path, which is evaluated as it is.
fn looks_like_an_expression(text: &str) -> bool {
    let text = text.trim();
    !text.contains("{{")
        && !is_bare_path(text)
        && ["input.", "state.", "workflow."]
            .iter()
            .any(|root| text.starts_with(root))
}

/// Templates in every string leaf of a JSON value (transform expressions, widget data,
/// an MCP step's arguments). A bare path (`input.x`) is evaluated; any other text is a
/// template, so an expression written without braces is sent as text: a warning says
/// how to write it.
pub fn check_templates_in(value: &Value, field: &str, problems: &mut Problems) {
    match value {
        Value::String(text) if is_bare_path(text) => check_expression(text, field, problems),
        Value::String(text) if looks_like_an_expression(text) => problems.warning(
            "bare_expression",
            Some(field),
            format!(
                "`{text}` is sent as text: values here are templates, so write `{{{{ {} }}}}` to compute it (only a bare path such as `input.x` is evaluated without braces)",
                text.trim()
            ),
        ),
        Value::String(text) => check_template(text, field, problems),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_templates_in(item, &format!("{field}[{index}]"), problems);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                check_templates_in(item, &format!("{field}.{key}"), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(f: impl FnOnce(&mut Problems)) -> Vec<&'static str> {
        let mut problems = Problems::new();
        f(&mut problems);
        problems.into_vec().into_iter().map(|p| p.code).collect()
    }

    #[test]
    fn expressions_without_braces_are_named_with_their_form() {
        let mut problems = Problems::new();
        check_templates_in(
            &serde_json::json!({"a": "input.count + 1", "b": "input.count", "c": "{{ input.count + 1 }}", "d": "Hello state.name"}),
            "parameters.arguments",
            &mut problems,
        );
        let found = problems.into_vec();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "bare_expression");
        assert_eq!(found[0].field.as_deref(), Some("parameters.arguments.a"));
        assert!(
            found[0].message.contains("write `{{ input.count + 1 }}`"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn templates_split_into_parts() {
        assert_eq!(
            template_parts("Hi {{ user.email }}, {{state.n}}!").unwrap(),
            [
                Part::Text("Hi "),
                Part::Expr("user.email"),
                Part::Text(", "),
                Part::Expr("state.n"),
                Part::Text("!")
            ]
        );
        assert_eq!(
            template_parts("{{ input }}").unwrap(),
            [Part::Expr("input")]
        );
        assert!(template_parts("oops {{ state.x").is_err());
        assert_eq!(
            template_parts(r#"{{ {"a": {"b": state.x}} }}"#).unwrap(),
            [Part::Expr(r#"{"a": {"b": state.x}}"#)]
        );
        assert_eq!(
            template_parts("{{ '}}' + state.x }}!").unwrap(),
            [Part::Expr("'}}' + state.x"), Part::Text("!")]
        );
        assert!(template_parts("{{ }}").is_err());
    }

    #[test]
    fn expressions_are_compiled() {
        assert!(codes(|p| check_expression("state.count > 3 && input.ok", "f", p)).is_empty());
        assert!(codes(|p| check_expression("input.output_parsed.doc_id", "f", p)).is_empty());
        assert!(codes(|p| check_expression("input.tags.exists(t, t == 'x')", "f", p)).is_empty());
        assert_eq!(
            codes(|p| check_expression("state.count >", "f", p)),
            ["invalid_expression"]
        );
        assert_eq!(
            codes(|p| check_expression("  ", "f", p)),
            ["empty_expression"]
        );
        assert_eq!(
            codes(|p| check_expression("stat.count", "f", p)),
            ["unknown_variable"]
        );
        assert_eq!(
            codes(|p| check_template("Hello {{ state.( }}", "f", p)),
            ["invalid_expression"]
        );
        assert!(codes(|p| check_value_expression(&serde_json::json!(42), "f", p)).is_empty());
    }

    #[test]
    fn bare_paths() {
        assert!(is_bare_path("state.user.name"));
        assert!(is_bare_path("input"));
        assert!(!is_bare_path("statement"));
        assert!(!is_bare_path("state.x + 1"));
    }
}
