// A route's request rewriting, compiled once per config version: the path the backend receives and the Host it is sent.

import type { RouteRewrite } from '../config/schema.js';
import { compileRouteRegex } from '../config/route-regex.js';

export interface CompiledRewrite {
  /** The backend's path from the normalised request path; null leaves it as it is. */
  readonly path: ((path: string) => string) | null;
  /** Host header to send instead of the client's; null keeps it. */
  readonly host: string | null;
  /** Host becomes the picked backend's host:port, per attempt. */
  readonly hostFromBackend: boolean;
}

/** `/api` stripped from `/api/x` leaves `/x`; from `/api` it leaves `/`. Paths without the prefix pass unchanged. */
function stripPrefix(prefix: string): (path: string) => string {
  return (path) => {
    if (!path.startsWith(prefix)) return path;
    const rest = path.slice(prefix.length);
    return rest.startsWith('/') ? rest : `/${rest}`;
  };
}

/** `{from: /v1, to: /v2}` turns `/v1/x` into `/v2/x`; a `to` ending in `/` does not double the slash. */
function replacePrefix(from: string, to: string): (path: string) => string {
  return (path) => {
    if (!path.startsWith(from)) return path;
    const rest = path.slice(from.length);
    const joined = to.endsWith('/') && rest.startsWith('/') ? `${to}${rest.slice(1)}` : `${to}${rest}`;
    return joined === '' ? '/' : joined;
  };
}

/** The whole path matched against the pattern and replaced ($1, $<name>); a path that does not match passes unchanged. */
function regexReplace(pattern: string, replacement: string): (path: string) => string {
  const regex = compileRouteRegex(pattern);
  return (path) => path.replace(regex, replacement);
}

export function compileRewrite(rewrite: RouteRewrite | null): CompiledRewrite | null {
  if (rewrite === null) return null;
  let path: ((path: string) => string) | null = null;
  if (rewrite.stripPrefix !== null) path = stripPrefix(rewrite.stripPrefix);
  else if (rewrite.replacePrefix !== null) path = replacePrefix(rewrite.replacePrefix.from, rewrite.replacePrefix.to);
  else if (rewrite.pathRegex !== null) path = regexReplace(rewrite.pathRegex.pattern, rewrite.pathRegex.replacement);
  return { path, host: rewrite.host, hostFromBackend: rewrite.hostFromBackend };
}
