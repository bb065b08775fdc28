-- The widget library, and at most one unfinished run per conversation thread.

CREATE TABLE widgets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    title TEXT,
    description TEXT,
    definition TEXT NOT NULL,
    data_schema TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE thread_id IS NOT NULL AND status IN ('running', 'waiting');
