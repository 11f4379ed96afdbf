-- The audit log's repeated words stored once: who (an email), the action, the project, the
-- environment, the kind and the key of what changed are each a number naming a row of
-- `audit_names` (a busy team's 50,000 entries repeat a few hundred distinct words). About 60 of
-- an entry's ~190 bytes, and most of its index, in the file every write publishes
-- (BENCHMARKS.md, "A year of a busy team"). `audit_log` stays, as a view with the same columns,
-- for reading; writes go to `audit_entries` (src/store/audit.rs).
CREATE TABLE audit_names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
) STRICT;

INSERT INTO audit_names (name)
    SELECT actor FROM audit_log
    UNION SELECT action FROM audit_log
    UNION SELECT project_key FROM audit_log WHERE project_key IS NOT NULL
    UNION SELECT environment_key FROM audit_log WHERE environment_key IS NOT NULL
    UNION SELECT entity_kind FROM audit_log
    UNION SELECT entity_key FROM audit_log WHERE entity_key IS NOT NULL;

CREATE TABLE audit_entries (
    id            INTEGER PRIMARY KEY,
    at            INTEGER NOT NULL,
    -- actor to entity_key: ids of rows of audit_names (never deleted while an entry names them).
    actor_user_id INTEGER,
    actor         INTEGER NOT NULL,
    action        INTEGER NOT NULL,
    project       INTEGER,
    environment   INTEGER,
    entity_kind   INTEGER NOT NULL,
    entity_key    INTEGER,
    -- Format byte + zstd frame of "<before>\n<after>" (src/store/audit.rs); or, for entries
    -- written before 0004 and not yet compacted, the two texts.
    change        BLOB,
    before        TEXT,
    after         TEXT
) STRICT;

INSERT INTO audit_entries
    SELECT l.id, l.at, l.actor_user_id,
           (SELECT id FROM audit_names WHERE name = l.actor),
           (SELECT id FROM audit_names WHERE name = l.action),
           (SELECT id FROM audit_names WHERE name = l.project_key),
           (SELECT id FROM audit_names WHERE name = l.environment_key),
           (SELECT id FROM audit_names WHERE name = l.entity_kind),
           (SELECT id FROM audit_names WHERE name = l.entity_key),
           l.change, l.before, l.after
    FROM audit_log AS l;

DROP TABLE audit_log;

-- A flag's or segment's history is found by its key.
CREATE INDEX audit_entries_entity ON audit_entries (entity_key, id);

CREATE VIEW audit_log AS
    SELECT e.id, e.at, e.actor_user_id,
           actor.name AS actor, action.name AS action, project.name AS project_key,
           environment.name AS environment_key, kind.name AS entity_kind, entity.name AS entity_key,
           e.before, e.after, e.change
    FROM audit_entries AS e
    JOIN audit_names AS actor ON actor.id = e.actor
    JOIN audit_names AS action ON action.id = e.action
    LEFT JOIN audit_names AS project ON project.id = e.project
    LEFT JOIN audit_names AS environment ON environment.id = e.environment
    JOIN audit_names AS kind ON kind.id = e.entity_kind
    LEFT JOIN audit_names AS entity ON entity.id = e.entity_key;
