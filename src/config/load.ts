// The only place that reads the config file and the files it names; resolves their paths against the file's directory.

import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Document } from 'yaml';
import type { CertificateConfig, Config, ListenerConfig, PoolConfig, ReplicatedConfig, TlsListenerConfig } from './schema.js';
import type { Path } from './spec.js';
import { describeIoError, errorMessage } from '../errors.js';
import { deepFreeze, problemAt, validateConfigText, type Problem } from './validate.js';

export type LoadResult =
  | {
      readonly ok: true;
      /** Absolute path of the config file. */
      readonly file: string;
      readonly text: string;
      readonly document: Document;
      /** Ready to run: every path absolute, token and secret read from their files. */
      readonly config: Config;
      /** Routes and pools exactly as the file says (relative paths kept): what a cluster replicates. */
      readonly replicated: ReplicatedConfig;
      /** Directory that relative paths in the file are resolved against. */
      readonly baseDir: string;
    }
  | { readonly ok: false; readonly file: string; readonly problems: readonly Problem[] };

export function resolveConfigPath(baseDir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path);
}

/**
 * Pool paths (tls.ca, tls.cert, tls.key) stay relative in the replicated config so every node resolves them against
 * its own config directory; the cluster bridge calls this on each applied config before handing it to the data plane.
 */
export function resolveReplicatedPaths(replicated: ReplicatedConfig, baseDir: string): ReplicatedConfig {
  const pools: Record<string, PoolConfig> = {};
  const resolvePath = (path: string | null): string | null => (path === null ? null : resolveConfigPath(baseDir, path));
  for (const [name, pool] of Object.entries(replicated.pools)) {
    const { ca, cert, key } = pool.tls;
    const resolved =
      ca === null && cert === null && key === null ? pool : { ...pool, tls: { ...pool.tls, ca: resolvePath(ca), cert: resolvePath(cert), key: resolvePath(key) } };
    Object.defineProperty(pools, name, { value: resolved, enumerable: true, writable: true, configurable: true });
  }
  return deepFreeze({ routes: replicated.routes, pools });
}

/** A secret held in a file (tokenFile, secretFile): its content, or what is wrong with it in a sentence naming the file. */
export async function readSecretFile(absolute: string): Promise<{ content: string } | { problem: string }> {
  try {
    // Editors and `echo` add a trailing newline that is never part of the secret.
    const content = (await readFile(absolute, 'utf8')).trim();
    return content === '' ? { problem: `${absolute} is empty` } : { content };
  } catch (error) {
    return { problem: `cannot read ${absolute}: ${describeIoError(error)}` };
  }
}

/** A listener's TLS files, absolute. */
export function resolveListenerTlsPaths(tls: TlsListenerConfig, baseDir: string): TlsListenerConfig {
  return {
    ...tls,
    certificates: tls.certificates.map(({ cert, key }) => ({ cert: resolveConfigPath(baseDir, cert), key: resolveConfigPath(baseDir, key) })),
    clientCa: tls.clientCa === null ? null : resolveConfigPath(baseDir, tls.clientCa),
  };
}

/** Null when the two files are a PEM certificate and its private key; else what is wrong, naming the files. */
async function clientCertificateProblem(certFile: string, keyFile: string): Promise<string | null> {
  try {
    createSecureContext({ cert: await readFile(certFile), key: await readFile(keyFile) });
    return null;
  } catch (error) {
    return `cannot use the client certificate ${certFile} with the key ${keyFile}: ${errorMessage(error)}`;
  }
}

