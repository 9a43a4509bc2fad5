// Must type-check: the documented API, used as the documentation shows it.
import CollabKitClient, {
  type CollabKitClientUser,
  type CollabKitError,
  type CommentListPage,
  type StoreChange,
} from '@collab-kit/client';
import {
  defineStores,
  type CollabKitRoom,
  type CollabKitUser,
  type PresenceState,
  type ServerErrorCode,
  type StoreValue,
  type WebhookPayload,
} from '@collab-kit/utils';

const stores = defineStores({
  tasks: {
    title: { type: 'string', required: true },
    completed: { type: 'boolean', default: false },
    assignee: { type: 'string' },
    points: { type: 'number' },
  },
  notes: { text: { type: 'string', required: true } },
});

type Task = StoreValue<typeof stores.tasks>;
const task: Task = { title: 'x', completed: false };

export async function main(jwt: string): Promise<void> {
  const client = new CollabKitClient({ serverUrl: 'https://api.example.com', authToken: jwt, stores });
  const tuned = new CollabKitClient({
    serverUrl: 'https://api.example.com',
    authToken: jwt,
    reconnect: { attempts: 5, initialDelayMs: 250, maxDelayMs: 5_000, factor: 2 },
    heartbeat: { intervalMs: 10_000, timeoutMs: 5_000 },
    requestTimeoutMs: 10_000,
  });
  void tuned;
  await client.connect();
  await client.join();

  const room: CollabKitRoom | null = client.currentRoom;
  const me: CollabKitUser | null = client.currentUser;
  const id: string | null = client.userId;
  const fetched = await client.room.get();
  const other = await client.room.get({ roomId: fetched.id });
  const roomUsers: CollabKitUser[] = other.users;
  void [room, me, id, roomUsers, task];

  const offs: Array<() => void> = [
    client.socket.on('connected', () => {}),
    client.socket.on('disconnected', () => {}),
    client.socket.on('reconnecting', ({ attempt }) => {
      const n: number = attempt;
      void n;
    }),
    client.socket.on('reconnected', () => {}),
    client.socket.on('failed', () => {}),
    client.socket.on('authFailed', () => {}),
    client.socket.on('error', (error: CollabKitError) => void error.code),
  ];
  const onConnected = () => {};
  client.socket.on('connected', onConnected);
  client.socket.off('connected', onConnected);

  const online: Map<string, CollabKitUser> = client.users.online;
  const all: Map<string, CollabKitClientUser> = client.users.all;
  const self = await client.users.get();
  const someone = await client.users.get({ userId: self.id });
  const everyone: CollabKitClientUser[] = await client.users.getAll();
  const followed: CollabKitClientUser = await someone.follow();
  await followed.unfollow();
  const following: string[] = self.following;
  const followers: string[] = client.users.followers;
  offs.push(client.users.on('userJoined', (user) => void user.name));
  for (const event of ['userJoined', 'userLeft', 'userCreated', 'userUpdated', 'userDeleted'] as const) {
    offs.push(client.users.on(event, (user: CollabKitClientUser) => void user.follow));
  }
  void [online, all, everyone, following, followers];

  client.presence.update({ cursor: { x: 10, y: 20 }, typing: false });
  interface Cursor {
    cursor: { x: number; y: number };
  }
  const cursor: Cursor = { cursor: { x: 1, y: 2 } };
  client.presence.update(cursor);
  await client.presence.sync('*', ({ userId, state }) => {
    const color: string | undefined = state?.color;
    void [userId, color];
  });
  await client.presence.sync<Cursor>('following', ({ state }) => {
    const x: number | undefined = state?.cursor.x;
    void x;
  });
  const cursors: Map<string, Cursor> = client.presence.getStates<Cursor>();
  void cursors;
  await client.presence.sync(self.id, () => {});
  await client.presence.unsync();
  const states: Map<string, PresenceState> = client.presence.getStates();
  void states;

  await client.stores.tasks.set({ key: 'task-1', value: { title: 'Build', assignee: 'u1' } });
  const got = await client.stores.tasks.get({ key: 'task-1' });
  if (got) {
    const title: string = got.title;
    const completed: boolean = got.completed;
    const assignee: string | undefined = got.assignee;
    void [title, completed, assignee];
  }
  const entries: Array<{ key: string; value: Task }> = await client.stores.tasks.getAll();
  await client.stores.tasks.update({ key: 'task-1', value: { completed: true } });
  await client.stores.tasks.update({ key: 'task-1', value: { assignee: null, points: 3 } });
  await client.stores.tasks.delete({ key: 'task-1' });
  await client.stores.tasks.sync();
  const off: () => void = client.stores.tasks.on('changed', ({ key, action, value }) => {
    const a: 'set' | 'update' | 'delete' = action;
    const t: string | undefined = value?.title;
    void [key, a, t];
  });
  const typed = (change: StoreChange<Task>) => void change;
  client.stores.tasks.on('changed', typed);
  await client.stores.notes.set({ key: 'n', value: { text: 'hi' } });
  void [entries, off];

  const { recipients } = await client.notifications.broadcast('wave', { hi: true });
  await client.notifications.broadcast('wave', { hi: true }, [self.id]);
  const unsubscribe = client.notifications.on('wave', (data) => void data);
  client.notifications.once('wave', (data: { hi: boolean }) => void data.hi);
  const handler = (data: unknown) => void data;
  client.notifications.on('x', handler);
  client.notifications.off('x', handler);
  unsubscribe();
  void recipients;

  const thread = await client.comments.createThread({ body: 'Move this?', metadata: { x: 10, y: 20 } });
  const reply = await client.comments.reply({ threadId: thread.id, body: 'Yes' });
  await client.comments.edit({ commentId: reply.id, body: 'Yes!', metadata: null });
  await client.comments.react({ commentId: reply.id, emoji: '👍' });
  await client.comments.unreact({ commentId: reply.id, emoji: '👍' });
  await client.comments.resolve({ threadId: thread.id });
  await client.comments.reopen({ threadId: thread.id });
  const page = await client.comments.list({ resolved: false, limit: 10 });
  const first = await client.comments.getThread({ threadId: page.threads[0]!.id });
  const nextOffset: number | null = page.nextOffset;
  const commentCount: number = page.threads[0]!.comment_count;
  const commentsCursor: string | null = page.threads[0]!.comments_cursor;
  const comments: CommentListPage = await client.comments.listComments({
    threadId: first.id,
    after: commentsCursor ?? undefined,
    limit: 10,
  });
  const more: boolean = comments.hasMore;
  const nextCursor: string | null = comments.cursor;
  await client.comments.listComments({ threadId: first.id });
  void [nextOffset, commentCount, more, nextCursor];
  const { threadDeleted } = await client.comments.delete({ commentId: first.comments[0]!.id });
  const offComments = client.comments.on('commentUpdated', (comment) => void comment.reactions[0]?.user_ids);
  client.comments.on('threadDeleted', ({ threadId }) => void threadId);
  void [threadDeleted, offComments];

  client.disconnect();
}

export function retryable(error: CollabKitError): boolean {
  const code: ServerErrorCode = 'REQUEST_TIMEOUT';
  const cause = error.cause instanceof Error ? error.cause : undefined;
  return error.code === code || error.code === 'RATE_LIMITED' || cause !== undefined;
}

export function webhook(payload: WebhookPayload): string {
  switch (payload.event) {
    case 'session.closed':
      return payload.users.map((u) => u.name).join(',') + payload.data.roomId;
    case 'session.started':
      return payload.room.name;
    case 'file.uploaded':
    case 'file.deleted':
      return payload.file.url + payload.data.key;
    default:
      return payload.user.id + payload.data.userId;
  }
}
