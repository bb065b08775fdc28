//! One turn of a ChatKit thread: the request's prelude (thread, user message), then the
//! thread's workflow run (started, or resumed where it waits) followed live, its engine
//! events mapped onto ChatKit stream events, and the items persisted as they are done.
//!
//! Mapping: text deltas open an `assistant_message` item (`thread.item.added`, a content
//! part, `text_delta`s) that the saved message closes (`content_part.done`,
//! `thread.item.done`); a node starting is a `progress_update`; a widget is a `widget`
//! item; a client tool wait is a pending `client_tool_call`; an approval wait is a widget
//! with Approve and Reject buttons (actions `approval.approve` / `approval.reject`); a
//! questions wait is a pending `structured_input` item, answered by
//! `threads.add_structured_input` (`thread.item.replaced`, then the run goes on); a
//! failed run is an `error` event; an `end` node's status becomes the thread's status.
//!
//! A client that goes away mid-turn cancels it: the partial answer is kept, a hidden
//! context item tells the next turn not to continue it, and the run is cancelled.

use chatkit::{
    Action, ItemBody, ItemUpdate, OutputText, Page, StreamEvent, StreamOptions, Task, ThreadItem,
    ThreadStatus, ToolCallStatus, UserContent, UserMessageInput,
};
use chrono::Utc;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{
    ChatError, ChatResult, ChatThread, PageRequest, Principal, StoredAttachment, attachments,
    new_id, thread,
};
use crate::{
    Services,
    models::titles,
    runs::{
        self, Event, EventKind, HistoryEntry, Resume, Run, RunError, RunStatus, StartRun, WaitKind,
        follow::Follower,
    },
    users::User,
    workflows,
};

/// What a streaming request asks.
#[derive(Debug, Clone)]
pub enum Turn {
    /// `threads.create`: a new thread, bound to `workflow_id` or the ChatKit default.
    Create {
        input: UserMessageInput,
        workflow_id: Option<i64>,
    },
    UserMessage {
        thread_id: String,
        input: UserMessageInput,
    },
    ClientToolOutput {
        thread_id: String,
        result: Value,
    },
    Action {
        thread_id: String,
        item_id: Option<String>,
        action: Action,
    },
    Retry {
        thread_id: String,
        item_id: String,
    },
    /// `threads.add_structured_input`: answers to the pending questions item `item_id`.
    StructuredInput {
        thread_id: String,
        item_id: String,
        input: Value,
    },
}

/// What the hidden context says after a cancelled answer.
const CANCELLED_CONTEXT: &str =
    "The user cancelled the stream. Stop responding to the prior request.";

/// The thread's unfinished run, if any.
pub(crate) async fn active_run(services: &Services, thread_id: &str) -> ChatResult<Option<Run>> {
    Ok(services.store.thread_active_run(thread_id).await?)
}

/// How the turn reaches the engine, decided before the stream starts.
enum Engine {
    Start {
        text: String,
        files: Vec<runs::AttachmentRef>,
        history: Vec<HistoryEntry>,
        model: Option<String>,
    },
    Resume {
        run_id: String,
        answer: Resume,
        /// The item the answer came from (a widget, answered questions), as it should
        /// now show: saved and sent once the run took the answer, so an answer the run
        /// refused (another came first) leaves the item as it was.
        updated: Option<ThreadItem>,
    },
}

