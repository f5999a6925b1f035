// gRPC through balancer with @grpc/grpc-js as client and servers: h2c backends (pools.NAME.protocol), unary, server-, client- and bidirectional-streaming calls, load spread, a backend killed mid-stream, deadlines, gRPC-style errors, and gRPC health checks.

import { afterEach, describe, expect, it } from 'vitest';
import http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type { BackendStateChange } from '../../src/balancer/pool.js';
import { perTestResources, type TestGateway } from '../helpers/gateway.js';

const resources = perTestResources();

interface Message {
  readonly from?: string;
  readonly text?: string;
  readonly n?: number;
  readonly delayMs?: number;
}

const serialize = (value: Message): Buffer => Buffer.from(JSON.stringify(value));
const deserialize = (bytes: Buffer): Message => JSON.parse(bytes.toString('utf8')) as Message;
const method = (name: string, responseStream: boolean, requestStream = false) => ({
  path: `/test.Echo/${name}`,
  requestStream,
  responseStream,
  requestSerialize: serialize,
  requestDeserialize: deserialize,
  responseSerialize: serialize,
  responseDeserialize: deserialize,
});
const echoService = { say: method('Say', false), count: method('Count', true), collect: method('Collect', false, true), chat: method('Chat', true, true) } as const;
const EchoClient = grpc.makeGenericClientConstructor(echoService as unknown as grpc.ServiceDefinition, 'Echo');

interface EchoServer {
  readonly name: string;
  readonly port: number;
  /** The server's grpc.health.v1 service: '' (the whole server) and test.Echo start SERVING. */
  readonly health: HealthImplementation;
  /** Calls that reached this server. */
  readonly calls: number;
  kill(): void;
}

const servers: grpc.Server[] = [];
afterEach(() => {
  while (servers.length > 0) servers.pop()!.forceShutdown();
});

/** A real gRPC server (h2c) answering Say with its name, and Count with n messages, delayMs apart, then a trailer. */
async function startEchoServer(name: string): Promise<EchoServer> {
  const server = new grpc.Server();
  servers.push(server);
  const echo = { calls: 0 };
  server.addService(echoService as unknown as grpc.ServiceDefinition, {
    say: (call: grpc.ServerUnaryCall<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
      echo.calls += 1;
      const delay = call.request.delayMs ?? 0;
      setTimeout(() => callback(null, { from: name, text: call.request.text ?? '' }), delay);
    },
    // Client streaming: the texts of every message, answered once the client has half-closed.
    collect: (call: grpc.ServerReadableStream<Message, Message>, callback: grpc.sendUnaryData<Message>) => {
      echo.calls += 1;
      const texts: string[] = [];
      call.on('data', (message: Message) => texts.push(message.text ?? ''));
      call.on('end', () => callback(null, { from: name, text: texts.join(','), n: texts.length }));
    },
    // Bidirectional: each message answered at once, so a client that waits for each answer needs both directions open.
    chat: (call: grpc.ServerDuplexStream<Message, Message>) => {
      echo.calls += 1;
      call.on('data', (message: Message) => call.write({ from: name, text: `re: ${message.text ?? ''}` }));
      call.on('end', () => call.end());
    },
    count: (call: grpc.ServerWritableStream<Message, Message>) => {
      echo.calls += 1;
      const n = call.request.n ?? 0;
      let sent = 0;
      const next = (): void => {
        if (call.cancelled) return;
        if (sent === n) {
          const trailer = new grpc.Metadata();
          trailer.set('x-counted', String(n));
          call.end(trailer);
          return;
        }
        sent += 1;
        call.write({ from: name, n: sent });
        setTimeout(next, call.request.delayMs ?? 0);
      };
      next();
    },
  });
  const health = new HealthImplementation({ '': 'SERVING', 'test.Echo': 'SERVING' });
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))),
  );
  return {
    name,
    port,
    health,
    get calls() {
      return echo.calls;
    },
    kill: () => server.forceShutdown(),
  };
}

function gatewayYaml(backends: readonly { port: number; id: string }[], extra = ''): string {
  const list = backends.map((backend) => `      - { url: http://127.0.0.1:${backend.port}, id: ${backend.id} }`).join('\n');
  return `listeners:\n  - { name: grpc, listen: "127.0.0.1:0", h2c: true }\npools:\n  grpc:\n    protocol: h2c\n    strategy: round-robin\n${extra}    backends:\n${list}\n`;
}

function client(gw: TestGateway): grpc.Client & Record<string, (...args: unknown[]) => unknown> {
  const port = gw.app.listenerAddresses.get('grpc')!.port;
  return new EchoClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & Record<string, (...args: unknown[]) => unknown>;
}

function say(c: ReturnType<typeof client>, request: Message, deadlineMs = 10_000): Promise<{ reply?: Message; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    c['say']!(request, { deadline: Date.now() + deadlineMs }, (error: grpc.ServiceError | null, reply: Message) => resolve(error === null ? { reply } : { error }));
  });
}

