// A server per test file, rooms and users per test, and clients that are always disconnected.

import CollabKitClient, { type CollabKitClientOptions } from '@collab-kit/client';
import type { StoresDefinition } from '@collab-kit/utils';
import { startServer, type TestServer } from './server.js';
import { eventually } from './wait.js';

export class Fixture {
  server!: TestServer;
  private readonly clients: CollabKitClient<any>[] = [];

  async start(env: Record<string, string> = {}): Promise<void> {
    this.server = await startServer(env);
  }

  async stop(): Promise<void> {
    this.disconnectAll();
    await this.server?.stop();
  }

  /** A new client (not connected) for `token`, against the server or `serverUrl`. */
  // biome-ignore lint/complexity/noBannedTypes: `{}` is the stores definition with no store, the default
  client<D extends StoresDefinition = {}>(
    token: string,
    options: Partial<CollabKitClientOptions<D>> = {},
  ): CollabKitClient<D> {
    const client = new CollabKitClient<D>({
      serverUrl: this.server.url,
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
