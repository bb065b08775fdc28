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
    EventKind, RunError, RunResult, Wait, WaitKind,
    step::{Log, Next, NodeError, Outcome, RunCtx, node_error, parse},
};
use crate::workflows::{Node, eval::Scope, nodes};

pub(crate) async fn run(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    scope: &Scope,
) -> Result<Outcome, NodeError> {
    let config: nodes::WidgetNode = parse(node)?;
    let widget = config
        .widget
        .ok_or_else(|| node_error("invalid_parameters", "a widget node needs `widget`"))?;
    let (settings, mut definition) = definition(ctx, &widget, scope).await?;
    let slug = settings.get("slug").and_then(Value::as_str);
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
        EventKind::Widget,
        Some(&node.slug),
        json!({"widget": definition, "slug": slug, "await_action": await_action}),
    );
    let output = json!({"widget": definition, "widget_slug": slug});
    Ok(Outcome {
        output,
        next: if await_action {
            Next::Wait(Wait {
                kind: WaitKind::WidgetAction,
                node: node.slug.clone(),
                prompt: None,
                data: Some(json!({"widget": definition})),
            })
        } else {
            Next::Follow(None)
        },
    })
}

/// A widget setting (a library slug, or `{source, slug | definition |
/// definition_expression, …}`) and the definition it names.
pub(crate) async fn definition(
    ctx: &RunCtx<'_>,
    widget: &Value,
    scope: &Scope,
) -> Result<(Value, Value), NodeError> {
    let settings = match widget {
        Value::String(slug) => json!({"source": "library", "slug": slug}),
        other => other.clone(),
    };
    let source = settings
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or("library");
    let slug = settings.get("slug").and_then(Value::as_str);
    let definition = match source {
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
    Ok((settings, definition))
}

/// Component types a value can be bound to, and the JSON type of that value.
const BINDABLE: &[(&str, &str)] = &[
    ("Text", "string"),
    ("Title", "string"),
    ("Caption", "string"),
    ("Markdown", "string"),
    ("Label", "string"),
    ("Badge", "string"),
    ("Image", "string"),
    ("Input", "string"),
    ("Textarea", "string"),
    ("Select", "string"),
    ("DatePicker", "string"),
    ("RadioGroup", "string"),
    ("Checkbox", "boolean"),
];

/// The structured output a widget's bindings ask for: a strict JSON Schema with one
/// required property per addressed component (`None` when nothing is addressed).
pub(crate) fn output_schema(tree: &Value) -> Option<Value> {
    fn walk(tree: &Value, properties: &mut Map<String, Value>) {
        match tree {
            Value::Object(component) => {
                let kind = component.get("type").and_then(Value::as_str);
                let address = ["id", "key", "name"]
                    .iter()
                    .find_map(|k| component.get(*k).and_then(Value::as_str));
                if let (Some(kind), Some(address)) = (kind, address)
                    && let Some((_, json_type)) = BINDABLE.iter().find(|(t, _)| *t == kind)
                {
                    properties
                        .entry(address.to_string())
                        .or_insert_with(|| json!({"type": json_type}));
                }
                component.values().for_each(|v| walk(v, properties));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, properties)),
            _ => {}
        }
    }
    let mut properties = Map::new();
    walk(tree, &mut properties);
    if properties.is_empty() {
        return None;
    }
    let required: Vec<Value> = properties.keys().cloned().map(Value::String).collect();
    Some(
        json!({"type": "object", "properties": properties, "required": required,
                "additionalProperties": false}),
    )
}

/// A widget filling in as a structured answer streams: the text so far, read as JSON,
/// bound into the definition. Texts that are still arriving are marked `streaming`.
#[derive(Debug, Clone)]
pub(crate) struct WidgetStream {
    pub definition: Value,
    text: String,
    last: Option<Value>,
}

impl WidgetStream {
    pub fn new(definition: Value) -> WidgetStream {
        WidgetStream {
            definition,
            text: String::new(),
            last: None,
        }
    }

    /// A new model call starts a new answer.
    pub fn restart(&mut self) {
        self.text.clear();
    }

    /// Adds a delta; returns the widget when it shows something new.
    pub fn push(&mut self, delta: &str) -> Option<Value> {
        self.text.push_str(delta);
        let Some(Value::Object(values)) = super::partial_json::parse_prefix(&self.text) else {
            return None;
        };
        let mut widget = self.definition.clone();
        bind(&mut widget, &values);
        mark_streaming(&mut widget, &values);
        if self.last.as_ref() == Some(&widget) {
            return None;
        }
        self.last = Some(widget.clone());
        Some(widget)
    }
}

/// Sets `streaming: true` on the `Text` and `Markdown` components bound to `values`.
fn mark_streaming(tree: &mut Value, values: &Map<String, Value>) {
    match tree {
        Value::Object(component) => {
            let streams = matches!(
                component.get("type").and_then(Value::as_str),
                Some("Text" | "Markdown")
            ) && ["id", "key", "name"]
                .iter()
                .find_map(|k| component.get(*k).and_then(Value::as_str))
                .is_some_and(|a| values.get(a).is_some_and(Value::is_string));
            for (key, child) in component.iter_mut() {
                if key != "value" {
                    mark_streaming(child, values);
                }
            }
            if streams {
                component.insert("streaming".into(), Value::Bool(true));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| mark_streaming(i, values)),
        _ => {}
    }
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

/// The action types the widget a run waits on offers (its wait's `data`), each once, in
/// the widget's order: what a client may answer with.
pub fn action_types(wait_data: Option<&Value>) -> Vec<String> {
    let mut offered = Vec::new();
    if let Some(widget) = wait_data.and_then(|w| w.get("widget")) {
        offered_actions(widget, &mut offered);
    }
    let mut seen = std::collections::HashSet::new();
    offered.retain(|kind| seen.insert(kind.clone()));
    offered
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
pub(crate) fn action_context(action: Value, wait: Option<&Value>) -> RunResult<Value> {
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
    fn a_widget_fills_in_as_its_answer_streams() {
        let definition = json!({"type": "Card", "children": [
            {"type": "Title", "id": "title", "value": ""},
            {"type": "Text", "id": "body", "value": ""},
            {"type": "Image", "id": "photo", "src": ""},
            {"type": "Checkbox", "name": "gift"},
            {"type": "Row", "id": "row", "children": [{"type": "Button", "id": "buy", "label": "Buy"}]}
        ]});
        assert_eq!(
            output_schema(&definition).unwrap(),
            json!({"type": "object", "additionalProperties": false,
                   "properties": {"body": {"type": "string"}, "gift": {"type": "boolean"},
                                  "photo": {"type": "string"}, "title": {"type": "string"}},
                   "required": ["body", "gift", "photo", "title"]})
        );
        assert_eq!(
            output_schema(&json!({"type": "Card", "children": []})),
            None
        );
        let mut stream = WidgetStream::new(definition.clone());
        // The widget shows as soon as the answer starts; an unfinished key adds nothing.
        assert_eq!(stream.push("{\"ti"), Some(definition));
        assert_eq!(stream.push("t"), None);
        let first = stream.push("le\": \"Pas").unwrap();
        assert_eq!(first["children"][0]["value"], "Pas");
        // Titles do not stream in ChatKit; texts do.
        assert!(first["children"][0].get("streaming").is_none());
        let second = stream.push("ta\", \"body\": \"Boil").unwrap();
        assert_eq!(second["children"][1]["value"], "Boil");
        assert_eq!(second["children"][1]["streaming"], true);
        // Nothing new (an unfinished key) shows nothing.
        assert_eq!(stream.push("\", \"ph"), None);
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
