//! OAuth 2.1 for MCP servers that need it: discovery (protected resource metadata, then
//! the authorization server's metadata), dynamic client registration when no client id is
//! set, PKCE S256, the callback, and refreshing tokens before they expire. The flow's
//! state is in the database, so the callback may reach any replica.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::{
    Services,
    auth::Principal,
    crypto::hint,
    mcp::{self, McpConnection, McpError, McpFailure, McpResult, McpServer, McpTransport},
    tools::percent_encode,
};

/// How long an authorisation may take.
const FLOW_MINUTES: i64 = 10;
/// Tokens this close to expiring are refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;

/// An authorisation in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthSession {
    pub state: String,
    pub server_id: i64,
    pub code_verifier_encrypted: String,
    pub redirect_uri: String,
    pub token_endpoint: String,
    /// `pending`, `done` or `failed`.
    pub status: String,
    pub error: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// Where the administrator's browser goes next.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthStart {
    pub authorization_url: String,
    pub state: String,
    pub expires_in: i64,
}

fn random(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).expect("the system random generator failed");
    URL_SAFE_NO_PAD.encode(buffer)
}

fn challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

fn failed(err: McpFailure) -> McpError {
    McpError::Invalid(format!("OAuth: {err}"))
}

/// `scheme://host[:port]` and the path of a URL.
fn split(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let path = path
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .trim_end_matches('/');
    (format!("{scheme}://{authority}"), path.to_string())
}

/// The authorization server's metadata for the MCP server at `url`: from its protected
/// resource metadata (RFC 9728) when it publishes some, else its own origin's (RFC 8414,
/// then OpenID discovery).
async fn discover(services: &Services, url: &str) -> McpResult<Value> {
    let (origin, path) = split(url);
    let mut issuer = origin.clone();
    for candidate in [
        format!("{origin}/.well-known/oauth-protected-resource{path}"),
        format!("{origin}/.well-known/oauth-protected-resource"),
    ] {
        if let Ok(resource) = services.mcp.fetch_json(&candidate).await
            && let Some(found) = resource["authorization_servers"][0].as_str()
        {
            issuer = found.trim_end_matches('/').to_string();
            break;
        }
    }
    let (issuer_origin, issuer_path) = split(&issuer);
    let mut last = None;
    for candidate in [
        format!("{issuer_origin}/.well-known/oauth-authorization-server{issuer_path}"),
        format!("{issuer_origin}/.well-known/openid-configuration{issuer_path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ] {
        match services.mcp.fetch_json(&candidate).await {
            Ok(metadata)
                if metadata["authorization_endpoint"].is_string()
                    && metadata["token_endpoint"].is_string() =>
            {
                if let Some(methods) = metadata["code_challenge_methods_supported"].as_array()
                    && !methods.iter().any(|m| m == "S256")
                {
                    return Err(McpError::Invalid(
                        "the authorization server does not offer PKCE with S256".into(),
                    ));
                }
                return Ok(metadata);
            }
            Ok(_) => {}
            Err(err) => last = Some(err),
        }
    }
    Err(McpError::Invalid(format!(
        "could not find the OAuth authorization server of {url}{}",
        last.map(|e| format!(" ({e})")).unwrap_or_default()
    )))
}

/// Starts authorising `server_id`: registers a client when none is set, keeps the PKCE
/// verifier, and returns the URL to open in the administrator's browser.
pub async fn start(
    services: &Services,
    actor: &Principal,
    server_id: i64,
    redirect_uri: &str,
    scope: Option<String>,
) -> McpResult<OAuthStart> {
    actor.admin()?;
    let mut server = mcp::server(services, server_id).await?;
    if server.transport == McpTransport::Stdio {
        return Err(McpError::Invalid(
            "stdio servers do not use OAuth; give them credentials in `env`".into(),
        ));
    }
    if !(redirect_uri.starts_with("http://") || redirect_uri.starts_with("https://")) {
        return Err(McpError::Invalid(
            "redirect_uri must be an http(s) URL".into(),
        ));
    }
    let url = server.url.clone().unwrap_or_default();
    let metadata = discover(services, &url).await?;
    let scope = scope.or(server.oauth_scope.clone()).or_else(|| {
        metadata["scopes_supported"].as_array().map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
    });
    let client_id = match server.oauth_client_id.clone() {
        Some(id) => id,
        None => {
            let endpoint = metadata["registration_endpoint"].as_str().ok_or_else(|| {
                McpError::Invalid(
                    "the authorization server offers no dynamic registration; set oauth_client_id"
                        .into(),
                )
            })?;
            let registered = services
                .mcp
                .post_json(
                    endpoint,
                    &json!({
                        "client_name": "Switchyard",
                        "redirect_uris": [redirect_uri],
                        "grant_types": ["authorization_code", "refresh_token"],
                        "response_types": ["code"],
                        "token_endpoint_auth_method": "none",
                    }),
                )
                .await
                .map_err(failed)?;
            let id = registered["client_id"]
                .as_str()
                .ok_or_else(|| McpError::Invalid("the registration returned no client_id".into()))?
                .to_string();
            server.oauth_client_id = Some(id.clone());
            if let Some(secret) = registered["client_secret"].as_str() {
                server.oauth_client_secret_encrypted = Some(services.secret_box.encrypt(secret));
            }
            id
        }
    };
    server.oauth_metadata = Some(metadata.clone());
    server.oauth_scope = scope.clone().filter(|s| !s.is_empty());
    let server = services
        .store
        .update_mcp_server(&server)
        .await?
        .ok_or(McpError::NotFound(server_id))?;
    let verifier = random(48);
    let state = random(24);
    let now = Utc::now();
    let token_endpoint = metadata["token_endpoint"].as_str().unwrap_or_default();
    services
        .store
        .insert_oauth_session(&OAuthSession {
            state: state.clone(),
            server_id: server.id,
            code_verifier_encrypted: services.secret_box.encrypt(&verifier),
            redirect_uri: redirect_uri.to_string(),
            token_endpoint: token_endpoint.to_string(),
            status: "pending".into(),
            error: None,
            expires_at: now + Duration::minutes(FLOW_MINUTES),
            created_at: now,
        })
        .await?;
    let mut query = vec![
        ("response_type", "code".to_string()),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri.to_string()),
        ("code_challenge", challenge(&verifier)),
        ("code_challenge_method", "S256".into()),
        ("state", state.clone()),
        ("resource", url),
    ];
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        query.push(("scope", scope));
    }
    let endpoint = metadata["authorization_endpoint"]
        .as_str()
        .unwrap_or_default();
    let separator = if endpoint.contains('?') { '&' } else { '?' };
    let query: Vec<String> = query
        .into_iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(&v)))
        .collect();
    Ok(OAuthStart {
        authorization_url: format!("{endpoint}{separator}{}", query.join("&")),
        state,
        expires_in: FLOW_MINUTES * 60,
    })
}

