-- Relay keys (DESIGN.md §8): a third key kind, per project rather than per environment. A relay
-- key reads every environment's bundle and the hashes of the project's active SDK keys, never an
-- SDK key itself. Only its SHA-256 is stored; the secret is shown once.
CREATE TABLE relay_keys (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key_hash    BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX relay_keys_project ON relay_keys (project_id);
