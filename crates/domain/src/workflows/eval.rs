//! Evaluating expressions and rendering templates at run time.
//!
//! JSON values cross into CEL with integers kept as integers (so `state.n + 1` works) and
//! come back as JSON. A template that is a single `{{ placeholder }}` yields the typed
//! value; otherwise each placeholder is replaced by its text (strings as they are, other
//! values as JSON, null as nothing).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use cel::{Context, Program, Value as CelValue};
use serde_json::{Map, Number, Value};

use super::expr::{self, Part};

/// The variables an expression sees.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub input: Value,
    pub state: Value,
    pub workflow: Value,
    pub user: Value,
    pub thread: Value,
}

/// Why an expression could not be evaluated, in words for the workflow's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{source_text}`: {message}")]
pub struct EvalError {
    pub source_text: String,
    pub message: String,
}

/// Compiled programs by source text. Graphs evaluate the same few expressions over and
/// over; parsing dominates evaluation, so each source is compiled once per process. The
/// cache is cleared when it grows past `MAX_CACHED`, which bounds its memory.
fn compiled(source: &str) -> Result<Arc<Program>, String> {
    const MAX_CACHED: usize = 4096;
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Program>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(program) = cache
        .lock()
        .expect("program cache lock poisoned")
        .get(source)
    {
        return Ok(program.clone());
    }
    let program = Arc::new(Program::compile(source).map_err(|err| err.to_string())?);
    let mut programs = cache.lock().expect("program cache lock poisoned");
    if programs.len() >= MAX_CACHED {
        programs.clear();
    }
    programs.insert(source.to_string(), program.clone());
    Ok(program)
}

fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => CelValue::Int(i),
            (None, Some(u)) => CelValue::UInt(u),
            _ => CelValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => CelValue::from(s.clone()),
        Value::Array(items) => CelValue::from(items.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(map) => CelValue::from(
            map.iter()
                .map(|(k, v)| (k.clone(), to_cel(v)))
                .collect::<HashMap<String, CelValue>>(),
        ),
    }
}

fn from_cel(value: &CelValue) -> Value {
    match value {
        CelValue::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        CelValue::List(items) => Value::Array(items.iter().map(from_cel).collect()),
        CelValue::Map(map) => Value::Object(
            map.map
                .iter()
                .map(|(k, v)| (k.to_string(), from_cel(v)))
                .collect::<Map<_, _>>(),
        ),
        other => other
            .json()
            .unwrap_or_else(|_| Value::String(format!("{other:?}"))),
    }
}

impl Scope {
    fn context(&self) -> Context<'_, '_> {
        let mut context = Context::default();
        // CEL's string extensions that templates ask for most (`name.lowerAscii()`).
        let _ = context.add_function(
            "lowerAscii",
            |cel::extractors::This(text): cel::extractors::This<Arc<String>>| {
                text.to_ascii_lowercase()
            },
        );
        let _ = context.add_function(
            "upperAscii",
            |cel::extractors::This(text): cel::extractors::This<Arc<String>>| {
                text.to_ascii_uppercase()
            },
        );
        for (name, value) in [
            ("input", &self.input),
            ("state", &self.state),
            ("workflow", &self.workflow),
            ("user", &self.user),
            ("thread", &self.thread),
        ] {
            context.add_variable_from_value(name, to_cel(value));
        }
        context
    }

    /// Evaluates one CEL expression.
    pub fn eval(&self, source: &str) -> Result<Value, EvalError> {
        let fail = |message: String| EvalError {
            source_text: source.trim().to_string(),
            message,
        };
        let program = compiled(source.trim()).map_err(fail)?;
        let value = program
            .execute(&self.context())
            .map_err(|err| fail(err.to_string()))?;
        Ok(from_cel(&value))
    }

    /// An expression field: CEL source when a string (a template if it has placeholders),
    /// the value itself otherwise.
    pub fn eval_value(&self, value: &Value) -> Result<Value, EvalError> {
        match value {
            Value::String(source) if source.contains("{{") => self.render(source),
            Value::String(source) => self.eval(source),
            other => Ok(other.clone()),
        }
    }

