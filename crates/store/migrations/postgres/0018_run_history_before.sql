-- A chat turn's run no longer copies its thread's history: it names its first item in
-- the thread, and agents read the messages before it from the thread.
ALTER TABLE runs ADD COLUMN history_before TEXT;
