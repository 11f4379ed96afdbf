-- The operational database (<data dir>/work/flagstaff.operational.db): what changes all the time
-- and that a restore can do without. Never published, never in a backup; it starts empty after
-- a restore from flagstaff.db alone. Times are Unix milliseconds. Ids of the published database
-- (users, environments, keys, tokens) are referred to without foreign keys (they live in another
-- file): readers join through the attached database and ignore rows whose owner is gone.

-- Admin pages' sessions. Only a SHA-256 of the cookie's token is stored.
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL,
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins of the last few minutes. Old rows are pruned as new ones arrive.
CREATE TABLE sign_in_failures (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    email   TEXT NOT NULL COLLATE NOCASE,
    client  TEXT NOT NULL
) STRICT;
CREATE INDEX sign_in_failures_email ON sign_in_failures (email, at);
CREATE INDEX sign_in_failures_client ON sign_in_failures (client, at);

-- Evaluation counts reported by SDKs, per hour (`hour` = Unix seconds at the hour's start).
CREATE TABLE evaluation_counts (
    environment_id  INTEGER NOT NULL,
    flag_key        TEXT NOT NULL,
    variant         TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag_key, variant, hour)
) STRICT, WITHOUT ROWID;

CREATE TABLE flag_last_evaluated (
    environment_id  INTEGER NOT NULL,
    flag_key        TEXT NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag_key)
) STRICT, WITHOUT ROWID;

-- When SDK keys and admin tokens were last used.
CREATE TABLE key_last_used (
    key_id  INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL
) STRICT;
CREATE TABLE token_last_used (
    token_id  INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL
) STRICT;

-- The newest publication of flagstaff.db this database saw (its `publication` row).
CREATE TABLE published_seen (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    instance  TEXT NOT NULL,
    seq       INTEGER NOT NULL
) STRICT;

-- Room for later: webhook delivery positions and attempts get their tables in a later
-- migration of this directory (never of migrations/).
