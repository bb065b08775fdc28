//! How a clicked card shows what was done: an approval card's buttons disabled with the
//! decision under them, a submitted form keeping its values.

use super::*;

/// A decided approval card: its buttons disabled, the decision written under them.
pub(super) fn settle_approval(card: &mut Value, approved: bool) {
    fn disable(tree: &mut Value) {
        match tree {
            Value::Object(component) => {
                if component.get("type").and_then(Value::as_str) == Some("Button") {
                    component.insert("disabled".into(), Value::Bool(true));
                }
                component.values_mut().for_each(disable);
            }
            Value::Array(items) => items.iter_mut().for_each(disable),
            _ => {}
        }
    }
    disable(card);
    if let Some(children) = card.get_mut("children").and_then(Value::as_array_mut) {
        children.push(
            json!({"type": "Caption", "value": if approved { "Approved" } else { "Rejected" }}),
        );
    }
}

/// A submitted form keeps its values: each form field named in the action's payload (or
/// its `values`) shows what was sent.
pub(super) fn keep_submitted(widget: &mut Value, payload: &Value) {
    fn fill(tree: &mut Value, values: &Map<String, Value>) {
        match tree {
            Value::Object(component) => {
                let field = match component.get("type").and_then(Value::as_str) {
                    Some("Input" | "Textarea" | "Select" | "DatePicker" | "RadioGroup") => {
                        Some("defaultValue")
                    }
                    Some("Checkbox") => Some("defaultChecked"),
                    _ => None,
                };
                let value = ["name", "id", "key"]
                    .iter()
                    .find_map(|k| component.get(*k).and_then(Value::as_str))
                    .and_then(|name| values.get(name))
                    .cloned();
                if let (Some(field), Some(value)) = (field, value) {
                    component.insert(field.into(), value);
                } else {
                    component.values_mut().for_each(|v| fill(v, values));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| fill(v, values)),
            _ => {}
        }
    }
    let mut values = payload.as_object().cloned().unwrap_or_default();
    if let Some(nested) = payload.get("values").and_then(Value::as_object) {
        values.extend(nested.clone());
    }
    if !values.is_empty() {
        fill(widget, &values);
    }
}
