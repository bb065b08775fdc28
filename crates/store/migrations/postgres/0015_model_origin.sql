-- Where a model of the registry came from: `added` by an administrator, `imported` from
-- its provider's list, or `seen` (an agent named it and the open registry sent it to the
-- default provider; it has no prices until an administrator gives it some).
ALTER TABLE models ADD COLUMN origin VARCHAR(16) NOT NULL DEFAULT 'added';
