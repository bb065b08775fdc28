//! The widget library: named ChatKit widget definitions that workflows show by slug.
//!
//! Invariant: a stored definition is a valid ChatKit widget root (`Card`, `ListView` or
//! `Basic`); every write validates and a refusal lists every problem with its path.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    Services,
    auth::Principal,
    error::{DomainError, ErrorKind},
    store::StoreError,
    workflows,
};

#[derive(Debug, Clone, PartialEq)]
pub struct Widget {
    pub id: i64,
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub definition: Value,
    /// JSON Schema of the data the widget is filled with, for the builder.
    pub data_schema: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewWidget {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub definition: Value,
    pub data_schema: Option<Value>,
}

/// Fields to change; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct WidgetPatch {
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub definition: Option<Value>,
    pub data_schema: Option<Option<Value>>,
}

/// One problem of a widget definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WidgetProblem {
    /// Where: `children[2].options[0].value`.
    pub path: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WidgetError {
    #[error("widget `{0}` not found")]
    NotFound(String),
    #[error("a widget with the slug `{0}` already exists")]
    Exists(String),
    #[error("{0}")]
    InvalidSlug(String),
    #[error("the widget definition is invalid: {}", .0.iter().map(|p| format!("{} ({})", p.message, if p.path.is_empty() { "root" } else { &p.path })).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<WidgetProblem>),
    #[error("only administrators manage the widget library")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for WidgetError {
    fn kind(&self) -> ErrorKind {
        match self {
            WidgetError::NotFound(_) => ErrorKind::NotFound,
            WidgetError::Exists(_) => ErrorKind::Conflict,
            WidgetError::InvalidSlug(_) | WidgetError::Invalid(_) => ErrorKind::Invalid,
            WidgetError::Forbidden => ErrorKind::Forbidden,
            WidgetError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            WidgetError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            WidgetError::NotFound(_) => "widget_not_found",
            WidgetError::Exists(_) => "widget_exists",
            WidgetError::InvalidSlug(_) => "invalid_slug",
            WidgetError::Invalid(_) => "invalid_widget",
            WidgetError::Forbidden => "forbidden",
            WidgetError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            WidgetError::Store(_) => "internal_error",
        }
    }
}

pub type WidgetResult<T> = Result<T, WidgetError>;

const ROOTS: &[&str] = &["Card", "ListView", "Basic"];

/// Components and their required props (ChatKit's widget types).
const COMPONENTS: &[(&str, &[&str])] = &[
    ("Card", &["children"]),
    ("ListView", &["children"]),
    ("Basic", &[]),
    ("ListViewItem", &["children"]),
    ("Box", &[]),
    ("Row", &[]),
    ("Col", &[]),
    ("Form", &[]),
    ("Spacer", &[]),
    ("Divider", &[]),
    ("Transition", &["children"]),
    ("Text", &["value"]),
    ("Title", &["value"]),
    ("Caption", &["value"]),
    ("Markdown", &["value"]),
    ("Label", &["value", "fieldName"]),
    ("Badge", &["label"]),
    ("Icon", &["name"]),
    ("Image", &["src"]),
    ("Chart", &["data", "series", "xAxis"]),
    ("Button", &[]),
    ("Input", &["name"]),
    ("Textarea", &["name"]),
    ("Select", &["name", "options"]),
    ("DatePicker", &["name"]),
    ("Checkbox", &["name"]),
    ("RadioGroup", &["name"]),
    ("Table", &[]),
    ("Table.Row", &[]),
    ("Table.Cell", &[]),
];

/// Props that hold an action (`ActionConfig`).
const ACTION_PROPS: &[&str] = &["onClickAction", "onSubmitAction", "onChangeAction"];

