-- Comments: threads in a room, their comments (oldest first) and emoji reactions.
-- Deleting a room deletes its threads, comments and reactions. Authors are kept as plain
-- user IDs, without a foreign key: a deleted user's comments stay.

-- seq orders a room's threads (newest first in lists); it is taken under the room's row
-- lock. A thread is resolved while resolved_at is set. metadata is a JSON object or NULL.
CREATE TABLE comment_threads (
    id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolved_by TEXT,
    metadata TEXT
);
-- Lists: a room's threads by seq (and the thread count of the room's limit).
CREATE UNIQUE INDEX comment_threads_by_room ON comment_threads (room_id, seq);

-- seq orders a thread's comments; it is taken under the thread's row lock.
CREATE TABLE comments (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL REFERENCES comment_threads (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    body TEXT NOT NULL,
    metadata TEXT,
    created_at BIGINT NOT NULL,
    edited_at BIGINT
);
CREATE UNIQUE INDEX comments_by_thread ON comments (thread_id, seq);
CREATE INDEX comments_by_room ON comments (room_id);

-- One row per user and emoji on a comment; seq (per comment) keeps the order they came in.
CREATE TABLE comment_reactions (
    comment_id TEXT NOT NULL REFERENCES comments (id) ON DELETE CASCADE,
    emoji TEXT NOT NULL,
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (comment_id, emoji, user_id)
);
CREATE INDEX comment_reactions_by_comment ON comment_reactions (comment_id, seq);
