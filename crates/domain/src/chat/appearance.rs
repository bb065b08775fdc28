//! How the chat looks and starts: ChatKit's theme and start screen, set globally by
//! administrators and overridden per workflow; and the workflow a plain ChatKit client
//! talks to (`GET /api/chatkit/workflow`).
//!
//! Settings are kept in the settings store (`chat.appearance` and
//! `chat.appearance.workflow.<id>`); the effective appearance is the defaults, then the
//! global settings, then the workflow's override, field by field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ChatError, ChatResult};
use crate::{
    Services,
    auth::Principal,
    users::User,
    workflows::{
        self,
        nodes::{self, Role},
    },
};

const GLOBAL: &str = "chat.appearance";

fn workflow_key(workflow_id: i64) -> String {
    format!("chat.appearance.workflow.{workflow_id}")
}

/// Appearance fields; `None` inherits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Appearance {
    /// `system`, `light` or `dark`.
    pub color_scheme: Option<String>,
    /// `pill`, `round`, `soft` or `sharp`.
    pub radius_style: Option<String>,
    /// `#RRGGBB`.
    pub accent_color: Option<String>,
    pub use_custom_surface_colors: Option<bool>,
    /// 0 to 360.
    pub surface_hue: Option<f64>,
    /// 0 to 100.
    pub surface_tint: Option<f64>,
    /// 0 to 100.
    pub surface_shade: Option<f64>,
    pub heading_font: Option<String>,
    pub body_font: Option<String>,
    pub start_screen_greeting: Option<String>,
    pub start_screen_prompt: Option<String>,
    pub start_screen_placeholder: Option<String>,
    pub start_screen_disclaimer: Option<String>,
}

impl Appearance {
    fn defaults() -> Appearance {
        Appearance {
            color_scheme: Some("system".into()),
            radius_style: Some("round".into()),
            accent_color: Some("#2563eb".into()),
            use_custom_surface_colors: Some(false),
            start_screen_greeting: Some("How can I help you today?".into()),
            start_screen_placeholder: Some("Message the assistant".into()),
            ..Appearance::default()
        }
    }

    /// `self` with the fields `over` sets.
    fn overlaid(mut self, over: &Appearance) -> Appearance {
        macro_rules! take {
            ($($field:ident),*) => { $(if over.$field.is_some() { self.$field = over.$field.clone(); })* };
        }
        take!(
            color_scheme,
            radius_style,
            accent_color,
            use_custom_surface_colors,
            surface_hue,
            surface_tint,
            surface_shade,
            heading_font,
            body_font,
            start_screen_greeting,
            start_screen_prompt,
            start_screen_placeholder,
            start_screen_disclaimer
        );
        self
    }

    fn check(&self) -> ChatResult<()> {
        let invalid = |m: &str| Err(ChatError::Invalid(m.into()));
        if let Some(v) = &self.color_scheme
            && !["system", "light", "dark"].contains(&v.as_str())
        {
            return invalid("color_scheme is system, light or dark");
        }
        if let Some(v) = &self.radius_style
            && !["pill", "round", "soft", "sharp"].contains(&v.as_str())
        {
            return invalid("radius_style is pill, round, soft or sharp");
        }
        if let Some(v) = &self.accent_color {
            let hex = v.strip_prefix('#').unwrap_or_default();
            if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return invalid("accent_color is a colour such as #2563eb");
            }
        }
        if self
            .surface_hue
            .is_some_and(|h| !(0.0..=360.0).contains(&h))
        {
            return invalid("surface_hue is between 0 and 360");
        }
        for value in [self.surface_tint, self.surface_shade]
            .into_iter()
            .flatten()
        {
            if !(0.0..=100.0).contains(&value) {
                return invalid("surface_tint and surface_shade are between 0 and 100");
            }
        }
        for text in [
            &self.heading_font,
            &self.body_font,
            &self.start_screen_greeting,
            &self.start_screen_prompt,
            &self.start_screen_placeholder,
            &self.start_screen_disclaimer,
        ]
        .into_iter()
        .flatten()
        {
            if text.chars().count() > 4_000 {
                return invalid("texts are at most 4,000 characters");
            }
        }
        Ok(())
    }
}

async fn load(services: &Services, key: &str) -> ChatResult<Appearance> {
    Ok(services
        .store
        .get_setting(key)
        .await?
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default())
}

/// The appearance a client shows: for a workflow when given (its override over the
/// global settings), else the global settings.
pub async fn effective(services: &Services, workflow_id: Option<i64>) -> ChatResult<Appearance> {
    let mut appearance = Appearance::defaults().overlaid(&load(services, GLOBAL).await?);
    if let Some(id) = workflow_id {
        appearance = appearance.overlaid(&load(services, &workflow_key(id)).await?);
    }
    Ok(appearance)
}

/// The global settings as stored (unset fields inherit the defaults), for an
/// administrator.
pub async fn global(services: &Services, actor: &Principal) -> ChatResult<Appearance> {
    admin(actor)?;
    load(services, GLOBAL).await
}

fn admin(actor: &Principal) -> ChatResult<()> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(ChatError::Forbidden(
            "only administrators see and change the global appearance".into(),
        ))
    }
}

