// Makes throwaway certificates with openssl: a CA and a server certificate, for 127.0.0.1/localhost unless told other names.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface TestCerts {
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** `altNames`: the certificate's subjectAltName entries, e.g. ['DNS:backend.internal']. */
export function makeCerts(dir: string, name: string, altNames: readonly string[] = ['IP:127.0.0.1', 'DNS:localhost']): TestCerts {
  const path = (file: string) => join(dir, `${name}-${file}`);
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  const commonName = altNames.find((entry) => entry.startsWith('DNS:'))?.slice(4) ?? 'localhost';
  run('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name} test CA`, '-keyout', path('ca.key'), '-out', path('ca.pem'));
  run('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${commonName}`, '-keyout', path('key.pem'), '-out', path('csr.pem'));
  execFileSync('sh', [
    '-c',
    `printf 'subjectAltName=${altNames.join(',')}\\n' > '${path('ext.cnf')}' && openssl x509 -req -in '${path('csr.pem')}' -CA '${path('ca.pem')}' -CAkey '${path('ca.key')}' -CAcreateserial -days 2 -extfile '${path('ext.cnf')}' -out '${path('cert.pem')}'`,
  ], { stdio: 'pipe' });
  return { ca: path('ca.pem'), cert: path('cert.pem'), key: path('key.pem') };
}
