-- Indexes for every statement on a hot path (the store's `plans.rs` lists them, and a
-- test asks each backend for their plans): list queries are built from the filters
-- actually given, and each filter has an index that leads with it.

-- Runs newest first: of a thread, of a status, or of all.
CREATE INDEX runs_thread_idx ON runs (thread_id, created_at);
CREATE INDEX runs_status_created_idx ON runs (status, created_at);
CREATE INDEX runs_created_idx ON runs (created_at);
DROP INDEX runs_status_idx;

-- A user's threads, their own or one end user's, in pages by time.
CREATE INDEX chat_threads_owner_idx ON chat_threads (user_id, end_user, created_at, id);
DROP INDEX chat_threads_user_idx;
DROP INDEX chat_threads_end_user_idx;

-- Feedback newest first; a thread's attachments (its deletion sets theirs to null).
CREATE INDEX chat_feedback_created_idx ON chat_feedback (created_at);
CREATE INDEX chat_attachments_thread_idx ON chat_attachments (thread_id);

-- A store's jobs, and the unfinished jobs a worker claims from (finished ones, the
-- many, stay out of the index).
CREATE INDEX knowledge_jobs_store_idx ON knowledge_jobs (store_id, id);
CREATE INDEX knowledge_jobs_open_idx ON knowledge_jobs (id) WHERE status IN ('queued', 'running', 'held');
DROP INDEX knowledge_jobs_ready_idx;
