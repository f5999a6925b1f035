// Test backends: real HTTP servers on 127.0.0.1 port 0 that record what reached them.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';

/**
 * Answers a WebSocket upgrade request with 101 and its Sec-WebSocket-Accept (RFC 6455 section 4.2.2);
 * `extraFields` are added as they are, each line ending in CRLF.
 */
export function acceptWebSocket(req: http.IncomingMessage, socket: net.Socket, extraFields = ''): void {
  const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n${extraFields}Sec-WebSocket-Accept: ${accept}\r\n\r\n`);
}

export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly bodyBytes: number;
  readonly bodySha256: string;
}

export interface TestBackend {
  readonly name: string;
  readonly url: string;
  readonly port: number;
  readonly seen: SeenRequest[];
  readonly server: http.Server;
  /** Replaces the default handler (answers `name`). */
  handle(handler: http.RequestListener | null): void;
  close(): Promise<void>;
  /** Listens again on the same port after close(). */
  restart(): Promise<void>;
}

export async function startBackend(name: string, port = 0): Promise<TestBackend> {
  let custom: http.RequestListener | null = null;
  const seen: SeenRequest[] = [];
  const listener: http.RequestListener = (req, res) => {
    if (custom !== null) {
      custom(req, res);
      return;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
      hash.update(chunk);
    });
    req.on('end', () => {
      const digest = hash.digest('hex');
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: bytes, bodySha256: digest });
      const body = JSON.stringify({ backend: name, bytes, sha256: digest });
      res.writeHead(200, { 'content-type': 'application/json', 'x-backend': name, 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
  let server = http.createServer(listener);
  await listen(server, port);
  const actualPort = (server.address() as AddressInfo).port;
  const backend: TestBackend = {
    name,
    url: `http://127.0.0.1:${actualPort}`,
    port: actualPort,
    seen,
    get server() {
      return server;
    },
    handle(handler) {
      custom = handler;
    },
    close: () => closeServer(server),
    restart: async () => {
      server = http.createServer(listener);
      await listen(server, actualPort);
    },
  };
  return backend;
}

function listen(server: http.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
}

export function closeServer(server: http.Server | net.Server): Promise<void> {
  return new Promise((resolve) => {
    if ('closeAllConnections' in server) server.closeAllConnections();
    server.close(() => resolve());
  });
}

export interface SimpleResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** One request with its own connection unless an agent is given. */
export function request(
  url: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer; agent?: http.Agent | false } = {},
): Promise<SimpleResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: options.agent ?? false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** One request over its own TLS connection, trusting only the CA of the PEM file `caFile`; says which certificate the server presented. */
export function httpsRequest(
  url: string,
  caFile: string,
  options: { method?: string; headers?: http.OutgoingHttpHeaders; body?: string | Buffer } = {},
): Promise<SimpleResponse & { readonly fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: options.method ?? 'GET', headers: options.headers ?? {}, ca: readFileSync(caFile), agent: false }, (res) => {
      const fingerprint = (res.socket as TLSSocket).getPeerCertificate().fingerprint256;
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), fingerprint }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Sends raw bytes and collects everything the server sends until it closes or `timeoutMs` passes. */
export function rawExchange(port: number, payload: string | Buffer, timeoutMs = 3_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('connect', () => socket.write(payload));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      if (chunks.length > 0) resolve(Buffer.concat(chunks).toString('latin1'));
      else reject(error);
    });
  });
}

