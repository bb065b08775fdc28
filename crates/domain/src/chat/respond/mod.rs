//! One turn of a thread: the request's prelude (thread, user message), then the thread's
//! workflow run (started, or resumed where it waits) followed live, its engine events
//! becoming the turn's events ([`TurnEvent`]), and the items persisted as they are done.
//!
//! Mapping: text deltas start an `assistant_message` item that the saved message
//! finishes; a node starting is progress; a widget is a `widget` item; a client tool wait
//! is a pending `client_tool_call`; an approval wait is a widget with Approve and Reject
//! buttons (actions `approval.approve` / `approval.reject`); a questions wait is a
//! pending `structured_input` item, whose answers change it before the run goes on;
//! reasoning and tool calls are tasks of a `workflow` item; a failed run fails the turn;
//! an `end` node's status becomes the thread's status.
//!
//! A client that goes away mid-turn cancels it: the partial answer is kept, a hidden
//! context item tells the next turn not to continue it, and the run is cancelled.

use chrono::Utc;
use conversation::{
    Action, ItemBody, OutputText, Task, ThreadItem, ThreadStatus, ToolCallStatus, UserContent,
    UserMessageInput,
};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use super::{
    ChatError, ChatResult, ChatThread, PageRequest, Principal, StoredAttachment, TurnEvent,
    attachments, new_id, thread,
};
use crate::{
    Services,
    models::titles,
    runs::{
        self, Event, EventKind, Resume, Run, RunError, RunStatus, StartRun, WaitKind,
        follow::Follower,
    },
    users::User,
    workflows,
};

mod cards;
mod message;
mod stream;

use cards::*;
use message::*;
use stream::*;

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
        /// Where the run's history ends in the thread (the turn's own message); none
        /// for a new thread.
        history_before: Option<String>,
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
) -> ChatResult<mpsc::Receiver<TurnEvent>> {
    let actor = &who.user;
    let (tx, rx) = mpsc::channel(256);
    let mut prelude: Vec<TurnEvent> = Vec::new();
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
            prelude.push(TurnEvent::ThreadCreated(thread.clone()));
            prelude.push(TurnEvent::ItemDone(item.clone()));
            let engine = Engine::Start {
                text: text.clone(),
                files: refs(&files),
                history_before: None,
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
            let mut engine = match active {
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
                        // Set once the message's item exists, below.
                        history_before: None,
                        model: input.inference_options.model.clone(),
                    }
                }
            };
            let item = user_item(services, &thread.id, &input, &files, base_url).await?;
            if let Engine::Start { history_before, .. } = &mut engine {
                *history_before = Some(item.id.clone());
            }
            services
                .store
                .insert_chat_item(&attachments::without_urls(&item))
                .await?;
            prelude.push(TurnEvent::ItemDone(item));
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
                        order: conversation::Order::Desc,
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
            let text = conversation::text_of(content);
            let files = super::history::attachment_refs(attachments);
            if let Some(run) = active_run(services, &thread.id).await? {
                let _ = runs::cancel(services, actor, &run.id).await;
            }
            // The answer after that message goes (the client drops it itself).
            services
                .store
                .delete_chat_items_after(&thread.id, &item.id)
                .await?;
            services.history_cache.forget(&thread.id);
            let engine = Engine::Start {
                text,
                files,
                history_before: Some(item.id.clone()),
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
