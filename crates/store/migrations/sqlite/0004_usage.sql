-- One row per model call: tokens and cost, for usage reports.

CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    workflow_id INTEGER REFERENCES workflows (id) ON DELETE SET NULL,
    run_id TEXT,
    provider_id INTEGER REFERENCES model_providers (id) ON DELETE SET NULL,
    model TEXT NOT NULL,
    purpose TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL
);
CREATE INDEX usage_records_at_idx ON usage_records (at);
CREATE INDEX usage_records_run_idx ON usage_records (run_id) WHERE run_id IS NOT NULL;
