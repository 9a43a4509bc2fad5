// Must NOT type-check: every line marked `// error` has a type error, and no other line.
import CollabKitClient from '@collab-kit/client';
import { defineStores } from '@collab-kit/utils';

const stores = defineStores({
  tasks: {
    title: { type: 'string', required: true },
    completed: { type: 'boolean', default: false },
    assignee: { type: 'string' },
  },
});

export async function main(jwt: string): Promise<void> {
  const client = new CollabKitClient({ serverUrl: 'https://api.example.com', authToken: jwt, stores });
  await client.stores.tasks.set({ key: 'k', value: { assignee: 'u1' } }); // error
  await client.stores.tasks.set({ key: 'k', value: { title: 5 } }); // error
  await client.stores.tasks.set({ key: 'k', value: { title: 'x', bogus: true } }); // error
  await client.stores.tasks.set({ key: 'k', value: { title: 'x', completed: 'yes' } }); // error
  await client.stores.tasks.update({ key: 'k', value: { title: null } }); // error
  await client.stores.tasks.update({ key: 'k', value: { completed: 1 } }); // error
  await client.stores.tasks.set({ value: { title: 'x' } }); // error
  const title: string = (await client.stores.tasks.get({ key: 'k' })).title; // error
  const assignee: string = (await client.stores.tasks.getAll())[0]!.value.assignee; // error
  await client.stores.nope.getAll(); // error
  client.stores.tasks.on('removed', () => {}); // error
  client.socket.on('reconnecting', ({ attempt }: { attempt: string }) => void attempt); // error
  client.socket.on('exploded', () => {}); // error
  client.users.on('userExploded', () => {}); // error
  await client.presence.sync('*', ({ nope }) => void nope); // error
  const room: string = client.currentRoom; // error
  void [title, assignee, room];
  defineStores({ s: { f: { type: 'date' } } }); // error
  defineStores({ s: { f: { type: 'string', default: 5 } } }); // error
  new CollabKitClient({ serverUrl: 'https://api.example.com' }); // error
  await client.comments.listComments({ after: 'x' }); // error
  const offset: number = (await client.comments.list()).nextOffset; // error
  void offset;
}
