//! The conversation before a chat run, as an agent reads it: the thread's newest items
//! that fit the agent's model's context budget, read newest first a page at a time.

use conversation::{ItemBody, Order, ThreadItem};
use serde_json::Value;

use crate::{
    Services,
    chat::PageRequest,
    runs::{AttachmentRef, HistoryEntry},
    store::StoreResult,
};

/// Items read per page, newest first.
const PAGE: i64 = 50;

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
/// fit `budget` tokens, oldest first: whole messages, the newest always; and whether
/// older ones were left out. Reads a page at a time and stops once the budget is spent,
/// so a long thread costs what a full budget does.
pub(crate) async fn read(
    services: &Services,
    thread_id: &str,
    before: Option<&str>,
    budget: i64,
) -> StoreResult<(Vec<HistoryEntry>, bool)> {
    let mut entries = Vec::new();
    let mut room = budget;
    let mut after = before.map(str::to_string);
    let mut cut = false;
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
                cut = true;
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
    Ok((entries, cut))
}
