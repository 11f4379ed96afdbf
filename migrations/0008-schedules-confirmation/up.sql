-- Changing flags safely (DESIGN.md §9, issue 16).
--
-- Whether the admin pages ask before changing an environment: a setting of its own, no longer a
-- rule on its key. Environments that the old rule protected keep their confirmation.
ALTER TABLE environments ADD COLUMN requires_confirmation INTEGER NOT NULL DEFAULT 0;
UPDATE environments SET requires_confirmation = 1
 WHERE key IN ('production', 'prod') OR key LIKE 'prod-%' OR key LIKE 'production-%';

-- Scheduled changes: a state patch (the JSON a PATCH of the state takes) to apply at `at` (Unix
-- ms). Pending until the applier claims it, in the same write transaction that applies it (so
-- two processes on one data dir never apply it twice); then applied, failed (with `error`, the
-- flag untouched) or cancelled. Published with the rest: a restore keeps what is pending.
CREATE TABLE schedules (
    id              INTEGER PRIMARY KEY,
    flag_id         INTEGER NOT NULL REFERENCES flags(id) ON DELETE CASCADE,
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    at              INTEGER NOT NULL,
    patch           TEXT NOT NULL,
    -- who scheduled it (an email, or `cli`/an importer's name), and their user id while it exists
    created_by      TEXT NOT NULL,
    created_by_user_id INTEGER,
    created_at      INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'applied', 'failed', 'cancelled')),
    -- when it was applied, failed or cancelled
    done_at         INTEGER,
    -- why it failed
    error           TEXT,
    -- the state's version it produced when applied
    version         INTEGER
) STRICT;
CREATE INDEX schedules_due ON schedules (at, id) WHERE status = 'pending';
CREATE INDEX schedules_flag_environment ON schedules (flag_id, environment_id);
