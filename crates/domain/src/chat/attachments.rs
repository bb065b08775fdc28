//! ChatKit attachments, uploaded in two phases: `attachments.create` records the file's
//! name, size and type and answers with an upload URL; the client sends the bytes there;
//! a user message then names the attachment by id. Bytes live in the blob store.
//!
//! Invariants: an attachment belongs to the user who created it; it is used in a message
//! only once uploaded; sizes and types are checked against the settings when declared and
//! again when the bytes arrive (their size); the stored type is the checked one, without
//! parameters. Upload and content URLs carry a per-attachment random
//! token (so they work from a browser without the user's bearer token) and nothing else.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use conversation::{ItemBody, ThreadItem};

use super::{ChatError, ChatResult, Principal, new_id};
use crate::{Services, store::StoreResult};

/// Attachment limits (the `[chat]` table of the configuration).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// The largest attachment, in bytes.
    pub max_attachment_bytes: u64,
    /// Accepted MIME types; `image/*` and the like match a family.
    pub attachment_types: Vec<String>,
    /// The server's public base URL for upload and preview links
    /// (`https://chat.example.com`); by default taken from the request's `Host`.
    pub public_url: Option<String>,
}

impl Default for ChatSettings {
    fn default() -> Self {
        ChatSettings {
            max_attachment_bytes: 20 * 1024 * 1024,
            attachment_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "application/pdf",
                "text/plain",
                "text/markdown",
                "text/csv",
                "application/json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            public_url: None,
        }
    }
}

impl ChatSettings {
    pub fn accepts(&self, mime_type: &str) -> bool {
        let mime = mime_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        self.attachment_types.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            match allowed.strip_suffix("/*") {
                Some(family) => mime.split('/').next() == Some(family),
                None => allowed == mime,
            }
        })
    }
}

pub use crate::blobs::Blobs;

/// An attachment's record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAttachment {
    pub id: String,
    pub user_id: i64,
    /// The embedded session's end user who uploaded it, if any.
    pub end_user: Option<String>,
    pub thread_id: Option<String>,
    pub name: String,
    pub mime_type: String,
    pub size: i64,
    pub uploaded: bool,
    /// `sha256:<hex>` of its URL token (older rows: a random token, hashed at start).
    pub token: String,
    pub created_at: DateTime<Utc>,
}

impl StoredAttachment {
    pub fn is_image(&self) -> bool {
        self.mime_type.starts_with("image/")
    }

    /// The protocol's `Attachment`: with `upload_descriptor` until the bytes arrived,
    /// and a preview URL for images. `base` is the server's public URL, `token` the URL
    /// token ([`url_token`]).
    pub fn to_wire(&self, base: &str, token: &str) -> Value {
        let base = base.trim_end_matches('/');
        let mut wire = json!({
            "id": self.id,
            "name": self.name,
            "mime_type": self.mime_type,
            "type": if self.is_image() { "image" } else { "file" },
        });
        if let Some(thread_id) = &self.thread_id {
            wire["thread_id"] = json!(thread_id);
        }
        if !self.uploaded {
            wire["upload_descriptor"] = json!({
                "url": format!("{base}/api/chatkit/attachments/{}/upload?token={token}", self.id),
                "method": "POST",
                "headers": {},
            });
        }
        if self.is_image() {
            wire["preview_url"] = json!(preview_url(base, &self.id, token));
        }
        wire
    }
}

fn preview_url(base: &str, id: &str, token: &str) -> String {
    format!("{base}/api/chatkit/attachments/{id}/content?token={token}")
}

/// The token of an attachment's upload and content URLs: signed with a key derived from
/// the encryption key, so it is never stored (the database keeps its hash only) and any
/// replica checks it.
pub fn url_token(services: &Services, id: &str) -> String {
    services.secret_box.url_token("chatkit-attachment", id)
}

