-- The end user of an embedded session an attachment belongs to.

ALTER TABLE chat_attachments ADD COLUMN end_user TEXT;
