-- Real time: server nodes, joined sockets, and the follow graph.

-- Each running server registers itself and refreshes heartbeat_at; connections of a node
-- whose heartbeat is stale are cleaned up by the others (or by itself when it restarts).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

-- One row per socket joined to a room: a user is online while any row of theirs exists.
CREATE TABLE connections (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    opened_at BIGINT NOT NULL
);
CREATE INDEX connections_by_room ON connections (room_id);
CREATE INDEX connections_by_user ON connections (user_id);
CREATE INDEX connections_by_node ON connections (node_id);

CREATE TABLE follows (
    room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    follower_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    followee_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (follower_id, followee_id)
);
CREATE INDEX follows_by_room ON follows (room_id);
CREATE INDEX follows_by_followee ON follows (followee_id);

CREATE INDEX user_sessions_by_room ON user_sessions (room_id, left_at);
