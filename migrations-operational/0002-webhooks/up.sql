-- Webhook delivery (DESIGN.md §10): each webhook's position in the audit log (the outbox) and
-- every attempt. Webhooks themselves are configuration, in the published database; rows here
-- whose webhook is gone are ignored and pruned.

-- `audit_id`: the last audit entry this webhook is done with (delivered, not matching, or failed
-- for good). No row yet: the webhook's `since_audit_id`. The event after it is being retried when
-- `retry_audit_id` names it: `retry_since` is its first failure, `retries` its failed attempts,
-- `next_attempt_at` when to try again. `failing_since`: first failure with no success since.
CREATE TABLE webhook_positions (
    webhook_id       INTEGER PRIMARY KEY,
    audit_id         INTEGER NOT NULL,
    retry_audit_id   INTEGER,
    retry_since      INTEGER,
    retries          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    failing_since    INTEGER
) STRICT;

-- One row per delivery attempt (and per test event). The newest few hundred per webhook are kept.
CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    webhook_id  INTEGER NOT NULL,
    -- NULL for a test event.
    audit_id    INTEGER,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    at          INTEGER NOT NULL,
    -- The HTTP status; NULL when no answer came (refused address, connection error, timeout).
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    -- The start of the answer's body (at most 1 KiB, lossy UTF-8).
    response    TEXT,
    -- 'delivered', 'retrying', 'failed' (given up after the retry window), 'test'.
    outcome     TEXT NOT NULL
) STRICT;
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, id);
