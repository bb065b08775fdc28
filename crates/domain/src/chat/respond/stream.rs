//! A turn followed live: the run's engine events become the turn's events
//! ([`TurnEvent`]: items started, growing and done), the items saved as they are done,
//! the thread named and its status kept, and a client that goes away cancelling the turn.

use super::*;

/// A thread created by this turn, saved as its run starts.
pub(super) struct NewThread {
    pub(super) item: ThreadItem,
    pub(super) files: Vec<StoredAttachment>,
}

/// An assistant message being streamed.
pub(super) struct Open {
    node: Option<String>,
    item: ThreadItem,
    text: String,
}

pub(super) struct TurnStream<'a> {
    pub(super) services: &'a Services,
    pub(super) actor: &'a User,
    /// The embedded session, whose pinned version and state variables runs start with.
    pub(super) session: Option<crate::chat::sessions::ChatSession>,
    pub(super) thread: ChatThread,
    pub(super) tx: mpsc::Sender<TurnEvent>,
    pub(super) open: Option<Open>,
    /// The `workflow` item showing reasoning and tool calls, while it grows.
    pub(super) work: Option<Work>,
    /// The widget filling in, while it does.
    pub(super) widget: Option<OpenWidget>,
    /// The client went away.
    pub(super) gone: bool,
    /// The last event handled stopped the run (it ended or waits): nothing follows.
    pub(super) stopped: bool,
}

/// A widget item filling in as an agent's answer streams.
pub(super) struct OpenWidget {
    node: Option<String>,
    item: ThreadItem,
    widget: Value,
}

/// A `workflow` item being built: its tasks (reasoning, tool calls) as they happen.
pub(super) struct Work {
    item: ThreadItem,
    kind: &'static str,
    tasks: Vec<Task>,
    /// Tool call ids by task index.
    calls: Vec<(String, usize)>,
    started: std::time::Instant,
}

impl TurnStream<'_> {
    async fn send(&mut self, event: TurnEvent) {
        if !self.gone && self.tx.send(event).await.is_err() {
            self.gone = true;
        }
    }

    pub(super) async fn run(
        &mut self,
        prelude: Vec<TurnEvent>,
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
                    self.send(TurnEvent::Failed(None)).await;
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
        self.send(TurnEvent::Answering).await;
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
                self.send(TurnEvent::Failed(Some(message))).await;
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
                history_before,
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
                        history: Vec::new(),
                        history_before,
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
                    self.send(TurnEvent::ItemStarted(item.clone())).await;
                    self.open = Some(Open {
                        node: node.clone(),
                        item,
                        text: String::new(),
                    });
                }
                let open = self.open.as_mut().expect("opened above");
                open.text.push_str(&delta);
                let item_id = open.item.id.clone();
                self.send(TurnEvent::TextDelta { item_id, delta }).await;
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
                    self.send(TurnEvent::Progress(title)).await;
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
                    if open.widget != widget {
                        open.widget = widget.clone();
                        let item_id = open.item.id.clone();
                        self.send(TurnEvent::WidgetChanged { item_id, widget })
                            .await;
                    }
                } else {
                    self.close_open(None).await;
                    self.close_work().await;
                    let item = self.item(ItemBody::Widget {
                        widget: widget.clone(),
                        copy_text: None,
                    });
                    self.send(TurnEvent::ItemStarted(item.clone())).await;
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
                self.send(TurnEvent::Failed(Some(format!(
                    "The workflow failed at step `{node}`: {}",
                    text("message")
                ))))
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
        self.send(TurnEvent::ItemDone(item)).await;
    }

    /// Closes the message being streamed, with its final text when known.
    /// Adds a task to the open `workflow` item (opening one of `kind` when none is);
    /// returns its index.
    async fn add_task(&mut self, kind: &'static str, task: Task) -> usize {
        if self.work.is_none() {
            let item = self.item(ItemBody::Workflow {
                workflow: conversation::Workflow {
                    kind: kind.into(),
                    tasks: Vec::new(),
                    summary: None,
                    expanded: false,
                },
            });
            self.send(TurnEvent::ItemStarted(item.clone())).await;
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
        self.send(TurnEvent::TaskAdded {
            item_id,
            index,
            task,
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
        self.send(TurnEvent::TaskUpdated {
            item_id,
            index,
            task,
        })
        .await;
    }

    /// Saves an item shown earlier with its new look and sends it.
    async fn item_changed(&mut self, item: ThreadItem) {
        if let Err(err) = self.services.store.save_chat_item(&item).await {
            tracing::error!(thread_id = %self.thread.id, error = %err, "could not save an answered item");
        }
        self.send(TurnEvent::ItemChanged(item)).await;
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
            workflow: conversation::Workflow {
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
        let text = full.unwrap_or(open.text);
        let mut content = OutputText::new(text);
        content.annotations = annotations;
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
        self.send(TurnEvent::ThreadUpdated(self.thread.clone()))
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
                self.send(TurnEvent::ThreadUpdated(self.thread.clone()))
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

/// The annotations (ChatKit's shape, which items keep) for the sources an answer cites (`[n]` is the n-th source).
pub(super) fn annotations(sources: &Value) -> Vec<Value> {
    sources
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s.get("type").and_then(Value::as_str).is_some())
        .map(|source| json!({"type": "annotation", "source": source, "index": null}))
        .collect()
}
