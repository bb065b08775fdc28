//! The ChatKit server protocol's wire types: requests, the thread as sent, stream events
//! and item updates, with the reference server's JSON rules (`openai-chatkit` 1.6.5).
//! The items themselves are the shared conversation model (`crates/conversation`),
//! re-exported here.
//!
//! Rules kept here so no caller has to remember them: fields whose value is null are
//! omitted, fields with non-null defaults are always written, unknown keys in requests
//! are ignored, and every discriminated union is tagged by `type`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use conversation::*;

/// A request to the ChatKit endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", content = "params")]
pub enum Request {
    #[serde(rename = "threads.create")]
    ThreadsCreate { input: UserMessageInput },
    #[serde(rename = "threads.add_user_message")]
    AddUserMessage {
        thread_id: String,
        input: UserMessageInput,
    },
    #[serde(rename = "threads.add_client_tool_output")]
    AddClientToolOutput { thread_id: String, result: Value },
    #[serde(rename = "threads.add_structured_input")]
    AddStructuredInput {
        thread_id: String,
        item_id: String,
        input: Value,
    },
    #[serde(rename = "threads.retry_after_item")]
    RetryAfterItem { thread_id: String, item_id: String },
    #[serde(rename = "threads.custom_action")]
    CustomAction {
        thread_id: String,
        #[serde(default)]
        item_id: Option<String>,
        action: Action,
    },
    #[serde(rename = "threads.sync_custom_action")]
    SyncCustomAction {
        thread_id: String,
        #[serde(default)]
        item_id: Option<String>,
        action: Action,
    },
    #[serde(rename = "threads.get_by_id")]
    GetById { thread_id: String },
    #[serde(rename = "threads.list")]
    ListThreads {
        #[serde(default)]
        limit: Option<i64>,
        #[serde(default)]
        order: Order,
        #[serde(default)]
        after: Option<String>,
    },
    #[serde(rename = "items.list")]
    ListItems {
        thread_id: String,
        #[serde(default)]
        limit: Option<i64>,
        #[serde(default)]
        order: Order,
        #[serde(default)]
        after: Option<String>,
    },
    #[serde(rename = "threads.update")]
    UpdateThread { thread_id: String, title: String },
    #[serde(rename = "threads.delete")]
    DeleteThread { thread_id: String },
    #[serde(rename = "items.feedback")]
    Feedback {
        thread_id: String,
        item_ids: Vec<String>,
        kind: FeedbackKind,
    },
    #[serde(rename = "attachments.create")]
    CreateAttachment {
        name: String,
        size: i64,
        mime_type: String,
    },
    #[serde(rename = "attachments.delete")]
    DeleteAttachment { attachment_id: String },
    #[serde(rename = "input.transcribe")]
    Transcribe {
        audio_base64: String,
        mime_type: String,
    },
}

impl Request {
    /// Whether the answer is a stream of events (else one JSON document).
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            Request::ThreadsCreate { .. }
                | Request::AddUserMessage { .. }
                | Request::AddClientToolOutput { .. }
                | Request::AddStructuredInput { .. }
                | Request::RetryAfterItem { .. }
                | Request::CustomAction { .. }
        )
    }
}

/// A thread as the client sees it. `metadata` is always `{}` on the wire.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Thread {
    pub id: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub status: ThreadStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_image_domains: Option<Vec<String>>,
    pub metadata: Map<String, Value>,
    pub items: Page<Value>,
}

/// One event of a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "thread.created")]
    ThreadCreated { thread: Thread },
    #[serde(rename = "thread.updated")]
    ThreadUpdated { thread: Thread },
    #[serde(rename = "thread.item.added")]
    ItemAdded { item: ThreadItem },
    #[serde(rename = "thread.item.updated")]
    ItemUpdated { item_id: String, update: ItemUpdate },
    #[serde(rename = "thread.item.done")]
    ItemDone { item: ThreadItem },
    #[serde(rename = "thread.item.removed")]
    ItemRemoved { item_id: String },
    #[serde(rename = "thread.item.replaced")]
    ItemReplaced { item: ThreadItem },
    #[serde(rename = "stream_options")]
    StreamOptions { stream_options: StreamOptions },
    #[serde(rename = "progress_update")]
    ProgressUpdate {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        icon: Option<String>,
    },
    #[serde(rename = "notice")]
    Notice {
        level: String,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        title: Option<String>,
    },
    #[serde(rename = "error")]
    Error {
        code: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
        allow_retry: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamOptions {
    pub allow_cancel: bool,
}

/// The `update` of `thread.item.updated`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type")]
pub enum ItemUpdate {
    #[serde(rename = "assistant_message.content_part.added")]
    ContentPartAdded {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "assistant_message.content_part.text_delta")]
    TextDelta { content_index: usize, delta: String },
    #[serde(rename = "assistant_message.content_part.annotation_added")]
    AnnotationAdded {
        content_index: usize,
        annotation_index: usize,
        annotation: Value,
    },
    #[serde(rename = "assistant_message.content_part.done")]
    ContentPartDone {
        content_index: usize,
        content: OutputText,
    },
    #[serde(rename = "widget.root.updated")]
    WidgetRootUpdated { widget: Value },
    #[serde(rename = "widget.streaming_text.value_delta")]
    WidgetTextDelta {
        component_id: String,
        delta: String,
        done: bool,
    },
    #[serde(rename = "workflow.task.added")]
    TaskAdded { task_index: usize, task: Task },
    #[serde(rename = "workflow.task.updated")]
    TaskUpdated { task_index: usize, task: Task },
}

