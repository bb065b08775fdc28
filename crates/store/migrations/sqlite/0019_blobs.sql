-- Uploaded bytes kept in the database, for a deployment with no object store whose
-- replicas do not share a disk (the blob backend `database`).
CREATE TABLE blobs (
    key TEXT PRIMARY KEY,
    bytes BLOB NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
