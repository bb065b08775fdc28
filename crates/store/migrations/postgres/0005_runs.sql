-- Workflow runs: their durable state, step records and event log.

CREATE TABLE runs (
    id VARCHAR(64) PRIMARY KEY,
    workflow_id BIGINT NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    version_id BIGINT NOT NULL REFERENCES workflow_versions (id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    thread_id VARCHAR(64),
    status VARCHAR(16) NOT NULL,
    current_node TEXT,
    input JSONB NOT NULL,
    state JSONB NOT NULL,
    last_output JSONB NOT NULL,
    history JSONB NOT NULL,
    scratch JSONB NOT NULL,
    wait JSONB,
    output JSONB,
    error JSONB,
    step_count BIGINT NOT NULL,
    event_seq BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ
);
CREATE INDEX runs_workflow_idx ON runs (workflow_id, created_at);
CREATE INDEX runs_user_idx ON runs (user_id, created_at);
CREATE INDEX runs_status_idx ON runs (status) WHERE status IN ('running', 'waiting');

CREATE TABLE run_steps (
    run_id VARCHAR(64) NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    status VARCHAR(16) NOT NULL,
    input JSONB NOT NULL,
    output JSONB NOT NULL,
    error TEXT,
    started_at TIMESTAMPTZ NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE run_events (
    run_id VARCHAR(64) NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    node TEXT,
    data JSONB NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, seq)
);
