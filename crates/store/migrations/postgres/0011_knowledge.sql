-- Knowledge bases ("vector stores"): documents, their chunks, full-text and vector indexes,
-- and the durable ingestion jobs. Embeddings are pgvector values of the store's dimension;
-- an HNSW index per dimension (`vector_chunks_hnsw_<dims>`, a partial index on
-- `embedding::vector(<dims>)`) is created when a store first embeds at that dimension.

CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Full text folds accents ("été" finds "ete") as SQLite's FTS5 does; a generated column
-- needs an immutable function, and unaccent() alone is only stable.
CREATE FUNCTION switchyard_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$;

CREATE TABLE vector_stores (
    id BIGSERIAL PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    title TEXT,
    description TEXT,
    metadata JSONB NOT NULL,
    embedding_model_id BIGINT REFERENCES models (id) ON DELETE SET NULL,
    dimensions INTEGER,
    chunk_tokens INTEGER NOT NULL,
    chunk_overlap INTEGER NOT NULL,
    protected BOOLEAN NOT NULL,
    -- Moves with every change to the store's chunks (SQLite's in-memory bits follow it).
    vectors_version BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE vector_documents (
    id BIGSERIAL PRIMARY KEY,
    store_id BIGINT NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    doc_id TEXT NOT NULL,
    title TEXT,
    source TEXT NOT NULL,
    filename TEXT,
    mime_type TEXT,
    size BIGINT,
    raw_json JSONB,
    metadata JSONB NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    chunk_count INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (store_id, doc_id)
);

CREATE TABLE vector_chunks (
    id BIGSERIAL PRIMARY KEY,
    store_id BIGINT NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    document_id BIGINT NOT NULL REFERENCES vector_documents (id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    text TEXT NOT NULL,
    metadata JSONB NOT NULL,
    dims INTEGER,
    embedding vector,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', switchyard_unaccent(text))) STORED,
    UNIQUE (document_id, chunk_index)
);
CREATE INDEX vector_chunks_store_idx ON vector_chunks (store_id);
CREATE INDEX vector_chunks_tsv_idx ON vector_chunks USING gin (tsv);

CREATE TABLE knowledge_jobs (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    store_id BIGINT NOT NULL REFERENCES vector_stores (id) ON DELETE CASCADE,
    document_id BIGINT REFERENCES vector_documents (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    run_after TIMESTAMPTZ NOT NULL,
    lease_until TIMESTAMPTZ,
    worker TEXT,
    done INTEGER NOT NULL,
    total INTEGER NOT NULL,
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX knowledge_jobs_ready_idx ON knowledge_jobs (status, run_after);
CREATE INDEX knowledge_jobs_document_idx ON knowledge_jobs (document_id);
