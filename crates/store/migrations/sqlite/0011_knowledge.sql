-- Knowledge bases ("vector stores"): documents, their chunks, full-text and vector indexes,
-- and the durable ingestion jobs. A chunk's vector is kept as float32 bytes in
-- `vector_chunks.embedding`; for search, one sqlite-vec `vec0` table per dimension
-- (`vec_chunks_<dims>`, created when a store first embeds at that dimension) holds it as
-- bits for a fast first pass. Store, document, chunk and job ids are never reused
-- (`AUTOINCREMENT`): file bytes, cached bits and late job reports are keyed by them.

CREATE TABLE vector_stores (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    title TEXT,
    description TEXT,
    metadata TEXT NOT NULL,
    embedding_model_id INTEGER REFERENCES models (id) ON DELETE SET NULL,
    dimensions INTEGER,
    chunk_tokens INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    protected INTEGER NOT NULL,
    -- Moves with every change to the store's chunks (SQLite's in-memory bits follow it).
    vectors_version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE vector_documents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id INTEGER NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    title TEXT,
    source TEXT NOT NULL,
    filename TEXT,
    mime_type TEXT,
    size INTEGER,
    raw_json TEXT,
    metadata TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    chunk_count INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (store_id, doc_id)
);

CREATE TABLE vector_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    store_id INTEGER NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    document_id INTEGER NOT NULL REFERENCES vector_documents (id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    dims INTEGER,
    embedding BLOB,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX vector_chunks_store_idx ON vector_chunks (store_id);

-- Full text: an FTS5 index over the chunks' text, kept in step by triggers.
CREATE VIRTUAL TABLE vector_chunks_fts USING fts5 (
    text, content = 'vector_chunks', content_rowid = 'id', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER vector_chunks_fts_insert AFTER INSERT ON vector_chunks BEGIN
    INSERT INTO vector_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER vector_chunks_fts_delete AFTER DELETE ON vector_chunks BEGIN
    INSERT INTO vector_chunks_fts (vector_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER vector_chunks_fts_update AFTER UPDATE OF text ON vector_chunks BEGIN
    INSERT INTO vector_chunks_fts (vector_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO vector_chunks_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TABLE knowledge_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    store_id INTEGER NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    document_id INTEGER REFERENCES vector_documents (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_after TEXT NOT NULL,
    lease_until TEXT,
    worker TEXT,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX knowledge_jobs_ready_idx ON knowledge_jobs (status, run_after);
CREATE INDEX knowledge_jobs_document_idx ON knowledge_jobs (document_id);
