// What the browser tests share: the server binary built by `cargo build`
// (target/debug/collabkit, or $COLLABKIT_BIN) started on a free port with a data directory of
// its own and no database, the headless Chromium that drives the pages (Debian's, or
// $CHROMIUM_PATH), and the directory the screenshots go to. Not a test itself: package.json
// names the test files one by one.

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import puppeteer from "puppeteer-core";

const here = dirname(fileURLToPath(import.meta.url));
export const binary = process.env.COLLABKIT_BIN ?? join(here, "../../target/debug/collabkit");
export const chromium = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/// Where screenshots go (git ignores it); made here so that a test can write to it at once.
export const artifacts = join(here, "artifacts");
mkdirSync(artifacts, { recursive: true });

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/// Polls `check` every 50 ms until it returns true; a check that throws counts as "not yet".
export async function waitUntil(check, limitMs, what) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Starts the server and resolves once /healthz answers. `prefix` names its temporary data
/// directory (so a leftover one says which test made it); `env` adds to or overrides the
/// defaults, e.g. a shorter flush interval. `stop` ends the server and removes the directory.
export async function startServer({ prefix = "collabkit-browser-", env = {} } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), prefix));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(binary, [], {
    env: {
      ...process.env,
      COLLABKIT_BIND: `127.0.0.1:${port}`,
      COLLABKIT_DATA_DIR: dataDir,
      // No PostgreSQL: the data directory holds everything, and each run starts empty.
      COLLABKIT_DATABASE_URL: "",
      COLLABKIT_LOG_LEVEL: "warn",
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const stop = () => {
    server.kill("SIGTERM");
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitUntil(async () => (await fetch(`${base}/healthz`)).ok, 30000, "the server");
  } catch (error) {
    // The caller never gets `stop`, so a server that did not come up is ended here.
    stop();
    throw error;
  }
  return { base, stop };
}

export function launchBrowser() {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    // CI runs as root (.ci/run), where Chromium's sandbox will not start; and a container's
    // /dev/shm may be too small for its shared memory.
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
}
