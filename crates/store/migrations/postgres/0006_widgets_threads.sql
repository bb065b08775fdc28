-- The widget library, and at most one unfinished run per conversation thread.

CREATE TABLE widgets (
    id BIGSERIAL PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT,
    description TEXT,
    definition JSONB NOT NULL,
    data_schema JSONB,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE thread_id IS NOT NULL AND status IN ('running', 'waiting');
