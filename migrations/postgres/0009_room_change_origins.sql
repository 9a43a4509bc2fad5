-- Room changes are also notified on `collabkit_room_changes`, as `<room ID> <origin>`: the
-- origin is the `collabkit.origin` setting of the connection that made the change, which each
-- node sets on the connections of its pool to a value of its own. A node then tells the
-- changes other nodes made (which drop the first page of users its room actors keep) from its
-- own (which it announced itself). `collabkit_rooms` keeps its payload, the room's ID alone,
-- for nodes of the previous release during a rolling upgrade.

CREATE FUNCTION collabkit_notify_room_change(changed_room text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('collabkit_rooms', changed_room);
    PERFORM pg_notify('collabkit_room_changes',
        changed_room || ' ' || COALESCE(current_setting('collabkit.origin', true), ''));
END
$$;

CREATE OR REPLACE FUNCTION collabkit_room_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM collabkit_notify_room_change(OLD.id);
    ELSE
        PERFORM collabkit_notify_room_change(NEW.id);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION collabkit_user_row_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM collabkit_notify_room_change(OLD.room_id);
    ELSE
        PERFORM collabkit_notify_room_change(NEW.room_id);
    END IF;
    RETURN NULL;
END
$$;
