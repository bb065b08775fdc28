//! Defined tools: function tools administrators define once (a name, a description, the
//! JSON Schema of their arguments) and agents use by name. An `http` tool is an HTTP call
//! made by the server (URL template, method, headers with encrypted secrets, time and size
//! limits, the part of the answer the model gets); a `client` tool is run by the ChatKit
//! client; a `workflow` tool runs a published workflow; a `knowledge` tool searches
//! knowledge bases. Outbound HTTP goes through [`OutboundHttp`], which refuses private
//! addresses unless the tool allows them.

use std::{collections::BTreeMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::{
    Services,
    crypto::hint,
    error::{DomainError, ErrorKind},
    store::StoreError,
    users::User,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    Http,
    Client,
    Workflow,
    Knowledge,
}

impl ToolKind {
    pub const ALL: &'static [ToolKind] = &[
        ToolKind::Http,
        ToolKind::Client,
        ToolKind::Workflow,
        ToolKind::Knowledge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Http => "http",
            ToolKind::Client => "client",
            ToolKind::Workflow => "workflow",
            ToolKind::Knowledge => "knowledge",
        }
    }

    pub fn parse(text: &str) -> Option<ToolKind> {
        ToolKind::ALL.iter().copied().find(|k| k.as_str() == text)
    }
}

