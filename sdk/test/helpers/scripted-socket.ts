// A WebSocket for the client's `WebSocket` option with no server behind it: the test plays
// the server. Sockets answer `auth` with a welcome (or the refusal the test chose), record
// every request, and deliver the frames a test hands them in one call synchronously, one
// after the other: the way a real socket delivers the frames of one network read, all before
// any code awaiting a response resumes. That makes races that depend on two frames arriving
// together reproducible every time.

import type { WebSocketConstructor, WebSocketLike } from '@collab-kit/client';
import { withTimeout } from './wait.js';

const CONNECTING = 0;
const OPEN = 1;
const CLOSED = 3;

export interface ScriptedRequest {
  socket: ScriptedSocket;
  id: number | string | undefined;
  method: string;
  params: any;
}

/** How a socket answers its auth frame. */
export type AuthAnswer = 'welcome' | { error?: { code: string; message: string }; close: number };

/** A user as the socket shows it. */
export function scriptedUser(id: string, fields: Record<string, unknown> = {}): any {
  return {
    id,
    room_id: 'room-1',
    name: id,
    profile_picture: null,
    custom_id: null,
    status: 'offline',
    created_at: '2026-01-01T00:00:00.000Z',
    joined_at: null,
    left_at: null,
    following: [],
    followers: [],
    ...fields,
  };
}

export const SCRIPTED_ROOM = {
  id: 'room-1',
  account_id: 'account-1',
  name: 'Scripted',
  custom_id: null,
  created_at: '2026-01-01T00:00:00.000Z',
  state: 'active',
  duration_seconds: 0,
  active_participants: 0,
  total_users_created: 0,
};

/** An unsigned token that carries `userId` (the SDK reads it; nothing here verifies it). */
export function scriptedToken(userId: string): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ userId })}.signature`;
}

export class ScriptedServer {
  readonly sockets: ScriptedSocket[] = [];
  readonly requests: ScriptedRequest[] = [];
  /** The auth frames received, in order. */
  readonly auths: { token?: string; protocol?: number }[] = [];
  /** How sockets opened from now on answer `auth`. */
  auth: (socket: ScriptedSocket) => AuthAnswer = () => 'welcome';
  private readonly claimed = new Set<ScriptedRequest>();
  private waiters: { match: (r: ScriptedRequest) => boolean; resolve: (r: ScriptedRequest) => void }[] = [];
  readonly WebSocket: WebSocketConstructor;

  constructor(readonly userId: string) {
    const server = this;
    this.WebSocket = class extends ScriptedSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(server, url, protocols);
      }
    };
  }

  /** The welcome the socket sends. */
  welcome(): unknown {
    return {
      type: 'welcome',
      protocol: 1,
      connectionId: `connection-${this.sockets.length}`,
      user: scriptedUser(this.userId, { status: 'online' }),
      room: SCRIPTED_ROOM,
      heartbeatIntervalMs: 15_000,
      limits: {
        maxMessageBytes: 65_536,
        maxBroadcastBytes: 32_768,
        maxPresenceBytes: 8_192,
        messagesPerSecond: 60,
        messageBurst: 120,
      },
    };
  }

  /** The first request for `method` (received already, or to come) not claimed before. */
  request(method: string, label = method, ms = 5_000): Promise<ScriptedRequest> {
    const match = (r: ScriptedRequest) => r.method === method && !this.claimed.has(r);
    const found = this.requests.find(match);
    if (found) {
      this.claimed.add(found);
      return Promise.resolve(found);
    }
    const promise = new Promise<ScriptedRequest>((resolve) => this.waiters.push({ match, resolve }));
    return withTimeout(promise, ms, `the client to send ${label}`);
  }

  /** Every request for `method` so far, on every socket. */
  sent(method: string): ScriptedRequest[] {
    return this.requests.filter((r) => r.method === method);
  }

  received(socket: ScriptedSocket, frame: any): void {
    if (frame?.type === 'auth') {
      this.auths.push(frame);
      const answer = this.auth(socket);
      setImmediate(() => {
        if (answer === 'welcome') {
          socket.deliver(this.welcome());
        } else {
          if (answer.error) socket.deliver({ type: 'error', error: answer.error });
          socket.serverClose(answer.close, 'refused');
        }
      });
      return;
    }
    if (frame?.type !== 'req') return;
    const request: ScriptedRequest = { socket, id: frame.id, method: frame.method, params: frame.params };
    this.requests.push(request);
    const waiter = this.waiters.find((w) => w.match(request));
    if (waiter) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      this.claimed.add(request);
      waiter.resolve(request);
    }
  }
}

export class ScriptedSocket implements WebSocketLike {
  readyState = CONNECTING;
  readonly protocol = 'collabkit.v1';
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: { data: any }) => void) | null = null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null = null;
  onerror: ((event: any) => void) | null = null;

  constructor(
    private readonly server: ScriptedServer,
    readonly url: string,
    readonly protocols?: string | string[],
  ) {
    server.sockets.push(this);
    setImmediate(() => {
      if (this.readyState !== CONNECTING) return;
      this.readyState = OPEN;
      this.onopen?.({});
    });
  }

  send(data: string): void {
    if (this.readyState !== OPEN) throw new Error('not open');
    this.server.received(this, JSON.parse(data));
  }

  /** The client closes: its close event follows, as with a real socket. */
  close(code = 1000, reason = ''): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    setImmediate(() => this.onclose?.({ code, reason, wasClean: true }));
  }

  /** Delivers `frames` to the client one after the other, in this tick. */
  deliver(...frames: unknown[]): void {
    for (const frame of frames) {
      if (this.readyState !== OPEN) return;
      this.onmessage?.({ data: JSON.stringify(frame) });
    }
  }

  /** The server closes the socket with `code`. */
  serverClose(code: number, reason = ''): void {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    this.onclose?.({ code, reason, wasClean: code !== 1006 });
  }

  /** A success frame answering `request`. */
  static result(request: ScriptedRequest, result: unknown): unknown {
    return { type: 'res', id: request.id, ok: true, result };
  }

  static event(event: string, data: unknown): unknown {
    return { type: 'event', event, data };
  }
}
