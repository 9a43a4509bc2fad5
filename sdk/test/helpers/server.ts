// Starts the real CollabKit server binary on a fresh SQLite database and a free 127.0.0.1
// port, creates an account with the CLI, and offers the REST calls the tests need.

import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = fileURLToPath(new URL('.', import.meta.url));
/** The server binary: $COLLABKIT_BIN, else the repository's debug build. */
export const BINARY = process.env.COLLABKIT_BIN ?? resolve(here, '../../../../target/debug/collabkit');

const START_TIMEOUT_MS = 30_000;

export interface Account {
  accountId: string;
  apiKey: string;
  token: string;
}

export interface TestServer {
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  secret: string;
  account: Account;
  dataDir: string;
  rest<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: RestEnvelope<T> }>;
  createRoom(name?: string): Promise<Room>;
  createUser(roomId: string, name?: string): Promise<{ user: any; token: string }>;
  stop(): Promise<void>;
  log(): string;
}

export interface Room {
  id: string;
  name: string;
  [field: string]: unknown;
}

export interface RestEnvelope<T> {
  success: boolean;
  data: T;
  error: { code: string; message: string; field?: string } | null;
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  if (!existsSync(BINARY)) {
    throw new Error(`No server binary at ${BINARY}: run \`cargo build -j2 --bin collabkit\` in the repository first`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'collabkit-sdk-'));
  const secret = randomBytes(24).toString('hex');
  const baseEnv: Record<string, string> = {
    ...(process.env as Record<string, string>),
    COLLABKIT_DATA_DIR: dataDir,
    COLLABKIT_DATABASE_URL: `sqlite://${dataDir}/db.sqlite`,
    COLLABKIT_JWT_SECRET: secret,
    COLLABKIT_LOG_LEVEL: process.env.COLLABKIT_LOG_LEVEL ?? 'warn',
    COLLABKIT_LOG_FORMAT: 'human',
    NO_COLOR: '1',
    ...env,
  };
  const created = await promisify(execFile)(BINARY, ['accounts', 'create', '--name', 'SDK tests', '--json'], {
    env: { ...baseEnv, COLLABKIT_BIND: '127.0.0.1:0' },
    timeout: START_TIMEOUT_MS,
  });
  const account = JSON.parse(created.stdout.trim().split('\n').pop()!) as Account;

  const logPath = join(dataDir, 'server.log');
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 1; attempt <= 3 && !child; attempt++) {
    port = await freePort();
    const logFd = openSync(logPath, 'a');
    const candidate = spawn(BINARY, ['serve'], {
      env: { ...baseEnv, COLLABKIT_BIND: `127.0.0.1:${port}` },
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    if (await healthy(port, candidate)) child = candidate;
    else candidate.kill('SIGKILL');
  }
  if (!child) throw new Error(`The server did not start:\n${readFileSync(logPath, 'utf8')}`);
  const proc = child;
  const url = `http://127.0.0.1:${port}`;

  const rest = async <T>(method: string, path: string, body?: unknown) => {
    const response = await fetch(`${url}/v1/accounts/${account.accountId}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${account.token}`,
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, body: (await response.json()) as RestEnvelope<T> };
  };

  return {
    url,
    port,
    secret,
    account,
    dataDir,
    rest,
    async createRoom(name = `room-${randomBytes(4).toString('hex')}`) {
      const { status, body } = await rest<{ room: Room }>('POST', '/rooms', { name });
      if (status !== 201) throw new Error(`create room: ${status} ${JSON.stringify(body)}`);
      return body.data.room;
    },
    async createUser(roomId: string, name = `user-${randomBytes(3).toString('hex')}`) {
      const { status, body } = await rest<{ user: any; token: string }>('POST', '/users', { name, roomId });
      if (status !== 201) throw new Error(`create user: ${status} ${JSON.stringify(body)}`);
      return { user: body.data.user, token: body.data.token };
    },
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise<void>((done) => proc.once('exit', () => done()));
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls GET /healthz until it answers 200, the process exits, or the time runs out. */
async function healthy(port: number, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let exited = false;
  child.once('exit', () => (exited = true));
  while (Date.now() < deadline && !exited) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return true;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** An HS256 JWT signed with `secret`: for expired and forged tokens. */
export function signJwt(claims: Record<string, unknown>, secret: string): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const head = encode({ alg: 'HS256', typ: 'JWT' });
  const body = encode(claims);
  const signature = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

export function claimsOf(token: string): Record<string, any> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
}