/// A tool as stored. `config` holds no secrets; secret header values are sealed apart.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub id: i64,
    pub name: String,
    pub kind: ToolKind,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// Per kind: `http` {url, method, headers, timeout_secs, max_response_bytes,
    /// response_path, allow_private_network}; `workflow` {workflow_id | workflow_slug};
    /// `knowledge` {vector_store_slugs, top_k}.
    pub config: Value,
    pub secret_headers_encrypted: Option<String>,
    pub secret_header_names: Vec<String>,
    /// `never` (default) or `always`: whether a person approves each call.
    pub approval: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("tool {0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("a tool named `{0}` exists already")]
    Conflict(String),
    #[error("a stored secret of this tool cannot be decrypted with the current key")]
    Undecryptable,
    #[error("only administrators manage tools")]
    Forbidden,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl DomainError for ToolError {
    fn kind(&self) -> ErrorKind {
        match self {
            ToolError::NotFound(_) => ErrorKind::NotFound,
            ToolError::Invalid(_) => ErrorKind::Invalid,
            ToolError::Conflict(_) => ErrorKind::Conflict,
            ToolError::Forbidden => ErrorKind::Forbidden,
            ToolError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            ToolError::Undecryptable | ToolError::Store(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ToolError::NotFound(_) => "tool_not_found",
            ToolError::Invalid(_) => "invalid_field",
            ToolError::Conflict(_) => "tool_exists",
            ToolError::Forbidden => "forbidden",
            ToolError::Undecryptable => "secret_undecryptable",
            ToolError::Store(StoreError::Unavailable(_)) => "database_unavailable",
            ToolError::Store(_) => "internal_error",
        }
    }
}

pub type ToolResult<T> = Result<T, ToolError>;

/// What an administrator sets; `None` keeps a field (or takes the default).
#[derive(Debug, Clone, Default)]
pub struct ToolInput {
    pub name: Option<String>,
    pub kind: Option<ToolKind>,
    pub description: Option<Option<String>>,
    pub parameters: Option<Value>,
    pub config: Option<Value>,
    /// Replaces every secret header.
    pub secret_headers: Option<BTreeMap<String, String>>,
    pub approval: Option<String>,
    pub is_active: Option<bool>,
}

fn invalid(message: impl Into<String>) -> ToolError {
    ToolError::Invalid(message.into())
}

/// The longest an HTTP tool may wait, and the most it may read.
pub const MAX_TIMEOUT_SECS: u64 = 120;
pub const MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

fn check_http(config: &Map<String, Value>, secret_names: &[String]) -> ToolResult<()> {
    let url = config
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("an http tool needs `config.url`"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.contains(' ') {
        return Err(invalid("config.url must be an http(s) URL template"));
    }
    let authority = url
        .split_once("://")
        .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
    if authority.contains('{') {
        return Err(invalid(
            "the host of config.url cannot come from the arguments; use placeholders in the path or query",
        ));
    }
    if authority.contains('@') {
        return Err(invalid(
            "config.url cannot carry credentials; use secret headers",
        ));
    }
    let method = config
        .get("method")
        .and_then(Value::as_str)
        .unwrap_or("GET");
    if !matches!(method, "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return Err(invalid(
            "config.method must be GET, POST, PUT, PATCH or DELETE",
        ));
    }
    if let Some(headers) = config.get("headers") {
        let Some(headers) = headers.as_object() else {
            return Err(invalid("config.headers must be an object of strings"));
        };
        for (name, value) in headers {
            if !header_name_ok(name) || value.as_str().is_none_or(|v| v.contains(['\r', '\n'])) {
                return Err(invalid(format!(
                    "config.headers.{name} is not a valid header"
                )));
            }
            if secret_names.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                return Err(invalid(format!(
                    "`{name}` is both a plain and a secret header"
                )));
            }
            if matches!(
                name.to_ascii_lowercase().as_str(),
                "authorization" | "cookie" | "x-api-key"
            ) {
                return Err(invalid(format!(
                    "`{name}` holds credentials: set it in `secret_headers`, where it is encrypted"
                )));
            }
        }
    }
    if let Some(timeout) = config.get("timeout_secs")
        && !timeout
            .as_u64()
            .is_some_and(|t| (1..=MAX_TIMEOUT_SECS).contains(&t))
    {
        return Err(invalid(format!(
            "config.timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    if let Some(limit) = config.get("max_response_bytes")
        && !limit
            .as_u64()
            .is_some_and(|l| (1..=MAX_RESPONSE_BYTES).contains(&l))
    {
        return Err(invalid(format!(
            "config.max_response_bytes must be between 1 and {MAX_RESPONSE_BYTES}"
        )));
    }
    if let Some(path) = config.get("response_path")
        && !path
            .as_str()
            .is_some_and(|p| p.is_empty() || p.starts_with('/'))
    {
        // A dotted path (`data.items`) is the usual slip: name its pointer.
        let pointer = path
            .as_str()
            .filter(|p| !p.trim().is_empty())
            .map(|p| {
                format!(
                    "/{}",
                    p.trim()
                        .trim_start_matches('$')
                        .trim_start_matches('.')
                        .replace('.', "/")
                )
            })
            .unwrap_or_else(|| "/data/items".into());
        return Err(invalid(format!(
            "config.response_path is a JSON pointer into the answer: write `{pointer}` (segments start with `/`, not dots)"
        )));
    }
    Ok(())
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_name(name: &str) -> ToolResult<()> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(invalid("name must be 1 to 64 letters, digits, `_` or `-`"))
    }
}

fn apply(
    services: &Services,
    base: Option<&ToolDef>,
    input: ToolInput,
    now: DateTime<Utc>,
) -> ToolResult<ToolDef> {
    let name = input
        .name
        .map(|n| n.trim().to_string())
        .or(base.map(|b| b.name.clone()))
        .ok_or_else(|| invalid("name is required"))?;
    check_name(&name)?;
    let kind = input
        .kind
        .or(base.map(|b| b.kind))
        .ok_or_else(|| invalid("kind is required: http, client, workflow or knowledge"))?;
    let parameters = input
        .parameters
        .or(base.map(|b| b.parameters.clone()))
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    if parameters.get("type").and_then(Value::as_str) != Some("object") {
        return Err(invalid(
            "parameters must be a JSON Schema of `type: object`",
        ));
    }
    if jsonschema::validator_for(&parameters).is_err() {
        return Err(invalid("parameters is not a valid JSON Schema"));
    }
    let config = input
        .config
        .or(base.map(|b| b.config.clone()))
        .unwrap_or_else(|| json!({}));
    let Some(config_map) = config.as_object() else {
        return Err(invalid("config must be an object"));
    };
    let (secret_headers_encrypted, secret_header_names) = match input.secret_headers {
        Some(headers) => {
            for (name, value) in &headers {
                if !header_name_ok(name) || value.contains(['\r', '\n']) {
                    return Err(invalid(format!("secret header `{name}` is not valid")));
                }
            }
            if headers.is_empty() {
                (None, Vec::new())
            } else {
                let json = serde_json::to_string(&headers).expect("a string map serialises");
                (
                    Some(services.secret_box.encrypt(&json)),
                    headers.keys().cloned().collect(),
                )
            }
        }
        None => (
            base.and_then(|b| b.secret_headers_encrypted.clone()),
            base.map(|b| b.secret_header_names.clone())
                .unwrap_or_default(),
        ),
    };
    match kind {
        ToolKind::Http => check_http(config_map, &secret_header_names)?,
        ToolKind::Client => {}
        ToolKind::Workflow => {
            let has = config_map
                .get("workflow_id")
                .and_then(Value::as_i64)
                .is_some()
                || config_map
                    .get("workflow_slug")
                    .and_then(Value::as_str)
                    .is_some();
            if !has {
                return Err(invalid(
                    "a workflow tool needs `config.workflow_id` or `config.workflow_slug`",
                ));
            }
        }
        ToolKind::Knowledge => {
            let has = config_map
                .get("vector_store_slugs")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
                || config_map
                    .get("vector_store_slug")
                    .and_then(Value::as_str)
                    .is_some();
            if !has {
                return Err(invalid(
                    "a knowledge tool needs `config.vector_store_slug` or `config.vector_store_slugs`",
                ));
            }
        }
    }
    if kind != ToolKind::Http && !secret_header_names.is_empty() {
        return Err(invalid("only http tools have secret headers"));
    }
    let approval = input
        .approval
        .or(base.map(|b| b.approval.clone()))
        .unwrap_or_else(|| "never".into());
    if !matches!(approval.as_str(), "never" | "always") {
        return Err(invalid("approval must be `never` or `always`"));
    }
    let description = match input.description {
        Some(d) => d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()),
        None => base.and_then(|b| b.description.clone()),
    };
    Ok(ToolDef {
        id: base.map_or(0, |b| b.id),
        name,
        kind,
        description,
        parameters,
        config,
        secret_headers_encrypted,
        secret_header_names,
        approval,
        is_active: input
            .is_active
            .or(base.map(|b| b.is_active))
            .unwrap_or(true),
        created_at: base.map_or(now, |b| b.created_at),
        updated_at: now,
    })
}

fn conflict(err: StoreError, name: &str) -> ToolError {
    match err {
        StoreError::Conflict { .. } => ToolError::Conflict(name.to_string()),
        other => other.into(),
    }
}

fn require_admin(actor: &User) -> ToolResult<()> {
    if actor.is_admin {
        Ok(())
    } else {
        Err(ToolError::Forbidden)
    }
}

/// The tools `actor` may see: every one for an administrator, the active ones for others
/// (who see them to pick them, never their configuration).
pub async fn list_tools(services: &Services, actor: &User) -> ToolResult<Vec<ToolDef>> {
    let mut tools = services.store.tools().await?;
    if !actor.is_admin {
        tools.retain(|t| t.is_active);
    }
    Ok(tools)
}

/// A tool with its configuration (administrators only).
pub async fn tool_for(services: &Services, actor: &User, id: i64) -> ToolResult<ToolDef> {
    require_admin(actor)?;
    get_tool(services, id).await
}

/// A tool, for the engine running an agent that names it.
pub async fn get_tool(services: &Services, id: i64) -> ToolResult<ToolDef> {
    services
        .store
        .tool(id)
        .await?
        .ok_or_else(|| ToolError::NotFound(id.to_string()))
}

pub async fn tool_by_name(services: &Services, name: &str) -> ToolResult<ToolDef> {
    services
        .store
        .tool_by_name(name)
        .await?
        .ok_or_else(|| ToolError::NotFound(format!("`{name}`")))
}

pub async fn create_tool(
    services: &Services,
    actor: &User,
    input: ToolInput,
) -> ToolResult<ToolDef> {
    require_admin(actor)?;
    let tool = apply(services, None, input, Utc::now())?;
    services
        .store
        .insert_tool(&tool)
        .await
        .map_err(|err| conflict(err, &tool.name))
}

pub async fn update_tool(
    services: &Services,
    actor: &User,
    id: i64,
    input: ToolInput,
) -> ToolResult<ToolDef> {
    require_admin(actor)?;
    let current = get_tool(services, id).await?;
    let tool = apply(services, Some(&current), input, Utc::now())?;
    services
        .store
        .update_tool(&tool)
        .await
        .map_err(|err| conflict(err, &tool.name))?
        .ok_or_else(|| ToolError::NotFound(id.to_string()))
}

pub async fn delete_tool(services: &Services, actor: &User, id: i64) -> ToolResult<()> {
    require_admin(actor)?;
    if services.store.delete_tool(id).await? {
        Ok(())
    } else {
        Err(ToolError::NotFound(id.to_string()))
    }
}

/// A hint for each secret header, for answers.
pub fn secret_hints(services: &Services, tool: &ToolDef) -> BTreeMap<String, String> {
    secret_headers(services, tool)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, hint(&v)))
        .collect()
}

