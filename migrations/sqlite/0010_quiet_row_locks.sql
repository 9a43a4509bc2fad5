-- Nothing on SQLite: the PostgreSQL step of this number stops notifying row locks as room
-- changes. A SQLite file has one node, which hears of no changes from the database.
SELECT 1;