/// Every problem of a widget definition. Unknown component types are accepted when they
/// have a string `type` (ChatKit's dynamic components) but reported when the name looks
/// like a misspelt known one.
pub fn validate(definition: &Value) -> Vec<WidgetProblem> {
    let mut problems = Vec::new();
    match definition.get("type").and_then(Value::as_str) {
        Some(root) if ROOTS.contains(&root) => {}
        Some(other) => problems.push(WidgetProblem {
            path: "type".into(),
            message: format!("a widget's root is a Card, ListView or Basic, not `{other}`"),
        }),
        None => problems.push(WidgetProblem {
            path: String::new(),
            message: "a widget is an object with `type` Card, ListView or Basic".into(),
        }),
    }
    component(definition, "", &mut problems);
    problems
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn component(value: &Value, path: &str, problems: &mut Vec<WidgetProblem>) {
    let Some(map) = value.as_object() else {
        problems.push(WidgetProblem {
            path: path.into(),
            message: "a component is a JSON object".into(),
        });
        return;
    };
    let Some(kind) = map.get("type").and_then(Value::as_str) else {
        problems.push(WidgetProblem {
            path: join(path, "type"),
            message: "a component needs a string `type`".into(),
        });
        return;
    };
    match COMPONENTS.iter().find(|(name, _)| *name == kind) {
        Some((_, required)) => {
            for prop in *required {
                if map.get(*prop).is_none_or(Value::is_null) {
                    problems.push(WidgetProblem {
                        path: join(path, prop),
                        message: format!("`{kind}` needs `{prop}`"),
                    });
                }
            }
        }
        None => {
            if let Some((known, _)) = COMPONENTS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(kind))
            {
                problems.push(WidgetProblem {
                    path: join(path, "type"),
                    message: format!("unknown component `{kind}`; did you mean `{known}`?"),
                });
            }
        }
    }
    check_props(kind, map, path, problems);
}

fn check_props(
    kind: &str,
    map: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<WidgetProblem>,
) {
    if let Some(children) = map.get("children") {
        match children {
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let child_path = format!("{}[{index}]", join(path, "children"));
                    if kind == "ListView"
                        && child.get("type").and_then(Value::as_str) != Some("ListViewItem")
                    {
                        problems.push(WidgetProblem {
                            path: join(&child_path, "type"),
                            message: "the children of a ListView are ListViewItems".into(),
                        });
                    }
                    component(child, &child_path, problems);
                }
            }
            Value::Object(_) if kind == "Transition" => {
                component(children, &join(path, "children"), problems)
            }
            Value::Null => {}
            _ => problems.push(WidgetProblem {
                path: join(path, "children"),
                message: "`children` is a list of components".into(),
            }),
        }
    }
    for prop in ACTION_PROPS {
        if let Some(action) = map.get(*prop).filter(|a| !a.is_null()) {
            check_action(action, &join(path, prop), problems);
        }
    }
    for prop in ["confirm", "cancel"] {
        if let Some(action) = map.get(prop).and_then(|c| c.get("action")) {
            check_action(action, &join(&join(path, prop), "action"), problems);
        }
    }
    if let Some(options) = map.get("options") {
        match options.as_array() {
            Some(items) => {
                for (index, option) in items.iter().enumerate() {
                    if option.get("value").is_none() || option.get("label").is_none() {
                        problems.push(WidgetProblem {
                            path: format!("{}[{index}]", join(path, "options")),
                            message: "an option needs `value` and `label`".into(),
                        });
                    }
                }
            }
            None => problems.push(WidgetProblem {
                path: join(path, "options"),
                message: "`options` is a list".into(),
            }),
        }
    }
}

fn check_action(action: &Value, path: &str, problems: &mut Vec<WidgetProblem>) {
    if action
        .get("type")
        .and_then(Value::as_str)
        .is_none_or(|t| t.trim().is_empty())
    {
        problems.push(WidgetProblem {
            path: join(path, "type"),
            message: "an action needs a non-empty `type`".into(),
        });
    }
    if let Some(handler) = action.get("handler").and_then(Value::as_str)
        && !matches!(handler, "server" | "client")
    {
        problems.push(WidgetProblem {
            path: join(path, "handler"),
            message: format!("`handler` is `server` or `client`, not `{handler}`"),
        });
    }
}

fn require_admin(actor: &Principal) -> WidgetResult<()> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(WidgetError::Forbidden)
    }
}