/// Checks the request, then streams the turn. Errors found before the stream are
/// returned (a 4xx for the caller); later ones become `error` events.
/// `base_url` is the server's public URL (for attachment links).
pub async fn respond(
    services: &Services,
    who: &Principal,
    turn: Turn,
    base_url: &str,
) -> ChatResult<mpsc::Receiver<StreamEvent>> {
    let actor = &who.user;
    let (tx, rx) = mpsc::channel(256);
    let mut prelude: Vec<StreamEvent> = Vec::new();
    let mut new_thread = None;
    let (thread, engine, first_message) = match turn {
        Turn::Create { input, workflow_id } => {
            let text = input_text(&input)?;
            let files = attachments_of(services, who, &input).await?;
            // A session's threads use its workflow, whatever the request says.
            let workflow_id = who.session.as_ref().map(|s| s.workflow_id).or(workflow_id);
            let workflow_id = match workflow_id {
                Some(id) => {
                    workflows::runnable(services, actor, id, false)
                        .await
                        .map_err(|_| ChatError::WorkflowNotFound(id))?;
                    id
                }
                None => {
                    workflows::chatkit_default(services)
                        .await
                        .map_err(|err| ChatError::Invalid(err.to_string()))?
                        .ok_or(ChatError::NoWorkflow)?
                        .id
                }
            };
            let now = Utc::now();
            // Without generated titles, the first message names the thread from the start.
            let titled = titles::enabled(services).await.unwrap_or(true);
            let thread = ChatThread {
                id: new_id("thr"),
                user_id: actor.id,
                end_user: who.end_user().map(str::to_string),
                workflow_id: Some(workflow_id),
                title: if titled { None } else { titles::clean(&text) },
                status: ThreadStatus::Active,
                allowed_image_domains: None,
                metadata: Map::new(),
                created_at: now,
                updated_at: now,
            };
            let item = new_user_item(services, &thread.id, &input, &files, base_url);
            prelude.push(StreamEvent::ThreadCreated {
                thread: thread.to_wire(Page::empty()),
            });
            prelude.push(StreamEvent::ItemDone { item: item.clone() });
            let engine = Engine::Start {
                text: text.clone(),
                files: refs(&files),
                history: Vec::new(),
                model: input.inference_options.model.clone(),
            };
            new_thread = Some(NewThread { item, files });
            (thread, engine, titled.then_some(text))
        }
        Turn::UserMessage { thread_id, input } => {
            let thread = open_thread(services, who, &thread_id).await?;
            let text = input_text(&input)?;
            let files = attachments_of(services, who, &input).await?;
            let mut active = active_run(services, &thread.id).await?;
            // A turn whose server stopped gives way once its lease ran out.
            if let Some(run) = active.as_ref().filter(|r| r.status == RunStatus::Running)
                && super::interrupted::reap(services, Some(&run.id)).await > 0
            {
                active = None;
            }
            let history = history(services, &thread.id, None).await?;
            let engine = match active {
                Some(run) if run.status == RunStatus::Running => {
                    return Err(ChatError::Conflict(
                        "the assistant is still answering in this thread".into(),
                    ));
                }
                Some(run)
                    if run
                        .wait
                        .as_ref()
                        .is_some_and(|w| w.kind == WaitKind::UserMessage) =>
                {
                    Engine::Resume {
                        run_id: run.id,
                        answer: Resume::UserMessageWithFiles(text.clone(), refs(&files)),
                        updated: None,
                    }
                }
                other => {
                    // A run waiting for something else (a click, a tool) gives way to the
                    // new message.
                    if let Some(run) = other {
                        let _ = runs::cancel(services, actor, &run.id).await;
                    }
                    Engine::Start {
                        text: text.clone(),
                        files: refs(&files),
                        history,
                        model: input.inference_options.model.clone(),
                    }
                }
            };
            let item = user_item(services, &thread.id, &input, &files, base_url).await?;
            services
                .store
                .insert_chat_item(&attachments::without_urls(&item))
                .await?;
            prelude.push(StreamEvent::ItemDone { item });
            let first = thread.title.is_none().then_some(text);
            (thread, engine, first)
        }
        Turn::ClientToolOutput { thread_id, result } => {
            let thread = open_thread(services, who, &thread_id).await?;
            let run = active_run(services, &thread.id)
                .await?
                .filter(|r| {
                    r.wait
                        .as_ref()
                        .is_some_and(|w| w.kind == WaitKind::ClientToolOutput)
                })
                .ok_or_else(|| {
                    ChatError::Invalid("no client tool call is pending in this thread".into())
                })?;
            // Complete the pending call item.
            let (items, _) = services
                .store
                .list_chat_items(
                    &thread.id,
                    &PageRequest {
                        limit: 20,
                        order: chatkit::Order::Desc,
                        after: None,
                    },
                    false,
                )
                .await?;
            if let Some(mut item) = items.into_iter().find(|i| {
                matches!(
                    i.body,
                    ItemBody::ClientToolCall {
                        status: ToolCallStatus::Pending,
                        ..
                    }
                )
            }) {
                if let ItemBody::ClientToolCall { status, output, .. } = &mut item.body {
                    *status = ToolCallStatus::Completed;
                    *output = Some(result.clone());
                }
                services.store.save_chat_item(&item).await?;
            }
            let engine = Engine::Resume {
                run_id: run.id,
                answer: Resume::ClientToolOutput(result),
                updated: None,
            };
            (thread, engine, None)
        }
        Turn::Action {
            thread_id,
            item_id,
            action,
        } => {
            let thread = open_thread(services, who, &thread_id).await?;
            let mut sender = None;
            if let Some(item_id) = &item_id {
                let item = services
                    .store
                    .chat_item(&thread.id, item_id)
                    .await?
                    .ok_or_else(|| ChatError::ItemNotFound(item_id.clone()))?;
                if !matches!(item.body, ItemBody::Widget { .. }) {
                    return Err(ChatError::Invalid("actions come from widget items".into()));
                }
                sender = Some(item);
            }
            let run = active_run(services, &thread.id)
                .await?
                .filter(|r| r.status == RunStatus::Waiting)
                .ok_or_else(|| {
                    ChatError::Invalid("nothing in this thread waits for an action".into())
                })?;
            let Some(wait) = run.wait.clone() else {
                return Err(ChatError::Invalid(
                    "the workflow waits for nothing, not for this action".into(),
                ));
            };
            let answer = match (wait.kind, action.kind.as_str()) {
                // An approval card answers the approval it was shown for, not a later one.
                (WaitKind::Approval, "approval.approve" | "approval.reject")
                    if action.payload.get("node").and_then(Value::as_str)
                        != Some(wait.node.as_str()) =>
                {
                    return Err(ChatError::Invalid(
                        "this approval is no longer pending".into(),
                    ));
                }
                (WaitKind::Approval, "approval.approve") => Resume::Approval(true),
                (WaitKind::Approval, "approval.reject") => Resume::Approval(false),
                (WaitKind::WidgetAction, _) => {
                    Resume::WidgetAction(json!({"type": action.kind, "payload": action.payload}))
                }
                (kind, _) => {
                    return Err(ChatError::Invalid(format!(
                        "the workflow waits for {}, not for this action",
                        kind.as_str().replace('_', " ")
                    )));
                }
            };
            // The widget clicked shows what happened: a decided approval, a form's values.
            let updated = sender.and_then(|mut item| {
                let ItemBody::Widget { widget, .. } = &mut item.body else {
                    return None;
                };
                let before = widget.clone();
                match &answer {
                    Resume::Approval(approved) => settle_approval(widget, *approved),
                    Resume::WidgetAction(_) => keep_submitted(widget, &action.payload),
                    _ => {}
                }
                (*widget != before).then_some(item)
            });
            (
                thread,
                Engine::Resume {
                    run_id: run.id,
                    answer,
                    updated,
                },
                None,
            )
        }
        Turn::StructuredInput {
            thread_id,
            item_id,
            input,
        } => {
            let thread = open_thread(services, who, &thread_id).await?;
            let mut item = services
                .store
                .chat_item(&thread.id, &item_id)
                .await?
                .ok_or_else(|| ChatError::ItemNotFound(item_id.clone()))?;
            let ItemBody::StructuredInput { status, inputs } = &mut item.body else {
                return Err(ChatError::Invalid(format!(
                    "item {item_id} is not a structured input"
                )));
            };
            if status != "pending" {
                return Err(ChatError::Invalid(format!(
                    "the questions of item {item_id} were already {status}"
                )));
            }
            // The run must still wait for these questions (not for later ones).
            let run = active_run(services, &thread.id)
                .await?
                .filter(|r| {
                    r.wait.as_ref().is_some_and(|w| {
                        w.kind == WaitKind::StructuredInput
                            && w.data.as_ref().and_then(|d| d.get("inputs"))
                                == Some(&Value::Array(inputs.clone()))
                    })
                })
                .ok_or_else(|| {
                    ChatError::Invalid("these questions are no longer pending".into())
                })?;
            let (answered_status, answered) =
                workflows::nodes::wait_for_user_input::apply_submission(inputs, &input)
                    .map_err(ChatError::Invalid)?;
            *status = answered_status;
            *inputs = answered;
            let engine = Engine::Resume {
                run_id: run.id,
                answer: Resume::StructuredInput(input),
                updated: Some(item),
            };
            (thread, engine, None)
        }
        Turn::Retry { thread_id, item_id } => {
            let thread = open_thread(services, who, &thread_id).await?;
            let item = services
                .store
                .chat_item(&thread.id, &item_id)
                .await?
                .ok_or_else(|| ChatError::ItemNotFound(item_id.clone()))?;
            let ItemBody::UserMessage {
                content,
                inference_options,
                attachments,
                ..
            } = &item.body
            else {
                return Err(ChatError::Invalid(
                    "a retry starts from a user message".into(),
                ));
            };
            let text = chatkit::text_of(content);
            let files = attachment_refs(attachments);
            if let Some(run) = active_run(services, &thread.id).await? {
                let _ = runs::cancel(services, actor, &run.id).await;
            }
            // The answer after that message goes (the client drops it itself).
            services
                .store
                .delete_chat_items_after(&thread.id, &item.id)
                .await?;
            let history = history(services, &thread.id, Some(&item.id)).await?;
            let engine = Engine::Start {
                text,
                files,
                history,
                model: inference_options.model.clone(),
            };
            (thread, engine, None)
        }
    };
    let (services, actor) = (services.clone(), actor.clone());
    let session = who.session.clone();
    tokio::spawn(async move {
        let mut turn = TurnStream {
            services: &services,
            actor: &actor,
            session,
            thread,
            tx,
            open: None,
            work: None,
            widget: None,
            gone: false,
            stopped: false,
        };
        turn.run(prelude, engine, first_message, new_thread).await;
    });
    Ok(rx)
}

