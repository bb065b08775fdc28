//! Thread titles: a short title from the first user message, with the default title model
//! and an administrator-editable prompt.

use chrono::Utc;
use serde_json::json;

use super::{
    ModelResult,
    service::{decrypt, provider},
    usage::{self, Purpose},
};
use crate::{
    Services,
    auth::Principal,
    llm::{self, ChatRequest, LlmError, Message, Role},
};

/// The setting that holds the prompt.
pub const PROMPT_SETTING: &str = "chat.thread_title_prompt";

/// The setting that turns titles on or off.
pub const ENABLED_SETTING: &str = "chat.thread_titles";

/// Whether new threads get a generated title (on unless an administrator turned it off).
pub async fn enabled(services: &Services) -> ModelResult<bool> {
    Ok(services
        .store
        .get_setting(ENABLED_SETTING)
        .await?
        .and_then(|v| v.as_bool())
        .unwrap_or(true))
}

/// The title settings as an administrator sees them: the prompt, and whether titles are
/// generated.
pub async fn settings(services: &Services, actor: &Principal) -> ModelResult<(String, bool)> {
    actor.admin()?;
    Ok((prompt(services).await?, enabled(services).await?))
}

pub async fn set_enabled(services: &Services, actor: &Principal, on: bool) -> ModelResult<bool> {
    actor.admin()?;
    services
        .store
        .put_setting(ENABLED_SETTING, &json!(on), Utc::now())
        .await?;
    Ok(on)
}

/// The prompt used until an administrator changes it.
pub const DEFAULT_PROMPT: &str = "Write a short, descriptive title of at most six words for a conversation that starts with the user's message below. Use the language of the message. Answer with the title only, without quotes or final punctuation.";

/// Titles longer than this are cut at a word boundary.
const MAX_TITLE_CHARS: usize = 80;

pub async fn prompt(services: &Services) -> ModelResult<String> {
    Ok(services
        .store
        .get_setting(PROMPT_SETTING)
        .await?
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PROMPT.to_string()))
}

/// Sets the prompt; an empty one restores the default.
pub async fn set_prompt(
    services: &Services,
    actor: &Principal,
    prompt: &str,
) -> ModelResult<String> {
    actor.admin()?;
    let prompt = prompt.trim();
    if prompt.chars().count() > 4000 {
        return Err(super::ModelError::Invalid(
            "the title prompt must be at most 4000 characters".into(),
        ));
    }
    services
        .store
        .put_setting(PROMPT_SETTING, &json!(prompt), Utc::now())
        .await?;
    self::prompt(services).await
}

/// Cleans what a model answered into a title: one line, no quotes, bounded length.
pub fn clean(raw: &str) -> Option<String> {
    let line = raw.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .trim_start_matches(['#', '*', ' '])
        .trim_start_matches("Title:")
        .trim();
    let line = line
        .trim_matches(['"', '\'', '«', '»', '“', '”', '*', '`', ' '])
        .trim_end_matches(['.', '!'])
        .trim();
    if line.is_empty() {
        return None;
    }
    if line.chars().count() <= MAX_TITLE_CHARS {
        return Some(line.to_string());
    }
    let cut: String = line.chars().take(MAX_TITLE_CHARS).collect();
    let cut = cut
        .rsplit_once(' ')
        .map_or(cut.as_str(), |(head, _)| head)
        .trim_end();
    Some(format!("{cut}…"))
}

/// A title for a conversation starting with `first_message`; `Ok(None)` when no model is
/// set up for titles (the default title model, else the default model).
pub async fn generate(
    services: &Services,
    user_id: Option<i64>,
    first_message: &str,
) -> ModelResult<Result<Option<String>, LlmError>> {
    let models = services.store.models(None, true).await?;
    let Some(model) = models
        .iter()
        .find(|m| m.is_default_title)
        .or_else(|| models.iter().find(|m| m.is_default))
        .cloned()
    else {
        return Ok(Ok(None));
    };
    let provider = decrypt(services, provider(services, model.provider_id).await?)?;
    let message: String = first_message.chars().take(4000).collect();
    let request = ChatRequest {
        model: model.name.clone(),
        instructions: Some(prompt(services).await?),
        messages: vec![Message::text(Role::User, message)],
        max_output_tokens: Some(60),
        native_structured_output: model.capabilities.structured_output,
        ..ChatRequest::default()
    };
    let completion = match llm::complete(services.llm.as_ref(), &provider, &request).await {
        Ok(completion) => completion,
        Err(err) => return Ok(Err(err)),
    };
    let mut record = usage::priced(
        &completion,
        &model.name,
        Some(provider.provider.id),
        Some(model.pricing),
        Purpose::Title,
    );
    record.user_id = user_id;
    usage::record(services, record).await?;
    Ok(Ok(clean(&completion.text)))
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn titles_are_cleaned() {
        assert_eq!(
            clean("\"Refund for order 42.\"\n").as_deref(),
            Some("Refund for order 42")
        );
        assert_eq!(
            clean("Title: « Aide au devoir »").as_deref(),
            Some("Aide au devoir")
        );
        assert_eq!(clean("   \n\n").as_deref(), None);
        let long = "word ".repeat(40);
        let cleaned = clean(&long).unwrap();
        assert!(
            cleaned.ends_with('…') && cleaned.chars().count() <= 81,
            "{cleaned}"
        );
    }
}