    /// Renders a template.
    pub fn render(&self, text: &str) -> Result<Value, EvalError> {
        let parts = expr::template_parts(text).map_err(|message| EvalError {
            source_text: text.to_string(),
            message,
        })?;
        if let [Part::Expr(source)] = parts.as_slice() {
            return self.eval(source);
        }
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Expr(source) => out.push_str(&as_text(&self.eval(source)?)),
            }
        }
        Ok(Value::String(out))
    }

    /// Renders a template to text.
    pub fn render_text(&self, text: &str) -> Result<String, EvalError> {
        self.render(text).map(|v| as_text(&v))
    }

    /// Renders every string leaf of a JSON value (transform outputs, widget data); a bare
    /// `state.…`/`input.…` path is evaluated.
    pub fn render_tree(&self, value: &Value) -> Result<Value, EvalError> {
        Ok(match value {
            Value::String(text) if expr::is_bare_path(text) => self.eval(text)?,
            Value::String(text) => self.render(text)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.render_tree(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_tree(v)?)))
                    .collect::<Result<Map<_, _>, EvalError>>()?,
            ),
            other => other.clone(),
        })
    }
}

/// A value as text inside a template.
pub fn as_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Truthiness, as workflow authors expect it: false, null, 0, "" and empty collections are false.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn scope() -> Scope {
        Scope {
            input: json!({"output_text": "hi", "output_parsed": {"doc_id": "d1", "score": 0.75, "tags": ["a", "urgent"]}}),
            state: json!({"count": 2, "name": "Ada", "items": [1, 2, 3]}),
            workflow: json!({"id": 1, "slug": "w", "version": 3}),
            user: json!({"id": 7, "email": "ada@example.com", "is_admin": false}),
            thread: json!({"id": "thr_1", "title": null}),
        }
    }

    #[test]
    fn expressions_evaluate_to_json() {
        let s = scope();
        assert_eq!(s.eval("state.count + 1").unwrap(), json!(3));
        assert_eq!(
            s.eval("state.count > 1 && input.output_parsed.score >= 0.5")
                .unwrap(),
            json!(true)
        );
        assert_eq!(s.eval("input.output_parsed.doc_id").unwrap(), json!("d1"));
        assert_eq!(
            s.eval("input.output_parsed.tags.exists(t, t == 'urgent')")
                .unwrap(),
            json!(true)
        );
        assert_eq!(s.eval("size(state.items)").unwrap(), json!(3));
        assert_eq!(
            s.eval("{'a': state.count, 'b': [user.email]}").unwrap(),
            json!({"a": 2, "b": ["ada@example.com"]})
        );
        assert_eq!(s.eval("double(state.count) * 1.5").unwrap(), json!(3.0));
        let err = s.eval("state.missing.deeper").unwrap_err();
        assert_eq!(err.source_text, "state.missing.deeper");
    }

    #[test]
    fn templates_render() {
        let s = scope();
        assert_eq!(
            s.render("Hi {{ state.name }}, you have {{ state.count }} items")
                .unwrap(),
            json!("Hi Ada, you have 2 items")
        );
        assert_eq!(
            s.render("{{ state.items }}").unwrap(),
            json!([1, 2, 3]),
            "a lone placeholder keeps its type"
        );
        assert_eq!(
            s.render("list: {{ state.items }}").unwrap(),
            json!("list: [1,2,3]")
        );
        assert_eq!(
            s.render("title: {{ thread.title }}.").unwrap(),
            json!("title: .")
        );
        assert_eq!(s.render("plain text").unwrap(), json!("plain text"));
        assert_eq!(
            s.render_tree(
                &json!({"who": "user {{ user.id }}", "raw": "input.output_parsed.doc_id", "n": 4})
            )
            .unwrap(),
            json!({"who": "user 7", "raw": "d1", "n": 4})
        );
        assert!(s.render("{{ state.nope }}").is_err());
    }

    #[test]
    fn truthiness() {
        for value in [
            json!(null),
            json!(false),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&value), "{value}");
        }
        for value in [
            json!(true),
            json!(1),
            json!("x"),
            json!([0]),
            json!({"a": 1}),
        ] {
            assert!(truthy(&value), "{value}");
        }
    }
}