/// A decided approval card: its buttons disabled, the decision written under them.
fn settle_approval(card: &mut Value, approved: bool) {
    fn disable(tree: &mut Value) {
        match tree {
            Value::Object(component) => {
                if component.get("type").and_then(Value::as_str) == Some("Button") {
                    component.insert("disabled".into(), Value::Bool(true));
                }
                component.values_mut().for_each(disable);
            }
            Value::Array(items) => items.iter_mut().for_each(disable),
            _ => {}
        }
    }
    disable(card);
    if let Some(children) = card.get_mut("children").and_then(Value::as_array_mut) {
        children.push(
            json!({"type": "Caption", "value": if approved { "Approved" } else { "Rejected" }}),
        );
    }
}

/// A submitted form keeps its values: each form field named in the action's payload (or
/// its `values`) shows what was sent.
fn keep_submitted(widget: &mut Value, payload: &Value) {
    fn fill(tree: &mut Value, values: &Map<String, Value>) {
        match tree {
            Value::Object(component) => {
                let field = match component.get("type").and_then(Value::as_str) {
                    Some("Input" | "Textarea" | "Select" | "DatePicker" | "RadioGroup") => {
                        Some("defaultValue")
                    }
                    Some("Checkbox") => Some("defaultChecked"),
                    _ => None,
                };
                let value = ["name", "id", "key"]
                    .iter()
                    .find_map(|k| component.get(*k).and_then(Value::as_str))
                    .and_then(|name| values.get(name))
                    .cloned();
                if let (Some(field), Some(value)) = (field, value) {
                    component.insert(field.into(), value);
                } else {
                    component.values_mut().for_each(|v| fill(v, values));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| fill(v, values)),
            _ => {}
        }
    }
    let mut values = payload.as_object().cloned().unwrap_or_default();
    if let Some(nested) = payload.get("values").and_then(Value::as_object) {
        values.extend(nested.clone());
    }
    if !values.is_empty() {
        fill(widget, &values);
    }
}

/// The text of a user message; an empty message is refused.
fn input_text(input: &UserMessageInput) -> ChatResult<String> {
    let text = input.text();
    if text.trim().is_empty() && input.attachments.is_empty() {
        return Err(ChatError::Invalid("the message is empty".into()));
    }
    if text.len() > 100_000 {
        return Err(ChatError::Invalid(
            "the message is longer than 100,000 bytes".into(),
        ));
    }
    Ok(text)
}

/// A thread the actor may write to: theirs (or any, for an administrator), still active.
async fn open_thread(
    services: &Services,
    who: &Principal,
    thread_id: &str,
) -> ChatResult<ChatThread> {
    let thread = thread(services, who, thread_id).await?;
    // Administrators may read anyone's thread, but only its owner talks in it.
    if thread.user_id != who.user.id || thread.end_user.as_deref() != who.end_user() {
        return Err(ChatError::Invalid(
            "only the owner of a thread may post in it".into(),
        ));
    }
    if !thread.status.is_active() {
        return Err(ChatError::Conflict("this thread is closed".into()));
    }
    Ok(thread)
}

/// The message's attachments: the actor's, uploaded.
async fn attachments_of(
    services: &Services,
    who: &Principal,
    input: &UserMessageInput,
) -> ChatResult<Vec<StoredAttachment>> {
    if input.attachments.len() > 10 {
        return Err(ChatError::Invalid(
            "at most 10 attachments per message".into(),
        ));
    }
    let mut files = Vec::new();
    for id in &input.attachments {
        let file = attachments::owned(services, who, id).await?;
        if !file.uploaded {
            return Err(ChatError::Invalid(format!(
                "attachment {id} was not uploaded"
            )));
        }
        // An attachment belongs to the one message (and thread) that first used it.
        if file.thread_id.is_some() {
            return Err(ChatError::Invalid(format!(
                "attachment {id} was already sent in a message"
            )));
        }
        files.push(file);
    }
    Ok(files)
}

/// The attachments of a stored user message, as the engine names them.
fn attachment_refs(attachments: &[Value]) -> Vec<runs::AttachmentRef> {
    attachments
        .iter()
        .filter_map(|a| {
            Some(runs::AttachmentRef {
                id: a.get("id")?.as_str()?.to_string(),
                name: a.get("name")?.as_str()?.to_string(),
                mime_type: a.get("mime_type")?.as_str()?.to_string(),
            })
        })
        .collect()
}

fn refs(files: &[StoredAttachment]) -> Vec<runs::AttachmentRef> {
    files
        .iter()
        .map(|f| runs::AttachmentRef {
            id: f.id.clone(),
            name: f.name.clone(),
            mime_type: f.mime_type.clone(),
        })
        .collect()
}

/// The user's message item, its attachments bound to the thread.
async fn user_item(
    services: &Services,
    thread_id: &str,
    input: &UserMessageInput,
    files: &[StoredAttachment],
    base_url: &str,
) -> ChatResult<ThreadItem> {
    bind_files(services, thread_id, files).await?;
    Ok(new_user_item(services, thread_id, input, files, base_url))
}

/// Records that `files` were sent in the thread (each belongs to that one message).
async fn bind_files(
    services: &Services,
    thread_id: &str,
    files: &[StoredAttachment],
) -> ChatResult<()> {
    for file in files {
        let mut file = file.clone();
        file.thread_id = Some(thread_id.to_string());
        services.store.update_chat_attachment(&file).await?;
    }
    Ok(())
}

/// The user's message item (nothing saved).
fn new_user_item(
    services: &Services,
    thread_id: &str,
    input: &UserMessageInput,
    files: &[StoredAttachment],
    base_url: &str,
) -> ThreadItem {
    let attachments = files
        .iter()
        .map(|file| {
            let mut file = file.clone();
            file.thread_id = Some(thread_id.to_string());
            file.to_wire(base_url, &attachments::url_token(services, &file.id))
        })
        .collect();
    ThreadItem {
        id: new_id("msg"),
        thread_id: thread_id.to_string(),
        created_at: Utc::now(),
        body: ItemBody::UserMessage {
            content: input.content.clone(),
            attachments,
            quoted_text: input.quoted_text.clone(),
            inference_options: input.inference_options.clone(),
        },
    }
}

/// The conversation so far, as the engine's history: messages and hidden context, up to
/// (not including) `before`, at most the last 1,000.
async fn history(
    services: &Services,
    thread_id: &str,
    before: Option<&str>,
) -> ChatResult<Vec<HistoryEntry>> {
    // The newest 1,000 items (before `before`), read newest first, then put in order.
    let (mut items, _) = services
        .store
        .list_chat_items(
            thread_id,
            &PageRequest {
                limit: 1_000,
                order: chatkit::Order::Desc,
                after: before.map(str::to_string),
            },
            true,
        )
        .await?;
    items.reverse();
    let mut entries = Vec::new();
    for item in &items {
        let mut files = Vec::new();
        let (role, text) = match &item.body {
            ItemBody::UserMessage {
                content,
                attachments,
                ..
            } => {
                files = attachment_refs(attachments);
                ("user", chatkit::text_of(content))
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
                workflows::nodes::wait_for_user_input::answers_text(inputs),
            ),
            _ => continue,
        };
        entries.push(HistoryEntry {
            role: role.into(),
            text,
            attachments: files,
        });
    }
    Ok(entries)
}

/// A thread created by this turn, saved as its run starts.
struct NewThread {
    item: ThreadItem,
    files: Vec<StoredAttachment>,
}

/// An assistant message being streamed.
struct Open {
    node: Option<String>,
    item: ThreadItem,
    text: String,
}

struct TurnStream<'a> {
    services: &'a Services,
    actor: &'a User,
    /// The embedded session, whose pinned version and state variables runs start with.
    session: Option<super::sessions::ChatSession>,
    thread: ChatThread,
    tx: mpsc::Sender<StreamEvent>,
    open: Option<Open>,
    /// The `workflow` item showing reasoning and tool calls, while it grows.
    work: Option<Work>,
    /// The widget filling in, while it does.
    widget: Option<OpenWidget>,
    /// The client went away.
    gone: bool,
    /// The last event handled stopped the run (it ended or waits): nothing follows.
    stopped: bool,
}

