// A server per test file, rooms and users per test, and clients that are always disconnected.
// In cluster mode (COLLABKIT_SDK_NODES=2) the server is several nodes, and a test's clients
// take them in turn: its first on node 1, its second on node 2, and so on.

import { beforeEach } from 'node:test';
import CollabKitClient, { type CollabKitClientOptions } from '@collab-kit/client';
import type { StoresDefinition } from '@collab-kit/utils';
import { NODES, startServer, type TestServer } from './server.js';
import { eventually } from './wait.js';

export class Fixture {
  server!: TestServer;
  private readonly clients: CollabKitClient<any>[] = [];
  /** Clients of the running test placed on a node so far. */
  private placed = 0;

  /** Construct it where tests are declared (a file's top level or a describe()). */
  constructor() {
    // Each test starts again from node 1: a test's clients land on the same nodes whether it
    // runs alone (--test-name-pattern) or after others.
    if (NODES > 1) {
      beforeEach(() => {
        this.placed = 0;
      });
    }
  }

  async start(env: Record<string, string> = {}): Promise<void> {
    this.server = await startServer(env);
  }

  async stop(): Promise<void> {
    this.disconnectAll();
    await this.server?.stop();
  }

  /** A new client (not connected) for `token`, against the next node or `serverUrl`. */
  // biome-ignore lint/complexity/noBannedTypes: `{}` is the stores definition with no store, the default
  client<D extends StoresDefinition = {}>(
    token: string,
    options: Partial<CollabKitClientOptions<D>> = {},
  ): CollabKitClient<D> {
    const urls = this.server.urls;
    const client = new CollabKitClient<D>({
      serverUrl: options.serverUrl ?? urls[this.placed++ % urls.length],
      authToken: token,
      requestTimeoutMs: 5_000,
      connectTimeoutMs: 5_000,
      ...options,
    } as CollabKitClientOptions<D>);
    this.clients.push(client);
    return client;
  }

  /** A room with `count` users, each with a joined client. */
  // biome-ignore lint/complexity/noBannedTypes: `{}` is the stores definition with no store, the default
  async room<D extends StoresDefinition = {}>(
    count: number,
    options: Partial<CollabKitClientOptions<D>> = {},
  ): Promise<{ roomId: string; users: { id: string; token: string; client: CollabKitClient<D> }[] }> {
    const room = await this.server.createRoom();
    const users: { id: string; token: string; client: CollabKitClient<D> }[] = [];
    for (let i = 0; i < count; i++) {
      const { user, token } = await this.server.createUser(room.id, `user-${i + 1}`);
      const client = this.client<D>(token, options);
      await client.connect();
      await client.join();
      users.push({ id: user.id as string, token, client });
    }
    // Everyone has seen everyone join before the test starts.
    await eventually(
      () => users.every((u) => u.client.users.online.size === count),
      `${count} clients to see each other online`,
    );
    return { roomId: room.id, users };
  }

  disconnectAll(): void {
    for (const client of this.clients.splice(0)) client.disconnect();
  }
}
