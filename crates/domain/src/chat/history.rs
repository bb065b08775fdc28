//! The conversation a run starts from: a thread's newest items that fit the largest
//! context budget among the models its workflow gives the conversation to, read newest
//! first a page at a time. A turn's reads then stop growing with the thread.

use conversation::{ItemBody, Order, ThreadItem};
use serde_json::Value;

use crate::{
    Services,
    chat::PageRequest,
    models::Model,
    runs::{AttachmentRef, HistoryEntry},
    store::StoreResult,
    workflows::{
        Graph,
        nodes::{self, HistoryReader},
    },
};

/// Items read per page, newest first.
const PAGE: i64 = 50;

/// The budget, in tokens, of a workflow none of whose nodes gives the conversation to a
/// model: what other nodes read of it (a knowledge search's default query is the latest
/// user message).
const WITHOUT_READERS: i64 = 4_000;

/// Roughly how many tokens a text takes (four characters a token, as for English and
/// French prose; an estimate, so budgets keep a margin).
pub(crate) fn estimated_tokens(text: &str) -> i64 {
    i64::try_from(text.len() / 4).unwrap_or(i64::MAX) + 4
}

/// What a message of the history costs against a budget: its text, and a page of text
/// for each file.
pub(crate) fn entry_tokens(entry: &HistoryEntry) -> i64 {
    estimated_tokens(&entry.text)
        .saturating_add(1_000 * i64::try_from(entry.attachments.len()).unwrap_or(i64::MAX))
}

/// The largest context budget among the models `graph` gives the conversation to (the
/// caller's chosen `model` too), or a small one when none does.
pub(crate) async fn budget(services: &Services, graph: &Graph, model: Option<&str>) -> i64 {
    let mut readers: Vec<HistoryReader> = graph
        .nodes
        .iter()
        .flat_map(nodes::history_readers)
        .collect();
    if readers.is_empty() {
        return WITHOUT_READERS;
    }
    if let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) {
        readers.push(HistoryReader::Named(model.to_string()));
    }
    // The registry's models are cached; a failed read falls back to the default window.
    let models: Vec<Model> = services.store.models(None, true).await.unwrap_or_default();
    let settings = &services.models;
    let default_model = models
        .iter()
        .find(|m| m.is_default)
        .map_or(settings.default_context_window, |m| {
            m.context_budget(settings)
        });
    readers
        .iter()
        .map(|reader| match reader {
            HistoryReader::Named(name) => models
                .iter()
                .filter(|m| &m.name == name)
                .map(|m| m.context_budget(settings))
                .max()
                .unwrap_or(settings.default_context_window),
            HistoryReader::Default => default_model,
            HistoryReader::Unknown => default_model.max(settings.default_context_window),
        })
        .max()
        .unwrap_or(WITHOUT_READERS)
}

/// The attachments of a stored user message, as the engine names them.
pub(crate) fn attachment_refs(attachments: &[Value]) -> Vec<AttachmentRef> {
    attachments
        .iter()
        .filter_map(|a| {
            Some(AttachmentRef {
                id: a.get("id")?.as_str()?.to_string(),
                name: a.get("name")?.as_str()?.to_string(),
                mime_type: a.get("mime_type")?.as_str()?.to_string(),
            })
        })
        .collect()
}

/// A thread's item as a message of the history, when it is one: user and assistant
/// messages, hidden context, answered questions.
fn entry_of(item: &ThreadItem) -> Option<HistoryEntry> {
    let mut files = Vec::new();
    let (role, text) = match &item.body {
        ItemBody::UserMessage {
            content,
            attachments,
            ..
        } => {
            files = attachment_refs(attachments);
            ("user", conversation::text_of(content))
        }
        ItemBody::AssistantMessage { content } => (
            "assistant",
            content
                .iter()
                .map(|c| c.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        ItemBody::SdkHiddenContext { content } => ("user", content.clone()),
        ItemBody::StructuredInput { status, inputs } if status != "pending" => (
            "user",
            crate::workflows::nodes::wait_for_user_input::answers_text(inputs),
        ),
        _ => return None,
    };
    Some(HistoryEntry {
        role: role.into(),
        text,
        attachments: files,
    })
}

/// The newest messages of a thread before `before` (the whole thread when `None`) that
/// fit `budget` tokens, oldest first: whole messages, the newest always. Reads a page at
/// a time and stops once the budget is spent, so a long thread costs what a full budget
/// does.
pub(crate) async fn read(
    services: &Services,
    thread_id: &str,
    before: Option<&str>,
    budget: i64,
) -> StoreResult<Vec<HistoryEntry>> {
    let mut entries = Vec::new();
    let mut room = budget;
    let mut after = before.map(str::to_string);
    'pages: loop {
        let (items, more) = services
            .store
            .list_chat_items(
                thread_id,
                &PageRequest {
                    limit: PAGE,
                    order: Order::Desc,
                    after: after.clone(),
                },
                true,
            )
            .await?;
        for item in &items {
            let Some(entry) = entry_of(item) else {
                continue;
            };
            let cost = entry_tokens(&entry);
            if cost > room && !entries.is_empty() {
                break 'pages;
            }
            room -= cost;
            entries.push(entry);
        }
        match items.last() {
            Some(last) if more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    entries.reverse();
    Ok(entries)
}
