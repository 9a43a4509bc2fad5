// A WebSocket for the client's `WebSocket` option that records the frames the SDK sends and
// receives, and can hold back the frames it receives (in order) while a test acts: to make
// something happen between two pages of an answer, at a known point.

import type { WebSocketConstructor, WebSocketLike } from '@collab-kit/client';
import { WebSocket as WsWebSocket } from 'ws';
import { withTimeout } from './wait.js';

export interface SentRequest {
  id?: number;
  method: string;
  params?: any;
}

interface Hold {
  match: (frame: any, request: SentRequest | undefined) => boolean;
  action: (frame: any) => Promise<void>;
  done: { resolve: () => void; reject: (error: unknown) => void };
}

function parse(data: string): any {
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

export class SocketSpy {
  /** Every request frame sent, on every socket, in order. */
  readonly sent: SentRequest[] = [];
  /** Every frame received (parsed), on every socket, in order. */
  readonly received: any[] = [];
  /** The frames held back now (parsed), in order: a hold's action can wait for one to come. */
  readonly holding: any[] = [];
  private readonly byId = new Map<number, SentRequest>();
  private hold: Hold | undefined;
  readonly WebSocket: WebSocketConstructor;

  constructor() {
    const spy = this;
    this.WebSocket = class implements WebSocketLike {
      private readonly inner: WsWebSocket;
      private held: { data: any }[] | undefined;
      onopen: ((event: any) => void) | null = null;
      onmessage: ((event: { data: any }) => void) | null = null;
      onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null = null;
      onerror: ((event: any) => void) | null = null;

      constructor(url: string, protocols?: string | string[]) {
        this.inner = new WsWebSocket(url, protocols);
        this.inner.onopen = (event) => this.onopen?.(event);
        this.inner.onclose = (event) => this.onclose?.({ code: event.code, reason: event.reason, wasClean: event.wasClean });
        this.inner.onerror = (event) => this.onerror?.(event);
        this.inner.onmessage = (event) => this.receive({ data: String(event.data) });
      }

      get readyState(): number {
        return this.inner.readyState;
      }

      get protocol(): string {
        return this.inner.protocol;
      }

      send(data: string): void {
        try {
          const frame = JSON.parse(data);
          if (frame?.type === 'req') {
            const request: SentRequest = { id: frame.id, method: frame.method, params: frame.params };
            spy.sent.push(request);
            if (typeof frame.id === 'number') spy.byId.set(frame.id, request);
          }
        } catch {
          // Not JSON: not ours to record.
        }
        this.inner.send(data);
      }

      close(code?: number, reason?: string): void {
        this.inner.close(code, reason);
      }

      terminate(): void {
        this.inner.terminate();
      }

      private receive(event: { data: any }): void {
        if (this.held) {
          this.held.push(event);
          spy.holding.push(parse(event.data));
          return;
        }
        let frame: any;
        try {
          frame = JSON.parse(event.data);
        } catch {
          frame = undefined;
        }
        const hold = spy.hold;
        const request = frame?.type === 'res' ? spy.byId.get(frame.id) : undefined;
        if (hold && frame !== undefined && hold.match(frame, request)) {
          spy.hold = undefined;
          this.held = [event];
          spy.holding.push(frame);
          hold
            .action(frame)
            .then(hold.done.resolve, hold.done.reject)
            .finally(() => this.release());
          return;
        }
        this.deliver(event);
      }

      private release(): void {
        // In order, in one tick (as frames of one network read arrive), and past any other
        // hold: held frames were already looked at.
        const held = this.held ?? [];
        this.held = undefined;
        spy.holding.length = 0;
        for (const event of held) this.deliver(event);
      }

      private deliver(event: { data: any }): void {
        try {
          spy.received.push(JSON.parse(event.data));
        } catch {
          // Not JSON.
        }
        this.onmessage?.(event);
      }
    };
  }

  /**
   * The next received frame that matches (given the request it answers, for a response) is
   * held back, with every frame after it, until `action` settles; resolves or rejects as the
   * action does, once it has run.
   */
  holdOnce(
    match: (frame: any, request: SentRequest | undefined) => boolean,
    action: (frame: any) => Promise<void>,
    label: string,
    ms = 10_000,
  ): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.hold = { match, action, done: { resolve, reject } };
    });
    return withTimeout(done, ms, label);
  }

  /** The requests sent for `method`, in order. */
  requests(method: string): SentRequest[] {
    return this.sent.filter((r) => r.method === method);
  }

  /** The result the server answered to `request`. */
  resultOf(request: SentRequest): any {
    return this.received.find((f) => f?.type === 'res' && f.id === request.id)?.result;
  }

  /** Forgets what was recorded so far. */
  clear(): void {
    this.sent.length = 0;
    this.received.length = 0;
  }
}
