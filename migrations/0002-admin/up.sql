-- The admin pages' own state: the one-time link that creates the first admin, and failed
-- sign-ins (for throttling per account and per client address). Times are Unix milliseconds.

-- One-time setup links printed to the log when the server starts with no users.
-- Only a SHA-256 of the link's token is stored.
CREATE TABLE setup_tokens (
    id          INTEGER PRIMARY KEY,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;

-- Failed sign-ins of the last few minutes. Old rows are pruned as new ones arrive.
CREATE TABLE sign_in_failures (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    email   TEXT NOT NULL COLLATE NOCASE,
    client  TEXT NOT NULL
) STRICT;
CREATE INDEX sign_in_failures_email ON sign_in_failures (email, at);
CREATE INDEX sign_in_failures_client ON sign_in_failures (client, at);