fn secret_headers(services: &Services, tool: &ToolDef) -> ToolResult<BTreeMap<String, String>> {
    match &tool.secret_headers_encrypted {
        Some(sealed) => {
            let json = services
                .secret_box
                .decrypt(sealed)
                .map_err(|_| ToolError::Undecryptable)?;
            serde_json::from_str(&json).map_err(|_| ToolError::Undecryptable)
        }
        None => Ok(BTreeMap::new()),
    }
}

/// An outbound HTTP request of a tool.
#[derive(Clone)]
pub struct HttpCall {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// Header names whose values must not follow a redirect to another origin.
    pub secret_headers: Vec<String>,
    pub body: Option<Value>,
    pub timeout: Duration,
    pub max_bytes: usize,
    /// Loopback, private and link-local addresses are refused unless this is set.
    pub allow_private_network: bool,
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The body was longer than the limit and was cut.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OutboundError {
    #[error("the address {0} is private or local; outbound calls to it are not allowed")]
    Forbidden(String),
    #[error("the call took longer than its time limit")]
    Timeout,
    #[error("could not reach the server: {0}")]
    Unreachable(String),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("{0}")]
    Invalid(String),
}

/// Makes tools' HTTP calls: guards addresses (also after redirects, and against DNS
/// answers that change between check and connect), bounds time and size, and follows a
/// few redirects, dropping secret headers when the origin changes.
#[async_trait]
pub trait OutboundHttp: Send + Sync {
    async fn send(&self, call: HttpCall) -> Result<HttpAnswer, OutboundError>;
}

