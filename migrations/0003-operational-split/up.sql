-- High-churn operational data leaves the published database for the operational one
-- (<data dir>/work/flagstaff.operational.db, migrations-operational/; src/store/operational.rs):
-- writing it must never republish flagstaff.db. When this migration runs on a data dir of an
-- earlier version, the store first copies these rows into the operational database
-- (`operational::copy_from_published`), so nobody is signed out and insights keep their counts.
DROP TABLE sessions;
DROP TABLE sign_in_failures;
DROP TABLE evaluation_counts;
DROP TABLE flag_last_evaluated;
ALTER TABLE api_keys DROP COLUMN last_used_at;
ALTER TABLE admin_tokens DROP COLUMN last_used_at;

-- Which database this is and how many times it was published. The operational database notes
-- the newest publication it saw, so that a start on a restored (older, or another) flagstaff.db
-- begins with an empty operational database instead of one that belongs to another history.
CREATE TABLE publication (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    instance  TEXT NOT NULL,
    seq       INTEGER NOT NULL
) STRICT;
INSERT INTO publication (id, instance, seq) VALUES (1, lower(hex(randomblob(16))), 0);
