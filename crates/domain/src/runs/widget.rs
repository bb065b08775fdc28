//! The `widget` step: renders a ChatKit widget with values bound from expressions and
//! from the previous structured output, shows it, and by default waits for an action on
//! it, which arrives as `input.action` `{type, payload, values, widget}`.
//!
//! Binding: the widget tree is walked for components addressed by `id`, `key` or `name`;
//! a variable with that name sets the component's `src` (images), `defaultValue`
//! (inputs), `label` (badges) or `value`. Variables
//! come from the node's `variables` expressions and, for names not given there, from the
//! keys of the previous output's `output_parsed` (an agent's structured answer).

use serde_json::{Map, Value, json};

use super::{
    RunError, RunResult, Wait,
    engine::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
};
use crate::workflows::{Node, eval::Scope, nodes};

pub(super) async fn run(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
) -> Result<Outcome, NodeError> {
    let config: nodes::WidgetNode = parse(node)?;
    let widget = config
        .widget
        .ok_or_else(|| node_error("invalid_parameters", "a widget node needs `widget`"))?;
    let settings = match &widget {
        Value::String(slug) => json!({"source": "library", "slug": slug}),
        other => other.clone(),
    };
    let source = settings
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("library");
    let slug = settings.get("slug").and_then(Value::as_str);
    let mut definition = match source {
        "library" => {
            let slug = slug.unwrap_or_default();
            ctx.services
                .store
                .widget(slug)
                .await
                .map_err(|err| node_error("internal_error", err.to_string()))?
                .ok_or_else(|| {
                    node_error(
                        "widget_not_found",
                        format!("the widget library has no widget `{slug}`"),
                    )
                })?
                .definition
        }
        "variable" => {
            let expression = settings
                .get("definition_expression")
                .or_else(|| settings.get("definitionExpression"))
                .cloned()
                .unwrap_or(Value::Null);
            match scope.eval_value(&expression)? {
                Value::String(text) => serde_json::from_str(&text).map_err(|err| {
                    node_error(
                        "invalid_widget",
                        format!("the widget expression gave text that is not JSON: {err}"),
                    )
                })?,
                value => value,
            }
        }
        "inline" => settings.get("definition").cloned().unwrap_or(Value::Null),
        other => {
            return Err(node_error(
                "invalid_parameters",
                format!("`{other}` is not a widget source"),
            ));
        }
    };
    if !definition.is_object() {
        return Err(node_error(
            "invalid_widget",
            "the widget definition is not an object",
        ));
    }
    let mut values = Map::new();
    for (name, expression) in settings
        .get("variables")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        values.insert(name.clone(), scope.eval_value(expression)?);
    }
    let structured = scope
        .input
        .get("output_parsed")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (name, value) in structured {
        values.entry(name).or_insert(value);
    }
    bind(&mut definition, &values);
    let await_action = settings
        .get("await_action")
        .or_else(|| settings.get("wait_for_action"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    log.event(
        "widget",
        Some(&node.slug),
        json!({"widget": definition, "slug": slug, "await_action": await_action}),
    );
    let output = json!({"widget": definition, "widget_slug": slug});
    Ok(Outcome {
        output,
        next: if await_action {
            Next::Wait(Wait {
                kind: "widget_action".into(),
                node: node.slug.clone(),
                prompt: None,
                data: Some(json!({"widget": definition})),
            })
        } else {
            Next::Follow(None)
        },
    })
}

/// Writes `values` into the components they address.
pub(crate) fn bind(tree: &mut Value, values: &Map<String, Value>) {
    match tree {
        Value::Object(component) => {
            // Children first: a bound value is data, never walked (it may address itself).
            for child in component.values_mut() {
                bind(child, values);
            }
            let address = ["id", "key", "name"]
                .iter()
                .find_map(|k| component.get(*k).and_then(Value::as_str))
                .map(str::to_string);
            if let Some(value) = address.and_then(|a| values.get(&a)) {
                let field = match component.get("type").and_then(Value::as_str) {
                    Some("Image") => "src",
                    Some("Badge") => "label",
                    Some("Checkbox") => "defaultChecked",
                    Some("Input" | "Textarea" | "Select" | "DatePicker" | "RadioGroup") => {
                        "defaultValue"
                    }
                    _ if component.contains_key("src") => "src",
                    _ => "value",
                };
                component.insert(field.into(), value.clone());
            }
        }
        Value::Array(items) => {
            for item in items {
                bind(item, values);
            }
        }
        _ => {}
    }
}

/// The action types a widget offers (`onClickAction`, `onSubmitAction`, `onChangeAction`,
/// and the actions of `confirm` and `cancel`).
fn offered_actions(tree: &Value, out: &mut Vec<String>) {
    match tree {
        Value::Object(map) => {
            for (key, value) in map {
                let action = match key.as_str() {
                    "onClickAction" | "onSubmitAction" | "onChangeAction" => Some(value),
                    "confirm" | "cancel" => value.get("action"),
                    _ => None,
                };
                if let Some(kind) = action.and_then(|a| a.get("type")).and_then(Value::as_str) {
                    out.push(kind.to_string());
                }
                offered_actions(value, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| offered_actions(i, out)),
        _ => {}
    }
}

/// The `input.action` a widget action resumes with: `{type, payload, values, widget}`.
pub(super) fn action_context(action: Value, wait: Option<&Value>) -> RunResult<Value> {
    let kind = action
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| RunError::Invalid("a widget action needs a `type`".into()))?
        .to_string();
    // Only what the widget offers: a client cannot take a path no button leads to.
    let widget = wait.and_then(|w| w.get("widget"));
    let mut offered = Vec::new();
    if let Some(widget) = widget {
        offered_actions(widget, &mut offered);
    }
    if !offered.is_empty() && !offered.contains(&kind) {
        return Err(RunError::Invalid(format!(
            "the widget offers no `{kind}` action (it offers {})",
            offered.join(", ")
        )));
    }
    let payload = action.get("payload").cloned().unwrap_or(json!({}));
    let values = action
        .get("values")
        .or_else(|| payload.get("values"))
        .cloned()
        .unwrap_or(json!({}));
    Ok(json!({
        "type": kind,
        "payload": payload,
        "values": values,
        "widget": wait.and_then(|w| w.get("widget")).cloned().unwrap_or(Value::Null),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_addressed_components() {
        let mut tree = json!({"type": "Card", "children": [
            {"type": "Text", "id": "title", "value": ""},
            {"type": "Image", "id": "photo"},
            {"type": "Text", "key": "other", "value": "kept"}
        ]});
        let values = json!({"title": "Hello", "photo": "https://x/y.png"});
        bind(&mut tree, values.as_object().unwrap());
        // A value that addresses itself is data, not a component to fill.
        let mut tree = json!({"type": "Card", "children": [{"type": "Text", "id": "a"}]});
        let values = json!({"a": {"id": "a"}});
        bind(&mut tree, values.as_object().unwrap());
        assert_eq!(tree["children"][0]["value"], json!({"id": "a"}));
        let mut tree = json!({"type": "Card", "children": [
            {"type": "Text", "id": "title", "value": ""},
            {"type": "Image", "id": "photo"},
            {"type": "Text", "key": "other", "value": "kept"}
        ]});
        let values = json!({"title": "Hello", "photo": "https://x/y.png"});
        bind(&mut tree, values.as_object().unwrap());
        assert_eq!(tree["children"][0]["value"], "Hello");
        assert_eq!(tree["children"][1]["src"], "https://x/y.png");
        assert_eq!(tree["children"][2]["value"], "kept");
    }

    #[test]
    fn actions_need_a_type() {
        assert!(action_context(json!({"payload": {}}), None).is_err());
        let action = action_context(
            json!({"type": "buy", "payload": {"values": {"n": 1}}}),
            Some(&json!({"widget": {"type": "Card"}})),
        )
        .unwrap();
        let offering = json!({"widget": {"type": "Card", "children": [
            {"type": "Button", "onClickAction": {"type": "buy"}}]}});
        assert!(action_context(json!({"type": "error"}), Some(&offering)).is_err());
        assert!(action_context(json!({"type": "buy"}), Some(&offering)).is_ok());
        assert_eq!(action["values"]["n"], 1);
        assert_eq!(action["widget"]["type"], "Card");
    }
}