/// Fills `{name}` placeholders of a URL template from the arguments (percent-encoded);
/// returns the URL and the arguments it did not use.
fn fill_url(template: &str, arguments: &Map<String, Value>) -> (String, Map<String, Value>) {
    let mut rest = arguments.clone();
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '{' {
            out.push(c);
            continue;
        }
        let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
        let value = rest.remove(&name).map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        });
        out.push_str(&percent_encode(&value.unwrap_or_default()));
    }
    (out, rest)
}

/// Percent-encodes all but unreserved characters (RFC 3986), for URLs and form bodies.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Runs an `http` tool with the model's arguments: checks them against the tool's schema,
/// fills the URL, sends the rest as the query (GET, DELETE) or the JSON body, and returns
/// what the model gets (the `response_path` part of a JSON answer, or the text). Failures
/// come back as `{"error": …}` for the model to read.
pub async fn run_http(services: &Services, tool: &ToolDef, arguments: Value) -> Value {
    let arguments = match arguments {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => return json!({"error": "the arguments must be a JSON object"}),
    };
    if let Ok(validator) = jsonschema::validator_for(&tool.parameters)
        && let Err(problem) = validator.validate(&Value::Object(arguments.clone()))
    {
        return json!({"error": format!("the arguments do not match the tool's schema: {problem}")});
    }
    let config = &tool.config;
    let template = config["url"].as_str().unwrap_or_default();
    let (mut url, rest) = fill_url(template, &arguments);
    let method = config["method"].as_str().unwrap_or("GET").to_string();
    let body = if matches!(method.as_str(), "GET" | "DELETE") {
        if !rest.is_empty() {
            let query: Vec<String> = rest
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    format!("{}={}", percent_encode(k), percent_encode(&v))
                })
                .collect();
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query.join("&"));
        }
        None
    } else {
        Some(Value::Object(rest))
    };
    let secrets = match secret_headers(services, tool) {
        Ok(secrets) => secrets,
        Err(err) => return json!({"error": err.to_string()}),
    };
    let mut headers: Vec<(String, String)> = config["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    headers.extend(secrets.clone());
    let call = HttpCall {
        method,
        url,
        headers,
        secret_headers: secrets.into_keys().collect(),
        body,
        timeout: Duration::from_secs(config["timeout_secs"].as_u64().unwrap_or(15)),
        max_bytes: config["max_response_bytes"].as_u64().unwrap_or(256 * 1024) as usize,
        allow_private_network: config["allow_private_network"].as_bool() == Some(true),
    };
    let answer = match services.outbound.send(call).await {
        Ok(answer) => answer,
        Err(err) => return json!({"error": err.to_string()}),
    };
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let parsed = serde_json::from_slice::<Value>(&answer.body).ok();
    let mut value = match (&parsed, config["response_path"].as_str()) {
        (Some(json), Some(path)) if !path.is_empty() => {
            json.pointer(path).cloned().unwrap_or(Value::Null)
        }
        (Some(json), _) => json.clone(),
        (None, _) => Value::String(text),
    };
    if answer.truncated {
        value = json!({"partial": value, "note": "the answer was cut at the tool's size limit"});
    }
    if answer.status >= 400 {
        return json!({"error": format!("the server answered {}", answer.status), "answer": value});
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_take_encoded_arguments() {
        let arguments = json!({"city": "São Paulo/x", "units": "metric", "days": 3});
        let (url, rest) = fill_url(
            "https://api.example.com/weather/{city}?units={units}",
            arguments.as_object().unwrap(),
        );
        assert_eq!(
            url,
            "https://api.example.com/weather/S%C3%A3o%20Paulo%2Fx?units=metric"
        );
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["days"]);
    }
}