/// A widget item filling in as an agent's answer streams.
struct OpenWidget {
    node: Option<String>,
    item: ThreadItem,
    widget: Value,
}

/// A `workflow` item being built: its tasks (reasoning, tool calls) as they happen.
struct Work {
    item: ThreadItem,
    kind: &'static str,
    tasks: Vec<Task>,
    /// Tool call ids by task index.
    calls: Vec<(String, usize)>,
    started: std::time::Instant,
}

impl TurnStream<'_> {
    async fn send(&mut self, event: StreamEvent) {
        if !self.gone && self.tx.send(event).await.is_err() {
            self.gone = true;
        }
    }

    async fn run(
        &mut self,
        prelude: Vec<StreamEvent>,
        engine: Engine,
        first_message: Option<String>,
        new_thread: Option<NewThread>,
    ) {
        let (started, updated) = match new_thread {
            // A new thread and its run are written together (one commit on SQLite); the
            // stream starts once the thread is saved.
            Some(new) => {
                let (saved, started) = tokio::join!(self.save_thread(new), self.start(engine));
                if let Err(err) = saved {
                    if let (Ok((run, _, _)), _) = &started {
                        let _ = runs::cancel(self.services, self.actor, &run.id).await;
                    }
                    tracing::error!(thread_id = %self.thread.id, error = %err, "could not save a new thread");
                    self.send(StreamEvent::Error {
                        code: "stream.error".into(),
                        message: None,
                        allow_retry: true,
                    })
                    .await;
                    return;
                }
                started
            }
            None => self.start(engine).await,
        };
        let updated = updated.filter(|_| started.is_ok());
        // Answered questions are replaced first, as the reference server sends them; a
        // clicked widget is updated once the stream has begun.
        let (widget, replaced) = match updated {
            Some(item) if matches!(item.body, ItemBody::Widget { .. }) => (Some(item), None),
            other => (None, other),
        };
        if let Some(item) = replaced {
            self.item_changed(item).await;
        }
        for event in prelude {
            self.send(event).await;
        }
        self.send(StreamEvent::StreamOptions {
            stream_options: StreamOptions { allow_cancel: true },
        })
        .await;
        if let Some(item) = widget {
            self.item_changed(item).await;
        }
        let (run, after, subscription) = match started {
            Ok(started) => started,
            Err(err) => {
                let message = match &err {
                    RunError::Conflict(_) => {
                        "the assistant is still answering in this thread".to_string()
                    }
                    other => other.to_string(),
                };
                self.send(StreamEvent::Error {
                    code: "custom".into(),
                    message: Some(message),
                    allow_retry: true,
                })
                .await;
                return;
            }
        };
        self.follow(run, after, subscription, first_message).await;
    }

    /// Saves a new thread with its first message and binds that message's files.
    async fn save_thread(&self, new: NewThread) -> ChatResult<()> {
        self.services
            .store
            .insert_chat_thread(&self.thread, Some(&attachments::without_urls(&new.item)))
            .await?;
        bind_files(self.services, &self.thread.id, &new.files).await
    }

    /// Starts or resumes the run; with the widget item to update once it took an action.
    async fn start(
        &self,
        engine: Engine,
    ) -> (
        Result<(Run, i64, runs::live::Subscription), RunError>,
        Option<ThreadItem>,
    ) {
        match engine {
            Engine::Start {
                text,
                files,
                history,
                model,
            } => (
                runs::start_detached(
                    self.services,
                    self.actor,
                    StartRun {
                        workflow_id: self.thread.workflow_id.unwrap_or_default(),
                        version_id: self.session.as_ref().and_then(|s| s.version_id),
                        state: self
                            .session
                            .as_ref()
                            .and_then(|s| s.state_variables.clone()),
                        input: if files.is_empty() {
                            json!(text)
                        } else {
                            json!({"input_as_text": text, "attachments": files})
                        },
                        thread_id: Some(self.thread.id.clone()),
                        model,
                        history,
                        // The thread is the principal's, and its workflow was served to
                        // them when it began.
                        served: true,
                    },
                )
                .await
                .map(|(run, subscription)| (run, 0, subscription)),
                None,
            ),
            Engine::Resume {
                run_id,
                answer,
                updated,
            } => (
                runs::resume_detached(self.services, self.actor, &run_id, answer).await,
                updated,
            ),
        }
    }

    /// Follows the run's events to its stop (`runs::follow`), mapping each onto the
    /// stream; a client that goes away cancels the turn.
    async fn follow(
        &mut self,
        run: Run,
        after: i64,
        subscription: runs::live::Subscription,
        first_message: Option<String>,
    ) {
        let mut follower = Follower::new(self.services, &run.id, after, Some(subscription));
        loop {
            if self.gone {
                self.client_left(&run.id).await;
                return;
            }
            let next = tokio::select! {
                next = follower.next() => next,
                () = self.tx.closed() => {
                    self.gone = true;
                    continue;
                }
            };
            match next {
                Some(event) => self.handle(&event).await,
                None => break,
            }
        }
        self.close_open(None).await;
        self.close_work().await;
        if let Some(text) = first_message {
            self.name_thread(&text).await;
        }
    }

    /// Maps one engine event.
    async fn handle(&mut self, event: &Event) {
        self.stopped = event.kind.stops();
        let node = event.node.clone();
        let text = |key: &str| {
            event
                .data
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match event.kind {
            EventKind::AssistantDelta => {
                let delta = text("delta");
                if self.open.as_ref().is_none_or(|o| o.node != node) {
                    self.close_open(None).await;
                    self.close_work().await;
                    let item = self.item(ItemBody::AssistantMessage {
                        content: Vec::new(),
                    });
                    self.send(StreamEvent::ItemAdded { item: item.clone() })
                        .await;
                    self.send(StreamEvent::ItemUpdated {
                        item_id: item.id.clone(),
                        update: ItemUpdate::ContentPartAdded {
                            content_index: 0,
                            content: OutputText::new(""),
                        },
                    })
                    .await;
                    self.open = Some(Open {
                        node: node.clone(),
                        item,
                        text: String::new(),
                    });
                }
                let open = self.open.as_mut().expect("opened above");
                open.text.push_str(&delta);
                let item_id = open.item.id.clone();
                self.send(StreamEvent::ItemUpdated {
                    item_id,
                    update: ItemUpdate::TextDelta {
                        content_index: 0,
                        delta,
                    },
                })
                .await;
            }
            EventKind::AssistantMessage => {
                let full = text("text");
                let annotations = annotations(&event.data["sources"]);
                if self.open.as_ref().is_some_and(|o| o.node == node) {
                    self.close_open_cited(Some(full), annotations).await;
                } else {
                    self.close_open(None).await;
                    self.close_work().await;
                    let mut content = OutputText::new(full);
                    content.annotations = annotations;
                    let item = self.item(ItemBody::AssistantMessage {
                        content: vec![content],
                    });
                    self.done(item).await;
                }
            }
            EventKind::UserMessage
                if event.data.get("reply").and_then(Value::as_bool) != Some(true) =>
            {
                self.close_open(None).await;
                self.close_work().await;
                let item = self.item(ItemBody::UserMessage {
                    content: vec![UserContent::InputText { text: text("text") }],
                    attachments: Vec::new(),
                    quoted_text: None,
                    inference_options: Default::default(),
                });
                self.done(item).await;
            }
            EventKind::NodeStarted => {
                let title = text("title");
                if !title.is_empty() {
                    self.send(StreamEvent::ProgressUpdate {
                        text: title,
                        icon: None,
                    })
                    .await;
                }
            }
            EventKind::ToolCallStarted => {
                self.close_open(None).await;
                let name = text("name");
                let task = Task {
                    kind: "custom".into(),
                    title: Some(format!("Calling {name}")),
                    icon: Some("bolt".into()),
                    content: Some(event.data["arguments"].to_string()),
                    status_indicator: "loading".into(),
                };
                let index = self.add_task("custom", task).await;
                if let Some(work) = self.work.as_mut() {
                    work.calls.push((text("call_id"), index));
                }
            }
            EventKind::ToolCallFinished => {
                let call_id = text("call_id");
                let Some(work) = self.work.as_mut() else {
                    return;
                };
                let Some(&(_, index)) = work.calls.iter().find(|(id, _)| *id == call_id) else {
                    return;
                };
                let mut output = match &event.data["output"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if output.chars().count() > 500 {
                    output = output.chars().take(500).collect::<String>() + "…";
                }
                let task = &mut work.tasks[index];
                task.status_indicator = "complete".into();
                task.content = Some(output);
                self.task_updated(index).await;
            }
            EventKind::ReasoningDelta => {
                self.close_open(None).await;
                let delta = text("delta");
                let reasoning = self
                    .work
                    .as_ref()
                    .and_then(|w| w.tasks.iter().position(|t| t.kind == "thought"));
                match reasoning {
                    None => {
                        let task = Task {
                            kind: "thought".into(),
                            title: Some("Thinking".into()),
                            icon: None,
                            content: Some(delta),
                            status_indicator: "loading".into(),
                        };
                        self.add_task("reasoning", task).await;
                    }
                    Some(index) => {
                        let work = self.work.as_mut().expect("found above");
                        work.tasks[index]
                            .content
                            .get_or_insert_with(String::new)
                            .push_str(&delta);
                        self.task_updated(index).await;
                    }
                }
            }
            EventKind::WidgetDelta => {
                let widget = event.data["widget"].clone();
                if let Some(open) = self.widget.as_mut().filter(|w| w.node == node) {
                    let updates = chatkit::widget_updates(&open.widget, &widget);
                    open.widget = widget;
                    let item_id = open.item.id.clone();
                    for update in updates {
                        self.send(StreamEvent::ItemUpdated {
                            item_id: item_id.clone(),
                            update,
                        })
                        .await;
                    }
                } else {
                    self.close_open(None).await;
                    self.close_work().await;
                    let item = self.item(ItemBody::Widget {
                        widget: widget.clone(),
                        copy_text: None,
                    });
                    self.send(StreamEvent::ItemAdded { item: item.clone() })
                        .await;
                    self.widget = Some(OpenWidget { node, item, widget });
                }
            }
            EventKind::Widget => {
                let widget = event.data["widget"].clone();
                // The widget that filled in as it streamed ends with its final state.
                let streamed = self.widget.take_if(|w| w.node == node);
                self.close_open(None).await;
                self.close_work().await;
                let item = match streamed {
                    Some(open) => {
                        for update in chatkit::widget_updates(&open.widget, &widget) {
                            self.send(StreamEvent::ItemUpdated {
                                item_id: open.item.id.clone(),
                                update,
                            })
                            .await;
                        }
                        let mut item = open.item;
                        item.body = ItemBody::Widget {
                            widget,
                            copy_text: None,
                        };
                        item
                    }
                    None => self.item(ItemBody::Widget {
                        widget,
                        copy_text: None,
                    }),
                };
                self.done(item).await;
            }
            EventKind::RunWaiting => {
                self.close_open(None).await;
                self.close_work().await;
                match WaitKind::parse(&text("kind")) {
                    Some(WaitKind::Approval) => {
                        let node_slug = node.clone().unwrap_or_default();
                        let prompt = event
                            .data
                            .get("prompt")
                            .and_then(Value::as_str)
                            .unwrap_or("Approve?");
                        let widget = json!({"type": "Card", "children": [
                            {"type": "Text", "value": prompt},
                            {"type": "Row", "gap": 2, "children": [
                                {"type": "Button", "label": "Approve", "style": "primary",
                                 "onClickAction": {"type": "approval.approve", "payload": {"node": node_slug}, "handler": "server", "loadingBehavior": "auto", "streaming": true}},
                                {"type": "Button", "label": "Reject", "style": "secondary",
                                 "onClickAction": {"type": "approval.reject", "payload": {"node": node_slug}, "handler": "server", "loadingBehavior": "auto", "streaming": true}}
                            ]}
                        ]});
                        let item = self.item(ItemBody::Widget {
                            widget,
                            copy_text: Some(prompt.to_string()),
                        });
                        self.done(item).await;
                    }
                    Some(WaitKind::StructuredInput) => {
                        let inputs = event.data["data"]["inputs"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                        let item = self.item(ItemBody::StructuredInput {
                            status: "pending".into(),
                            inputs,
                        });
                        self.done(item).await;
                    }
                    Some(WaitKind::ClientToolOutput) => {
                        let call = &event.data["data"];
                        let item = self.item(ItemBody::ClientToolCall {
                            status: ToolCallStatus::Pending,
                            call_id: call["call_id"].as_str().unwrap_or_default().to_string(),
                            name: call["name"].as_str().unwrap_or_default().to_string(),
                            arguments: match &call["arguments"] {
                                Value::Object(_) => call["arguments"].clone(),
                                _ => json!({}),
                            },
                            output: None,
                        });
                        self.done(item).await;
                    }
                    _ => {}
                }
            }
            EventKind::RunFailed => {
                self.close_open(None).await;
                self.close_work().await;
                let node = node.as_deref().unwrap_or("?");
                self.send(StreamEvent::Error {
                    code: "custom".into(),
                    message: Some(format!(
                        "The workflow failed at step `{node}`: {}",
                        text("message")
                    )),
                    allow_retry: true,
                })
                .await;
            }
            EventKind::RunCompleted => {
                self.close_open(None).await;
                self.close_work().await;
                let status = &event.data["thread_status"];
                let reason = status
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let new = match status.get("type").and_then(Value::as_str) {
                    Some("closed") => ThreadStatus::Closed { reason },
                    Some("locked") => ThreadStatus::Locked { reason },
                    _ => ThreadStatus::Active,
                };
                if new != self.thread.status {
                    self.save_status(new).await;
                }
            }
            _ => {}
        }
    }

    fn item(&self, body: ItemBody) -> ThreadItem {
        ThreadItem {
            id: new_id("msg"),
            thread_id: self.thread.id.clone(),
            created_at: Utc::now(),
            body,
        }
    }

    /// Persists an item and sends it done.
    async fn done(&mut self, item: ThreadItem) {
        if let Err(err) = self.services.store.insert_chat_item(&item).await {
            tracing::error!(thread_id = %self.thread.id, error = %err, "could not save a thread item");
        }
        self.send(StreamEvent::ItemDone { item }).await;
    }

    /// Closes the message being streamed, with its final text when known.
    /// Adds a task to the open `workflow` item (opening one of `kind` when none is);
    /// returns its index.
    async fn add_task(&mut self, kind: &'static str, task: Task) -> usize {
        if self.work.is_none() {
            let item = self.item(ItemBody::Workflow {
                workflow: chatkit::Workflow {
                    kind: kind.into(),
                    tasks: Vec::new(),
                    summary: None,
                    expanded: false,
                },
            });
            self.send(StreamEvent::ItemAdded { item: item.clone() })
                .await;
            self.work = Some(Work {
                item,
                kind,
                tasks: Vec::new(),
                calls: Vec::new(),
                started: std::time::Instant::now(),
            });
        }
        let work = self.work.as_mut().expect("opened above");
        work.tasks.push(task.clone());
        let (item_id, index) = (work.item.id.clone(), work.tasks.len() - 1);
        self.send(StreamEvent::ItemUpdated {
            item_id,
            update: ItemUpdate::TaskAdded {
                task_index: index,
                task,
            },
        })
        .await;
        index
    }

    /// Sends a task of the open `workflow` item as it is now.
    async fn task_updated(&mut self, index: usize) {
        let Some(work) = self.work.as_ref() else {
            return;
        };
        let (item_id, task) = (work.item.id.clone(), work.tasks[index].clone());
        self.send(StreamEvent::ItemUpdated {
            item_id,
            update: ItemUpdate::TaskUpdated {
                task_index: index,
                task,
            },
        })
        .await;
    }

    /// Saves an item shown earlier with its new look and sends it: a widget's new root,
    /// or the whole item replaced.
    async fn item_changed(&mut self, item: ThreadItem) {
        if let Err(err) = self.services.store.save_chat_item(&item).await {
            tracing::error!(thread_id = %self.thread.id, error = %err, "could not save an answered item");
        }
        match item.body {
            ItemBody::Widget { widget, .. } => {
                self.send(StreamEvent::ItemUpdated {
                    item_id: item.id,
                    update: ItemUpdate::WidgetRootUpdated { widget },
                })
                .await;
            }
            _ => self.send(StreamEvent::ItemReplaced { item }).await,
        }
    }

    /// Ends the widget being filled in, as it stands (its answer stopped short).
    async fn close_widget(&mut self) {
        if let Some(open) = self.widget.take() {
            let mut item = open.item;
            item.body = ItemBody::Widget {
                widget: open.widget,
                copy_text: None,
            };
            self.done(item).await;
        }
    }

    /// Closes the `workflow` item with how long it took (and a widget being filled in).
    async fn close_work(&mut self) {
        self.close_widget().await;
        let Some(work) = self.work.take() else {
            return;
        };
        let mut tasks = work.tasks;
        for task in &mut tasks {
            if task.status_indicator == "loading" {
                task.status_indicator = "complete".into();
            }
        }
        let mut item = work.item;
        item.body = ItemBody::Workflow {
            workflow: chatkit::Workflow {
                kind: work.kind.into(),
                tasks,
                summary: Some(json!({"duration": work.started.elapsed().as_secs()})),
                expanded: false,
            },
        };
        self.done(item).await;
    }

    async fn close_open(&mut self, full: Option<String>) {
        self.close_open_cited(full, Vec::new()).await;
    }

    /// Closes the streamed assistant message, adding its citations first.
    async fn close_open_cited(&mut self, full: Option<String>, annotations: Vec<Value>) {
        let Some(open) = self.open.take() else {
            return;
        };
        self.close_work().await;
        for (annotation_index, annotation) in annotations.iter().enumerate() {
            self.send(StreamEvent::ItemUpdated {
                item_id: open.item.id.clone(),
                update: ItemUpdate::AnnotationAdded {
                    content_index: 0,
                    annotation_index,
                    annotation: annotation.clone(),
                },
            })
            .await;
        }
        let text = full.unwrap_or(open.text);
        let mut content = OutputText::new(text);
        content.annotations = annotations;
        self.send(StreamEvent::ItemUpdated {
            item_id: open.item.id.clone(),
            update: ItemUpdate::ContentPartDone {
                content_index: 0,
                content: content.clone(),
            },
        })
        .await;
        let mut item = open.item;
        item.body = ItemBody::AssistantMessage {
            content: vec![content],
        };
        self.done(item).await;
    }

    /// Saves the thread's new status onto the stored thread, so a rename made meanwhile is
    /// kept.
    async fn save_status(&mut self, status: ThreadStatus) {
        if let Ok(Some(stored)) = self.services.store.chat_thread(&self.thread.id).await {
            self.thread = stored;
        }
        self.thread.status = status;
        self.thread.updated_at = Utc::now();
        if let Err(err) = self.services.store.update_chat_thread(&self.thread).await {
            tracing::error!(thread_id = %self.thread.id, error = %err, "could not save a thread");
            return;
        }
        self.send(StreamEvent::ThreadUpdated {
            thread: self.thread.to_wire(Page::empty()),
        })
        .await;
    }

    /// Titles a new thread from its first message once the answer is out, when generated
    /// titles are on (a model call with the title prompt; the message itself when no model
    /// is set up). With them off, the thread was named at creation.
    async fn name_thread(&mut self, first_message: &str) {
        let generated = match titles::generate(self.services, Some(self.actor.id), first_message)
            .await
        {
            Ok(Ok(Some(title))) => Some(title),
            Ok(Ok(None)) => None,
            Ok(Err(err)) => {
                tracing::warn!(thread_id = %self.thread.id, error = %err, "could not title a thread");
                None
            }
            Err(err) => {
                tracing::warn!(thread_id = %self.thread.id, error = %err, "could not title a thread");
                None
            }
        };
        let Some(title) = generated.or_else(|| titles::clean(first_message)) else {
            return;
        };
        // Unless the user renamed it meanwhile.
        match self
            .services
            .store
            .title_chat_thread(&self.thread.id, &title, Utc::now())
            .await
        {
            Ok(Some(thread)) => {
                self.thread = thread;
                self.send(StreamEvent::ThreadUpdated {
                    thread: self.thread.to_wire(Page::empty()),
                })
                .await;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(thread_id = %self.thread.id, error = %err, "could not title a thread");
            }
        }
    }

    /// The client went away: keep the partial answer, tell the next turn it was
    /// cancelled, and stop the run.
    async fn client_left(&mut self, run_id: &str) {
        if let Some(open) = self.open.take()
            && !open.text.trim().is_empty()
        {
            let mut item = open.item;
            item.body = ItemBody::AssistantMessage {
                content: vec![OutputText::new(open.text)],
            };
            let _ = self.services.store.insert_chat_item(&item).await;
        }
        // So is the widget shown so far.
        if let Some(open) = self.widget.take() {
            let mut item = open.item;
            item.body = ItemBody::Widget {
                widget: open.widget,
                copy_text: None,
            };
            let _ = self.services.store.insert_chat_item(&item).await;
        }
        // Only a turn actually cut short leaves a note for the next one.
        let running = matches!(
            self.services.store.run(run_id).await,
            Ok(Some(run)) if run.status == RunStatus::Running
        );
        if running
            && runs::cancel(self.services, self.actor, run_id)
                .await
                .is_ok()
        {
            let context = self.item(ItemBody::SdkHiddenContext {
                content: CANCELLED_CONTEXT.into(),
            });
            let _ = self.services.store.insert_chat_item(&context).await;
        }
    }
}

/// ChatKit annotations for the sources an answer cites (`[n]` is the n-th source).
fn annotations(sources: &Value) -> Vec<Value> {
    sources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s.get("type").and_then(Value::as_str).is_some())
        .map(|source| json!({"type": "annotation", "source": source, "index": null}))
        .collect()
}
