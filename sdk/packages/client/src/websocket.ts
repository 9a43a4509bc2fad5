// Which WebSocket implementation to use: the one given in the options, else the platform's
// (browsers, Deno, Bun, Node.js 22+), else the runtime's fallback (fallback-websocket.ts: the
// `ws` package on Node.js 20), loaded only then.

import { loadFallbackWebSocket } from '#fallback-websocket';

/**
 * The part of the standard WebSocket API the SDK uses. The event handlers take `any`, as the
 * DOM's own do (`MessageEvent.data`), so that every implementation fits, whatever it calls its
 * events; what arrives is `unknown` to the SDK, which reads `data` as text and narrows it.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  onopen: ((event: any) => void) | null;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  onerror: ((event: any) => void) | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export const OPEN = 1;

let cached: Promise<WebSocketConstructor> | undefined;

export function resolveWebSocket(given?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (given) return Promise.resolve(given);
  const platform = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof platform === 'function') return Promise.resolve(platform);
  cached ??= loadFallbackWebSocket().catch((error: unknown) => {
    // Not found this time (`ws` not installed yet): the next connect() looks again.
    cached = undefined;
    throw error;
  });
  return cached;
}

/** Ends a socket at once: `terminate()` where there is one (`ws`), else a close. */
export function abandon(socket: WebSocketLike, code: number, reason: string): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  socket.onerror = () => {};
  const terminate = (socket as { terminate?: () => void }).terminate;
  try {
    if (typeof terminate === 'function') terminate.call(socket);
    else socket.close(code, reason);
  } catch {
    // Already closed.
  }
}
