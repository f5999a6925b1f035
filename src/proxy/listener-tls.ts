// Reads the listener's certificate and key files and checks they make a usable pair, with errors that name the file.

import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { TlsListenerConfig } from '../config/schema.js';
import { describeIoError, errorMessage } from '../errors.js';

export interface ListenerTlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/**
 * Both files read and tried together, so a missing file, a PEM that does not parse or a key that is not the
 * certificate's is found here, before anything serves with it. Throws an Error saying which file and why.
 */
export function readListenerTls(tls: TlsListenerConfig): ListenerTlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new Error(`cannot read the TLS ${what} ${file}: ${describeIoError(error)}`);
    }
  };
  const material = { cert: read('certificate', tls.cert), key: read('key', tls.key) };
  try {
    createSecureContext(material);
  } catch (error) {
    throw new Error(`cannot use the TLS certificate ${tls.cert} with the key ${tls.key}: ${errorMessage(error)}`);
  }
  return material;
}

export function sameTlsFiles(a: TlsListenerConfig | null, b: TlsListenerConfig | null): boolean {
  return a === b || (a !== null && b !== null && a.cert === b.cert && a.key === b.key);
}