fn checked(definition: &Value) -> WidgetResult<()> {
    let problems = validate(definition);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(WidgetError::Invalid(problems))
    }
}

/// Every widget with its definition, for an administrator.
pub async fn list(services: &Services, actor: &Principal) -> WidgetResult<Vec<Widget>> {
    require_admin(actor)?;
    Ok(services.store.list_widgets().await?)
}

/// A widget as any author sees it to pick one (not its definition).
#[derive(Debug, Clone, PartialEq)]
pub struct WidgetSummary {
    pub slug: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub data_schema: Option<Value>,
}

/// The library, as any author may see it.
pub async fn summaries(services: &Services) -> WidgetResult<Vec<WidgetSummary>> {
    Ok(services
        .store
        .list_widgets()
        .await?
        .into_iter()
        .map(|w| WidgetSummary {
            slug: w.slug,
            title: w.title,
            description: w.description,
            data_schema: w.data_schema,
        })
        .collect())
}

/// A widget with its definition, for an administrator.
pub async fn get(services: &Services, actor: &Principal, slug: &str) -> WidgetResult<Widget> {
    require_admin(actor)?;
    services
        .store
        .widget(slug)
        .await?
        .ok_or_else(|| WidgetError::NotFound(slug.to_string()))
}

pub async fn create(
    services: &Services,
    actor: &Principal,
    new: NewWidget,
) -> WidgetResult<Widget> {
    require_admin(actor)?;
    workflows::check_slug(&new.slug).map_err(|err| WidgetError::InvalidSlug(err.to_string()))?;
    checked(&new.definition)?;
    match services.store.insert_widget(&new, Utc::now()).await {
        Err(StoreError::Conflict { .. }) => Err(WidgetError::Exists(new.slug)),
        other => Ok(other?),
    }
}

pub async fn update(
    services: &Services,
    actor: &Principal,
    slug: &str,
    patch: WidgetPatch,
) -> WidgetResult<Widget> {
    require_admin(actor)?;
    if let Some(definition) = &patch.definition {
        checked(definition)?;
    }
    services
        .store
        .update_widget(slug, &patch, Utc::now())
        .await?
        .ok_or_else(|| WidgetError::NotFound(slug.to_string()))
}

pub async fn delete(services: &Services, actor: &Principal, slug: &str) -> WidgetResult<()> {
    require_admin(actor)?;
    if services.store.delete_widget(slug).await? {
        Ok(())
    } else {
        Err(WidgetError::NotFound(slug.to_string()))
    }
}

/// A definition filled with `data` (values addressed by component `id`, `key` or
/// `name`), validated: what the widget will look like.
pub fn preview(definition: &Value, data: Option<&Value>) -> WidgetResult<Value> {
    checked(definition)?;
    let mut filled = definition.clone();
    if let Some(values) = data.and_then(Value::as_object) {
        crate::runs::bind_widget(&mut filled, values);
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn valid_widgets_pass() {
        let card = json!({"type": "Card", "children": [
            {"type": "Title", "value": "Order"},
            {"type": "Select", "name": "size", "options": [{"value": "s", "label": "Small"}]},
            {"type": "Button", "label": "Buy", "onClickAction": {"type": "buy", "payload": {}}},
            {"type": "MyCustomThing", "anything": 1}
        ]});
        assert_eq!(validate(&card), vec![]);
    }

    #[test]
    fn every_problem_is_listed_with_its_path() {
        let bad = json!({"type": "Card", "children": [
            {"type": "Text"},
            {"type": "button", "onClickAction": {"payload": {}}},
            {"type": "Select", "name": "x", "options": [{"value": 1}]},
            "text"
        ]});
        let paths: Vec<String> = validate(&bad).into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            vec![
                "children[0].value",
                "children[1].type",
                "children[1].onClickAction.type",
                "children[2].options[0]",
                "children[3]",
            ]
        );
        assert_eq!(
            validate(&json!({"type": "Text", "value": "x"}))[0].path,
            "type"
        );
        assert_eq!(
            validate(&json!({"type": "ListView", "children": [{"type": "Text", "value": "x"}]}))[0]
                .path,
            "children[0].type"
        );
    }
}
