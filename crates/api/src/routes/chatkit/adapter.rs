//! The ChatKit adapter of the conversation core: a turn's events ([`TurnEvent`]) become
//! ChatKit stream events, and stored threads the protocol's `Thread`.
//!
//! Invariants:
//! - The mapping is the reference server's: a growing assistant message is
//!   `thread.item.added`, a content part added, text deltas, then its annotations, the
//!   part done and `thread.item.done`; a widget filling in sends the smallest updates
//!   that take the client's copy to the new one (`chatkit::widget_updates`); a changed
//!   widget is a new root, any other changed item is replaced.
//! - The adapter keeps only what it needs to map growth (the items growing and the widget
//!   each one shows); it saves nothing.

use std::collections::HashMap;

use chatkit::{ItemBody, ItemUpdate, OutputText, Page, StreamEvent, StreamOptions, Thread};
use domain::chat::{ChatThread, TurnEvent};
use serde_json::{Map, Value};

/// The wire thread, with these items (an empty page for listings and events).
pub(super) fn thread(thread: &ChatThread, items: Page<Value>) -> Thread {
    Thread {
        id: thread.id.clone(),
        created_at: thread.created_at,
        title: thread.title.clone(),
        status: thread.status.clone(),
        allowed_image_domains: thread.allowed_image_domains.clone(),
        metadata: Map::new(),
        items,
    }
}

/// An item growing on the client, as the client has it.
enum Growing {
    Message,
    /// A widget, as last sent.
    Widget(Value),
    Work,
}

/// Maps one turn's events, in order.
#[derive(Default)]
pub(super) struct Adapter {
    growing: HashMap<String, Growing>,
}

impl Adapter {
    /// The ChatKit events for one turn event, appended to `out`.
    pub(super) fn map(&mut self, event: TurnEvent, out: &mut Vec<StreamEvent>) {
        match event {
            TurnEvent::ThreadCreated(created) => out.push(StreamEvent::ThreadCreated {
                thread: thread(&created, Page::empty()),
            }),
            TurnEvent::ThreadUpdated(updated) => out.push(StreamEvent::ThreadUpdated {
                thread: thread(&updated, Page::empty()),
            }),
            TurnEvent::ItemStarted(item) => {
                let growing = match &item.body {
                    ItemBody::AssistantMessage { .. } => Growing::Message,
                    ItemBody::Widget { widget, .. } => Growing::Widget(widget.clone()),
                    _ => Growing::Work,
                };
                let item_id = item.id.clone();
                out.push(StreamEvent::ItemAdded { item });
                if matches!(growing, Growing::Message) {
                    out.push(StreamEvent::ItemUpdated {
                        item_id: item_id.clone(),
                        update: ItemUpdate::ContentPartAdded {
                            content_index: 0,
                            content: OutputText::new(""),
                        },
                    });
                }
                self.growing.insert(item_id, growing);
            }
            TurnEvent::TextDelta { item_id, delta } => out.push(StreamEvent::ItemUpdated {
                item_id,
                update: ItemUpdate::TextDelta {
                    content_index: 0,
                    delta,
                },
            }),
            TurnEvent::WidgetChanged { item_id, widget } => self.widget_to(item_id, widget, out),
            TurnEvent::TaskAdded {
                item_id,
                index,
                task,
            } => out.push(StreamEvent::ItemUpdated {
                item_id,
                update: ItemUpdate::TaskAdded {
                    task_index: index,
                    task,
                },
            }),
            TurnEvent::TaskUpdated {
                item_id,
                index,
                task,
            } => out.push(StreamEvent::ItemUpdated {
                item_id,
                update: ItemUpdate::TaskUpdated {
                    task_index: index,
                    task,
                },
            }),
            TurnEvent::ItemDone(item) => {
                match (self.growing.get(&item.id), &item.body) {
                    (Some(Growing::Message), ItemBody::AssistantMessage { content }) => {
                        if let Some(part) = content.first() {
                            for (annotation_index, annotation) in
                                part.annotations.iter().enumerate()
                            {
                                out.push(StreamEvent::ItemUpdated {
                                    item_id: item.id.clone(),
                                    update: ItemUpdate::AnnotationAdded {
                                        content_index: 0,
                                        annotation_index,
                                        annotation: annotation.clone(),
                                    },
                                });
                            }
                            out.push(StreamEvent::ItemUpdated {
                                item_id: item.id.clone(),
                                update: ItemUpdate::ContentPartDone {
                                    content_index: 0,
                                    content: part.clone(),
                                },
                            });
                        }
                    }
                    (Some(Growing::Widget(_)), ItemBody::Widget { widget, .. }) => {
                        self.widget_to(item.id.clone(), widget.clone(), out);
                    }
                    _ => {}
                }
                self.growing.remove(&item.id);
                out.push(StreamEvent::ItemDone { item });
            }
            TurnEvent::ItemChanged(item) => match item.body {
                ItemBody::Widget { widget, .. } => out.push(StreamEvent::ItemUpdated {
                    item_id: item.id,
                    update: ItemUpdate::WidgetRootUpdated { widget },
                }),
                _ => out.push(StreamEvent::ItemReplaced { item }),
            },
            TurnEvent::Answering => out.push(StreamEvent::StreamOptions {
                stream_options: StreamOptions { allow_cancel: true },
            }),
            TurnEvent::Progress(text) => out.push(StreamEvent::ProgressUpdate { text, icon: None }),
            TurnEvent::Failed(message) => out.push(StreamEvent::Error {
                code: if message.is_some() {
                    "custom"
                } else {
                    "stream.error"
                }
                .into(),
                message,
                allow_retry: true,
            }),
        }
    }

