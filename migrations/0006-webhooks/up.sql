-- Webhooks (DESIGN.md §10): configuration, so published with the rest. Their delivery positions
-- and attempts change all the time and live in the operational database
-- (migrations-operational/0002-webhooks).
CREATE TABLE webhooks (
    id              INTEGER PRIMARY KEY,
    project_id      INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    -- JSON array of event types and patterns ("flag.updated", "segment.*", "*").
    events          TEXT NOT NULL,
    -- JSON array of environment keys; NULL: every environment (and changes of no environment).
    environments    TEXT,
    format          TEXT NOT NULL CHECK (format IN ('json', 'slack')),
    enabled         INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    -- The HMAC key of the signatures. Kept as it is (a signature needs it), shown only when it is
    -- created or rotated, never written to the audit log or the logs.
    secret          TEXT NOT NULL,
    -- Events are the audit entries after this one: the webhook's own creation.
    since_audit_id  INTEGER NOT NULL,
    -- Why delivery disabled it (NULL when an admin did, or it is enabled).
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    created_by      INTEGER,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX webhooks_project ON webhooks (project_id, id);
