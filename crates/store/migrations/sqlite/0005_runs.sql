-- Workflow runs: their durable state, step records and event log.

CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    workflow_id INTEGER NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version_id INTEGER NOT NULL REFERENCES workflow_versions (id) ON DELETE CASCADE,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    thread_id TEXT,
    status TEXT NOT NULL,
    current_node TEXT,
    input TEXT NOT NULL,
    state TEXT NOT NULL,
    last_output TEXT NOT NULL,
    history TEXT NOT NULL,
    scratch TEXT NOT NULL,
    wait TEXT,
    output TEXT,
    error TEXT,
    step_count INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE INDEX runs_workflow_idx ON runs (workflow_id, created_at);
CREATE INDEX runs_user_idx ON runs (user_id, created_at);
CREATE INDEX runs_status_idx ON runs (status) WHERE status IN ('running', 'waiting');

CREATE TABLE run_steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    error TEXT,
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    data TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