function count(c: ReturnType<typeof client>, request: Message, onMessage: (message: Message) => void = () => undefined): Promise<{ messages: Message[]; status: grpc.StatusObject }> {
  return new Promise((resolve) => {
    const messages: Message[] = [];
    const call = c['count']!(request, { deadline: Date.now() + 20_000 }) as grpc.ClientReadableStream<Message>;
    call.on('data', (message: Message) => {
      messages.push(message);
      onMessage(message);
    });
    call.on('error', () => undefined);
    call.on('status', (status: grpc.StatusObject) => resolve({ messages, status }));
  });
}

describe('gRPC through balancer to h2c backends', () => {
  it('unary calls spread over both backends; a server stream arrives whole with its trailers', async () => {
    const a = await startEchoServer('a');
    const b = await startEchoServer('b');
    const gw = await resources.gateway(gatewayYaml([{ port: a.port, id: 'a' }, { port: b.port, id: 'b' }]));
    const c = client(gw);
    try {
      const replies = [];
      for (let i = 0; i < 10; i++) replies.push(await say(c, { text: `hello ${i}` }));
      expect(replies.map((answer) => answer.error?.message ?? "ok")).toEqual(replies.map(() => "ok"));
      expect(new Set(replies.map((answer) => answer.reply!.from))).toEqual(new Set(['a', 'b']));
      expect(replies.map((answer) => answer.reply!.text)).toEqual(Array.from({ length: 10 }, (_, i) => `hello ${i}`));
      expect(a.calls).toBe(5);
      expect(b.calls).toBe(5);

      const streamed = await count(c, { n: 20 });
      expect(streamed.status.code).toBe(grpc.status.OK);
      expect(streamed.messages.map((message) => message.n)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(streamed.status.metadata.get('x-counted')).toEqual(['20']);

      // One h2 request that is not gRPC and one HTTP/1.1 request on the same h2c listener: /metrics tells the three apart.
      const port = gw.app.listenerAddresses.get('grpc')!.port;
      const session = http2.connect(`http://127.0.0.1:${port}`);
      await new Promise<void>((resolve, reject) => {
        const stream = session.request({ ':path': '/not-grpc' });
        stream.on('error', reject);
        stream.resume();
        stream.on('close', () => resolve());
      });
      session.close();
      // What the gRPC server answers a plain GET does not matter here, only that it was counted.
      await fetch(`http://127.0.0.1:${port}/plain`).then((res) => res.arrayBuffer()).catch(() => undefined);
      const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
      const requestsBy = (protocol: string) => Number(new RegExp(`^balancer_listener_requests_total\\{listener="grpc",protocol="${protocol}"\\} (\\d+)$`, 'm').exec(metrics)?.[1]);
      expect(requestsBy('grpc')).toBe(11);
      expect(requestsBy('h2')).toBe(1);
      expect(requestsBy('http1')).toBe(1);
    } finally {
      c.close();
    }
  });

  it('client streaming arrives whole; a bidirectional stream answers each message while the client still sends', async () => {
    const a = await startEchoServer('a');
    const gw = await resources.gateway(gatewayYaml([{ port: a.port, id: 'a' }]));
    const c = client(gw);
    try {
      const collected = await new Promise<{ reply?: Message; error?: grpc.ServiceError }>((resolve) => {
        const call = c['collect']!({ deadline: Date.now() + 10_000 }, (error: grpc.ServiceError | null, reply: Message) => resolve(error === null ? { reply } : { error })) as grpc.ClientWritableStream<Message>;
        for (let i = 0; i < 50; i++) call.write({ text: `m${i}` });
        call.end();
      });
      expect(collected.error).toBeUndefined();
      expect(collected.reply!.n).toBe(50);
      expect(collected.reply!.text).toBe(Array.from({ length: 50 }, (_, i) => `m${i}`).join(','));

      // Ping-pong: the next message is written only after the answer to the previous one came back through balancer.
      const call = c['chat']!({ deadline: Date.now() + 10_000 }) as grpc.ClientDuplexStream<Message, Message>;
      const answers: string[] = [];
      const finished = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      call.on('error', () => undefined);
      for (let i = 0; i < 10; i++) {
        const answer = new Promise<Message>((resolve) => call.once('data', resolve));
        call.write({ text: `ping ${i}` });
        answers.push((await answer).text ?? '');
      }
      call.end();
      expect((await finished).code).toBe(grpc.status.OK);
      expect(answers).toEqual(Array.from({ length: 10 }, (_, i) => `re: ping ${i}`));
    } finally {
      c.close();
    }
  });

  it('a backend killed mid-stream gives the client UNAVAILABLE, never a hang', async () => {
    const a = await startEchoServer('a');
    const gw = await resources.gateway(gatewayYaml([{ port: a.port, id: 'a' }]));
    const c = client(gw);
    try {
      const result = await count(c, { n: 1_000, delayMs: 20 }, (message) => {
        if (message.n === 3) a.kill();
      });
      expect(result.messages.length).toBeGreaterThanOrEqual(3);
      expect(result.messages.length).toBeLessThan(1_000);
      expect(result.status.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      c.close();
    }
  });

  it('no backend reachable: UNAVAILABLE from balancer; a call over its grpc-timeout: DEADLINE_EXCEEDED from balancer', async () => {
    const a = await startEchoServer('a');
    const port = a.port;
    a.kill();
    servers.pop();
    const gw = await resources.gateway(gatewayYaml([{ port, id: 'gone' }], '    retries: 0\n'));
    const c = client(gw);
    try {
      const refused = await say(c, { text: 'anyone?' });
      expect(refused.error?.code).toBe(grpc.status.UNAVAILABLE);
      expect(refused.error?.details).toMatch(/gone|backend/);
    } finally {
      c.close();
    }

    // The deadline is balancer's, not the client's: a bare HTTP/2 client that keeps no timer of its own.
    const slow = await startEchoServer('slow');
    const gw2 = await resources.gateway(gatewayYaml([{ port: slow.port, id: 'slow' }]));
    const session = http2.connect(`http://127.0.0.1:${gw2.app.listenerAddresses.get('grpc')!.port}`);
    try {
      const body = serialize({ text: 'slow', delayMs: 3_000 });
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, body.length]), body]);
      const fields = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/test.Echo/Say', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '300m' });
        let seen: Record<string, unknown> = {};
        stream.on('response', (headers) => (seen = { ...seen, ...headers }));
        stream.on('trailers', (trailers) => (seen = { ...seen, ...trailers }));
        stream.on('close', () => resolve(seen));
        stream.on('error', reject);
        stream.end(frame);
      });
      expect(fields[':status']).toBe(200);
      expect(fields['grpc-status']).toBe(String(grpc.status.DEADLINE_EXCEEDED));
    } finally {
      session.close();
    }
  });
});

