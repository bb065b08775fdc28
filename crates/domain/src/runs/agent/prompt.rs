//! What an agent's model is sent: the model (the caller's choice or the node's), the
//! first messages with history and attached files, and the response format.

use super::*;
use crate::blobs::Blobs as _;
use crate::chat::history;

/// The caller's model choice (`StartRun::model`), for an agent that lets users choose:
/// one of its `user_model_options` (matched by `id` or `model`, bringing the option's
/// provider and settings), or with `model_selection_mode: "user"` and no options, any
/// enabled model of the registry. Otherwise the choice is ignored, with a warning event.
/// Returns whether the model is now one the caller named (the open registry adds no
/// model for a caller, only for the workflow's author).
pub(super) fn apply_model_choice(
    log: &mut Log<'_>,
    node: &Node,
    config: &mut nodes::Agent,
) -> bool {
    let Some(choice) = log
        .run
        .scratch
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return false;
    };
    let options = config.user_model_options.clone().unwrap_or_default();
    let option = options.iter().find(|o| {
        ["id", "model", "name"]
            .iter()
            .any(|k| o.get(*k).and_then(Value::as_str) == Some(choice.as_str()))
    });
    match option {
        Some(option) => {
            config.model = option
                .get("model")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or(Some(choice));
            if let Some(provider) = option.get("model_provider_id").or_else(|| option.get("provider_id")) {
                config.model_provider_id = provider.as_str().map(str::to_string).or_else(|| provider.as_i64().map(|p| p.to_string()));
            }
            if let Some(Value::Object(settings)) = option.get("model_settings") {
                config.model_settings.get_or_insert_with(Default::default).extend(settings.clone());
            }
        }
        None if options.is_empty() && config.model_selection_mode.as_deref() == Some("user") => {
            config.model = Some(choice);
            config.model_provider_id = None;
            return true;
        }
        None => log.event(
            EventKind::Warning,
            Some(&node.slug),
            json!({"message": format!("the model `{choice}` is not one this agent offers; it uses its own")}),
        ),
    }
    false
}

/// The agent's model, through the registry (`models::resolve`): a model the open
/// registry adds for this step is announced with a warning, since it has no prices.
pub(super) async fn resolve_model(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    config: &nodes::Agent,
    caller_named: bool,
) -> Result<Model, NodeError> {
    let provider_id = config
        .model_provider_id
        .as_deref()
        .and_then(|p| p.parse::<i64>().ok());
    let resolved = crate::models::resolve(
        ctx.services,
        config.model.as_deref(),
        provider_id,
        !caller_named,
    )
    .await
    .map_err(|err| match err {
        crate::models::ModelError::Unresolved(message) => node_error("model_not_found", message),
        other => node_error("internal_error", other.to_string()),
    })?;
    if resolved.seen_now {
        log.event(
            EventKind::Warning,
            Some(&node.slug),
            json!({"message": format!(
                "the model `{}` was not in the registry; it runs on the default provider and is listed as seen, without prices (its usage is recorded unpriced until an administrator prices it)",
                resolved.model.name
            )}),
        );
    }
    Ok(resolved.model)
}

/// Where the history an agent is given starts: the newest messages that fit the model's
/// context budget, once the answer's room and the instructions are set aside (whole
/// messages; the newest always). A turn's cost then does not grow with the thread.
fn window_start(
    history: &[crate::runs::HistoryEntry],
    budget: i64,
    model: &Model,
    config: &nodes::Agent,
) -> usize {
    let answer = model.max_output_tokens.unwrap_or(4_096).min(budget / 4);
    let instructions = config
        .instructions
        .as_deref()
        .map_or(0, history::estimated_tokens);
    let mut room = budget - answer - instructions;
    let mut first = history.len();
    for (index, entry) in history.iter().enumerate().rev() {
        let cost = history::entry_tokens(entry);
        if cost > room && first < history.len() {
            break;
        }
        room -= cost;
        first = index;
    }
    first
}

