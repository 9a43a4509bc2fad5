-- Nothing on SQLite: the PostgreSQL step of this number tags each room change it reports
-- with the node that made it. A SQLite file has one node, which hears of no other's changes.
SELECT 1;
