// The rendezvous key-value service of a data-parallel run, hosted by the launcher of node rank 0
// (src/parallel/launcher.ts). Ranks publish their Gloo transport addresses here (native/dist/tcp_store.h
// is the client the addon uses; its header describes the protocol); launchers record here which
// rank failed, so that every node can name it. It carries no gradients: the all-reduce runs over
// Gloo's own TCP transport.
import * as net from 'node:net';

const OP_SET = 0x53; // 'S'
const OP_GET = 0x47; // 'G'

/** Parses requests from a byte stream; calls onRequest for each complete one. */
function requestParser(onRequest: (op: number, key: string, value: Buffer | null) => void) {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 5) return;
      const op = buf[0];
      const klen = buf.readUInt32LE(1);
      if (buf.length < 5 + klen) return;
      const key = buf.toString('utf8', 5, 5 + klen);
      let end = 5 + klen;
      let value: Buffer | null = null;
      if (op === OP_SET) {
        if (buf.length < end + 4) return;
        const vlen = buf.readUInt32LE(end);
        if (buf.length < end + 4 + vlen) return;
        value = Buffer.from(buf.subarray(end + 4, end + 4 + vlen));
        end += 4 + vlen;
      } else if (op !== OP_GET) throw new Error(`unknown request ${op}`);
      buf = buf.subarray(end);
      onRequest(op, key, value);
    }
  };
}

export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly host: string, readonly port: number) {}

  /** Listens on host:port (port 0: a free one, see .port). */
  static listen(host: string, port: number): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const srv = net.createServer();
      let self: StoreServer | undefined;
      srv.on('connection', (sock) => self!.serve(sock));
      srv.once('error', (e: NodeJS.ErrnoException) =>
        reject(new Error(`cannot host the rendezvous service on ${host}:${port}: ${e.code ?? e.message}`
          + (e.code === 'EADDRINUSE' ? ' (the port is taken: choose another --master port)' : ''))));
      srv.listen(port, host, () => {
        self = new StoreServer(srv, host, (srv.address() as net.AddressInfo).port);
        resolve(self);
      });
    });
  }

  set(key: string, value: Buffer | string): void {
    this.data.set(key, Buffer.from(value));
  }

  get(key: string): Buffer | undefined {
    return this.data.get(key);
  }

  keys(prefix: string): string[] {
    return [...this.data.keys()].filter((k) => k.startsWith(prefix));
  }

  private serve(sock: net.Socket): void {
    this.sockets.add(sock);
    sock.setNoDelay(true);
    sock.on('close', () => this.sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const parse = requestParser((op, key, value) => {
      if (op === OP_SET) {
        this.data.set(key, value!);
        sock.write(Buffer.from([1]));
      } else {
        const v = this.data.get(key);
        if (v === undefined) sock.write(Buffer.from([0]));
        else {
          const head = Buffer.alloc(5);
          head[0] = 1;
          head.writeUInt32LE(v.length, 1);
          sock.write(Buffer.concat([head, v]));
        }
      }
    });
    sock.on('data', (chunk: Buffer) => {
      try {
        parse(chunk);
      } catch {
        sock.destroy();
      }
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** A client of StoreServer for launchers of other nodes (set, and get without waiting). */
export class StoreClient {
  private queue: Array<(r: Buffer | null) => void> = [];
  private buf: Buffer = Buffer.alloc(0);

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      this.buf = Buffer.concat([this.buf, c]);
      this.drain();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      for (const q of this.queue.splice(0)) q(null);
    });
  }

  /** Connects, retrying until timeoutMs passes (the service may start after this client). */
  static async connect(host: string, port: number, timeoutMs: number): Promise<StoreClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const sock = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(port, host, () => resolve(s));
          s.once('error', reject);
        });
        sock.setNoDelay(true);
        return new StoreClient(sock);
      } catch (e) {
        if (Date.now() > deadline)
          throw new Error(`cannot reach the rendezvous service at ${host}:${port} `
            + `(${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): is the launcher with --node-rank 0 `
            + 'running there?');
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private drain(): void {
    for (;;) {
      if (this.queue.length === 0 || this.buf.length < 1) return;
      const kind = this.queue[0] as ((r: Buffer | null) => void) & { get?: boolean };
      if (!kind.get) {
        this.buf = this.buf.subarray(1);
        this.queue.shift()!(Buffer.alloc(0));
        continue;
      }
      if (this.buf[0] === 0) {
        this.buf = this.buf.subarray(1);
        this.queue.shift()!(null);
        continue;
      }
      if (this.buf.length < 5) return;
      const n = this.buf.readUInt32LE(1);
      if (this.buf.length < 5 + n) return;
      const v = Buffer.from(this.buf.subarray(5, 5 + n));
      this.buf = this.buf.subarray(5 + n);
      this.queue.shift()!(v);
    }
  }

  private request(frame: Buffer, get: boolean): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const cb = Object.assign((r: Buffer | null) => resolve(r), { get });
      this.queue.push(cb);
      this.sock.write(frame);
    });
  }

  async set(key: string, value: Buffer | string): Promise<void> {
    const k = Buffer.from(key), v = Buffer.from(value);
    const head = Buffer.alloc(5);
    head[0] = OP_SET;
    head.writeUInt32LE(k.length, 1);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(v.length);
    await this.request(Buffer.concat([head, k, len, v]), false);
  }

  /** The value, or null when the key is absent (or the connection is gone). */
  get(key: string): Promise<Buffer | null> {
    const k = Buffer.from(key);
    const head = Buffer.alloc(5);
    head[0] = OP_GET;
    head.writeUInt32LE(k.length, 1);
    return this.request(Buffer.concat([head, k]), true);
  }

  close(): void {
    this.sock.destroy();
  }
}
