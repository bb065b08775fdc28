//! The user's side of a turn: the message's text and files, its item in the thread, and
//! the history the run is given.

use super::*;

/// The text of a user message; an empty message is refused.
pub(super) fn input_text(input: &UserMessageInput) -> ChatResult<String> {
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
pub(super) async fn open_thread(
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
pub(super) async fn attachments_of(
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

pub(super) fn refs(files: &[StoredAttachment]) -> Vec<runs::AttachmentRef> {
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
pub(super) async fn user_item(
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
pub(super) async fn bind_files(
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
pub(super) fn new_user_item(
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