    /// The updates that take the client's copy of widget `item_id` to `widget`.
    fn widget_to(&mut self, item_id: String, widget: Value, out: &mut Vec<StreamEvent>) {
        let before = match self.growing.get_mut(&item_id) {
            Some(Growing::Widget(shown)) => std::mem::replace(shown, widget.clone()),
            // A widget the client never saw grow: its whole root.
            _ => Value::Null,
        };
        for update in chatkit::widget_updates(&before, &widget) {
            out.push(StreamEvent::ItemUpdated {
                item_id: item_id.clone(),
                update,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use chatkit::{Task, ThreadItem, ThreadStatus};
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    fn item(id: &str, body: ItemBody) -> ThreadItem {
        ThreadItem {
            id: id.into(),
            thread_id: "thr_1".into(),
            created_at: Utc::now(),
            body,
        }
    }

    fn done(item: &ThreadItem) -> StreamEvent {
        StreamEvent::ItemDone { item: item.clone() }
    }

    fn types(events: &[StreamEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| {
                let v = serde_json::to_value(e).unwrap();
                match v["update"]["type"].as_str() {
                    Some(update) => format!("{}:{update}", v["type"].as_str().unwrap()),
                    None => v["type"].as_str().unwrap().to_string(),
                }
            })
            .collect()
    }

    #[test]
    fn a_growing_message_opens_a_part_and_closes_it_with_its_citations() {
        let mut adapter = Adapter::default();
        let mut out = Vec::new();
        let empty = ItemBody::AssistantMessage {
            content: Vec::new(),
        };
        adapter.map(TurnEvent::ItemStarted(item("msg_1", empty)), &mut out);
        adapter.map(
            TurnEvent::TextDelta {
                item_id: "msg_1".into(),
                delta: "Hi [1]".into(),
            },
            &mut out,
        );
        let mut part = OutputText::new("Hi [1]");
        part.annotations = vec![json!({"type": "annotation", "source": {"type": "url"}})];
        let finished = item(
            "msg_1",
            ItemBody::AssistantMessage {
                content: vec![part.clone()],
            },
        );
        adapter.map(TurnEvent::ItemDone(finished.clone()), &mut out);
        assert_eq!(
            types(&out),
            [
                "thread.item.added",
                "thread.item.updated:assistant_message.content_part.added",
                "thread.item.updated:assistant_message.content_part.text_delta",
                "thread.item.updated:assistant_message.content_part.annotation_added",
                "thread.item.updated:assistant_message.content_part.done",
                "thread.item.done",
            ]
        );
        assert_eq!(out[5], done(&finished));
        // A message done whole (never grown) is just done.
        let mut out = Vec::new();
        adapter.map(TurnEvent::ItemDone(finished.clone()), &mut out);
        assert_eq!(out, [done(&finished)]);
    }

    #[test]
    fn a_widget_filling_in_sends_text_deltas_then_its_final_root() {
        let card = |text: &str, streaming: bool| json!({"type": "Card", "children": [{"type": "Text", "id": "t", "value": text, "streaming": streaming}]});
        let widget = |w: Value| ItemBody::Widget {
            widget: w,
            copy_text: None,
        };
        let mut adapter = Adapter::default();
        let mut out = Vec::new();
        adapter.map(
            TurnEvent::ItemStarted(item("w_1", widget(card("He", true)))),
            &mut out,
        );
        adapter.map(
            TurnEvent::WidgetChanged {
                item_id: "w_1".into(),
                widget: card("Hello", true),
            },
            &mut out,
        );
        adapter.map(
            TurnEvent::ItemDone(item("w_1", widget(card("Hello!", false)))),
            &mut out,
        );
        assert_eq!(
            types(&out),
            [
                "thread.item.added",
                "thread.item.updated:widget.streaming_text.value_delta",
                "thread.item.updated:widget.root.updated",
                "thread.item.done",
            ]
        );
        let delta = serde_json::to_value(&out[1]).unwrap();
        assert_eq!(delta["update"]["delta"], "llo");
        // A clicked widget is a new root; answered questions replace their item.
        let mut out = Vec::new();
        adapter.map(
            TurnEvent::ItemChanged(item("w_2", widget(card("x", false)))),
            &mut out,
        );
        let questions = ItemBody::StructuredInput {
            status: "answered".into(),
            inputs: Vec::new(),
        };
        adapter.map(TurnEvent::ItemChanged(item("q_1", questions)), &mut out);
        assert_eq!(
            types(&out),
            [
                "thread.item.updated:widget.root.updated",
                "thread.item.replaced"
            ]
        );
    }

    #[test]
    fn work_threads_and_failures_map_one_to_one() {
        let mut adapter = Adapter::default();
        let mut out = Vec::new();
        let task = Task {
            kind: "custom".into(),
            title: Some("Calling search".into()),
            icon: None,
            content: None,
            status_indicator: "loading".into(),
        };
        let now = Utc::now();
        let stored = ChatThread {
            id: "thr_1".into(),
            user_id: 1,
            end_user: None,
            workflow_id: Some(1),
            title: Some("Hello".into()),
            status: ThreadStatus::Closed { reason: None },
            allowed_image_domains: None,
            metadata: Map::from_iter([("secret".to_string(), json!("kept server-side"))]),
            created_at: now,
            updated_at: now,
        };
        for event in [
            TurnEvent::ThreadCreated(stored.clone()),
            TurnEvent::Answering,
            TurnEvent::Progress("Searching".into()),
            TurnEvent::TaskAdded {
                item_id: "wf_1".into(),
                index: 0,
                task: task.clone(),
            },
            TurnEvent::TaskUpdated {
                item_id: "wf_1".into(),
                index: 0,
                task,
            },
            TurnEvent::ThreadUpdated(stored),
            TurnEvent::Failed(Some("The workflow failed".into())),
            TurnEvent::Failed(None),
        ] {
            adapter.map(event, &mut out);
        }
        assert_eq!(
            types(&out),
            [
                "thread.created",
                "stream_options",
                "progress_update",
                "thread.item.updated:workflow.task.added",
                "thread.item.updated:workflow.task.updated",
                "thread.updated",
                "error",
                "error",
            ]
        );
        let created = serde_json::to_value(&out[0]).unwrap();
        assert_eq!(created["thread"]["metadata"], json!({}));
        assert_eq!(created["thread"]["status"], json!({"type": "closed"}));
        let errors: Vec<Value> = out[6..]
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        assert_eq!(errors[0]["code"], "custom");
        assert_eq!(errors[1]["code"], "stream.error");
        assert!(errors[1].get("message").is_none());
    }
}
