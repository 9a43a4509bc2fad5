// The socket under the client: authentication (the JWT in the first frame, never in the URL),
// request/response correlation, heartbeats, reconnection with backoff, and the queue of
// requests made while the socket is not ready. What "rehydrating" means is the client's
// business: it passes a `setup` hook that runs on every new socket before it is used.

import { Emitter } from './emitter.js';
import { CollabKitError } from './errors.js';
import {
  CloseCode,
  encodeFrame,
  type EventFrame,
  type Method,
  type NoParams,
  type Params,
  type ParamsArg,
  PROTOCOL_VERSION,
  readServerFrame,
  type Result,
  type ServerLimits,
  SUBPROTOCOL,
  type Welcome,
} from './protocol.js';
import { claimsOf } from './token.js';
import {
  abandon,
  OPEN,
  resolveWebSocket,
  type WebSocketConstructor,
  type WebSocketLike,
} from './websocket.js';

export type { ServerLimits, Welcome } from './protocol.js';

/** Close codes of the protocol that mean "do not reconnect". */
const CLOSE_NORMAL = CloseCode.NORMAL;
const CLOSE_AUTH_FAILED = CloseCode.AUTH_FAILED;
const CLOSE_GONE = CloseCode.GONE;
/**
 * A frame over the server's limit. Before `welcome` it is the auth frame (the token): every
 * attempt would be refused alike, so the SDK stops. On an open socket it follows a frame over
 * the hard cap, which the SDK's own size check should prevent: it reconnects, but does not
 * send the requests in flight again, since one of them may be the cause.
 */
const CLOSE_TOO_BIG = CloseCode.TOO_BIG;
/** The code the SDK reports when it gives up on a silent server itself. */
const CLOSE_DEAD_SERVER = CloseCode.DEAD_PEER;
/** The application-level heartbeat, the same bytes every time. */
const PING = encodeFrame({ type: 'ping' });

export interface ReconnectOptions {
  /** Reconnect after an unexpected drop (default `true`). */
  enabled?: boolean;
  /** Attempts before giving up with `failed` (default 10). */
  attempts?: number;
  /** Wait before the second attempt; the first one is immediate (default 500 ms). */
  initialDelayMs?: number;
  /** Longest wait between attempts (default 10 000 ms). */
  maxDelayMs?: number;
  /** Each wait is the previous one times this (default 2). */
  factor?: number;
  /** Random share taken off each wait, 0 to 1, so that clients do not retry in step (default 0.2). */
  jitter?: number;
}

export interface HeartbeatOptions {
  /** How often the client sends `{ type: "ping" }` (default 15 000 ms; 0 turns heartbeats off). */
  intervalMs?: number;
  /** With nothing from the server this long after a ping, the connection is dead (default 10 000 ms). */
  timeoutMs?: number;
}

export interface ConnectionOptions {
  serverUrl: string;
  authToken: string;
  reconnect?: ReconnectOptions | boolean;
  heartbeat?: HeartbeatOptions;
  /** Time to open the socket and authenticate (default 10 000 ms). */
  connectTimeoutMs?: number;
  /** Time a request may wait for its answer, queueing included (default 15 000 ms). */
  requestTimeoutMs?: number;
  /** A WebSocket implementation; by default the platform's, else the `ws` package. */
  WebSocket?: WebSocketConstructor;
}

/** Why a socket closed, for `disconnected` listeners. */
export interface DisconnectInfo {
  code: number;
  reason: string;
  /** Whether the SDK is going to reconnect. */
  willReconnect: boolean;
}

export type ConnectionEvents = {
  connected: [];
  disconnected: [info: DisconnectInfo];
  reconnecting: [info: { attempt: number }];
  reconnected: [];
  failed: [];
  authFailed: [info: { code: string; message: string }];
  /** A notification (a frame without id) failed, or rehydration hit a server error. */
  error: [error: CollabKitError];
};

type Phase = 'idle' | 'connecting' | 'ready' | 'reconnecting';