/// The conversation an agent starts from: the run's history (unless turned off), else its
/// input, then the node's extra prompt messages.
pub(super) async fn first_messages(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    config: &nodes::Agent,
    scope: &Scope,
    settings: &serde_json::Map<String, Value>,
) -> Result<Vec<Message>, NodeError> {
    let include_history = settings
        .get("include_chat_history")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut messages: Vec<Message> = Vec::new();
    if include_history {
        let budget = model.context_budget(&ctx.services.models);
        // A chat run's conversation starts in its thread: the newest messages before the
        // run that fit the budget, read newest first (whatever the thread's length).
        let (mut history, mut cut) = (Vec::new(), false);
        if let (Some(thread_id), Some(before)) = (&log.run.thread_id, &log.run.history_before) {
            (history, cut) = history::read(ctx.services, thread_id, Some(before), budget)
                .await
                .map_err(|err| {
                    node_error(
                        "internal_error",
                        format!("could not read the conversation: {err}"),
                    )
                })?;
        }
        history.extend(log.run.history.iter().cloned());
        let first = window_start(&history, budget, model, config);
        if first > 0 || cut {
            let left_out = if cut {
                "its oldest messages".to_string()
            } else {
                format!("its {first} oldest messages")
            };
            log.event(
                EventKind::Warning,
                Some(&node.slug),
                json!({"message": format!(
                    "the conversation is longer than the model's context budget ({budget} tokens): {left_out} were left out"
                )}),
            );
        }
        for entry in &history[first..] {
            let role = if entry.role == "user" {
                Role::User
            } else {
                Role::Assistant
            };
            let mut message = Message::text(role, entry.text.clone());
            for file in &entry.attachments {
                match attachment_part(ctx, model, file).await {
                    Ok(Some(part)) => message.content.push(part),
                    Ok(None) => log.event(
                        EventKind::Warning,
                        Some(&node.slug),
                        json!({"message": format!("the model `{}` cannot read `{}` ({}); it was left out", model.name, file.name, file.mime_type)}),
                    ),
                    Err(message) => log.event(EventKind::Warning, Some(&node.slug), json!({"message": message})),
                }
            }
            messages.push(message);
        }
    }
    if messages.is_empty() {
        let text = match &scope.input {
            Value::String(s) => s.clone(),
            other => other
                .get("user_message")
                .or_else(|| other.get("input_as_text"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| other.to_string()),
        };
        messages.push(Message::text(Role::User, text));
    }
    for extra in config.messages.iter().flatten() {
        let role = if extra.get("role").and_then(Value::as_str) == Some("assistant") {
            Role::Assistant
        } else {
            Role::User
        };
        for part in extra
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                messages.push(Message::text(role, scope.render_text(text)?));
            }
        }
    }
    Ok(messages)
}

/// The largest text file given to a model inline.
pub(super) const INLINE_TEXT_LIMIT: usize = 200_000;

/// How a model sees an attached file: images as images (vision models), text files as
/// text, PDFs and other documents as files; `None` when the model cannot take it.
pub(super) async fn attachment_part(
    ctx: &RunCtx<'_>,
    model: &Model,
    file: &crate::runs::AttachmentRef,
) -> Result<Option<ContentPart>, String> {
    let services = ctx.services;
    let stored = services
        .store
        .chat_attachment(&file.id)
        .await
        .map_err(|err| err.to_string())?
        .filter(|a| a.uploaded)
        .ok_or_else(|| format!("the attachment `{}` is gone", file.name))?;
    let mime = stored
        .mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let textual = mime.starts_with("text/")
        || matches!(mime.as_str(), "application/json" | "application/xml");
    if textual {
        let bytes = services
            .blobs
            .get(&stored.id)
            .await
            .map_err(|err| err.to_string())?
            .unwrap_or_default();
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if text.len() > INLINE_TEXT_LIMIT {
            let mut cut = INLINE_TEXT_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n[…the file goes on]");
        }
        return Ok(Some(ContentPart::Text(format!(
            "\n\n[file: {}]\n{text}",
            stored.name
        ))));
    }
    if stored.is_image() && !model.capabilities.vision {
        return Ok(None);
    }
    let data_url = crate::chat::attachments::data_url(services, &stored)
        .await
        .map_err(|err| err.to_string())?;
    Ok(Some(if stored.is_image() {
        ContentPart::Image {
            url: data_url,
            detail: None,
        }
    } else {
        ContentPart::File {
            filename: stored.name.clone(),
            data_url,
        }
    }))
}

pub(super) fn response_format(config: &nodes::Agent) -> Option<JsonSchemaFormat> {
    let format = config.response_format.as_ref()?;
    let inner = format
        .get("json_schema")
        .and_then(Value::as_object)
        .unwrap_or(format);
    (format.get("type").and_then(Value::as_str) == Some("json_schema")).then(|| JsonSchemaFormat {
        name: inner
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("output")
            .to_string(),
        schema: inner.get("schema").cloned().unwrap_or(json!({})),
        strict: inner.get("strict").and_then(Value::as_bool).unwrap_or(true),
    })
}
