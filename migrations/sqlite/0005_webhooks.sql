-- Events (recorded in the transaction of the change they describe), webhooks, and the
-- outbox of webhook deliveries.

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    account_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- {"room": ..., "user": ..., "users": [...]}: the objects as they were.
    payload TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Set once the event has been turned into webhook deliveries.
    dispatched_at BIGINT
);
CREATE INDEX events_undispatched ON events (seq) WHERE dispatched_at IS NULL;
CREATE INDEX events_by_time ON events (created_at);

CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- JSON array of event names.
    events TEXT NOT NULL,
    room_id TEXT,
    enabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Failed attempts in a row; reset by a success. Over the threshold: disabled.
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT
);
CREATE INDEX webhooks_by_account ON webhooks (account_id, created_at DESC, id DESC);

CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_attempt_at BIGINT,
    next_retry_at BIGINT,
    status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    -- A node attempting the delivery holds it until this time.
    locked_until BIGINT,
    locked_by TEXT,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_retry_at) WHERE status = 'pending';
