-- API keys (for servers calling the API), embedded ChatKit sessions, and the end user a
-- session's threads belong to.

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at TEXT
);

CREATE TABLE chat_sessions (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL UNIQUE,
    created_by INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version_id INTEGER REFERENCES workflow_versions (id) ON DELETE CASCADE,
    end_user TEXT NOT NULL,
    state_variables TEXT,
    max_requests_per_minute INTEGER,
    expires_at TEXT NOT NULL,
    cancelled_at TEXT,
    created_at TEXT NOT NULL
);

ALTER TABLE chat_threads ADD COLUMN end_user TEXT;
CREATE INDEX chat_threads_end_user_idx ON chat_threads (user_id, end_user, created_at);
