// The WebSocket to fall back on when the runtime has none (Node.js 20): the `ws` package, an
// optional peer dependency, loaded on first use. Bundlers building for the browser take
// fallback-websocket.browser.ts instead (package.json `imports`, condition `browser`), so no
// browser bundle holds even a reference to `ws`.

import type { WebSocketConstructor } from './websocket.js';

export async function loadFallbackWebSocket(): Promise<WebSocketConstructor> {
  // A computed name, so that a bundler building for Node.js does not require `ws` to be
  // installed (Node.js 22+ has a global WebSocket and never gets here).
  const name = 'ws';
  try {
    const module: { WebSocket?: WebSocketConstructor; default?: WebSocketConstructor } = await import(
      /* webpackIgnore: true */ /* @vite-ignore */ name
    );
    return (module.WebSocket ?? module.default) as WebSocketConstructor;
  } catch (error) {
    throw new Error(
      'No WebSocket implementation: this runtime has no global WebSocket. On Node.js 20, ' +
        'install the `ws` package (npm install ws) or pass `WebSocket` in the client options.',
      { cause: error },
    );
  }
}
