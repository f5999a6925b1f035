// A node's config file with one pool of one backend, and that pool's replicated config at a given weight: the write-back tests' fixture.

import type { ReplicatedConfig } from '../../src/config/schema.js';
import { validateReplicated } from '../../src/config/validate.js';

/** The file as a node starts with it: a comment, a local section, the pool `web` with backend `web-1` at the default weight. */
export const ONE_BACKEND_FILE = `# kept
listen: 127.0.0.1:0
pools:
  web:
    backends:
      - { url: http://127.0.0.1:9001, id: web-1 }
`;

/** The replicated config of ONE_BACKEND_FILE with `web-1` at `weight`. */
export function withWeight(weight: number): ReplicatedConfig {
  const result = validateReplicated({ routes: [], pools: { web: { backends: [{ url: 'http://127.0.0.1:9001', id: 'web-1', weight }] } } });
  if (!result.ok) throw new Error(JSON.stringify(result.problems));
  return result.config;
}