interface Session {
  ws: WebSocketLike;
  welcome: Welcome;
  epoch: number;
  connectedEmitted: boolean;
  pingTimer?: ReturnType<typeof setInterval>;
  pongTimer?: ReturnType<typeof setTimeout>;
  awaitingPongSince?: number;
  lastMessageAt: number;
}

interface Pending {
  id: number;
  method: Method;
  frame: string;
  /** Takes the `result` of the response: the result of `method` (see `readServerFrame`). */
  resolve: (result: unknown) => void;
  reject: (error: CollabKitError) => void;
  timer: ReturnType<typeof setTimeout>;
  /** Safe to send again on a new socket if the old one closed before the answer (reads). */
  retry: boolean;
  /** Part of a socket's setup: sent at once on that socket, never queued. */
  session?: Session;
}

export interface RequestOptions {
  /** A read: resent after a reconnection instead of failing with DISCONNECTED. */
  retry?: boolean;
  timeoutMs?: number;
}

/** A method's params (left out when it needs none), then request options. */
export type RequestArgs<M extends Method> = NoParams extends Params<M>
  ? [params?: Params<M>, options?: RequestOptions]
  : [params: Params<M>, options?: RequestOptions];

/** Sends a request on the connection and resolves with its result. */
export type Requester = <M extends Method>(method: M, ...args: RequestArgs<M>) => Promise<Result<M>>;

/** Sends a request bound to one socket (no options: it is never queued or resent). */
export type BoundRequester = <M extends Method>(method: M, ...params: ParamsArg<M>) => Promise<Result<M>>;

/** Sends a request without id (no answer). */
export type Notifier = <M extends Method>(method: M, ...params: ParamsArg<M>) => void;

/**
 * The close code that ended an attempt to open a socket, for errors from `open()`: the
 * reconnection loop tells a refusal worth retrying (1013) from one that is not (1009).
 */
const refusalCloseCodes = new WeakMap<CollabKitError, number>();

export interface SetupHooks {
  /** Runs on every new socket, before it serves the application's requests. */
  setup(session: SetupContext, reconnect: boolean): Promise<void>;
  /** A server event frame (of an event this SDK knows). */
  event(frame: EventFrame): void;
  /** The socket is set up and serves the application's requests. */
  ready(): void;
}

/** What a setup hook may do on the new socket before it is ready. */
export interface SetupContext {
  welcome: Welcome;
  request: BoundRequester;
  notify: Notifier;
}

const DEFAULTS = {
  reconnect: { enabled: true, attempts: 10, initialDelayMs: 500, maxDelayMs: 10_000, factor: 2, jitter: 0.2 },
  heartbeat: { intervalMs: 15_000, timeoutMs: 10_000 },
  connectTimeoutMs: 10_000,
  requestTimeoutMs: 15_000,
  maxMessageBytes: 65_536,
};

const encoder = new TextEncoder();

export function byteLength(text: string): number {
  return encoder.encode(text).length;
}

/**
 * The socket's URL: the server's `/v1/realtime`, with the token's room as `?room=`. The server
 * ignores it; a load balancer can hash on it so that a room's sockets share a node
 * (docs/scaling.md, room affinity).
 */
export function realtimeUrl(serverUrl: string, roomId?: string): string {
  let url: URL;
  try {
    url = new URL(serverUrl);
  } catch {
    throw new CollabKitError('BAD_REQUEST', `serverUrl is not a URL: ${serverUrl}`);
  }
  if (url.protocol === 'https:') url.protocol = 'wss:';
  else if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new CollabKitError('BAD_REQUEST', `serverUrl must be http(s) or ws(s): ${serverUrl}`);
  }
  const base = url.pathname.replace(/\/+$/, '');
  url.pathname = base.endsWith('/v1/realtime') ? base : `${base}/v1/realtime`;
  url.search = roomId ? new URLSearchParams({ room: roomId }).toString() : '';
  url.hash = '';
  return url.toString();
}