/// How stored settings change.
#[derive(Debug, Clone)]
pub enum Change {
    /// The whole settings (`PUT`): fields left out inherit.
    Replace(Box<Appearance>),
    /// A JSON merge patch (`PATCH`, RFC 7396): the fields sent change, `null` clears one,
    /// the others stay.
    Merge(serde_json::Map<String, Value>),
}

impl Change {
    /// The settings `current` becomes.
    fn applied_to(self, current: Appearance) -> ChatResult<Appearance> {
        match self {
            Change::Replace(value) => Ok(*value),
            Change::Merge(patch) => {
                let mut merged = match serde_json::to_value(current) {
                    Ok(Value::Object(fields)) => fields,
                    _ => serde_json::Map::new(),
                };
                for (key, value) in patch {
                    merged.insert(key, value);
                }
                serde_json::from_value(Value::Object(merged))
                    .map_err(|err| ChatError::Invalid(err.to_string()))
            }
        }
    }
}

/// Changes the global settings (administrators).
pub async fn set_global(
    services: &Services,
    actor: &Principal,
    change: Change,
) -> ChatResult<Appearance> {
    admin(actor)?;
    let value = change.applied_to(load(services, GLOBAL).await?)?;
    value.check()?;
    let json = serde_json::to_value(&value).map_err(|e| ChatError::Invalid(e.to_string()))?;
    services
        .store
        .put_setting(GLOBAL, &json, Utc::now())
        .await?;
    Ok(value)
}

/// A workflow's override (writers of the workflow); `None` fields inherit.
pub async fn workflow_override(
    services: &Services,
    actor: &User,
    workflow_id: i64,
) -> ChatResult<Appearance> {
    workflows::access(services, actor, workflow_id)
        .await
        .map_err(|_| ChatError::WorkflowNotFound(workflow_id))?;
    load(services, &workflow_key(workflow_id)).await
}

pub async fn set_workflow_override(
    services: &Services,
    actor: &User,
    workflow_id: i64,
    change: Change,
) -> ChatResult<Appearance> {
    let (_, access) = workflows::access(services, actor, workflow_id)
        .await
        .map_err(|_| ChatError::WorkflowNotFound(workflow_id))?;
    if !access.can_write() {
        return Err(ChatError::Forbidden(
            "changing a workflow's appearance needs write access".into(),
        ));
    }
    let value = change.applied_to(load(services, &workflow_key(workflow_id)).await?)?;
    value.check()?;
    let json = serde_json::to_value(&value).map_err(|e| ChatError::Invalid(e.to_string()))?;
    services
        .store
        .put_setting(&workflow_key(workflow_id), &json, Utc::now())
        .await?;
    Ok(value)
}

/// The workflow a plain ChatKit client talks to, with its start-screen behaviour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatWorkflow {
    pub workflow_id: i64,
    pub workflow_slug: String,
    pub workflow_display_name: String,
    pub definition_id: i64,
    pub definition_version: i64,
    pub auto_start: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_start_user_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_start_assistant_message: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /api/chatkit/workflow`: the ChatKit default workflow's production version.
pub async fn chat_workflow(services: &Services) -> ChatResult<ChatWorkflow> {
    let workflow = workflows::chatkit_default(services)
        .await
        .map_err(|err| ChatError::Invalid(err.to_string()))?
        .ok_or(ChatError::NoWorkflow)?;
    let version = services
        .store
        .production_version(workflow.id)
        .await?
        .ok_or(ChatError::NoWorkflow)?;
    let start = version
        .graph
        .nodes
        .iter()
        .find(|n| nodes::role_of(n) == Some(Role::Entry))
        .and_then(|n| {
            serde_json::from_value::<workflows::nodes::Start>(Value::Object(n.parameters.clone()))
                .ok()
        });
    let text = |v: Option<String>| v.filter(|t| !t.trim().is_empty());
    Ok(ChatWorkflow {
        workflow_id: workflow.id,
        workflow_slug: workflow.slug.clone(),
        workflow_display_name: workflow.display_name.clone(),
        definition_id: version.id,
        definition_version: version.number,
        auto_start: start.as_ref().is_some_and(|s| s.auto_starts()),
        auto_start_user_message: text(
            start
                .as_ref()
                .and_then(|s| s.auto_start_user_message.clone()),
        ),
        auto_start_assistant_message: text(start.and_then(|s| s.auto_start_assistant_message)),
        updated_at: version.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_win_field_by_field_and_are_checked() {
        let global = Appearance {
            accent_color: Some("#ff0000".into()),
            ..Appearance::default()
        };
        let workflow = Appearance {
            start_screen_greeting: Some("Bonjour".into()),
            ..Appearance::default()
        };
        let effective = Appearance::defaults().overlaid(&global).overlaid(&workflow);
        assert_eq!(effective.accent_color.as_deref(), Some("#ff0000"));
        assert_eq!(effective.start_screen_greeting.as_deref(), Some("Bonjour"));
        assert_eq!(effective.color_scheme.as_deref(), Some("system"));
        assert!(
            Appearance {
                accent_color: Some("red".into()),
                ..Appearance::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Appearance {
                surface_hue: Some(400.0),
                ..Appearance::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Appearance {
                radius_style: Some("soft".into()),
                ..Appearance::default()
            }
            .check()
            .is_ok()
        );
    }
}
