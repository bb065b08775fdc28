//! `McpStore` and `ToolStore` on both backends: registered MCP servers (secrets already
//! sealed by the domain) and their cached tool lists, the workflows offered at `/mcp`, and
//! defined tools.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    mcp::{McpServer, McpTool, McpTransport},
    mcp::{oauth::OAuthSession, server::ExposedWorkflow},
    store::{McpStore, StoreError, StoreResult, ToolStore},
    tools::{ToolDef, ToolKind},
};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Db, store_error, stored_time, with_pool, with_writer};

macro_rules! server_columns {
    () => {
        "id, label, transport, url, command, args, env_encrypted, env_names, headers_encrypted, header_names,
         authorization_encrypted, authorization_hint, access_token_encrypted, access_token_hint,
         refresh_token_encrypted, token_expires_at, oauth_client_id, oauth_client_secret_encrypted,
         oauth_scope, oauth_metadata, is_active, timeout_secs, max_concurrency, tools_cache,
         tools_cache_updated_at, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ServerRow {
    id: i64,
    label: String,
    transport: String,
    url: Option<String>,
    command: Option<String>,
    args: Json<Vec<String>>,
    env_encrypted: Option<String>,
    env_names: Json<Vec<String>>,
    headers_encrypted: Option<String>,
    header_names: Json<Vec<String>>,
    authorization_encrypted: Option<String>,
    authorization_hint: Option<String>,
    access_token_encrypted: Option<String>,
    access_token_hint: Option<String>,
    refresh_token_encrypted: Option<String>,
    token_expires_at: Option<DateTime<Utc>>,
    oauth_client_id: Option<String>,
    oauth_client_secret_encrypted: Option<String>,
    oauth_scope: Option<String>,
    oauth_metadata: Option<Json<Value>>,
    is_active: bool,
    timeout_secs: i64,
    max_concurrency: i64,
    tools_cache: Option<Json<Vec<McpTool>>>,
    tools_cache_updated_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ServerRow> for McpServer {
    type Error = StoreError;

    fn try_from(row: ServerRow) -> Result<McpServer, StoreError> {
        let transport = McpTransport::parse(&row.transport).ok_or_else(|| {
            StoreError::Other(format!("unknown MCP transport `{}`", row.transport))
        })?;
        Ok(McpServer {
            id: row.id,
            label: row.label,
            transport,
            url: row.url,
            command: row.command,
            args: row.args.0,
            env_encrypted: row.env_encrypted,
            env_names: row.env_names.0,
            headers_encrypted: row.headers_encrypted,
            header_names: row.header_names.0,
            authorization_encrypted: row.authorization_encrypted,
            authorization_hint: row.authorization_hint,
            access_token_encrypted: row.access_token_encrypted,
            access_token_hint: row.access_token_hint,
            refresh_token_encrypted: row.refresh_token_encrypted,
            token_expires_at: row.token_expires_at,
            oauth_client_id: row.oauth_client_id,
            oauth_client_secret_encrypted: row.oauth_client_secret_encrypted,
            oauth_scope: row.oauth_scope,
            oauth_metadata: row.oauth_metadata.map(|j| j.0),
            is_active: row.is_active,
            timeout_secs: u64::try_from(row.timeout_secs).unwrap_or(30),
            max_concurrency: u32::try_from(row.max_concurrency).unwrap_or(1),
            tools_cache: row.tools_cache.map(|j| j.0),
            tools_cache_updated_at: row.tools_cache_updated_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    state: String,
    server_id: i64,
    code_verifier_encrypted: String,
    redirect_uri: String,
    token_endpoint: String,
    status: String,
    error: Option<String>,
    expires_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct ExposedRow {
    workflow_id: i64,
    tool_name: String,
    description: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ExposedRow> for ExposedWorkflow {
    fn from(row: ExposedRow) -> Self {
        ExposedWorkflow {
            workflow_id: row.workflow_id,
            tool_name: row.tool_name,
            description: row.description,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Binds the writable fields as `$1`…`$24`, in the order of the INSERT and UPDATE below.
macro_rules! bind_server {
    ($query:expr, $s:expr) => {
        $query
            .bind(&$s.label)
            .bind($s.transport.as_str())
            .bind(&$s.url)
            .bind(&$s.command)
            .bind(Json(&$s.args))
            .bind(&$s.env_encrypted)
            .bind(Json(&$s.env_names))
            .bind(&$s.headers_encrypted)
            .bind(Json(&$s.header_names))
            .bind(&$s.authorization_encrypted)
            .bind(&$s.authorization_hint)
            .bind(&$s.access_token_encrypted)
            .bind(&$s.access_token_hint)
            .bind(&$s.refresh_token_encrypted)
            .bind($s.token_expires_at.map(stored_time))
            .bind(&$s.oauth_client_id)
            .bind(&$s.oauth_client_secret_encrypted)
            .bind(&$s.oauth_scope)
            .bind($s.oauth_metadata.as_ref().map(Json))
            .bind($s.is_active)
            .bind(i64::try_from($s.timeout_secs).unwrap_or(i64::MAX))
            .bind(i64::from($s.max_concurrency))
            .bind(stored_time($s.updated_at))
    };
}

/// Binds a tool's writable fields as `$1`…`$10`, in the order of the INSERT and UPDATE.
macro_rules! bind_tool {
    ($query:expr, $t:expr) => {
        $query
            .bind(&$t.name)
            .bind($t.kind.as_str())
            .bind(&$t.description)
            .bind(Json(&$t.parameters))
            .bind(Json(&$t.config))
            .bind(&$t.secret_headers_encrypted)
            .bind(Json(&$t.secret_header_names))
            .bind(&$t.approval)
            .bind($t.is_active)
            .bind(stored_time($t.updated_at))
    };
}

#[async_trait]
impl McpStore for Db {
    async fn insert_mcp_server(&self, server: &McpServer) -> StoreResult<McpServer> {
        let sql = concat!(
            "INSERT INTO mcp_servers (label, transport, url, command, args, env_encrypted, env_names,
                 headers_encrypted, header_names, authorization_encrypted, authorization_hint,
                 access_token_encrypted, access_token_hint, refresh_token_encrypted, token_expires_at,
                 oauth_client_id, oauth_client_secret_encrypted, oauth_scope, oauth_metadata, is_active,
                 timeout_secs, max_concurrency, updated_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21, $22, $23, $24)
             RETURNING ",
            server_columns!()
        );
        let row: ServerRow = with_writer!(self, pool => {
            bind_server!(sqlx::query_as(sql), server)
                .bind(stored_time(server.created_at))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        row.try_into()
    }

    async fn mcp_servers(&self) -> StoreResult<Vec<McpServer>> {
        let sql = concat!(
            "SELECT ",
            server_columns!(),
            " FROM mcp_servers ORDER BY LOWER(label), id"
        );
        let rows: Vec<ServerRow> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(store_error)?;
        rows.into_iter().map(McpServer::try_from).collect()
    }

    async fn mcp_server(&self, id: i64) -> StoreResult<Option<McpServer>> {
        let sql = concat!(
            "SELECT ",
            server_columns!(),
            " FROM mcp_servers WHERE id = $1"
        );
        let row: Option<ServerRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        row.map(McpServer::try_from).transpose()
    }

    async fn update_mcp_server(&self, server: &McpServer) -> StoreResult<Option<McpServer>> {
        let sql = concat!(
            "UPDATE mcp_servers SET label = $1, transport = $2, url = $3, command = $4, args = $5,
                 env_encrypted = $6, env_names = $7, headers_encrypted = $8, header_names = $9,
                 authorization_encrypted = $10, authorization_hint = $11, access_token_encrypted = $12,
                 access_token_hint = $13, refresh_token_encrypted = $14, token_expires_at = $15,
                 oauth_client_id = $16, oauth_client_secret_encrypted = $17, oauth_scope = $18,
                 oauth_metadata = $19, is_active = $20, timeout_secs = $21, max_concurrency = $22,
                 updated_at = $23
             WHERE id = $24 RETURNING ",
            server_columns!()
        );
        let row: Option<ServerRow> = with_writer!(self, pool => {
            bind_server!(sqlx::query_as(sql), server)
                .bind(server.id)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        row.map(McpServer::try_from).transpose()
    }

    async fn delete_mcp_server(&self, id: i64) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM mcp_servers WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn expose_workflow(
        &self,
        workflow_id: i64,
        tool_name: &str,
        description: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<ExposedWorkflow> {
        let row: ExposedRow = with_writer!(self, pool => {
            sqlx::query_as(
                "INSERT INTO mcp_exposed_workflows (workflow_id, tool_name, description, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (workflow_id) DO UPDATE SET tool_name = EXCLUDED.tool_name,
                     description = EXCLUDED.description, updated_at = EXCLUDED.updated_at
                 RETURNING workflow_id, tool_name, description, created_at, updated_at",
            )
            .bind(workflow_id)
            .bind(tool_name)
            .bind(description)
            .bind(stored_time(now))
            .fetch_one(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(row.into())
    }

    async fn unexpose_workflow(&self, workflow_id: i64) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM mcp_exposed_workflows WHERE workflow_id = $1")
                .bind(workflow_id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn exposed_workflows(&self) -> StoreResult<Vec<ExposedWorkflow>> {
        let rows: Vec<ExposedRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT workflow_id, tool_name, description, created_at, updated_at
                 FROM mcp_exposed_workflows ORDER BY tool_name",
            )
            .fetch_all(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_mcp_tokens(
        &self,
        server: &McpServer,
        expected_refresh: Option<&str>,
    ) -> StoreResult<bool> {
        let sql = match expected_refresh {
            Some(_) => {
                "UPDATE mcp_servers SET access_token_encrypted = $2, access_token_hint = $3,
                     refresh_token_encrypted = $4, token_expires_at = $5, updated_at = $6
                 WHERE id = $1 AND refresh_token_encrypted = $7"
            }
            None => {
                "UPDATE mcp_servers SET access_token_encrypted = $2, access_token_hint = $3,
                     refresh_token_encrypted = $4, token_expires_at = $5, updated_at = $6
                 WHERE id = $1"
            }
        };
        let done = with_writer!(self, pool => {
            let query = sqlx::query(sql)
                .bind(server.id)
                .bind(&server.access_token_encrypted)
                .bind(&server.access_token_hint)
                .bind(&server.refresh_token_encrypted)
                .bind(server.token_expires_at.map(stored_time))
                .bind(stored_time(server.updated_at));
            let query = match expected_refresh {
                Some(expected) => query.bind(expected),
                None => query,
            };
            query.execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn insert_oauth_session(&self, session: &OAuthSession) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query(
                "INSERT INTO mcp_oauth_sessions (state, server_id, code_verifier_encrypted, redirect_uri,
                     token_endpoint, status, error, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&session.state)
            .bind(session.server_id)
            .bind(&session.code_verifier_encrypted)
            .bind(&session.redirect_uri)
            .bind(&session.token_endpoint)
            .bind(&session.status)
            .bind(&session.error)
            .bind(stored_time(session.expires_at))
            .bind(stored_time(session.created_at))
            .execute(pool)
            .await
            .map(|_| ())
        })
        .map_err(store_error)
    }

    async fn oauth_session(&self, state: &str) -> StoreResult<Option<OAuthSession>> {
        let row: Option<SessionRow> = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT state, server_id, code_verifier_encrypted, redirect_uri, token_endpoint, status, error,
                     expires_at, created_at
                 FROM mcp_oauth_sessions WHERE state = $1",
            )
            .bind(state)
            .fetch_optional(pool)
            .await
        })
        .map_err(store_error)?;
        Ok(row.map(|r| OAuthSession {
            state: r.state,
            server_id: r.server_id,
            code_verifier_encrypted: r.code_verifier_encrypted,
            redirect_uri: r.redirect_uri,
            token_endpoint: r.token_endpoint,
            status: r.status,
            error: r.error,
            expires_at: r.expires_at,
            created_at: r.created_at,
        }))
    }

    async fn finish_oauth_session(
        &self,
        state: &str,
        status: &str,
        error: Option<&str>,
    ) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query(
                "UPDATE mcp_oauth_sessions SET status = $2, error = $3 WHERE state = $1 AND status = 'pending'",
            )
            .bind(state)
            .bind(status)
            .bind(error)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }

    async fn set_mcp_tools(
        &self,
        id: i64,
        tools: &[McpTool],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        with_writer!(self, pool => {
            sqlx::query("UPDATE mcp_servers SET tools_cache = $2, tools_cache_updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(Json(tools))
                .bind(stored_time(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(())
    }
}

macro_rules! tool_columns {
    () => {
        "id, name, kind, description, parameters, config, secret_headers_encrypted, secret_header_names,
         approval, is_active, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
struct ToolRow {
    id: i64,
    name: String,
    kind: String,
    description: Option<String>,
    parameters: Json<Value>,
    config: Json<Value>,
    secret_headers_encrypted: Option<String>,
    secret_header_names: Json<Vec<String>>,
    approval: String,
    is_active: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<ToolRow> for ToolDef {
    type Error = StoreError;

    fn try_from(row: ToolRow) -> Result<ToolDef, StoreError> {
        Ok(ToolDef {
            id: row.id,
            name: row.name,
            kind: ToolKind::parse(&row.kind)
                .ok_or_else(|| StoreError::Other(format!("unknown tool kind `{}`", row.kind)))?,
            description: row.description,
            parameters: row.parameters.0,
            config: row.config.0,
            secret_headers_encrypted: row.secret_headers_encrypted,
            secret_header_names: row.secret_header_names.0,
            approval: row.approval,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[async_trait]
impl ToolStore for Db {
    async fn insert_tool(&self, tool: &ToolDef) -> StoreResult<ToolDef> {
        let sql = concat!(
            "INSERT INTO tools (name, kind, description, parameters, config, secret_headers_encrypted,
                 secret_header_names, approval, is_active, updated_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING ",
            tool_columns!()
        );
        let row: ToolRow = with_writer!(self, pool => {
            bind_tool!(sqlx::query_as(sql), tool)
                .bind(stored_time(tool.created_at))
                .fetch_one(pool)
                .await
        })
        .map_err(store_error)?;
        row.try_into()
    }

    async fn tools(&self) -> StoreResult<Vec<ToolDef>> {
        let sql = concat!("SELECT ", tool_columns!(), " FROM tools ORDER BY name");
        let rows: Vec<ToolRow> =
            with_pool!(self, pool => sqlx::query_as(sql).fetch_all(pool).await)
                .map_err(store_error)?;
        rows.into_iter().map(ToolDef::try_from).collect()
    }

    async fn tool(&self, id: i64) -> StoreResult<Option<ToolDef>> {
        let sql = concat!("SELECT ", tool_columns!(), " FROM tools WHERE id = $1");
        let row: Option<ToolRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(id).fetch_optional(pool).await)
                .map_err(store_error)?;
        row.map(ToolDef::try_from).transpose()
    }

    async fn tool_by_name(&self, name: &str) -> StoreResult<Option<ToolDef>> {
        let sql = concat!("SELECT ", tool_columns!(), " FROM tools WHERE name = $1");
        let row: Option<ToolRow> =
            with_pool!(self, pool => sqlx::query_as(sql).bind(name).fetch_optional(pool).await)
                .map_err(store_error)?;
        row.map(ToolDef::try_from).transpose()
    }

    async fn update_tool(&self, tool: &ToolDef) -> StoreResult<Option<ToolDef>> {
        let sql = concat!(
            "UPDATE tools SET name = $1, kind = $2, description = $3, parameters = $4, config = $5,
                 secret_headers_encrypted = $6, secret_header_names = $7, approval = $8, is_active = $9,
                 updated_at = $10
             WHERE id = $11 RETURNING ",
            tool_columns!()
        );
        let row: Option<ToolRow> = with_writer!(self, pool => {
            bind_tool!(sqlx::query_as(sql), tool)
                .bind(tool.id)
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        row.map(ToolDef::try_from).transpose()
    }

    async fn delete_tool(&self, id: i64) -> StoreResult<bool> {
        let done = with_writer!(self, pool => {
            sqlx::query("DELETE FROM tools WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(store_error)?;
        Ok(done > 0)
    }
}