/// The updates that take a widget shown as `before` to `after`, as the reference server's
/// differ sends them: when the only changes are texts growing in `Text` or `Markdown`
/// components that have an `id`, one `widget.streaming_text.value_delta` per text (`done`
/// once the component no longer streams); otherwise the whole new root. Nothing when
/// they are equal.
pub fn widget_updates(before: &Value, after: &Value) -> Vec<ItemUpdate> {
    fn grown(before: &Value, after: &Value, deltas: &mut Vec<ItemUpdate>) -> bool {
        match (before, after) {
            (Value::Object(a), Value::Object(b)) => {
                let streams = matches!(
                    b.get("type").and_then(Value::as_str),
                    Some("Text" | "Markdown")
                ) && a.get("type") == b.get("type")
                    && a.get("id").is_some()
                    && a.get("id") == b.get("id")
                    && a.get("streaming") == b.get("streaming");
                if a.len() != b.len() || a.keys().any(|k| !b.contains_key(k)) {
                    return false;
                }
                for (key, old) in a {
                    let new = &b[key];
                    if streams && key == "value" {
                        let (Some(old), Some(new)) = (old.as_str(), new.as_str()) else {
                            return false;
                        };
                        let Some(delta) = new.strip_prefix(old) else {
                            return false;
                        };
                        if !delta.is_empty() {
                            deltas.push(ItemUpdate::WidgetTextDelta {
                                component_id: b["id"].as_str().unwrap_or_default().to_string(),
                                delta: delta.to_string(),
                                done: b.get("streaming") != Some(&Value::Bool(true)),
                            });
                        }
                    } else if !grown(old, new, deltas) {
                        return false;
                    }
                }
                true
            }
            (Value::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| grown(x, y, deltas))
            }
            (a, b) => a == b,
        }
    }
    let mut deltas = Vec::new();
    if grown(before, after, &mut deltas) {
        deltas
    } else {
        vec![ItemUpdate::WidgetRootUpdated {
            widget: after.clone(),
        }]
    }
}

/// `{"text": ...}`: the answer to `input.transcribe`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptionResult {
    pub text: String,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn requests_are_read_by_type_and_params() {
        let create: Request = serde_json::from_value(json!({"type": "threads.create", "params": {
            "input": {"content": [{"type": "input_text", "text": "Hi"}], "attachments": [], "inference_options": {}}
        }, "metadata": {"x": 1}}))
        .unwrap();
        assert!(create.is_streaming());
        let list: Request =
            serde_json::from_value(json!({"type": "threads.list", "params": {}})).unwrap();
        assert!(matches!(
            list,
            Request::ListThreads {
                order: Order::Desc,
                limit: None,
                ..
            }
        ));
        assert!(serde_json::from_value::<Request>(json!({"type": "threads.list"})).is_err());
        assert!(serde_json::from_value::<Request>(json!({"type": "nope", "params": {}})).is_err());
    }

    #[test]
    fn widget_updates_stream_growing_texts() {
        let at = |title: &str, body: &str, streaming: bool| {
            json!({"type": "Card", "children": [
                {"type": "Title", "id": "t", "value": title},
                {"type": "Text", "id": "b", "value": body, "streaming": streaming}
            ]})
        };
        assert!(widget_updates(&at("A", "x", true), &at("A", "x", true)).is_empty());
        let updates = widget_updates(&at("A", "x", true), &at("A", "xyz", true));
        assert_eq!(
            serde_json::to_value(&updates).unwrap(),
            json!([{"type": "widget.streaming_text.value_delta", "component_id": "b", "delta": "yz", "done": false}])
        );
        // A title changing, a text rewritten, or streaming ending: the whole root.
        for (before, after) in [
            (at("A", "x", true), at("AB", "xy", true)),
            (at("A", "xy", true), at("A", "x", true)),
            (at("A", "x", true), at("A", "x", false)),
        ] {
            let updates = widget_updates(&before, &after);
            assert!(
                matches!(&updates[..], [ItemUpdate::WidgetRootUpdated { widget }] if *widget == after)
            );
        }
    }

    #[test]
    fn stream_events_are_tagged_by_type() {
        let event = StreamEvent::ItemUpdated {
            item_id: "msg_2".into(),
            update: ItemUpdate::TextDelta {
                content_index: 0,
                delta: "He".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"type": "thread.item.updated", "item_id": "msg_2",
                   "update": {"type": "assistant_message.content_part.text_delta", "content_index": 0, "delta": "He"}})
        );
    }
}