/// Stores a token answer's tokens on the server.
fn keep_tokens(services: &Services, server: &mut McpServer, answer: &Value) -> McpResult<()> {
    let access = answer["access_token"]
        .as_str()
        .ok_or_else(|| McpError::Invalid("the token answer has no access_token".into()))?;
    server.access_token_encrypted = Some(services.secret_box.encrypt(access));
    server.access_token_hint = Some(hint(access));
    if let Some(refresh) = answer["refresh_token"].as_str() {
        server.refresh_token_encrypted = Some(services.secret_box.encrypt(refresh));
    }
    server.token_expires_at = answer["expires_in"]
        .as_i64()
        .map(|secs| Utc::now() + Duration::seconds(secs));
    server.updated_at = Utc::now();
    Ok(())
}

fn client_auth(
    services: &Services,
    server: &McpServer,
    form: &mut Vec<(String, String)>,
) -> McpResult<()> {
    if let Some(id) = &server.oauth_client_id {
        form.push(("client_id".into(), id.clone()));
    }
    if let Some(sealed) = &server.oauth_client_secret_encrypted {
        let secret = services
            .secret_box
            .decrypt(sealed)
            .map_err(|_| McpError::Undecryptable)?;
        form.push(("client_secret".into(), secret));
    }
    Ok(())
}

/// The authorization server sent the browser back: exchanges the code for tokens.
/// Returns the server's id; a refusal, an unknown or used state, or a failed exchange is
/// an error (and the flow is marked failed).
pub async fn callback(
    services: &Services,
    state: &str,
    code: Option<&str>,
    error: Option<&str>,
) -> McpResult<i64> {
    let session = services
        .store
        .oauth_session(state)
        .await?
        .filter(|s| s.status == "pending" && s.expires_at > Utc::now())
        .ok_or_else(|| {
            McpError::Invalid(
                "this authorisation is unknown, finished or expired; start again".into(),
            )
        })?;
    let outcome = exchange(services, &session, code, error).await;
    let (status, message) = match &outcome {
        Ok(_) => ("done", None),
        Err(err) => ("failed", Some(err.to_string())),
    };
    services
        .store
        .finish_oauth_session(state, status, message.as_deref())
        .await?;
    outcome
}

