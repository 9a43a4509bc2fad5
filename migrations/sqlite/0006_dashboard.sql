-- The dashboard: people who log in (logins), the organizations (accounts) they belong to and
-- with which role (members), their browser sessions, invitations to join an organization,
-- names and last use of API keys, and per-room per-minute activity counters (analytics).

CREATE TABLE logins (
    id TEXT PRIMARY KEY,
    -- Lowercased and trimmed: one login per address whatever its spelling.
    email TEXT NOT NULL UNIQUE,
    -- Argon2id, PHC string format (algorithm, parameters and salt included).
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

CREATE TABLE members (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    login_id TEXT NOT NULL REFERENCES logins (id) ON DELETE CASCADE,
    -- owner, admin or viewer.
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, login_id)
);
CREATE INDEX members_by_login ON members (login_id);

-- Only the SHA-256 of a session's token is kept: a leaked table opens no session.
CREATE TABLE dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    login_id TEXT NOT NULL REFERENCES logins (id) ON DELETE CASCADE,
    -- The organization the dashboard shows; NULL once it is deleted.
    account_id TEXT REFERENCES accounts (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_login ON dashboard_sessions (login_id);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT REFERENCES logins (id) ON DELETE SET NULL
);
CREATE INDEX invitations_by_account ON invitations (account_id, created_at);

ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;

-- One row per room and minute with activity; written in batches by the analytics flusher.
CREATE TABLE room_minutes (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    -- Milliseconds since the epoch of the minute's start.
    minute BIGINT NOT NULL,
    joins BIGINT NOT NULL DEFAULT 0,
    peak_users BIGINT NOT NULL DEFAULT 0,
    presence_updates BIGINT NOT NULL DEFAULT 0,
    broadcasts BIGINT NOT NULL DEFAULT 0,
    store_writes BIGINT NOT NULL DEFAULT 0,
    comments BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, minute)
);
CREATE INDEX room_minutes_by_account ON room_minutes (account_id, minute);

-- The same counters per room and hour (`minute` is the hour's start; peaks: the largest of its
-- minutes), written with the minutes: charts of days and weeks read 60 times fewer rows.
CREATE TABLE room_hours (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    minute BIGINT NOT NULL,
    joins BIGINT NOT NULL DEFAULT 0,
    peak_users BIGINT NOT NULL DEFAULT 0,
    presence_updates BIGINT NOT NULL DEFAULT 0,
    broadcasts BIGINT NOT NULL DEFAULT 0,
    store_writes BIGINT NOT NULL DEFAULT 0,
    comments BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, minute)
);
CREATE INDEX room_hours_by_account ON room_hours (account_id, minute);
