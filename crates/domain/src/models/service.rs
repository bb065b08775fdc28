//! Registry services: providers with encrypted credentials, models with capabilities and
//! prices, and the defaults. Administrators manage them (each service here that changes
//! or reveals the registry's administration takes the acting [`Principal`] and checks
//! it); users list enabled models.

use std::collections::BTreeMap;

use chrono::Utc;

use super::{
    ApiStyle, Capabilities, Model, ModelError, ModelOrigin, ModelResult, Pricing, Provider,
    ProviderCredentials, ProviderKind, RegistryMode, Timeouts,
};
use crate::{
    Services,
    auth::Principal,
    crypto::hint,
    store::{DefaultModel, ModelRecord, ProviderRecord, StoreError},
};

/// What a caller sets on a provider; `None` leaves a field as it is (or takes the default
/// on creation).
#[derive(Debug, Clone, Default)]
pub struct ProviderInput {
    pub kind: Option<ProviderKind>,
    pub label: Option<String>,
    pub api_base: Option<String>,
    pub api_style: Option<ApiStyle>,
    /// `Some(None)` removes the key.
    pub api_key: Option<Option<String>>,
    /// Replaces every extra header.
    pub extra_headers: Option<BTreeMap<String, String>>,
    pub connect_timeout_secs: Option<u64>,
    pub first_token_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_retries: Option<u32>,
    pub is_default: Option<bool>,
}

/// The default base URL of OpenAI's API.
pub const OPENAI_API_BASE: &str = "https://api.openai.com/v1";
/// What a `local` provider shows as its `api_base`: its models are in the server's folder.
pub const LOCAL_API_BASE: &str = "local";

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

fn check_api_base(api_base: &str) -> ModelResult<String> {
    let api_base = api_base.trim().trim_end_matches('/').to_string();
    let authority = api_base
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    let valid = (api_base.starts_with("http://") || api_base.starts_with("https://"))
        && api_base.len() > "https://".len()
        && !api_base.contains(char::is_whitespace)
        // Credentials go in `api_key` or headers, where they are encrypted, never in the URL.
        && !authority.contains('@');
    if !valid {
        return Err(invalid(
            "api_base must be an http(s) URL such as https://api.openai.com/v1",
        ));
    }
    Ok(api_base)
}

fn check_timeout(name: &str, secs: u64) -> ModelResult<u64> {
    if secs == 0 || secs > 3600 {
        return Err(invalid(format!(
            "{name} must be between 1 and 3600 seconds"
        )));
    }
    Ok(secs)
}

fn label_conflict(err: StoreError, label: &str) -> ModelError {
    match err {
        StoreError::Conflict { .. } => {
            ModelError::Conflict(format!("a provider is already labelled `{label}`"))
        }
        other => ModelError::Store(other),
    }
}

