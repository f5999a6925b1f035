// Reads a pool's TLS files for its backend connections (tls.ca, and tls.cert + tls.key, the client certificate), checked together.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { PoolConfig } from '../config/schema.js';
import { BalancerError, describeIoError, errorMessage } from '../errors.js';
import { NO_UPSTREAM_TLS, type UpstreamTlsMaterial } from '../balancer/upstream-tls.js';

/** The files a pool's TLS reads (absolute once resolved), for watching. */
export function upstreamTlsFiles(config: PoolConfig): string[] {
  return [config.tls.ca, config.tls.cert, config.tls.key].filter((file): file is string => file !== null);
}

function readPoolFile(pool: string, what: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new BalancerError('CONFIG_IO', `pool ${pool}: cannot read ${what} ${path}: ${describeIoError(error)}`, { cause: error });
  }
}

/**
 * Reads the pool's tls.ca, tls.cert and tls.key. Throws BalancerError CONFIG_IO naming the pool and the file when one
 * cannot be read, or when the certificate and key do not parse or are not a pair, so the caller keeps what it had.
 */
export function readUpstreamTls(config: PoolConfig): UpstreamTlsMaterial {
  const { ca: caFile, cert: certFile, key: keyFile } = config.tls;
  if (caFile === null && certFile === null && keyFile === null) return NO_UPSTREAM_TLS;
  const ca = caFile === null ? null : readPoolFile(config.name, 'tls.ca', caFile);
  const cert = certFile === null ? null : readPoolFile(config.name, 'tls.cert', certFile);
  const key = keyFile === null ? null : readPoolFile(config.name, 'tls.key', keyFile);
  if (cert !== null && key !== null) {
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      throw new BalancerError('CONFIG_IO', `pool ${config.name}: cannot use the client certificate ${certFile} with the key ${keyFile}: ${errorMessage(error)}`, {
        cause: error,
      });
    }
  }
  const hash = createHash('sha256');
  for (const part of [ca, cert, key]) hash.update(part ?? '').update('\0');
  return { ca, cert, key, digest: hash.digest('hex').slice(0, 16) };
}
