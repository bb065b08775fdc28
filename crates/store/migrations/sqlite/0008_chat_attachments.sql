-- ChatKit attachments: metadata here, bytes in the blob store (a folder by default).

CREATE TABLE chat_attachments (
    id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    thread_id TEXT REFERENCES chat_threads (id) ON DELETE SET NULL,
    name TEXT NOT NULL,
    mime_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    uploaded INTEGER NOT NULL,
    token TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX chat_attachments_user_idx ON chat_attachments (user_id, created_at);
