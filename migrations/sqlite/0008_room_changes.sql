-- Nothing on SQLite: the PostgreSQL step of this number makes the database report changes
-- to rooms and their users to every node sharing it. A SQLite file has one node, which
-- drops the room answers it keeps in memory itself when it changes a room.
SELECT 1;
