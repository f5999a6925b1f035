// Reads a listener certificate and its key and checks they make a usable pair, with errors that name the file.

import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { CertificateConfig } from '../config/schema.js';
import { describeIoError, errorMessage } from '../errors.js';

export interface ListenerTlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
}

/** A file a listener's TLS needs (certificate, key, client CA), or an Error saying which one and why. */
export function readTlsFile(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new Error(`cannot read the TLS ${what} ${file}: ${describeIoError(error)}`);
  }
}

/**
 * Both files read and tried together, so a missing file, a PEM that does not parse or a key that is not the
 * certificate's is found here, before anything serves with it. Throws an Error saying which file and why.
 */
export function readListenerTls(pair: CertificateConfig): ListenerTlsMaterial {
  const material = { cert: readTlsFile('certificate', pair.cert), key: readTlsFile('key', pair.key) };
  try {
    createSecureContext(material);
  } catch (error) {
    throw new Error(`cannot use the TLS certificate ${pair.cert} with the key ${pair.key}: ${errorMessage(error)}`);
  }
  return material;
}
