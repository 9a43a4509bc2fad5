// The browser build's fallback (package.json `imports`, condition `browser`): browsers have a
// global WebSocket, so there is nothing to load, and nothing here names `ws` for a bundler to
// pull in.

import type { WebSocketConstructor } from './websocket.js';

export async function loadFallbackWebSocket(): Promise<WebSocketConstructor> {
  throw new Error(
    'No WebSocket implementation: this runtime has no global WebSocket. Pass `WebSocket` in ' +
      'the client options.',
  );
}
