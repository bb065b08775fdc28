//! Values a run keeps: step records bounded in size, state assignments converted to the
//! state schema's types, NUL characters removed (PostgreSQL cannot store them), and
//! dotted paths set inside the state.

use serde_json::{Map, Value, json};

use super::step::{NodeError, node_error};
use crate::workflows::eval::as_text;

/// The length of a string in JSON: quotes, and escapes counted at their longest.
fn escaped_len(s: &str) -> i64 {
    let escaped = s
        .bytes()
        .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
        .count();
    (s.len() + 5 * escaped + 2) as i64
}

/// Whether `value` certainly serializes within `budget` bytes (an overestimate of the
/// size, counting escapes pessimistically), spending the budget as it goes.
fn fits(value: &Value, budget: &mut i64) -> bool {
    *budget -= match value {
        Value::String(s) => escaped_len(s),
        Value::Array(items) => {
            *budget -= 2;
            for item in items {
                if !fits(item, budget) {
                    return false;
                }
            }
            items.len() as i64
        }
        Value::Object(map) => {
            *budget -= 2;
            for (key, item) in map {
                *budget -= escaped_len(key) + 1;
                if !fits(item, budget) {
                    return false;
                }
            }
            0
        }
        _ => 24,
    };
    *budget >= 0
}

/// The largest step input or output kept whole in a step record (serialized bytes).
const STEP_RECORD_LIMIT: usize = 64 * 1024;

/// A value for a step record: whole when small, else a marker with a prefix. The run
/// itself always keeps the whole value.
pub(crate) fn bounded(value: Value) -> Value {
    // A cheap estimate first (no serialization): most step values are small.
    let mut budget = STEP_RECORD_LIMIT as i64;
    if fits(&value, &mut budget) {
        return value;
    }
    let text = value.to_string();
    if text.len() <= STEP_RECORD_LIMIT {
        return value;
    }
    let mut cut = 4096.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    json!({"truncated": true, "bytes": text.len(), "preview": &text[..cut]})
}

/// A value assigned to `state.<path>`, checked against the type the workflow's state
/// schema gives that path (when it gives one). Text that reads as the declared type is
/// converted (`"3"` for an integer, `"true"` for a boolean), as form and model outputs
/// often arrive as text; anything else fails the step, naming the path and the type.
pub(crate) fn typed(schema: Option<&Value>, path: &str, value: Value) -> Result<Value, NodeError> {
    let mut property = schema;
    for segment in path.split('.') {
        property = property
            .and_then(|p| p.get("properties"))
            .and_then(|p| p.get(segment));
    }
    let Some(declared) = property.and_then(|p| p.get("type")) else {
        return Ok(value);
    };
    let types: Vec<&str> = match declared {
        Value::String(t) => vec![t.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(value),
    };
    let matches = |t: &str, v: &Value| match t {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        "null" => v.is_null(),
        _ => true,
    };
    // Null clears a value of any type.
    if value.is_null() || types.iter().any(|t| matches(t, &value)) {
        return Ok(value);
    }
    for t in &types {
        let converted = match (*t, &value) {
            ("integer", Value::Number(n)) => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| json!(f as i64)),
            ("integer", Value::String(s)) => s.trim().parse::<i64>().ok().map(|i| json!(i)),
            ("number", Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(|f| json!(f)),
            ("boolean", Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Some(json!(true)),
                "false" => Some(json!(false)),
                _ => None,
            },
            ("string", Value::Number(_) | Value::Bool(_)) => Some(json!(as_text(&value))),
            _ => None,
        };
        if let Some(converted) = converted {
            return Ok(converted);
        }
    }
    let mut shown = value.to_string();
    if shown.len() > 80 {
        let mut cut = 80;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    Err(node_error(
        "state_type_mismatch",
        format!(
            "`state.{path}` is declared as {} in the state schema, but the value is {shown}",
            types.join(" or ")
        ),
    ))
}

/// Removes NUL characters from every string of a value: PostgreSQL cannot store them,
/// and a model or a client may send them.
pub(crate) fn strip_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', ""),
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                let cleaned: Map<String, Value> = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', ""), v))
                    .collect();
                *map = cleaned;
            }
            map.values_mut().for_each(strip_nul);
        }
        _ => {}
    }
}

/// Sets `value` at a dotted path inside `state`, creating objects on the way.
pub(crate) fn set_path(state: &mut Value, path: &str, value: Value) {
    let mut cursor = state;
    let segments: Vec<&str> = path.split('.').collect();
    for (index, segment) in segments.iter().enumerate() {
        if !cursor.is_object() {
            *cursor = json!({});
        }
        let map = cursor.as_object_mut().expect("made an object above");
        if index == segments.len() - 1 {
            map.insert((*segment).to_string(), value);
            return;
        }
        cursor = map
            .entry((*segment).to_string())
            .or_insert_with(|| json!({}));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{NodeError, typed};

    #[test]
    fn assignments_follow_the_state_schema() {
        let schema = json!({"type": "object", "properties": {
            "count": {"type": "integer"}, "ratio": {"type": "number"}, "ok": {"type": "boolean"},
            "name": {"type": ["string", "null"]},
            "order": {"type": "object", "properties": {"qty": {"type": "integer"}}}
        }});
        let t = |path: &str, v| {
            typed(Some(&schema), path, v).map_err(|e| match e {
                NodeError::Failed { code, .. } => code,
                NodeError::Cancelled => "cancelled",
            })
        };
        assert_eq!(t("count", json!("3")), Ok(json!(3)));
        assert_eq!(t("count", json!(4.0)), Ok(json!(4)));
        assert_eq!(t("count", json!("three")), Err("state_type_mismatch"));
        assert_eq!(t("ratio", json!("0.5")), Ok(json!(0.5)));
        assert_eq!(t("ok", json!("TRUE")), Ok(json!(true)));
        assert_eq!(t("name", json!(12)), Ok(json!("12")));
        assert_eq!(t("name", json!(null)), Ok(json!(null)));
        assert_eq!(t("order.qty", json!("2")), Ok(json!(2)));
        assert_eq!(t("undeclared", json!("x")), Ok(json!("x")));
        assert_eq!(typed(None, "count", json!("x")).ok(), Some(json!("x")));
    }
}
