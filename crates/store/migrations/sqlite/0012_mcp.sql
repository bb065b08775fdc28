-- MCP servers: how to reach them (secrets encrypted), OAuth state, and their cached tools.

CREATE TABLE mcp_servers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    label TEXT NOT NULL,
    transport TEXT NOT NULL,
    url TEXT,
    command TEXT,
    args TEXT NOT NULL DEFAULT '[]',
    env_encrypted TEXT,
    env_names TEXT NOT NULL DEFAULT '[]',
    headers_encrypted TEXT,
    header_names TEXT NOT NULL DEFAULT '[]',
    authorization_encrypted TEXT,
    authorization_hint TEXT,
    access_token_encrypted TEXT,
    access_token_hint TEXT,
    refresh_token_encrypted TEXT,
    token_expires_at TEXT,
    oauth_client_id TEXT,
    oauth_client_secret_encrypted TEXT,
    oauth_scope TEXT,
    oauth_metadata TEXT,
    is_active BOOLEAN NOT NULL DEFAULT 1,
    timeout_secs INTEGER NOT NULL,
    max_concurrency INTEGER NOT NULL,
    tools_cache TEXT,
    tools_cache_updated_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX mcp_servers_label_key ON mcp_servers (label);

-- Published workflows that Switchyard's own `/mcp` endpoint offers as tools.
CREATE TABLE mcp_exposed_workflows (
    workflow_id INTEGER PRIMARY KEY REFERENCES workflows (id) ON DELETE CASCADE,
    tool_name TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX mcp_exposed_workflows_tool_name_key ON mcp_exposed_workflows (tool_name);

-- Defined tools: function tools agents use by name (secret header values encrypted).
CREATE TABLE tools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT,
    parameters TEXT NOT NULL,
    config TEXT NOT NULL,
    secret_headers_encrypted TEXT,
    secret_header_names TEXT NOT NULL DEFAULT '[]',
    approval TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX tools_name_key ON tools (name);

-- OAuth authorisations in progress for MCP servers (any replica may get the callback).
CREATE TABLE mcp_oauth_sessions (
    state TEXT PRIMARY KEY,
    server_id INTEGER NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    code_verifier_encrypted TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    token_endpoint TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);
