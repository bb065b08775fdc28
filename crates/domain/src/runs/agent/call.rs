//! One model call of an agent, streamed: deltas shown live, a cancellation stopping it at
//! once, its usage on record.

use super::*;

/// How often a model call looks in the database for a cancellation made on another
/// replica (one made in this process stops it at once).
pub(super) const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// How a model call's text shows while it streams.
pub(super) enum Display<'a> {
    /// As the assistant's message (`assistant.delta`).
    Text,
    /// As a widget filling in (`widget.delta` with the whole widget so far).
    Widget(&'a mut crate::runs::widget::WidgetStream),
    /// Not at all (a structured answer for the next steps).
    Hidden,
}

/// One model call, streamed: deltas are published live, usage is recorded. A
/// cancellation drops the stream, which aborts the HTTP request, and is reported as
/// [`LlmError::Cancelled`].
pub(super) async fn call_model(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    provider: &ProviderCredentials,
    request: &ChatRequest,
    mut display: Display<'_>,
) -> Result<Completion, LlmError> {
    let cancelled = || LlmError::Cancelled;
    let mut stream = ctx.services.llm.stream(provider, request).await?;
    let mut signal = log.live.map(|l| l.cancelled());
    let mut check =
        tokio::time::interval_at(tokio::time::Instant::now() + CANCEL_CHECK, CANCEL_CHECK);
    let completion = loop {
        tokio::select! {
            event = stream.next() => match event {
                None => return Err(LlmError::MalformedStream("the stream ended without a final response".into())),
                Some(Err(err)) => return Err(err),
                Some(Ok(StreamEvent::Completed(done))) => break done,
                Some(Ok(StreamEvent::TextDelta(delta))) => match &mut display {
                    Display::Text => {
                        log.ephemeral(EventKind::AssistantDelta, &node.slug, json!({"delta": delta}));
                    }
                    Display::Widget(stream) => {
                        if let Some(widget) = stream.push(&delta) {
                            log.ephemeral(EventKind::WidgetDelta, &node.slug, json!({"widget": widget}));
                        }
                    }
                    Display::Hidden => {}
                },
                Some(Ok(StreamEvent::ReasoningDelta(delta))) => {
                    log.ephemeral(EventKind::ReasoningDelta, &node.slug, json!({"delta": delta}));
                }
                Some(Ok(StreamEvent::ToolCallStarted { index, id, name })) => {
                    log.ephemeral(EventKind::ToolCallDelta, &node.slug, json!({"index": index, "call_id": id, "name": name}));
                }
                Some(Ok(StreamEvent::ToolCallArgumentsDelta { index, delta })) => {
                    log.ephemeral(EventKind::ToolCallDelta, &node.slug, json!({"index": index, "delta": delta}));
                }
            },
            () = until_cancelled(&mut signal) => return Err(cancelled()),
            _ = check.tick() => {
                if let Ok(Some(stored)) = ctx.services.store.run(&log.run.id).await
                    && stored.status == RunStatus::Cancelled
                {
                    return Err(cancelled());
                }
            }
        }
    };
    record_usage(ctx, log, node, model, &completion).await;
    Ok(completion)
}

pub(super) async fn until_cancelled(signal: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = signal
        && rx.wait_for(|v| *v).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Records a call's usage and cost; a failure to record is logged, not the step's failure
/// (the answer was already paid for).
pub(super) async fn record_usage(
    ctx: &RunCtx<'_>,
    log: &mut Log<'_>,
    node: &Node,
    model: &Model,
    completion: &Completion,
) {
    let mut record = usage::priced(
        completion,
        &model.name,
        Some(model.provider_id),
        Some(model.pricing),
        Purpose::Agent,
    );
    record.user_id = Some(ctx.user.id);
    record.workflow_id = Some(ctx.workflow.id);
    record.run_id = Some(log.run.id.clone());
    let cost = record.cost_usd;
    log.record_usage(ctx.services, record).await;
    log.event(EventKind::Usage, Some(&node.slug), json!({
        "model": model.name, "input_tokens": completion.usage.input_tokens, "output_tokens": completion.usage.output_tokens,
        "cached_input_tokens": completion.usage.cached_input_tokens, "reasoning_tokens": completion.usage.reasoning_tokens, "cost_usd": cost,
    }));
}
