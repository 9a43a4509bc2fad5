-- Stores: per-account schemas, per-room entries with a room-wide version sequence.

-- Every write to a room's stores takes the next version; clients catch up from a version.
ALTER TABLE rooms ADD COLUMN store_version BIGINT NOT NULL DEFAULT 0;
-- Deleted entries (tombstones) up to this version are forgotten: a client behind it gets
-- the full contents instead of the changes.
ALTER TABLE rooms ADD COLUMN store_purged_version BIGINT NOT NULL DEFAULT 0;

CREATE TABLE store_schemas (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    fields TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, name)
);

-- entry_value is the entry's JSON, or NULL once deleted (a tombstone, kept for catch-up).
CREATE TABLE store_entries (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    store_name TEXT NOT NULL,
    entry_key TEXT NOT NULL,
    entry_value TEXT,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (room_id, store_name, entry_key)
);
CREATE INDEX store_entries_by_version ON store_entries (room_id, version);
CREATE INDEX store_entries_tombstones ON store_entries (updated_at) WHERE entry_value IS NULL;
