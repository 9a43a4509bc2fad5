-- Accounts, API keys, rooms, users and their sessions.
-- Ids are TEXT (UUIDs), times are BIGINT milliseconds since the Unix epoch (UTC).

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_account ON api_keys (account_id, created_at);

CREATE TABLE rooms (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    custom_id TEXT,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    active_participants BIGINT NOT NULL DEFAULT 0,
    closed_sessions_ms BIGINT NOT NULL DEFAULT 0,
    session_started_at BIGINT,
    total_users_created BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, custom_id)
);
CREATE INDEX rooms_by_account ON rooms (account_id, created_at DESC, id DESC);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    profile_picture TEXT,
    custom_id TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    joined_at BIGINT,
    left_at BIGINT,
    token_issued_at BIGINT NOT NULL,
    UNIQUE (room_id, custom_id)
);
CREATE INDEX users_by_room ON users (room_id, created_at DESC, id DESC);

CREATE TABLE user_sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    joined_at BIGINT NOT NULL,
    left_at BIGINT
);
CREATE INDEX user_sessions_by_user ON user_sessions (user_id, joined_at DESC);