export async function loadConfigFile(path: string): Promise<LoadResult> {
  const file = resolve(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { ok: false, file, problems: [{ path: '', message: `cannot read the config file: ${describeIoError(error)}` }] };
  }
  const validated = validateConfigText(text, file);
  if (!validated.ok) return { ok: false, file, problems: validated.problems };
  const document = validated.document!;
  const config = validated.config;
  const baseDir = dirname(file);
  const problems: Problem[] = [];
  const report = (at: Path, message: string): void => {
    problems.push(problemAt(document, text, at, message));
  };

  const mustBeReadable = async (at: Path, relative: string): Promise<string> => {
    const absolute = resolveConfigPath(baseDir, relative);
    try {
      await access(absolute, constants.R_OK);
    } catch (error) {
      report(at, `cannot read ${absolute}: ${describeIoError(error)}`);
    }
    return absolute;
  };

  /** The file exists and is writable, or its directory lets us create it. */
  const mustBeAppendable = async (at: Path, relative: string): Promise<string> => {
    const absolute = resolveConfigPath(baseDir, relative);
    try {
      await access(absolute, constants.W_OK);
    } catch (error) {
      if ((error as { code?: unknown }).code !== 'ENOENT') {
        report(at, `cannot write ${absolute}: ${describeIoError(error)}`);
      } else {
        try {
          await access(dirname(absolute), constants.W_OK);
        } catch (dirError) {
          report(at, `cannot create ${absolute}: its directory ${dirname(absolute)}: ${describeIoError(dirError)}`);
        }
      }
    }
    return absolute;
  };

  const readSecret = async (at: Path, relative: string): Promise<{ file: string; content: string | null }> => {
    const absolute = resolveConfigPath(baseDir, relative);
    const read = await readSecretFile(absolute);
    if ('problem' in read) {
      report(at, read.problem);
      return { file: absolute, content: null };
    }
    return { file: absolute, content: read.content };
  };

  // Paths point at where the file names each file: listeners[i].tls or the one-listener tls, cert/key or certificates[j].
  const listenersInFile = document.has('listeners');
  const listeners: ListenerConfig[] = [];
  for (const [index, listener] of config.listeners.entries()) {
    if (listener.tls === null) {
      listeners.push(listener);
      continue;
    }
    const tlsAt: Path = listenersInFile ? ['listeners', index, 'tls'] : ['tls'];
    const listed = document.hasIn([...tlsAt, 'certificates']);
    const certificates: CertificateConfig[] = [];
    for (const [position, certificate] of listener.tls.certificates.entries()) {
      const at: Path = listed ? [...tlsAt, 'certificates', position] : tlsAt;
      certificates.push({ cert: await mustBeReadable([...at, 'cert'], certificate.cert), key: await mustBeReadable([...at, 'key'], certificate.key) });
    }
    const clientCa = listener.tls.clientCa === null ? null : await mustBeReadable([...tlsAt, 'clientCa'], listener.tls.clientCa);
    listeners.push({ ...listener, tls: { ...listener.tls, certificates, clientCa } });
  }

  let log = config.log;
  if (log.accessFile !== null) log = { ...log, accessFile: await mustBeAppendable(['log', 'accessFile'], log.accessFile) };

  let admin = config.admin;
  if (admin.tokenFile !== null) {
    const token = await readSecret(['admin', 'tokenFile'], admin.tokenFile);
    admin = { ...admin, tokenFile: token.file, token: token.content };
  }

  let cluster = config.cluster;
  if (cluster !== null) {
    cluster = { ...cluster, dataDir: resolveConfigPath(baseDir, cluster.dataDir) };
    if (cluster.secretFile !== null) {
      const secret = await readSecret(['cluster', 'secretFile'], cluster.secretFile);
      cluster = { ...cluster, secretFile: secret.file, secret: secret.content };
    }
  }

  for (const [name, pool] of Object.entries(config.pools)) {
    const at: Path = ['pools', name, 'tls'];
    if (pool.tls.ca !== null) await mustBeReadable([...at, 'ca'], pool.tls.ca);
    if (pool.tls.cert !== null && pool.tls.key !== null) {
      const problemsBefore = problems.length;
      const cert = await mustBeReadable([...at, 'cert'], pool.tls.cert);
      const key = await mustBeReadable([...at, 'key'], pool.tls.key);
      // Readable both: then they must be a certificate and its key, or no backend connection could ever be made.
      if (problems.length === problemsBefore) {
        const mismatch = await clientCertificateProblem(cert, key);
        if (mismatch !== null) report([...at, 'cert'], mismatch);
      }
    }
  }

  if (problems.length > 0) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
    return { ok: false, file, problems };
  }
  const replicated: ReplicatedConfig = deepFreeze({ routes: config.routes, pools: config.pools });
  const resolvedPools = resolveReplicatedPaths(replicated, baseDir);
  const resolved: Config = deepFreeze({ ...config, listeners, log, admin, cluster, pools: resolvedPools.pools });
  return { ok: true, file, text, document, config: resolved, replicated, baseDir };
}
