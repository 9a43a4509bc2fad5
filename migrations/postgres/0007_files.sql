-- Room files: one row per object in file storage. An upload records its row ('pending', with
-- the node writing it) before the first byte reaches storage, and turns it 'ready' once the
-- object is complete, so that no object exists without a row; a pending row left by a dead
-- node, and its object, are swept at start.

CREATE TABLE files (
    -- "<room id's first 8 hex digits>/<128 random bits in hex>[.ext]": public, unguessable.
    key TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    -- Kept as it was when the uploader is deleted.
    uploaded_by TEXT NOT NULL,
    -- The original name, sanitised.
    filename TEXT NOT NULL,
    -- Sniffed from the bytes; empty while pending.
    mime_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    uploaded_at BIGINT NOT NULL,
    -- 'pending' or 'ready'.
    status TEXT NOT NULL,
    node_id TEXT NOT NULL
);
CREATE INDEX files_by_room ON files (room_id, uploaded_at DESC, key);
CREATE INDEX files_by_account ON files (account_id, status);
CREATE INDEX files_pending ON files (node_id) WHERE status = 'pending';
