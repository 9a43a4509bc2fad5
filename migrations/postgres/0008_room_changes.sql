-- Every change to a room, or to one of its users, notifies `collabkit_rooms` with the room's
-- ID when its transaction commits (notifications of one transaction with the same ID arrive
-- once). Each node listens and drops the room answers it keeps in memory for that room
-- (`rooms::reads`), so that a change made through one node is never hidden by another.

CREATE FUNCTION collabkit_room_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('collabkit_rooms', OLD.id);
    ELSE
        PERFORM pg_notify('collabkit_rooms', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION collabkit_user_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('collabkit_rooms', OLD.room_id);
    ELSE
        PERFORM pg_notify('collabkit_rooms', NEW.room_id);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER rooms_notify_changes AFTER INSERT OR UPDATE OR DELETE ON rooms
    FOR EACH ROW EXECUTE FUNCTION collabkit_room_row_changed();

CREATE TRIGGER users_notify_changes AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION collabkit_user_row_changed();
