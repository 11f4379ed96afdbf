-- The audit log's before and after, stored compactly: `change` is the raw DEFLATE (RFC 1951) of
-- "<before JSON>\n<after JSON>" (either side empty when absent; compact JSON has no raw newline),
-- so the after, which mostly repeats the before, costs little (src/store/audit.rs). Entries
-- written before this migration keep `before`/`after` as text until the background retention
-- task compacts them; a row has either `change` or `before`/`after`.
ALTER TABLE audit_log ADD COLUMN change BLOB;
-- Retention (--audit-retention-days) deletes by time.
CREATE INDEX audit_log_at ON audit_log (at);
