-- Workflows, their versions (one JSON graph per version) and shares.

CREATE TABLE workflows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    description TEXT,
    owner_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    is_chatkit_default BOOLEAN NOT NULL DEFAULT 0,
    follow_production BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX workflows_slug_key ON workflows (slug);
CREATE INDEX workflows_owner_idx ON workflows (owner_id);
-- At most one ChatKit default.
CREATE UNIQUE INDEX workflows_one_chatkit_default ON workflows (is_chatkit_default) WHERE is_chatkit_default;

CREATE TABLE workflow_versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    name TEXT,
    graph TEXT NOT NULL,
    revision INTEGER NOT NULL DEFAULT 1,
    is_production BOOLEAN NOT NULL DEFAULT 0,
    published_at TEXT,
    published_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL,
    updated_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX workflow_versions_number_key ON workflow_versions (workflow_id, number);
-- At most one production version per workflow.
CREATE UNIQUE INDEX workflow_versions_one_production ON workflow_versions (workflow_id) WHERE is_production;

CREATE TABLE workflow_shares (
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (workflow_id, user_id)
);
CREATE INDEX workflow_shares_user_idx ON workflow_shares (user_id);