/// Applies `input` over `base` (a provider being edited, or the defaults of a new one).
fn provider_record(
    services: &Services,
    base: Option<&Provider>,
    input: ProviderInput,
) -> ModelResult<ProviderRecord> {
    let kind = input
        .kind
        .or(base.map(|b| b.kind))
        .ok_or_else(|| invalid("kind is required: openai, openai_compatible, litellm or local"))?;
    if let (Some(base), Some(new_kind)) = (base, input.kind)
        && base.kind != new_kind
    {
        return Err(invalid(
            "a provider's kind cannot change; create another provider",
        ));
    }
    let label = match input.label.or(base.map(|b| b.label.clone())) {
        Some(label) if !label.trim().is_empty() && label.trim().chars().count() <= 128 => {
            label.trim().to_string()
        }
        _ => return Err(invalid("label must be 1 to 128 characters")),
    };
    if kind == ProviderKind::Local
        && (input.api_base.is_some()
            || matches!(&input.api_key, Some(Some(_)))
            || input.extra_headers.is_some())
    {
        return Err(invalid(
            "local providers run the models of the server's models folder (`models.local_dir`); they take no api_base, api_key or headers",
        ));
    }
    let api_base = match input.api_base.or(base.map(|b| b.api_base.clone())) {
        _ if kind == ProviderKind::Local => LOCAL_API_BASE.to_string(),
        Some(api_base) => check_api_base(&api_base)?,
        None if kind == ProviderKind::OpenAi => OPENAI_API_BASE.to_string(),
        None => return Err(invalid("api_base is required for this kind of provider")),
    };
    let api_style = input
        .api_style
        .or(base.map(|b| b.api_style))
        .unwrap_or(kind.default_style());
    if api_style == ApiStyle::Responses && kind != ProviderKind::OpenAi {
        return Err(invalid(
            "only openai providers speak the Responses API; use chat_completions",
        ));
    }
    let (api_key_encrypted, api_key_hint) = match input.api_key {
        Some(Some(key)) if !key.trim().is_empty() => {
            let key = key.trim();
            (Some(services.secret_box.encrypt(key)), Some(hint(key)))
        }
        Some(_) => (None, None),
        None => (
            base.and_then(|b| b.api_key_encrypted.clone()),
            base.and_then(|b| b.api_key_hint.clone()),
        ),
    };
    let (extra_headers_encrypted, extra_header_names) = match input.extra_headers {
        Some(headers) => {
            for name in headers.keys() {
                let valid = !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(invalid(format!("`{name}` is not a valid header name")));
                }
                if headers[name].contains(['\r', '\n']) {
                    return Err(invalid(format!(
                        "the value of `{name}` cannot contain line breaks"
                    )));
                }
                if name.eq_ignore_ascii_case("authorization") {
                    return Err(invalid(
                        "set the key with `api_key`, not an Authorization header",
                    ));
                }
            }
            if headers.is_empty() {
                (None, Vec::new())
            } else {
                let json = serde_json::to_string(&headers).expect("a string map serialises");
                (
                    Some(services.secret_box.encrypt(&json)),
                    headers.keys().cloned().collect(),
                )
            }
        }
        None => (
            base.and_then(|b| b.extra_headers_encrypted.clone()),
            base.map(|b| b.extra_header_names.clone())
                .unwrap_or_default(),
        ),
    };
    let defaults = base.map(|b| b.timeouts).unwrap_or_default();
    let timeouts = Timeouts {
        connect_secs: check_timeout(
            "connect_timeout_secs",
            input.connect_timeout_secs.unwrap_or(defaults.connect_secs),
        )?,
        first_token_secs: check_timeout(
            "first_token_timeout_secs",
            input
                .first_token_timeout_secs
                .unwrap_or(defaults.first_token_secs),
        )?,
        idle_secs: check_timeout(
            "idle_timeout_secs",
            input.idle_timeout_secs.unwrap_or(defaults.idle_secs),
        )?,
        request_secs: check_timeout(
            "request_timeout_secs",
            input.request_timeout_secs.unwrap_or(defaults.request_secs),
        )?,
    };
    let max_retries = input
        .max_retries
        .or(base.map(|b| b.max_retries))
        .unwrap_or(2);
    if max_retries > 10 {
        return Err(invalid("max_retries must be at most 10"));
    }
    Ok(ProviderRecord {
        kind,
        label,
        api_base,
        api_style,
        api_key_encrypted,
        api_key_hint,
        extra_headers_encrypted,
        extra_header_names,
        timeouts,
        max_retries,
    })
}

pub async fn create_provider(
    services: &Services,
    actor: &Principal,
    input: ProviderInput,
) -> ModelResult<Provider> {
    actor.admin()?;
    add_provider(services, input).await
}

/// Adds a provider (an administrator's, or one the platform sets up from its environment).
async fn add_provider(services: &Services, input: ProviderInput) -> ModelResult<Provider> {
    let is_default = input.is_default;
    let record = provider_record(services, None, input)?;
    let now = Utc::now();
    let created = services
        .store
        .insert_provider(&record, now)
        .await
        .map_err(|err| label_conflict(err, &record.label))?;
    // The first provider is the default unless told otherwise.
    let first = services.store.providers().await?.len() == 1;
    if is_default.unwrap_or(first) {
        services
            .store
            .set_default_provider(Some(created.id), now)
            .await?;
    }
    provider(services, created.id).await
}

pub async fn list_providers(services: &Services, actor: &Principal) -> ModelResult<Vec<Provider>> {
    actor.admin()?;
    Ok(services.store.providers().await?)
}

/// A provider, for an administrator.
pub async fn get_provider(
    services: &Services,
    actor: &Principal,
    id: i64,
) -> ModelResult<Provider> {
    actor.admin()?;
    provider(services, id).await
}