async fn exchange(
    services: &Services,
    session: &OAuthSession,
    code: Option<&str>,
    error: Option<&str>,
) -> McpResult<i64> {
    if let Some(error) = error {
        return Err(McpError::Invalid(format!(
            "the authorization server said: {error}"
        )));
    }
    let code = code.ok_or_else(|| McpError::Invalid("the callback carries no code".into()))?;
    let mut server = mcp::server(services, session.server_id).await?;
    let verifier = services
        .secret_box
        .decrypt(&session.code_verifier_encrypted)
        .map_err(|_| McpError::Undecryptable)?;
    let mut form = vec![
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), code.to_string()),
        ("redirect_uri".into(), session.redirect_uri.clone()),
        ("code_verifier".into(), verifier),
    ];
    if let Some(url) = &server.url {
        form.push(("resource".into(), url.clone()));
    }
    client_auth(services, &server, &mut form)?;
    let answer = services
        .mcp
        .post_form(&session.token_endpoint, &form)
        .await
        .map_err(failed)?;
    keep_tokens(services, &mut server, &answer)?;
    if !services.store.set_mcp_tokens(&server, None).await? {
        return Err(McpError::NotFound(server.id));
    }
    Ok(server.id)
}

/// How an authorisation an administrator started stands.
pub async fn session(
    services: &Services,
    actor: &Principal,
    state: &str,
) -> McpResult<OAuthSession> {
    actor.admin()?;
    services
        .store
        .oauth_session(state)
        .await?
        .ok_or_else(|| McpError::Invalid("no such authorisation".into()))
}

fn due(server: &McpServer) -> bool {
    server.refresh_token_encrypted.is_some()
        && server
            .token_expires_at
            .is_some_and(|at| at - Utc::now() < Duration::seconds(REFRESH_MARGIN_SECS))
}

/// The server with a usable access token: one about to expire is refreshed first (a
/// failed refresh is logged, and the old token tried). This process refreshes one token
/// at a time and reads the server again first, so concurrent calls refresh once; another
/// replica's refresh is detected when saving (the stored refresh token changed), and its
/// tokens are used.
pub async fn fresh(services: &Services, server: McpServer) -> McpResult<McpServer> {
    if !due(&server) {
        return Ok(server);
    }
    let _one = services.mcp_refresh.lock().await;
    let server = mcp::server(services, server.id).await?;
    if !due(&server) {
        return Ok(server);
    }
    let Some(sealed) = server.refresh_token_encrypted.clone() else {
        return Ok(server);
    };
    let Some(endpoint) = server
        .oauth_metadata
        .as_ref()
        .and_then(|m| m["token_endpoint"].as_str())
        .map(str::to_string)
    else {
        return Ok(server);
    };
    let refresh = services
        .secret_box
        .decrypt(&sealed)
        .map_err(|_| McpError::Undecryptable)?;
    let mut form = vec![
        ("grant_type".to_string(), "refresh_token".to_string()),
        ("refresh_token".into(), refresh),
    ];
    if let Some(url) = &server.url {
        form.push(("resource".into(), url.clone()));
    }
    client_auth(services, &server, &mut form)?;
    match services.mcp.post_form(&endpoint, &form).await {
        Ok(answer) => {
            let mut updated = server.clone();
            keep_tokens(services, &mut updated, &answer)?;
            tracing::info!(server = %server.label, "refreshed an MCP server's OAuth token");
            if services
                .store
                .set_mcp_tokens(&updated, Some(&sealed))
                .await?
            {
                Ok(updated)
            } else {
                Ok(mcp::server(services, server.id).await?)
            }
        }
        Err(err) => {
            tracing::warn!(server = %server.label, error = %err, "could not refresh an MCP server's OAuth token");
            Ok(server)
        }
    }
}

/// [`mcp::connection`] after [`fresh`].
pub async fn connect_info(services: &Services, server: McpServer) -> McpResult<McpConnection> {
    let server = fresh(services, server).await?;
    mcp::connection(services, &server)
}
