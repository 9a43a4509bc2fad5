// A TCP proxy between the SDK and the server, so that tests can cut the connection (destroy
// both sockets), refuse new ones, or freeze traffic without closing anything.

import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  private server: Server | undefined;
  private readonly pairs = new Set<{ client: Socket; upstream: Socket }>();
  private refusing = false;
  private frozen = false;
  /** The first bytes each client sent (its HTTP upgrade request). */
  readonly requests: string[] = [];
  /** The first bytes the server answered on each connection (its HTTP upgrade response). */
  readonly responses: string[] = [];
  port = 0;

  constructor(private readonly targetPort: number) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get connections(): number {
    return this.pairs.size;
  }

  async start(): Promise<this> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : 0;
    return this;
  }

  private accept(client: Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(this.targetPort, '127.0.0.1');
    const pair = { client, upstream };
    this.pairs.add(pair);
    let first = true;
    client.on('data', (chunk) => {
      if (first) {
        this.requests.push(chunk.toString('latin1'));
        first = false;
      }
      if (!this.frozen) upstream.write(chunk);
    });
    let firstAnswer = true;
    upstream.on('data', (chunk) => {
      if (firstAnswer) {
        this.responses.push(chunk.toString('latin1'));
        firstAnswer = false;
      }
      if (!this.frozen) client.write(chunk);
    });
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  }

  /** Destroys every open connection (both sides), like a network failure. */
  cut(): void {
    for (const { client, upstream } of this.pairs) {
      client.destroy();
      upstream.destroy();
    }
    this.pairs.clear();
  }

  /** New connections are accepted then destroyed at once (`true`), or served again. */
  refuse(refusing: boolean): void {
    this.refusing = refusing;
  }

  /** Drops all traffic in both directions without closing anything (a silent dead link). */
  freeze(frozen: boolean): void {
    this.frozen = frozen;
  }

  async stop(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