/// A provider, for the platform itself.
pub(crate) async fn provider(services: &Services, id: i64) -> ModelResult<Provider> {
    services
        .store
        .provider(id)
        .await?
        .ok_or(ModelError::ProviderNotFound(id))
}

pub async fn update_provider(
    services: &Services,
    actor: &Principal,
    id: i64,
    input: ProviderInput,
) -> ModelResult<Provider> {
    actor.admin()?;
    let current = provider(services, id).await?;
    let is_default = input.is_default;
    let record = provider_record(services, Some(&current), input)?;
    let now = Utc::now();
    services
        .store
        .update_provider(id, &record, now)
        .await
        .map_err(|err| label_conflict(err, &record.label))?
        .ok_or(ModelError::ProviderNotFound(id))?;
    match is_default {
        Some(true) => services.store.set_default_provider(Some(id), now).await?,
        Some(false) if current.is_default => services.store.set_default_provider(None, now).await?,
        _ => {}
    }
    provider(services, id).await
}

/// Deletes a provider and its models.
pub async fn delete_provider(services: &Services, actor: &Principal, id: i64) -> ModelResult<()> {
    actor.admin()?;
    if !services.store.delete_provider(id).await? {
        return Err(ModelError::ProviderNotFound(id));
    }
    Ok(())
}

/// A provider with its secrets decrypted, for a client call.
pub async fn credentials(services: &Services, id: i64) -> ModelResult<ProviderCredentials> {
    let provider = provider(services, id).await?;
    decrypt(services, provider)
}

pub fn decrypt(services: &Services, provider: Provider) -> ModelResult<ProviderCredentials> {
    let api_key = provider
        .api_key_encrypted
        .as_deref()
        .map(|sealed| services.secret_box.decrypt(sealed))
        .transpose()
        .map_err(|_| ModelError::Undecryptable)?;
    let extra_headers = match provider.extra_headers_encrypted.as_deref() {
        Some(sealed) => {
            let json = services
                .secret_box
                .decrypt(sealed)
                .map_err(|_| ModelError::Undecryptable)?;
            serde_json::from_str(&json).map_err(|_| ModelError::Undecryptable)?
        }
        None => BTreeMap::new(),
    };
    Ok(ProviderCredentials {
        provider,
        api_key,
        extra_headers,
    })
}

