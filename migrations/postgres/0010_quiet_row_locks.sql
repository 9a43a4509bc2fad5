-- A room or user row is notified as changed only when it did change: transactions lock rows
-- by updating them to themselves (`UPDATE rooms SET id = id`), which notified every node of
-- a change that was none, once per locked row (a join of 200 sockets locks 200 users).
DROP TRIGGER rooms_notify_changes ON rooms;
DROP TRIGGER users_notify_changes ON users;

CREATE TRIGGER rooms_notify_changes AFTER INSERT OR DELETE ON rooms
    FOR EACH ROW EXECUTE FUNCTION collabkit_room_row_changed();
CREATE TRIGGER rooms_notify_updates AFTER UPDATE ON rooms
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION collabkit_room_row_changed();

CREATE TRIGGER users_notify_changes AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION collabkit_user_row_changed();
CREATE TRIGGER users_notify_updates AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION collabkit_user_row_changed();
