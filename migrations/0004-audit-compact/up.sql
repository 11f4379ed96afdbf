-- The audit log's before and after, stored compactly: `change` is a format byte then the zstd
-- frame (with a fixed dictionary) of "<before JSON>\n<after JSON>" (either side empty when absent;
-- compact JSON has no raw newline), so the after, which mostly repeats the before, costs little
-- (src/store/audit.rs). Entries
-- written before this migration keep `before`/`after` as text until the background retention
-- task compacts them; a row has either `change` or `before`/`after`.
ALTER TABLE audit_log ADD COLUMN change BLOB;
-- A flag's or segment's history is found by its key alone (filtering project and kind in the
-- few rows of that key): half the index's bytes. (Retention deletes by time with a scan once an
-- hour: no index on `at`, which would cost more than the scan.)
DROP INDEX audit_log_entity;
CREATE INDEX audit_log_entity ON audit_log (entity_key, id);
