// Which WebSocket implementation to use: the one given in the options, else the platform's
// (browsers, Deno, Bun, Node.js 22+), else the `ws` package (Node.js 20), loaded only then.

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
  cached ??= loadWs();
  return cached;
}

async function loadWs(): Promise<WebSocketConstructor> {
  // A computed name keeps bundlers from pulling `ws` into browser builds.
  const name = 'ws';
  try {
    const module: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor } = await import(
      /* webpackIgnore: true */ /* @vite-ignore */ name
    );
    return (module.WebSocket ?? module.default) as WebSocketConstructor;
  } catch (error) {
    cached = undefined;
    throw new Error(
      'No WebSocket implementation: this runtime has no global WebSocket. On Node.js 20, ' +
        'install the `ws` package (npm install ws) or pass `WebSocket` in the client options.',
      { cause: error },
    );
  }
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
