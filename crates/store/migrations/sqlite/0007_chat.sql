-- ChatKit conversations: threads, their items (stored whole, as the protocol's JSON) and feedback.

CREATE TABLE chat_threads (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workflow_id INTEGER REFERENCES workflows (id) ON DELETE SET NULL,
    title TEXT,
    status TEXT NOT NULL,
    allowed_image_domains TEXT,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX chat_threads_user_idx ON chat_threads (user_id, created_at, id);

CREATE TABLE chat_items (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES chat_threads (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (thread_id, seq)
);

CREATE TABLE chat_feedback (
    item_id TEXT NOT NULL REFERENCES chat_items (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    thread_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (item_id, user_id)
);
CREATE INDEX chat_feedback_thread_idx ON chat_feedback (thread_id);
