-- Retention and bulk deletes pick their rows through these indexes: threads by their
-- last activity (a user's message now moves it), finished runs by when they finished,
-- uploads no thread holds by age; and a version's runs, so deleting a version (which
-- cascades to them) need not read every run.
CREATE INDEX chat_threads_updated_idx ON chat_threads (updated_at);
CREATE INDEX runs_finished_idx ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_version_idx ON runs (version_id);
CREATE INDEX chat_attachments_loose_idx ON chat_attachments (created_at) WHERE thread_id IS NULL;
