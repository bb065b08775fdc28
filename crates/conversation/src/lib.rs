//! The conversation model every channel shares: threads' statuses, items (messages,
//! widgets, questions, tool calls, work shown as tasks), a new user message, and pages of
//! lists.
//!
//! Items are stored as this JSON, which is ChatKit's item schema (as the seed system
//! stores them), so stored threads, ChatKit clients and the web app read them unchanged.
//! The ChatKit *protocol* (requests, stream events, incremental updates) is not here but
//! in `crates/chatkit`; other channels (voice, phone) read these items without it.
//!
//! JSON rules: fields whose value is null are omitted, fields with non-null defaults are
//! always written, and every discriminated union is tagged by `type`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedbackKind {
    Positive,
    Negative,
}

impl FeedbackKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackKind::Positive => "positive",
            FeedbackKind::Negative => "negative",
        }
    }
}

/// A widget or client action: `{type, payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub payload: Value,
}

/// What the composer sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessageInput {
    pub content: Vec<UserContent>,
    #[serde(default)]
    pub attachments: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_text: Option<String>,
    #[serde(default)]
    pub inference_options: InferenceOptions,
}

impl UserMessageInput {
    /// The message as plain text (tags by their text).
    pub fn text(&self) -> String {
        text_of(&self.content)
    }
}

/// The plain text of user content.
pub fn text_of(content: &[UserContent]) -> String {
    content
        .iter()
        .map(|c| match c {
            UserContent::InputText { text } => text.as_str(),
            UserContent::InputTag { text, .. } => text.as_str(),
        })
        .collect::<Vec<_>>()
        .join("")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UserContent {
    InputText {
        text: String,
    },
    InputTag {
        id: String,
        text: String,
        #[serde(default)]
        data: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(default)]
        interactive: bool,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InferenceOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolChoice {
    pub id: String,
}

/// `active`, `locked` or `closed` (the last two with an optional reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ThreadStatus {
    #[default]
    Active,
    Locked {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Closed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl ThreadStatus {
    pub fn is_active(&self) -> bool {
        matches!(self, ThreadStatus::Active)
    }
}

/// A page of a list; `after` is the id of its last element when there is more.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl<T> Page<T> {
    pub fn empty() -> Page<T> {
        Page {
            data: Vec::new(),
            has_more: false,
            after: None,
        }
    }
}

/// One item of a thread: the common fields and the kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadItem {
    pub id: String,
    pub thread_id: String,
    pub created_at: DateTime<Utc>,
    #[serde(flatten)]
    pub body: ItemBody,
}

impl ThreadItem {
    /// Items the client never sees.
    pub fn is_hidden(&self) -> bool {
        matches!(
            self.body,
            ItemBody::HiddenContextItem { .. } | ItemBody::SdkHiddenContext { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match &self.body {
            ItemBody::UserMessage { .. } => "user_message",
            ItemBody::AssistantMessage { .. } => "assistant_message",
            ItemBody::ClientToolCall { .. } => "client_tool_call",
            ItemBody::Widget { .. } => "widget",
            ItemBody::StructuredInput { .. } => "structured_input",
            ItemBody::Workflow { .. } => "workflow",
            ItemBody::EndOfTurn => "end_of_turn",
            ItemBody::HiddenContextItem { .. } => "hidden_context_item",
            ItemBody::SdkHiddenContext { .. } => "sdk_hidden_context",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemBody {
    UserMessage {
        content: Vec<UserContent>,
        #[serde(default)]
        attachments: Vec<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quoted_text: Option<String>,
        #[serde(default)]
        inference_options: InferenceOptions,
    },
    AssistantMessage {
        content: Vec<OutputText>,
    },
    ClientToolCall {
        status: ToolCallStatus,
        call_id: String,
        name: String,
        arguments: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
    },
    Widget {
        widget: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copy_text: Option<String>,
    },
    /// Questions for the user (`inputs` are `StructuredInput`s; `status` is `pending`,
    /// `answered` or `skipped`).
    StructuredInput {
        status: String,
        inputs: Vec<Value>,
    },
    Workflow {
        workflow: Workflow,
    },
    EndOfTurn,
    HiddenContextItem {
        content: Value,
    },
    SdkHiddenContext {
        content: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallStatus {
    Pending,
    Completed,
}

/// An assistant message's text part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputText {
    #[serde(rename = "type")]
    pub kind: OutputTextKind,
    pub text: String,
    #[serde(default)]
    pub annotations: Vec<Value>,
}

impl OutputText {
    pub fn new(text: impl Into<String>) -> OutputText {
        OutputText {
            kind: OutputTextKind::OutputText,
            text: text.into(),
            annotations: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputTextKind {
    OutputText,
}

/// A `workflow` item's content: tasks shown as the assistant works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    #[serde(rename = "type")]
    pub kind: String,
    pub tasks: Vec<Task>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
    #[serde(default)]
    pub expanded: bool,
}

/// A task of a workflow item (the `custom` kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub status_indicator: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nulls_are_omitted_and_defaults_written() {
        let item = ThreadItem {
            id: "msg_1".into(),
            thread_id: "thr_1".into(),
            created_at: DateTime::parse_from_rfc3339("2026-11-26T00:00:00Z")
                .unwrap()
                .into(),
            body: ItemBody::UserMessage {
                content: vec![UserContent::InputText { text: "Hi".into() }],
                attachments: vec![],
                quoted_text: None,
                inference_options: InferenceOptions::default(),
            },
        };
        assert_eq!(
            serde_json::to_value(&item).unwrap(),
            json!({"id": "msg_1", "thread_id": "thr_1", "created_at": "2026-11-26T00:00:00Z", "type": "user_message",
                   "content": [{"type": "input_text", "text": "Hi"}], "attachments": [], "inference_options": {}})
        );
        assert_eq!(
            serde_json::to_value(ThreadStatus::Closed { reason: None }).unwrap(),
            json!({"type": "closed"})
        );
        let back: ThreadItem =
            serde_json::from_value(serde_json::to_value(&item).unwrap()).unwrap();
        assert_eq!(back, item);
    }
}
