-- Flagstaff's first schema. Times are Unix milliseconds unless a name says otherwise.
-- Flag definitions, flag states and segments are stored as the JSON of the engine's document
-- model (eval/src/model.rs): the engine validates them, the store keeps them whole.

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE environments (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    name        TEXT NOT NULL,
    position    INTEGER NOT NULL,
    -- grows with every change that touches what this environment serves
    revision    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (project_id, key)
) STRICT;

-- A flag's definition: model::Flag without `environments` (JSON).
CREATE TABLE flags (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    definition  TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (project_id, key)
) STRICT;

-- A flag's state in one environment: model::FlagEnvState without `version` (JSON).
-- A missing row means the default state.
CREATE TABLE flag_states (
    flag_id         INTEGER NOT NULL REFERENCES flags(id) ON DELETE CASCADE,
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    state           TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (flag_id, environment_id)
) STRICT;
CREATE INDEX flag_states_environment ON flag_states (environment_id);

-- model::Segment (JSON), shared by the project's environments.
CREATE TABLE segments (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key         TEXT NOT NULL,
    definition  TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (project_id, key)
) STRICT;

CREATE TABLE users (
    id              INTEGER PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash   TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    disabled        INTEGER NOT NULL DEFAULT 0,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;

-- Admin pages' sessions. Only a SHA-256 of the cookie's token is stored.
CREATE TABLE sessions (
    id            INTEGER PRIMARY KEY,
    token_hash    BLOB NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

-- Admin tokens authenticate /api/v1 with their user's role. Only a SHA-256 is stored.
CREATE TABLE admin_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    token_hash    BLOB NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;

-- SDK keys, per environment and kind. Only a SHA-256 is stored; `prefix` is the visible start.
CREATE TABLE api_keys (
    id              INTEGER PRIMARY KEY,
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL CHECK (kind IN ('server', 'client')),
    name            TEXT NOT NULL,
    key_hash        BLOB NOT NULL UNIQUE,
    prefix          TEXT NOT NULL,
    created_by      INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER,
    revoked_at      INTEGER
) STRICT;
CREATE INDEX api_keys_environment ON api_keys (environment_id);

-- Who changed what, with the JSON before and after. Never deleted with what it describes.
CREATE TABLE audit_log (
    id              INTEGER PRIMARY KEY,
    at              INTEGER NOT NULL,
    actor_user_id   INTEGER,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    project_key     TEXT,
    environment_key TEXT,
    entity_kind     TEXT NOT NULL,
    entity_key      TEXT,
    before          TEXT,
    after           TEXT
) STRICT;
CREATE INDEX audit_log_entity ON audit_log (project_key, entity_kind, entity_key, id);

-- Evaluation counts reported by SDKs, per hour (`hour` = Unix seconds at the hour's start).
CREATE TABLE evaluation_counts (
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag_key        TEXT NOT NULL,
    variant         TEXT NOT NULL,
    hour            INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag_key, variant, hour)
) STRICT;

CREATE TABLE flag_last_evaluated (
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    flag_key        TEXT NOT NULL,
    at              INTEGER NOT NULL,
    PRIMARY KEY (environment_id, flag_key)
) STRICT;