/// Creates the OpenAI provider from `OPENAI_API_KEY` / `OPENAI_BASE_URL` when no provider
/// exists yet. Returns it when it was created.
pub async fn bootstrap_from_env(
    services: &Services,
    api_key: Option<&str>,
    base_url: Option<&str>,
) -> ModelResult<Option<Provider>> {
    let Some(api_key) = api_key.filter(|k| !k.trim().is_empty()) else {
        return Ok(None);
    };
    if !services.store.providers().await?.is_empty() {
        return Ok(None);
    }
    let (kind, label) = match base_url {
        Some(base) if check_api_base(base)? != OPENAI_API_BASE => (
            ProviderKind::OpenAiCompatible,
            "OpenAI-compatible (from environment)",
        ),
        _ => (ProviderKind::OpenAi, "OpenAI (from environment)"),
    };
    let input = ProviderInput {
        kind: Some(kind),
        label: Some(label.into()),
        api_base: base_url.map(str::to_string),
        api_key: Some(Some(api_key.to_string())),
        is_default: Some(true),
        ..ProviderInput::default()
    };
    match add_provider(services, input).await {
        Ok(provider) => Ok(Some(provider)),
        // Another replica created it at the same moment.
        Err(ModelError::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Creates the `local` provider and imports the models of the server's models folder, when
/// the folder has models and no local provider exists yet. Returns what it did.
pub async fn bootstrap_local(services: &Services) -> ModelResult<Option<(Provider, ImportCounts)>> {
    if services
        .store
        .providers()
        .await?
        .iter()
        .any(|p| p.kind == ProviderKind::Local)
    {
        return Ok(None);
    }
    let input = ProviderInput {
        kind: Some(ProviderKind::Local),
        label: Some("Local models".into()),
        ..ProviderInput::default()
    };
    let provider = match add_provider(services, input).await {
        Ok(provider) => provider,
        // Another replica created it at the same moment, or an administrator took the label.
        Err(ModelError::Conflict(_)) => return Ok(None),
        Err(err) => return Err(err),
    };
    let counts = match import_listed(services, provider.id).await? {
        Ok(counts) => counts,
        Err(err) => {
            tracing::warn!(error = %err, "could not list the local models");
            ImportCounts::default()
        }
    };
    Ok(Some((provider, counts)))
}

/// What a caller sets on a model; `None` leaves a field as it is (or takes the default).
#[derive(Debug, Clone, Default)]
pub struct ModelInput {
    pub provider_id: Option<i64>,
    pub name: Option<String>,
    pub display_name: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub reasoning: Option<bool>,
    pub vision: Option<bool>,
    pub tools: Option<bool>,
    pub structured_output: Option<bool>,
    pub audio: Option<bool>,
    pub context_window: Option<Option<i64>>,
    pub max_output_tokens: Option<Option<i64>>,
    pub price_input_per_mtok: Option<Option<f64>>,
    pub price_output_per_mtok: Option<Option<f64>>,
    pub price_cached_input_per_mtok: Option<Option<f64>>,
    pub enabled: Option<bool>,
    pub is_default: Option<bool>,
    pub is_default_title: Option<bool>,
}

fn optional_text(
    value: Option<Option<String>>,
    base: Option<String>,
    field: &str,
    max: usize,
) -> ModelResult<Option<String>> {
    let value = match value {
        Some(v) => v.map(|t| t.trim().to_string()).filter(|t| !t.is_empty()),
        None => base,
    };
    if value.as_ref().is_some_and(|t| t.chars().count() > max) {
        return Err(invalid(format!("{field} must be at most {max} characters")));
    }
    Ok(value)
}

fn positive(
    value: Option<Option<i64>>,
    base: Option<i64>,
    field: &str,
) -> ModelResult<Option<i64>> {
    let value = value.unwrap_or(base);
    if value.is_some_and(|v| v <= 0) {
        return Err(invalid(format!("{field} must be positive")));
    }
    Ok(value)
}

fn price(value: Option<Option<f64>>, base: Option<f64>, field: &str) -> ModelResult<Option<f64>> {
    let value = value.unwrap_or(base);
    if value.is_some_and(|v| !v.is_finite() || v < 0.0) {
        return Err(invalid(format!("{field} must be a non-negative number")));
    }
    Ok(value)
}

fn model_record(base: Option<&Model>, input: ModelInput) -> ModelResult<ModelRecord> {
    let provider_id = input
        .provider_id
        .or(base.map(|b| b.provider_id))
        .ok_or_else(|| invalid("provider_id is required"))?;
    let name = match input.name.or(base.map(|b| b.name.clone())) {
        Some(name) if !name.trim().is_empty() && name.trim().len() <= 256 => {
            name.trim().to_string()
        }
        _ => {
            return Err(invalid(
                "name (the model id sent to the provider) must be 1 to 256 characters",
            ));
        }
    };
    let caps = base.map(|b| b.capabilities).unwrap_or_default();
    let pricing = base.map(|b| b.pricing).unwrap_or_default();
    Ok(ModelRecord {
        provider_id,
        name,
        display_name: optional_text(
            input.display_name,
            base.and_then(|b| b.display_name.clone()),
            "display_name",
            256,
        )?,
        description: optional_text(
            input.description,
            base.and_then(|b| b.description.clone()),
            "description",
            2000,
        )?,
        capabilities: Capabilities {
            reasoning: input.reasoning.unwrap_or(caps.reasoning),
            vision: input.vision.unwrap_or(caps.vision),
            tools: input.tools.unwrap_or(caps.tools),
            structured_output: input.structured_output.unwrap_or(caps.structured_output),
            audio: input.audio.unwrap_or(caps.audio),
        },
        context_window: positive(
            input.context_window,
            base.and_then(|b| b.context_window),
            "context_window",
        )?,
        max_output_tokens: positive(
            input.max_output_tokens,
            base.and_then(|b| b.max_output_tokens),
            "max_output_tokens",
        )?,
        pricing: Pricing {
            input_per_mtok: price(
                input.price_input_per_mtok,
                pricing.input_per_mtok,
                "price_input_per_mtok",
            )?,
            output_per_mtok: price(
                input.price_output_per_mtok,
                pricing.output_per_mtok,
                "price_output_per_mtok",
            )?,
            cached_input_per_mtok: price(
                input.price_cached_input_per_mtok,
                pricing.cached_input_per_mtok,
                "price_cached_input_per_mtok",
            )?,
        },
        enabled: input.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        origin: base.map_or(ModelOrigin::Added, |b| b.origin),
    })
}

fn model_conflict(err: StoreError, name: &str) -> ModelError {
    match err {
        StoreError::Conflict { .. } => {
            ModelError::Conflict(format!("this provider already has a model named `{name}`"))
        }
        other => ModelError::Store(other),
    }
}

async fn apply_defaults(
    services: &Services,
    model: &Model,
    is_default: Option<bool>,
    is_default_title: Option<bool>,
) -> ModelResult<()> {
    let now = Utc::now();
    for (wanted, held, role) in [
        (is_default, model.is_default, DefaultModel::Chat),
        (
            is_default_title,
            model.is_default_title,
            DefaultModel::Title,
        ),
    ] {
        match wanted {
            Some(true) => {
                services
                    .store
                    .set_default_model(Some(model.id), role, now)
                    .await?
            }
            Some(false) if held => services.store.set_default_model(None, role, now).await?,
            _ => {}
        }
    }
    Ok(())
}

pub async fn create_model(
    services: &Services,
    actor: &Principal,
    input: ModelInput,
) -> ModelResult<Model> {
    actor.admin()?;
    let (is_default, is_default_title) = (input.is_default, input.is_default_title);
    let record = model_record(None, input)?;
    provider(services, record.provider_id).await?;
    let created = services
        .store
        .insert_model(&record, Utc::now())
        .await
        .map_err(|err| model_conflict(err, &record.name))?;
    apply_defaults(services, &created, is_default, is_default_title).await?;
    model(services, created.id).await
}

/// The model an agent runs on, as the registry resolves it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub model: Model,
    /// The open registry added it just now (an agent named a model it did not know).
    pub seen_now: bool,
}

/// What an administrator does about a model name the registry does not run.
fn remedy(name: &str) -> String {
    format!(
        "an administrator adds it (`switchyard models add {name}`, or POST /api/admin/models), \
         imports the provider's list (`switchyard models import`), or lets agents name any \
         model with `[models] registry = \"open\"`"
    )
}

/// The model an agent names (`name`, at `provider_id` when given), or the default model.
///
/// A name among the registry's enabled models runs. In an open registry (the default), a
/// name the workflow's author wrote (`may_add`) that the registry does not know at all
/// goes to the given or the default provider and is added as `seen` (no prices, so its
/// usage is recorded unpriced); a name a caller chose is never added, and a disabled
/// model stays refused. In a strict registry only enabled models run. Every refusal
/// names its remedy.
pub async fn resolve(
    services: &Services,
    name: Option<&str>,
    provider_id: Option<i64>,
    may_add: bool,
) -> ModelResult<Resolved> {
    let enabled = services.store.models(None, true).await?;
    let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return enabled
            .into_iter()
            .find(|m| m.is_default)
            .map(|model| Resolved {
                model,
                seen_now: false,
            })
            .ok_or_else(|| {
                ModelError::Unresolved(
                    "the agent names no model and no default model is set; an administrator \
                     sets one (`switchyard models add NAME --default`, or `is_default: true` \
                     on a model of /api/admin/models)"
                        .into(),
                )
            });
    };
    let fits = |m: &Model| m.name == name && provider_id.is_none_or(|p| p == m.provider_id);
    if let Some(model) = enabled.iter().find(|m| fits(m)) {
        return Ok(Resolved {
            model: model.clone(),
            seen_now: false,
        });
    }
    let valid_name = name.chars().count() <= 256 && !name.chars().any(char::is_control);
    if services.models.registry == RegistryMode::Strict || !may_add || !valid_name {
        return Err(ModelError::Unresolved(format!(
            "the model `{name}` is not in the registry (or is disabled); {}",
            remedy(name)
        )));
    }
    if let Some(disabled) = services
        .store
        .models(None, false)
        .await?
        .into_iter()
        .find(|m| fits(m))
    {
        return Err(ModelError::Unresolved(format!(
            "the model `{name}` is disabled in the registry; an administrator enables it \
             (PATCH /api/admin/models/{} with {{\"enabled\": true}})",
            disabled.id
        )));
    }
    let providers = services.store.providers().await?;
    let provider = match provider_id {
        Some(id) => providers.iter().find(|p| p.id == id).ok_or_else(|| {
            ModelError::Unresolved(format!(
                "the model `{name}` names provider {id}, which does not exist; pick one of \
                 /api/admin/model-providers"
            ))
        })?,
        None => providers.iter().find(|p| p.is_default).ok_or_else(|| {
            ModelError::Unresolved(format!(
                "the model `{name}` is not in the registry and there is no default provider \
                 to send it to; set OPENAI_API_KEY (or add a provider at \
                 /api/admin/model-providers) and restart"
            ))
        })?,
    };
    let record = ModelRecord {
        provider_id: provider.id,
        name: name.to_string(),
        display_name: None,
        description: None,
        capabilities: Capabilities::default(),
        context_window: None,
        max_output_tokens: None,
        pricing: Pricing::default(),
        enabled: true,
        origin: ModelOrigin::Seen,
    };
    match services.store.insert_model(&record, Utc::now()).await {
        Ok(model) => {
            tracing::info!(model = %name, provider = %provider.label, "the open registry added a model an agent named, as seen (no prices)");
            Ok(Resolved {
                model,
                seen_now: true,
            })
        }
        // Another turn added it at the same moment.
        Err(StoreError::Conflict { .. }) => services
            .store
            .models(Some(provider.id), true)
            .await?
            .into_iter()
            .find(|m| m.name == name)
            .map(|model| Resolved {
                model,
                seen_now: false,
            })
            .ok_or_else(|| {
                ModelError::Unresolved(format!("the model `{name}` could not be added"))
            }),
        Err(err) => Err(err.into()),
    }
}

/// The models every user may pick: the enabled ones.
pub async fn enabled_models(services: &Services) -> ModelResult<Vec<Model>> {
    Ok(services.store.models(None, true).await?)
}

/// Every model, disabled ones too, for an administrator.
pub async fn list_models(services: &Services, actor: &Principal) -> ModelResult<Vec<Model>> {
    actor.admin()?;
    Ok(services.store.models(None, false).await?)
}

/// A model with its disabled state and prices, for an administrator.
pub async fn get_model(services: &Services, actor: &Principal, id: i64) -> ModelResult<Model> {
    actor.admin()?;
    model(services, id).await
}

/// A model, for the platform itself.
pub(crate) async fn model(services: &Services, id: i64) -> ModelResult<Model> {
    services
        .store
        .model(id)
        .await?
        .ok_or(ModelError::ModelNotFound(id))
}

pub async fn update_model(
    services: &Services,
    actor: &Principal,
    id: i64,
    input: ModelInput,
) -> ModelResult<Model> {
    actor.admin()?;
    let current = model(services, id).await?;
    let (is_default, is_default_title) = (input.is_default, input.is_default_title);
    let record = model_record(Some(&current), input)?;
    provider(services, record.provider_id).await?;
    services
        .store
        .update_model(id, &record, Utc::now())
        .await
        .map_err(|err| model_conflict(err, &record.name))?
        .ok_or(ModelError::ModelNotFound(id))?;
    apply_defaults(services, &current, is_default, is_default_title).await?;
    model(services, id).await
}

pub async fn delete_model(services: &Services, actor: &Principal, id: i64) -> ModelResult<()> {
    actor.admin()?;
    if !services.store.delete_model(id).await? {
        return Err(ModelError::ModelNotFound(id));
    }
    Ok(())
}

/// A model a provider offers, as its model list describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RemoteModel {
    pub name: String,
    pub context_window: Option<i64>,
    pub max_output_tokens: Option<i64>,
    pub pricing: Pricing,
    pub capabilities: Option<Capabilities>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportCounts {
    pub imported: usize,
    pub skipped: usize,
}

/// Adds the provider's models that the registry does not have yet (matched by name).
pub async fn import_models(
    services: &Services,
    provider_id: i64,
    remote: Vec<RemoteModel>,
) -> ModelResult<ImportCounts> {
    let existing: Vec<String> = services
        .store
        .models(Some(provider_id), false)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    let mut counts = ImportCounts::default();
    let mut seen = std::collections::HashSet::new();
    for model in remote {
        if model.name.trim().is_empty()
            || existing.contains(&model.name)
            || !seen.insert(model.name.clone())
        {
            counts.skipped += 1;
            continue;
        }
        let caps = model.capabilities.unwrap_or_default();
        let record = ModelRecord {
            provider_id,
            name: model.name.clone(),
            display_name: None,
            description: None,
            capabilities: caps,
            context_window: model.context_window.filter(|v| *v > 0),
            max_output_tokens: model.max_output_tokens.filter(|v| *v > 0),
            pricing: model.pricing,
            enabled: true,
            origin: ModelOrigin::Imported,
        };
        match services.store.insert_model(&record, Utc::now()).await {
            Ok(_) => counts.imported += 1,
            Err(StoreError::Conflict { .. }) => counts.skipped += 1,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(counts)
}

/// The outcome of a provider test.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// `ok`, `unauthorized`, `not_found`, `timeout`, `unreachable` or `error`.
    pub status: &'static str,
    pub message: String,
    pub model_count: Option<usize>,
    pub latency_ms: u64,
}

/// A cheap live call (the model list) that says whether the provider answers and accepts
/// the key.
pub async fn test_provider(
    services: &Services,
    actor: &Principal,
    id: i64,
) -> ModelResult<ProbeReport> {
    actor.admin()?;
    use crate::llm::LlmError;
    let credentials = credentials(services, id).await?;
    let started = std::time::Instant::now();
    let result = services.llm.list_models(&credentials).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(match result {
        Ok(models) => ProbeReport {
            status: "ok",
            message: format!("the provider answered with {} models", models.len()),
            model_count: Some(models.len()),
            latency_ms,
        },
        Err(err) => ProbeReport {
            status: match err {
                LlmError::Unauthorized(_) => "unauthorized",
                LlmError::NotFound(_) => "not_found",
                LlmError::Timeout(_) => "timeout",
                LlmError::Connection(_) => "unreachable",
                _ => "error",
            },
            message: err.to_string(),
            model_count: None,
            latency_ms,
        },
    })
}

/// Imports the provider's own model list into the registry.
pub async fn import_from_provider(
    services: &Services,
    actor: &Principal,
    id: i64,
) -> ModelResult<Result<ImportCounts, crate::llm::LlmError>> {
    actor.admin()?;
    import_listed(services, id).await
}

/// Imports the models of a provider the platform created from its environment, with no one
/// acting: the first start with `OPENAI_API_KEY` fills the registry.
pub async fn import_environment_models(
    services: &Services,
    provider_id: i64,
) -> ModelResult<Result<ImportCounts, crate::llm::LlmError>> {
    import_listed(services, provider_id).await
}

/// Imports the models a provider lists.
async fn import_listed(
    services: &Services,
    id: i64,
) -> ModelResult<Result<ImportCounts, crate::llm::LlmError>> {
    let credentials = credentials(services, id).await?;
    match services.llm.list_models(&credentials).await {
        Ok(remote) => Ok(Ok(import_models(services, id, remote).await?)),
        Err(err) => Ok(Err(err)),
    }
}

/// Speech to text with the registry's speech model: the first enabled model with the
/// `audio` capability (the default model first). `mime_type` names the recording's format
/// (`audio/webm;codecs=opus`, `audio/mp4`, `audio/ogg`…).
pub async fn transcribe(
    services: &Services,
    audio: Vec<u8>,
    mime_type: &str,
) -> ModelResult<Result<String, crate::llm::LlmError>> {
    let models = services.store.models(None, true).await?;
    let Some(model) = models
        .iter()
        .filter(|m| m.capabilities.audio)
        .max_by_key(|m| m.is_default)
        .cloned()
    else {
        return Err(ModelError::Invalid(
            "no speech-to-text model is enabled: give a model the audio capability".into(),
        ));
    };
    let provider = credentials(services, model.provider_id).await?;
    let extension = match mime_type.split(';').next().unwrap_or_default().trim() {
        "audio/webm" => "webm",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" => "m4a",
        "audio/ogg" => "ogg",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        _ => "webm",
    };
    Ok(services
        .llm
        .transcribe(
            &provider,
            &model.name,
            audio,
            &format!("speech.{extension}"),
            None,
        )
        .await)
}
