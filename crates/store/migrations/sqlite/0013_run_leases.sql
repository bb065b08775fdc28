-- A run being advanced belongs to a live process: the process renews `heartbeat_at`
-- every few seconds (with the text streamed so far, `partial`), and any replica fails a
-- running run whose heartbeat (or last save) is older than the lease.

ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
ALTER TABLE runs ADD COLUMN partial TEXT;
-- The reaper reads only running runs, however many runs wait or have finished.
CREATE INDEX runs_running_idx ON runs (updated_at) WHERE status = 'running';
