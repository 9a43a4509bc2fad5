// Must NOT type-check: misuses of the SDK's typed connection (protocol.ts's maps). Every line
// marked `// error` has a type error, and no other line.
import type { Connection } from '../../packages/client/src/connection.js';
import type { EventFrame } from '../../packages/client/src/protocol.js';

export async function requests(connection: Connection): Promise<void> {
  await connection.request('room.jion'); // error
  await connection.request('users.follow'); // error
  await connection.request('users.follow', { user: 'u1' }); // error
  await connection.request('users.follow', { userId: 5 }); // error
  await connection.request('room.leave', { now: true }); // error
  await connection.request('stores.sync', { store: 'tasks', since: '3' }); // error
  await connection.request('stores.set', { store: 'tasks', key: 'k', value: { due: new Date() } }); // error
  const cursor: string = (await connection.request('stores.sync', {})).cursor; // error
  const { rooms } = await connection.request('room.join'); // error
  connection.notify('presence.update', { state: 'here' }); // error
  connection.notify('presence.updat', { state: {} }); // error
  void [cursor, rooms];
}

export function dispatch(frame: EventFrame): string {
  switch (frame.event) {
    case 'userJion': // error
      return '';
    case 'presence':
      return frame.data.user.name; // error
    case 'changed':
      return frame.data.value.title; // error
    default:
      return frame satisfies never; // error
  }
}