export class Connection extends Emitter<ConnectionEvents> {
  private phase: Phase = 'idle';
  private session: Session | undefined;
  private epoch = 0;
  private nextId = 1;
  private readonly queue: Pending[] = [];
  private readonly inflight = new Map<number, Pending>();
  private connecting: Promise<Welcome> | undefined;
  private opening: { ws: WebSocketLike; fail: (error: CollabKitError) => void } | undefined;
  private loop = 0;
  private wake: (() => void) | undefined;
  private lastClose: { code: number; reason: string } | undefined;
  private readyWaiters: { resolve: () => void; reject: (e: CollabKitError) => void }[] = [];
  private limits: ServerLimits | undefined;
  private readonly url: string;
  private readonly reconnectOptions: Required<ReconnectOptions>;
  private readonly heartbeat: Required<HeartbeatOptions>;

  constructor(
    private readonly options: ConnectionOptions,
    private readonly hooks: SetupHooks,
  ) {
    super();
    this.url = realtimeUrl(options.serverUrl, claimsOf(options.authToken)?.roomId);
    const reconnect =
      typeof options.reconnect === 'boolean' ? { enabled: options.reconnect } : (options.reconnect ?? {});
    this.reconnectOptions = { ...DEFAULTS.reconnect, ...stripUndefined(reconnect) };
    this.heartbeat = { ...DEFAULTS.heartbeat, ...stripUndefined(options.heartbeat ?? {}) };
  }

  /** `idle` (not connected), `connecting`, `ready` or `reconnecting`. */
  get state(): Phase {
    return this.phase;
  }

  get welcome(): Welcome | undefined {
    return this.session?.welcome;
  }

  /** Changes whenever a new socket is set up: state tied to a socket compares it. */
  get socketEpoch(): number {
    return this.session?.epoch ?? -1;
  }

  get serverLimits(): ServerLimits | undefined {
    return this.limits;
  }

