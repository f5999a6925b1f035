// The version balancer reports (`balancer --version`, the CLI's User-Agent), read once from package.json.

import { createRequire } from 'node:module';

// From src/ (tests) and dist/ (the built CLI) alike, package.json is one directory up.
const manifest = createRequire(import.meta.url)('../package.json') as { version?: unknown };

export const VERSION: string = typeof manifest.version === 'string' ? manifest.version : 'unknown';

/** The admin API tells CLI calls from other callers by this, for the config history. */
export const CLI_USER_AGENT_PREFIX = 'balancer-cli/';
export const CLI_USER_AGENT = `${CLI_USER_AGENT_PREFIX}${VERSION}`;
