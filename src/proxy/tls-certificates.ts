// A TLS listener's certificates: read from their files, chosen per connection by SNI name, re-read when the files change.

import { X509Certificate } from 'node:crypto';
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import tls, { type SecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { TlsListenerConfig } from '../config/schema.js';
import type { Logger } from '../log.js';
import { errorMessage } from '../errors.js';
import { readListenerTls, readTlsFile } from './listener-tls.js';

/** The contexts built from one reading of the files, and the names each certificate answers to. */
interface CertificateTable {
  /** The first certificate's options: the server's own context, for clients without SNI or with an unknown name. */
  readonly defaultOptions: SecureContextOptions;
  /** Exact DNS name (lower case) -> context; the first certificate in file order that carries the name wins. */
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** `*.example.com` stored as `example.com` -> context: one label, as RFC 6125 wildcards match. */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
}

/** The DNS names a certificate is valid for: its subjectAltName DNS entries, else (legacy certificates) its CN. */
export function certificateNames(pem: Buffer): string[] {
  const certificate = new X509Certificate(pem);
  const names: string[] = [];
  for (const entry of (certificate.subjectAltName ?? '').split(/,\s*/)) {
    if (entry.startsWith('DNS:')) names.push(entry.slice(4).toLowerCase());
  }
  if (names.length === 0) {
    const commonName = /(?:^|\n)CN=([^\n]+)/.exec(certificate.subject)?.[1];
    if (commonName !== undefined) names.push(commonName.toLowerCase());
  }
  return names;
}

/** What every context of the listener shares: versions, ciphers, and the CAs client certificates must chain to. */
function sharedOptions(config: TlsListenerConfig, clientCa: Buffer | null): SecureContextOptions {
  return {
    minVersion: config.minVersion,
    ...(config.ciphers === null ? {} : { ciphers: config.ciphers }),
    ...(clientCa === null ? {} : { ca: clientCa }),
  };
}

/** Reads every file; throws (naming the file) when one cannot be read or a certificate does not fit its key. */
function readTable(config: TlsListenerConfig): CertificateTable {
  const clientCa = config.clientCa === null ? null : readTlsFile('client CA file', config.clientCa);
  const shared = sharedOptions(config, clientCa);
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  let defaultOptions: SecureContextOptions | null = null;
  for (const pair of config.certificates) {
    const options: SecureContextOptions = { ...shared, ...readListenerTls(pair) };
    let context: SecureContext;
    let names: string[];
    try {
      context = tls.createSecureContext(options);
      names = certificateNames(options.cert as Buffer);
    } catch (error) {
      throw new Error(`cannot use the TLS certificate ${pair.cert} with the key ${pair.key}: ${errorMessage(error)}`);
    }
    defaultOptions ??= options;
    for (const name of names) {
      const table = name.startsWith('*.') ? wildcard : exact;
      const key = name.startsWith('*.') ? name.slice(2) : name;
      if (!table.has(key)) table.set(key, context);
    }
  }
  if (defaultOptions === null) throw new Error('no certificate configured');
  return { defaultOptions, exact, wildcard };
}

/** Throws, naming the file, when a listener's TLS files cannot be read or a certificate does not fit its key. */
export function checkTlsFiles(config: TlsListenerConfig): void {
  readTable(config);
}

export class TlsCertificates {
  private table: CertificateTable;
  private watched: Array<{ file: string; listener: (current: Stats, previous: Stats) => void }> = [];

  /** Throws when a file cannot be read or a pair does not fit: a listener never starts with half its certificates. */
  constructor(
    readonly config: TlsListenerConfig,
    private readonly logger: Logger,
  ) {
    this.table = readTable(config);
  }

  /** Options for https / http2 secure servers: the default certificate and client certificates (SNI: contextFor). */
  serverOptions(): tls.TlsOptions {
    const auth = this.config.clientAuth;
    return {
      ...this.table.defaultOptions,
      requestCert: auth !== 'none',
      rejectUnauthorized: auth === 'require',
    };
  }

  /** The context for an SNI name: an exact name first, then a wildcard one label up; undefined: the default. */
  contextFor(servername: string): SecureContext | undefined {
    const name = servername.toLowerCase();
    const exact = this.table.exact.get(name);
    if (exact !== undefined) return exact;
    const dot = name.indexOf('.');
    return dot === -1 ? undefined : this.table.wildcard.get(name.slice(dot + 1));
  }

  /** Makes `server` serve these certificates from now on (a live edit of the listener's tls). */
  install(server: tls.Server): void {
    server.setSecureContext(this.table.defaultOptions);
  }

  /** Re-reads the files into `server` when one changes, so renewals need no restart; a bad set keeps the old one. */
  watch(server: tls.Server): void {
    const reload = (): void => {
      try {
        const table = readTable(this.config);
        server.setSecureContext(table.defaultOptions);
        this.table = table;
        this.logger.info('TLS certificates reloaded', { certs: this.config.certificates.map((entry) => entry.cert) });
      } catch (error) {
        this.logger.error('TLS certificate reload failed; keeping the previous ones', { err: errorMessage(error) });
      }
    };
    const files = [...this.config.certificates.flatMap((entry) => [entry.cert, entry.key]), ...(this.config.clientCa === null ? [] : [this.config.clientCa])];
    this.unwatch();
    for (const file of files) {
      const listener = (current: Stats, previous: Stats): void => {
        if (current.mtimeMs !== previous.mtimeMs || current.size !== previous.size) reload();
      };
      watchFile(file, { interval: 1_000, persistent: false }, listener);
      this.watched.push({ file, listener });
    }
  }

  /** Stops watching this listener's files (another listener may watch the same ones). */
  unwatch(): void {
    for (const { file, listener } of this.watched) unwatchFile(file, listener);
    this.watched = [];
  }
}

/**
 * The verified client certificate's subject, RFC 2253 style (most specific last in the certificate, first here),
 * or null when the client sent none or it did not verify.
 */
export function verifiedClientSubject(socket: TLSSocket): string | null {
  if (!socket.authorized) return null;
  const certificate = socket.getPeerX509Certificate();
  if (certificate === undefined) return null;
  return certificate.subject.split('\n').reverse().join(',');
}

/** A client that sent a certificate which does not verify (clientAuth: request lets clients send none, not a bad one). */
export function presentedUnverifiedCertificate(socket: TLSSocket): boolean {
  return !socket.authorized && socket.getPeerX509Certificate() !== undefined;
}
