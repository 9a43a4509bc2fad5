// Starts the real CollabKit server binary on a fresh SQLite database and a free 127.0.0.1
// port, creates an account with the CLI, and offers the REST calls the tests need. With
// COLLABKIT_SDK_NODES=2 (or 3) it starts a cluster instead: that many nodes on a fresh
// PostgreSQL schema, relaying room traffic through Redis.

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

// Every test file starts its own nodes and the files run in parallel: past three, a run
// measures the machine more than the relay.
const MAX_NODES = 3;

/** How many server nodes each test file runs: $COLLABKIT_SDK_NODES, 1 when unset. */
export const NODES = nodeCount(process.env.COLLABKIT_SDK_NODES);

// The cluster's PostgreSQL database (it makes a schema in it) and Redis: the Rust tests'
// variables and defaults.
const POSTGRES_URL = process.env.COLLABKIT_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.COLLABKIT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

function nodeCount(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > MAX_NODES) {
    throw new Error(`COLLABKIT_SDK_NODES must be a whole number from 1 to ${MAX_NODES}, not ${JSON.stringify(value)}`);
  }
  return count;
}

export interface Account {
  accountId: string;
  apiKey: string;
  token: string;
}

export interface TestServer {
  /** http://127.0.0.1:<port>: the first node's. */
  url: string;
  /** Every node's URL, the first node's first (one URL when not in cluster mode). */
  urls: string[];
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

/** One running `collabkit serve`. */
interface Node {
  proc: ChildProcess;
  port: number;
  url: string;
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

/** `accounts create` with the CLI, against the database `env` names. */
async function createAccount(env: Record<string, string>): Promise<Account> {
  const created = await promisify(execFile)(BINARY, ['accounts', 'create', '--name', 'SDK tests', '--json'], {
    env: { ...env, COLLABKIT_BIND: '127.0.0.1:0' },
    timeout: START_TIMEOUT_MS,
  });
  return JSON.parse(created.stdout.trim().split('\n').pop()!) as Account;
}

/** `collabkit serve` on a free port, logging to `logPath`; undefined if it never got healthy. */
async function startNode(env: Record<string, string>, logPath: string): Promise<Node | undefined> {
  // Another process may take the free port before the server binds it: try another.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    const logFd = openSync(logPath, 'a');
    const candidate = spawn(BINARY, ['serve'], {
      env: { ...env, COLLABKIT_BIND: `127.0.0.1:${port}` },
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    if (await healthy(port, candidate)) return { proc: candidate, port, url: `http://127.0.0.1:${port}` };
    candidate.kill('SIGKILL');
  }
  return undefined;
}

async function stopNode({ proc }: Node): Promise<void> {
  // A process ended by a signal has no exit code, and will not emit 'exit' again.
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise<void>((done) => proc.once('exit', () => done()));
  proc.kill('SIGTERM');
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

/** The REST calls of `account` against `url`. */
function restClient(url: string, account: Account) {
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
  };
}

export async function startServer(env: Record<string, string> = {}): Promise<TestServer> {
  if (!existsSync(BINARY)) {
    throw new Error(`No server binary at ${BINARY}: run \`cargo build -j2 --bin collabkit\` in the repository first`);
  }
  return NODES > 1 ? startCluster(NODES, env) : startSingle(env);
}

async function startSingle(env: Record<string, string>): Promise<TestServer> {
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
  const account = await createAccount(baseEnv);

  const logPath = join(dataDir, 'server.log');
  const node = await startNode(baseEnv, logPath);
  if (!node) throw new Error(`The server did not start:\n${readFileSync(logPath, 'utf8')}`);

  return {
    url: node.url,
    urls: [node.url],
    port: node.port,
    secret,
    account,
    dataDir,
    ...restClient(node.url, account),
    log: () => readFileSync(logPath, 'utf8'),
    async stop() {
      await stopNode(node);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * `count` nodes on a fresh PostgreSQL schema and one Redis, each with its own port and data
 * directory, sharing the secrets a cluster must share. Resolves once every node relays.
 */
async function startCluster(count: number, env: Record<string, string>): Promise<TestServer> {
  // `t_<unix seconds>_`: the Rust tests drop schemas so named an hour after they were made,
  // so a run killed before stop() leaves nothing for long.
  const schema = `t_${Math.floor(Date.now() / 1000)}_${randomBytes(16).toString('hex')}`;
  await psql(`CREATE SCHEMA ${schema}`);
  const separator = POSTGRES_URL.includes('?') ? '&' : '?';
  const databaseUrl = `${POSTGRES_URL}${separator}options[search_path]=${schema}`;
  const secret = randomBytes(24).toString('hex');
  // One key for all: a node with another could not open the webhook secrets the others sealed.
  const secretsKey = randomBytes(32).toString('base64');
  const members = Array.from({ length: count }, (_, i) => {
    const dataDir = mkdtempSync(join(tmpdir(), 'collabkit-sdk-'));
    return { id: `sdk-${schema}-${i + 1}`, dataDir, logPath: join(dataDir, 'server.log') };
  });
  const nodeEnv = (member: (typeof members)[number]): Record<string, string> => ({
    ...(process.env as Record<string, string>),
    COLLABKIT_DATA_DIR: member.dataDir,
    COLLABKIT_DATABASE_URL: databaseUrl,
    COLLABKIT_JWT_SECRET: secret,
    COLLABKIT_SECRETS_KEY: secretsKey,
    COLLABKIT_REDIS_URL: REDIS_URL,
    COLLABKIT_REALTIME_NODE_ID: member.id,
    COLLABKIT_LOG_LEVEL: process.env.COLLABKIT_LOG_LEVEL ?? 'warn',
    COLLABKIT_LOG_FORMAT: 'human',
    NO_COLOR: '1',
    ...env,
  });

  const nodes: Node[] = [];
  const log = () =>
    members
      .map((member, i) => {
        const text = existsSync(member.logPath) ? readFileSync(member.logPath, 'utf8') : '';
        return `==== node ${i + 1} (${member.id}${nodes[i] ? `, ${nodes[i]!.url}` : ''}) ====\n${text}`;
      })
      .join('\n');
  const stop = async () => {
    await Promise.all(nodes.map(stopNode));
    for (const { dataDir } of members) rmSync(dataDir, { recursive: true, force: true });
    await psql(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  };

  try {
    // The CLI runs the migrations, so the nodes start on a migrated schema and together.
    const account = await createAccount(nodeEnv(members[0]!));
    const started = await Promise.all(members.map((member) => startNode(nodeEnv(member), member.logPath)));
    for (const node of started) if (node) nodes.push(node);
    if (nodes.length < count) throw new Error(`${count - nodes.length} of ${count} nodes did not start`);
    await Promise.all(nodes.map((node) => relaying(node)));
    const first = nodes[0]!;
    return {
      url: first.url,
      urls: nodes.map((node) => node.url),
      port: first.port,
      secret,
      account,
      dataDir: members[0]!.dataDir,
      ...restClient(first.url, account),
      log,
      stop,
    };
  } catch (error) {
    const message = `The cluster did not start: ${error instanceof Error ? error.message : String(error)}\n${log()}`;
    await stop();
    throw new Error(message);
  }
}

/** Runs `sql` with the psql CLI on the PostgreSQL database the schemas are made in. */
async function psql(sql: string): Promise<void> {
  await promisify(execFile)('psql', [POSTGRES_URL, '-v', 'ON_ERROR_STOP=1', '-q', '-c', sql], {
    timeout: START_TIMEOUT_MS,
  });
}

/**
 * Polls GET /readyz until the node says it relays through Redis with no warning (its Redis
 * connections are up), so that a test's first cross-node event is not lost to a relay still
 * connecting.
 */
async function relaying(node: Node): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = 'no answer';
  while (Date.now() < deadline && node.proc.exitCode === null && node.proc.signalCode === null) {
    try {
      const response = await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      const text = await response.text();
      last = `${response.status} ${text}`;
      const data = (JSON.parse(text) as RestEnvelope<{ relay?: string; warning?: string }>).data;
      if (response.ok && data?.relay === 'redis' && data.warning === undefined) return;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${node.url} is not relaying through Redis (last /readyz: ${last})`);
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