  connect(): Promise<Welcome> {
    if (this.phase === 'ready' && this.session) return Promise.resolve(this.session.welcome);
    if (this.connecting) return this.connecting;
    if (this.phase === 'reconnecting') return this.whenReady().then(() => this.session!.welcome);
    this.phase = 'connecting';
    const loop = ++this.loop;
    this.connecting = (async () => {
      try {
        const session = await this.open();
        if (this.loop !== loop) {
          abandon(session.ws, CLOSE_NORMAL, 'disconnected');
          throw new CollabKitError('NOT_CONNECTED', 'disconnect() was called while connecting');
        }
        this.adopt(session);
        await this.hooks.setup(this.setupContext(session), false);
        if (this.loop !== loop || this.session !== session) {
          throw new CollabKitError('DISCONNECTED', 'The connection closed while it was being set up');
        }
        this.becomeReady();
        return session.welcome;
      } catch (error) {
        const failure = asError(error);
        if (this.loop === loop) {
          const keep = failure.code === 'AUTH_FAILED' || failure.code === 'CONNECTION_FAILED';
          this.stop(keep ? failure : notConnected());
          if (failure.code === 'AUTH_FAILED') this.emitAuthFailed(failure);
        }
        throw failure;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  /** Closes the socket for good: no reconnection; queued and pending requests fail. */
  disconnect(): void {
    if (this.phase === 'idle' && !this.session) return;
    this.stop(new CollabKitError('NOT_CONNECTED', 'disconnect() was called'), {
      code: CLOSE_NORMAL,
      reason: 'client disconnected',
    });
  }

  /** Resolves once the socket is ready (now, or after the running (re)connection). */
  whenReady(): Promise<void> {
    if (this.phase === 'ready') return Promise.resolve();
    if (this.phase === 'idle') return Promise.reject(notConnected());
    return new Promise((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
  }

  /**
   * Sends a request and resolves with its result. While the socket is (re)connecting the
   * request waits in a queue; it fails with TIMEOUT after `requestTimeoutMs` in any case.
   */
  request<M extends Method>(method: M, ...args: RequestArgs<M>): Promise<Result<M>> {
    const [params, options = {}] = args;
    return this.enqueue(method, params, options, undefined);
  }

  /**
   * Requests bound to the current socket: sent at once, never queued or sent again on another
   * socket (they fail with DISCONNECTED if it closes). For a sequence of requests that only
   * makes sense on one socket, such as a join and the pages of its users. `undefined` when
   * the socket is not ready.
   */
  bound(): SetupContext | undefined {
    const session = this.session;
    if (this.phase !== 'ready' || !session) return undefined;
    return this.setupContext(session);
  }

  /** Sends a frame without id (no answer; failures come back as `error` events). */
  notify<M extends Method>(method: M, ...[params]: ParamsArg<M>): boolean {
    const session = this.session;
    if (this.phase !== 'ready' || !session) return false;
    return this.sendNotification(session, method, params);
  }

  private setupContext(session: Session): SetupContext {
    return {
      welcome: session.welcome,
      request: (method, ...[params]) => this.enqueue(method, params, {}, session),
      notify: (method, ...[params]) => {
        if (this.session === session) this.sendNotification(session, method, params);
      },
    };
  }

  private sendNotification<M extends Method>(session: Session, method: M, params: ParamsArg<M>[0]): boolean {
    const frame = encodeFrame({ type: 'req', method, ...(params === undefined ? {} : { params }) });
    this.checkSize(frame, method);
    return this.write(session, frame);
  }

  private checkSize(frame: string, method: string): void {
    const limit = this.limits?.maxMessageBytes ?? DEFAULTS.maxMessageBytes;
    if (frame.length > limit / 4 && byteLength(frame) > limit) {
      throw new CollabKitError('PAYLOAD_TOO_LARGE', `The ${method} frame is over the server's ${limit}-byte limit`, {
        method,
      });
    }
  }

  private enqueue<M extends Method>(
    method: M,
    params: ParamsArg<M>[0],
    options: RequestOptions,
    session: Session | undefined,
  ): Promise<Result<M>> {
    return new Promise<Result<M>>((resolve, reject) => {
      if (!session && this.phase === 'idle') {
        reject(notConnected(method));
        return;
      }
      if (session && this.session !== session) {
        reject(disconnected(method));
        return;
      }
      const id = this.nextId++;
      const frame = encodeFrame({ type: 'req', id, method, ...(params === undefined ? {} : { params }) });
      try {
        this.checkSize(frame, method);
      } catch (error) {
        reject(error);
        return;
      }
      const timeoutMs = options.timeoutMs ?? this.options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
      const pending: Pending = {
        id,
        method,
        frame,
        // The server answers a method with that method's result (docs/protocol.md): here the
        // wire's word is taken for the type, as readServerFrame takes it for event data.
        resolve: (result) => resolve(result as Result<M>),
        reject,
        retry: options.retry ?? false,
        timer: setTimeout(() => {
          this.forget(pending);
          reject(new CollabKitError('TIMEOUT', `No answer to ${method} within ${timeoutMs} ms`, { method }));
        }, timeoutMs),
        ...(session ? { session } : {}),
      };
      if (session) {
        this.transmit(session, pending);
      } else if (this.phase === 'ready' && this.session) {
        this.transmit(this.session, pending);
      } else {
        this.queue.push(pending);
      }
    });
  }

  private transmit(session: Session, pending: Pending): void {
    this.inflight.set(pending.id, pending);
    if (!this.write(session, pending.frame)) {
      // The socket is closing: its close handler deals with in-flight requests.
    }
  }

  private write(session: Session, frame: string): boolean {
    if (session.ws.readyState !== OPEN) return false;
    try {
      session.ws.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  private forget(pending: Pending): void {
    this.inflight.delete(pending.id);
    const index = this.queue.indexOf(pending);
    if (index >= 0) this.queue.splice(index, 1);
  }

  private settle(pending: Pending): void {
    clearTimeout(pending.timer);
    this.forget(pending);
  }

  private flushQueue(): void {
    const session = this.session;
    if (!session) return;
    const queued = this.queue.splice(0);
    for (const pending of queued) this.transmit(session, pending);
  }

  /** Opens a socket and authenticates; resolves on `welcome`. */
  private async open(): Promise<Session> {
    let WebSocketImpl: WebSocketConstructor;
    try {
      WebSocketImpl = await resolveWebSocket(this.options.WebSocket);
    } catch (error) {
      throw new CollabKitError('CONNECTION_FAILED', (error as Error).message);
    }
    const timeoutMs = this.options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    return new Promise<Session>((resolve, reject) => {
      let ws: WebSocketLike;
      try {
        ws = new WebSocketImpl(this.url, [SUBPROTOCOL]);
      } catch (error) {
        reject(new CollabKitError('CONNECTION_FAILED', `Cannot open ${this.url}: ${(error as Error).message}`));
        return;
      }
      let done = false;
      const finish = (outcome: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (this.opening?.ws === ws) this.opening = undefined;
        outcome();
      };
      this.opening = {
        ws,
        fail: (error) =>
          finish(() => {
            abandon(ws, CLOSE_NORMAL, 'disconnected');
            reject(error);
          }),
      };
      const timer = setTimeout(() => {
        finish(() => {
          abandon(ws, CLOSE_NORMAL, 'timeout');
          reject(new CollabKitError('CONNECTION_FAILED', `No welcome from the server within ${timeoutMs} ms`));
        });
      }, timeoutMs);
      let refusal: { code: string; message: string } | undefined;
      // An `error` frame before `welcome` says why the server is about to close: too many
      // sockets of this user or its database failed (1013), an auth frame too large (1009).
      let serverError: CollabKitError | undefined;
      ws.onopen = () => {
        // The JWT goes in the first frame: URLs end up in logs.
        ws.send(encodeFrame({ type: 'auth', token: this.options.authToken, protocol: PROTOCOL_VERSION }));
      };
      ws.onmessage = (event) => {
        const frame = readServerFrame(String(event.data));
        if (frame?.type === 'welcome') {
          finish(() => {
            const session: Session = {
              ws,
              welcome: frame,
              epoch: ++this.epoch,
              connectedEmitted: false,
              lastMessageAt: Date.now(),
            };
            resolve(session);
          });
        } else if (frame?.type === 'error') {
          serverError = CollabKitError.fromBody(frame.error);
        } else if (frame?.type === 'authFailed') {
          refusal = { code: frame.code, message: frame.message };
          finish(() => {
            abandon(ws, CLOSE_NORMAL, 'authFailed');
            reject(authFailed(refusal!.message));
          });
        }
      };
      ws.onerror = () => {
        // A close event follows with the details.
      };
      ws.onclose = (event) => {
        finish(() => {
          if (event.code === CLOSE_AUTH_FAILED) {
            reject(authFailed(refusal?.message ?? (event.reason || 'The server rejected the token')));
          } else {
            const closing = `code ${event.code}${event.reason ? `: ${event.reason}` : ''}`;
            const error = serverError
              ? new CollabKitError(
                  'CONNECTION_FAILED',
                  `The server refused the connection: ${serverError.code}: ${serverError.message} (${closing})`,
                  { cause: serverError },
                )
              : new CollabKitError('CONNECTION_FAILED', `The socket closed before authenticating (${closing})`);
            refusalCloseCodes.set(error, event.code);
            reject(error);
          }
        });
      };
    });
  }

  /** Makes `session` the current socket: message and close handlers, heartbeats, `connected`. */
  private adopt(session: Session): void {
    this.session = session;
    this.limits = session.welcome.limits;
    const { ws } = session;
    ws.onmessage = (event) => this.receive(session, event.data);
    ws.onclose = (event) => this.closed(session, event.code, event.reason ?? '');
    ws.onerror = () => {};
    this.startHeartbeat(session);
    session.connectedEmitted = true;
    this.emit('connected');
  }

  private receive(session: Session, data: unknown): void {
    if (this.session !== session) return;
    session.lastMessageAt = Date.now();
    if (session.awaitingPongSince !== undefined) {
      session.awaitingPongSince = undefined;
      clearTimeout(session.pongTimer);
    }
    const frame = readServerFrame(String(data));
    switch (frame?.type) {
      case 'res': {
        // The SDK's ids are numbers: another one answers nothing of this client's.
        const pending = typeof frame.id === 'number' ? this.inflight.get(frame.id) : undefined;
        if (!pending) return;
        this.settle(pending);
        if (frame.ok) pending.resolve(frame.result);
        else pending.reject(CollabKitError.fromBody(frame.error, pending.method));
        return;
      }
      case 'event':
        this.hooks.event(frame);
        return;
      case 'error':
        this.emit('error', CollabKitError.fromBody(frame.error));
        return;
      default:
        // `pong`, a welcome or authFailed out of turn, and what this SDK does not know
        // (`undefined`: not JSON, or a newer server's frame or event).
        return;
    }
  }

  private startHeartbeat(session: Session): void {
    const { intervalMs, timeoutMs } = this.heartbeat;
    if (!intervalMs || intervalMs <= 0) return;
    session.pingTimer = setInterval(() => {
      if (this.session !== session || session.awaitingPongSince !== undefined) return;
      const sentAt = Date.now();
      session.awaitingPongSince = sentAt;
      this.write(session, PING);
      session.pongTimer = setTimeout(() => {
        // Timers may fire late (background tabs): only silence since the ping counts.
        if (this.session === session && session.lastMessageAt < sentAt) {
          abandon(session.ws, CLOSE_DEAD_SERVER, 'no heartbeat');
          this.closed(session, CLOSE_DEAD_SERVER, 'no answer to ping');
        }
      }, timeoutMs);
    }, intervalMs);
  }

  private stopHeartbeat(session: Session): void {
    clearInterval(session.pingTimer);
    clearTimeout(session.pongTimer);
  }

  /** The current socket closed (or was given up on). */
  private closed(session: Session, code: number, reason: string): void {
    if (this.session !== session) return;
    this.session = undefined;
    this.lastClose = { code, reason };
    this.stopHeartbeat(session);
    const reconnect =
      this.phase === 'ready' &&
      this.reconnectOptions.enabled &&
      code !== CLOSE_NORMAL &&
      code !== CLOSE_AUTH_FAILED &&
      code !== CLOSE_GONE;
    const keepsGoing = reconnect || this.phase === 'reconnecting';
    const resend: Pending[] = [];
    for (const pending of [...this.inflight.values()]) {
      if (pending.session === undefined && pending.retry && keepsGoing && code !== CLOSE_TOO_BIG) {
        this.inflight.delete(pending.id);
        resend.push(pending);
      } else {
        this.settle(pending);
        pending.reject(disconnected(pending.method));
      }
    }
    // Reads go again first, in the order they were made.
    this.queue.unshift(...resend);
    if (session.connectedEmitted) this.emit('disconnected', { code, reason, willReconnect: keepsGoing });
    if (this.phase !== 'ready') return; // a (re)connection in progress handles it
    if (reconnect) {
      void this.reconnectLoop();
      return;
    }
    if (code === CLOSE_AUTH_FAILED) {
      const error = authFailed(reason || 'The server rejected the token');
      this.stop(error);
      this.emitAuthFailed(error);
    } else {
      this.stop(notConnected());
    }
  }

  private async reconnectLoop(): Promise<void> {
    this.phase = 'reconnecting';
    const loop = ++this.loop;
    const { attempts, initialDelayMs, maxDelayMs, factor, jitter } = this.reconnectOptions;
    const current = () => this.loop === loop && this.phase === 'reconnecting';
    for (let attempt = 1; ; attempt++) {
      if (!current()) return;
      if (attempt > attempts) {
        this.stop(new CollabKitError('NOT_CONNECTED', `Reconnection failed after ${attempts} attempts`));
        this.emit('failed');
        return;
      }
      if (attempt > 1) {
        const base = Math.min(maxDelayMs, initialDelayMs * factor ** (attempt - 2));
        await this.sleep(base * (1 - Math.random() * Math.min(Math.max(jitter, 0), 1)));
        if (!current()) return;
      }
      this.emit('reconnecting', { attempt });
      if (!current()) return;
      let session: Session;
      try {
        session = await this.open();
      } catch (error) {
        if (!current()) return;
        const failure = asError(error);
        if (failure.code === 'AUTH_FAILED') {
          this.stop(failure);
          this.emitAuthFailed(failure);
          return;
        }
        // Tell the application why the server refused (too many sockets of this user, a
        // database outage): the next attempt waits its turn as for any failure.
        const refusal = failure.cause instanceof CollabKitError ? failure.cause : undefined;
        if (refusal) this.emit('error', refusal);
        if (!current()) return; // a listener called disconnect()
        if (refusalCloseCodes.get(failure) === CLOSE_TOO_BIG) {
          this.stop(new CollabKitError('NOT_CONNECTED', `Reconnection stopped: ${failure.message}`));
          this.emit('failed');
          return;
        }
        continue;
      }
      if (!current()) {
        abandon(session.ws, CLOSE_NORMAL, 'disconnected');
        return;
      }
      this.adopt(session);
      try {
        await this.hooks.setup(this.setupContext(session), true);
      } catch (error) {
        if (!current()) return;
        if (this.session === session) {
          // The server refused part of the rehydration (e.g. room.join): start over.
          this.emit('error', asError(error));
          abandon(session.ws, CLOSE_NORMAL, 'rehydration failed');
          this.closed(session, CLOSE_NORMAL, 'rehydration failed');
          continue;
        }
        const code = this.lastClose?.code;
        if (code === CLOSE_AUTH_FAILED) {
          const failure = authFailed(this.lastClose?.reason || 'The server rejected the token');
          this.stop(failure);
          this.emitAuthFailed(failure);
          return;
        }
        if (code === CLOSE_GONE || code === CLOSE_NORMAL) {
          this.stop(notConnected());
          return;
        }
        continue;
      }
      if (!current() || this.session !== session) continue;
      this.becomeReady();
      this.emit('reconnected');
      return;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }

  private becomeReady(): void {
    this.phase = 'ready';
    this.flushQueue();
    this.hooks.ready();
    const waiters = this.readyWaiters.splice(0);
    for (const waiter of waiters) waiter.resolve();
  }

  /** Ends everything: timers, sockets, the loop; fails what waits. */
  private stop(error: CollabKitError, close?: { code: number; reason: string }): void {
    this.phase = 'idle';
    this.loop++;
    this.wake?.();
    this.wake = undefined;
    this.opening?.fail(error);
    this.opening = undefined;
    const session = this.session;
    this.session = undefined;
    if (session) {
      this.stopHeartbeat(session);
      const { ws } = session;
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close(close?.code ?? CLOSE_NORMAL, close?.reason ?? 'bye');
      } catch {
        // Already closed.
      }
    }
    const inflight = [...this.inflight.values()];
    const queued = this.queue.splice(0);
    this.inflight.clear();
    for (const pending of inflight) {
      clearTimeout(pending.timer);
      pending.reject(disconnected(pending.method));
    }
    for (const pending of queued) {
      clearTimeout(pending.timer);
      pending.reject(withMethod(error, pending.method));
    }
    const waiters = this.readyWaiters.splice(0);
    for (const waiter of waiters) waiter.reject(error);
    if (session?.connectedEmitted) {
      this.emit('disconnected', {
        code: close?.code ?? CLOSE_NORMAL,
        reason: close?.reason ?? error.message,
        willReconnect: false,
      });
    }
  }

  private emitAuthFailed(error: CollabKitError): void {
    this.emit('authFailed', { code: 'UNAUTHORIZED', message: error.message });
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function asError(error: unknown): CollabKitError {
  if (error instanceof CollabKitError) return error;
  return new CollabKitError('INTERNAL_ERROR', error instanceof Error ? error.message : String(error));
}

function notConnected(method?: string): CollabKitError {
  return new CollabKitError(
    'NOT_CONNECTED',
    'The client is not connected: call connect() first',
    method ? { method } : {},
  );
}

function disconnected(method: string): CollabKitError {
  return new CollabKitError(
    'DISCONNECTED',
    `The connection closed before the server answered ${method}; its outcome is unknown`,
    { method },
  );
}

function authFailed(message: string): CollabKitError {
  return new CollabKitError('AUTH_FAILED', message);
}

function withMethod(error: CollabKitError, method: string): CollabKitError {
  return new CollabKitError(error.code, error.message, {
    ...(error.field !== undefined ? { field: error.field } : {}),
    method,
  });
}