/// What the database keeps of a URL token.
pub fn token_hash(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

/// Replaces the plain-text URL tokens of attachments made before tokens were hashed by
/// their hashes (their links keep working); returns how many.
pub async fn hash_plain_tokens(services: &Services) -> StoreResult<usize> {
    let mut done = 0;
    loop {
        let plain = services.store.plain_attachment_tokens(500).await?;
        if plain.is_empty() {
            return Ok(done);
        }
        for (id, token) in &plain {
            services
                .store
                .set_attachment_token_hash(id, &token_hash(token))
                .await?;
        }
        done += plain.len();
    }
}

/// A user message's attachments as stored: without their URLs, which carry tokens.
pub fn without_urls(item: &ThreadItem) -> ThreadItem {
    let mut item = item.clone();
    if let ItemBody::UserMessage { attachments, .. } = &mut item.body {
        for attachment in attachments.iter_mut().filter_map(Value::as_object_mut) {
            attachment.remove("preview_url");
            attachment.remove("upload_descriptor");
        }
    }
    item
}

/// Gives a user message's image attachments their preview URLs again (see
/// [`without_urls`]).
pub fn with_urls(services: &Services, base: &str, item: &mut ThreadItem) {
    let base = base.trim_end_matches('/');
    if let ItemBody::UserMessage { attachments, .. } = &mut item.body {
        for attachment in attachments.iter_mut().filter_map(Value::as_object_mut) {
            let Some(id) = attachment
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                continue;
            };
            if attachment.get("type").and_then(Value::as_str) == Some("image") {
                let url = preview_url(base, &id, &url_token(services, &id));
                attachment.insert("preview_url".into(), json!(url));
            }
        }
    }
}

