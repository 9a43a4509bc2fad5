// Must type-check: the SDK's connection typed by protocol.ts's maps (the inside of the SDK:
// a request's params and result follow from its method, an event's data from its name).
import type { Connection } from '../../packages/client/src/connection.js';
import type { EventFrame, RawUser, StoreFields } from '../../packages/client/src/protocol.js';

export async function requests(connection: Connection): Promise<void> {
  const joined = await connection.request('room.join');
  const cursor: string | null = joined.usersCursor;
  const self: RawUser = (await connection.request('users.get')).user;
  await connection.request('users.get', { userId: self.id }, { retry: true });
  await connection.request('room.get', undefined, { retry: true });
  const { recipients } = await connection.request('broadcast', { event: 'wave', data: { hi: true } });
  const page = await connection.request('stores.sync', { store: 'tasks', since: 3 });
  const next: number | null = page.cursor;
  const value: StoreFields | null = (await connection.request('stores.get', { store: 'tasks', key: 'k' })).value;
  await connection.request('comments.edit', { commentId: 'cmt_x', metadata: null });
  connection.notify('presence.update', { state: { x: 1 } });
  void [cursor, recipients, next, value];
}

export function dispatch(frame: EventFrame): string {
  switch (frame.event) {
    case 'userJoined':
    case 'userLeft':
    case 'userCreated':
    case 'userUpdated':
    case 'userDeleted':
      return frame.data.user.name;
    case 'presence':
      return 'states' in frame.data ? frame.data.states.map((s) => s.userId).join() : frame.data.userId;
    case 'broadcast':
      return frame.data.event;
    case 'roomDeleted':
      return frame.data.roomId;
    case 'changed':
      return `${frame.data.store}/${frame.data.key}@${frame.data.version}`;
    case 'threadCreated':
    case 'threadUpdated':
      return frame.data.thread.id;
    case 'threadDeleted':
      return frame.data.threadId;
    case 'commentCreated':
    case 'commentUpdated':
      return frame.data.comment.id;
    case 'commentDeleted':
      return frame.data.commentId;
    case 'fileUploaded':
      return frame.data.file.url;
    case 'fileDeleted':
      return frame.data.key;
    default:
      return frame satisfies never;
  }
}
