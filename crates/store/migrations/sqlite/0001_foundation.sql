-- Users and instance settings. Never edit once landed: add a new migration instead.

-- AUTOINCREMENT: ids are never reused, so a deleted user's token can never name someone else.
CREATE TABLE users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    email TEXT NOT NULL,
    display_name TEXT,
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL DEFAULT 0,
    is_lti BOOLEAN NOT NULL DEFAULT 0,
    -- Bumped to revoke every token issued so far (tokens carry it as `ver`).
    token_version INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (email);
CREATE INDEX users_is_admin_idx ON users (is_admin) WHERE is_admin;

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