/** Resolves with the next state change of `backend` to `to` in the gateway's data plane. */
function nextChange(gw: TestGateway, backend: string, to: BackendStateChange['to']): Promise<BackendStateChange> {
  return new Promise((resolve) => {
    const stop = gw.app.dataPlane.onBackendStateChange((change) => {
      if (change.backend !== backend || change.to !== to) return;
      stop();
      resolve(change);
    });
  });
}

describe('gRPC health checks (healthCheck.grpc)', () => {
  it('a backend whose service turns NOT_SERVING is taken out, and comes back when it serves again', async () => {
    const a = await startEchoServer('a');
    const b = await startEchoServer('b');
    const check = '    healthCheck: { grpc: { service: test.Echo }, interval: 200ms, timeout: 190ms, rise: 1, fall: 2, jitter: 0 }\n';
    const gw = await resources.gateway(gatewayYaml([{ port: a.port, id: 'a' }, { port: b.port, id: 'b' }], check));
    const c = client(gw);
    try {
      const down = nextChange(gw, 'b', 'down');
      b.health.setStatus('test.Echo', 'NOT_SERVING');
      expect((await down).reason).toMatch(/(first check failed|2 consecutive failed checks): NOT_SERVING$/);
      const callsOfB = b.calls;
      const replies = [];
      for (let i = 0; i < 6; i++) replies.push(await say(c, { text: `while b is out ${i}` }));
      expect(replies.map((answer) => answer.reply?.from ?? answer.error?.message)).toEqual(replies.map(() => 'a'));
      expect(b.calls).toBe(callsOfB);

      const up = nextChange(gw, 'b', 'up');
      b.health.setStatus('test.Echo', 'SERVING');
      await up;
      const after = [];
      for (let i = 0; i < 6; i++) after.push(await say(c, { text: `b is back ${i}` }));
      expect(new Set(after.map((answer) => answer.reply?.from))).toEqual(new Set(['a', 'b']));
    } finally {
      c.close();
    }
  });

  it('a service the backend does not know, or a backend gone, fails the check with what was seen', async () => {
    const a = await startEchoServer('a');
    const check = '    healthCheck: { grpc: { service: shop.Orders }, interval: 200ms, timeout: 190ms, rise: 1, fall: 2, jitter: 0 }\n';
    const gw = await resources.gateway(gatewayYaml([{ port: a.port, id: 'a' }], check));
    // grpc-health-check answers NOT_FOUND (5) for a service it has no status for, as the health protocol says.
    const down = await nextChange(gw, 'a', 'down');
    expect(down.reason).toMatch(/^first check failed: grpc-status 5\b/);

    const b = await startEchoServer('b');
    const gw2 = await resources.gateway(gatewayYaml([{ port: b.port, id: 'b' }], check.replace('shop.Orders', 'test.Echo')));
    const gone = nextChange(gw2, 'b', 'down');
    b.kill();
    expect((await gone).reason).toMatch(/(first check failed|2 consecutive failed checks): .*(ECONNREFUSED|ECONNRESET|closed)/);
  });
});