/// `attachments.create`: checks the declared file and records it, waiting for its bytes.
/// A MIME type without parameters, lower case: what is checked is what is stored.
fn essence(mime_type: &str) -> String {
    mime_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

pub async fn create(
    services: &Services,
    who: &Principal,
    name: &str,
    size: i64,
    mime_type: &str,
) -> ChatResult<StoredAttachment> {
    let mime_type = essence(mime_type);
    let mime_type = mime_type.as_str();
    let settings = &services.chat;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 255 {
        return Err(ChatError::Invalid(
            "a file name is 1 to 255 characters".into(),
        ));
    }
    if size < 0 {
        return Err(ChatError::Invalid(
            "`size` is the file's length in bytes: 0 or more".into(),
        ));
    }
    if size as u64 > settings.max_attachment_bytes {
        return Err(ChatError::TooLarge(format!(
            "the file is larger than the {} bytes allowed",
            settings.max_attachment_bytes
        )));
    }
    if !settings.accepts(mime_type) {
        return Err(ChatError::Invalid(format!(
            "files of type `{mime_type}` are not accepted (accepted: {})",
            settings.attachment_types.join(", ")
        )));
    }
    let id = new_id("atc");
    let attachment = StoredAttachment {
        token: token_hash(&url_token(services, &id)),
        id,
        user_id: who.user.id,
        end_user: who.end_user().map(str::to_string),
        thread_id: None,
        name: name.to_string(),
        mime_type: mime_type.to_string(),
        size,
        uploaded: false,
        created_at: Utc::now(),
    };
    services.store.insert_chat_attachment(&attachment).await?;
    Ok(attachment)
}

/// An attachment reached by its URL token (upload and content routes).
async fn by_token(services: &Services, id: &str, token: &str) -> ChatResult<StoredAttachment> {
    let attachment = services
        .store
        .chat_attachment(id)
        .await?
        .ok_or_else(|| ChatError::ItemNotFound(id.to_string()))?;
    let same = |a: &str, b: &str| {
        a.len() == b.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
    };
    // The signed token, or (for attachments made before signed tokens) the one whose hash
    // is stored.
    if !same(token, &url_token(services, id)) && !same(&token_hash(token), &attachment.token) {
        return Err(ChatError::ItemNotFound(id.to_string()));
    }
    Ok(attachment)
}

/// Stores an attachment's bytes (the upload URL's target); returns the attachment.
pub async fn upload(
    services: &Services,
    id: &str,
    token: &str,
    bytes: &[u8],
) -> ChatResult<StoredAttachment> {
    let mut attachment = check_upload(services, id, token).await?;
    if bytes.len() as u64 > services.chat.max_attachment_bytes {
        return Err(ChatError::TooLarge(format!(
            "the file is larger than the {} bytes allowed",
            services.chat.max_attachment_bytes
        )));
    }
    if bytes.len() as i64 > attachment.size {
        return Err(ChatError::TooLarge(format!(
            "the file has {} bytes, more than the {} declared in `attachments.create`",
            bytes.len(),
            attachment.size
        )));
    }
    services.blobs.put(&attachment.id, bytes).await?;
    attachment.uploaded = true;
    attachment.size = bytes.len() as i64;
    services.store.update_chat_attachment(&attachment).await?;
    Ok(attachment)
}

/// An attachment's bytes and type (the content URL's answer).
pub async fn content(services: &Services, id: &str, token: &str) -> ChatResult<(String, Vec<u8>)> {
    let attachment = by_token(services, id, token).await?;
    let bytes = services
        .blobs
        .get(&attachment.id)
        .await?
        .ok_or_else(|| ChatError::ItemNotFound(id.to_string()))?;
    Ok((attachment.mime_type, bytes))
}

/// `attachments.delete`: the owner removes an attachment and its bytes.
pub async fn delete(services: &Services, who: &Principal, id: &str) -> ChatResult<()> {
    let attachment = owned(services, who, id).await?;
    Ok(remove(services, &attachment.id).await?)
}

/// Deletes an attachment: its bytes, then its record (so a failure leaves a record to
/// retry, never bytes that nothing names).
pub(crate) async fn remove(services: &Services, id: &str) -> StoreResult<()> {
    services.blobs.delete(id).await?;
    services.store.delete_chat_attachment(id).await?;
    Ok(())
}

/// An attachment of the principal's: the same user and the same session end user
/// (administrators, not sessions, may reach anyone's).
pub async fn owned(services: &Services, who: &Principal, id: &str) -> ChatResult<StoredAttachment> {
    let mine = |a: &StoredAttachment| {
        (a.user_id == who.user.id && a.end_user.as_deref() == who.end_user()) || who.is_admin()
    };
    services
        .store
        .chat_attachment(id)
        .await?
        .filter(mine)
        .ok_or_else(|| ChatError::Invalid(format!("attachment {id} does not exist")))
}

/// Checks an upload URL before its body is read: the token, and that no bytes came yet;
/// returns the attachment (its `size` is the most its upload may bring).
pub async fn check_upload(
    services: &Services,
    id: &str,
    token: &str,
) -> ChatResult<StoredAttachment> {
    let attachment = by_token(services, id, token).await?;
    if attachment.uploaded {
        return Err(ChatError::AlreadyUploaded(id.to_string()));
    }
    Ok(attachment)
}

/// Types a browser may show inline; anything else is served as a download.
pub fn shown_inline(mime_type: &str) -> bool {
    matches!(
        mime_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// A file for a model: `data:` URL of its bytes.
pub async fn data_url(services: &Services, attachment: &StoredAttachment) -> ChatResult<String> {
    use base64::Engine as _;
    let bytes = services.blobs.get(&attachment.id).await?.ok_or_else(|| {
        ChatError::Invalid(format!("attachment {} has no content", attachment.id))
    })?;
    Ok(format!(
        "data:{};base64,{}",
        attachment.mime_type,
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_match_exactly_or_by_family() {
        let mut settings = ChatSettings::default();
        assert!(settings.accepts("image/png"));
        assert!(settings.accepts("text/plain; charset=utf-8"));
        assert!(!settings.accepts("application/x-msdownload"));
        settings.attachment_types = vec!["image/*".into()];
        assert!(settings.accepts("image/heic"));
        assert!(!settings.accepts("text/plain"));
    }
}
