// Expands ${NAME} and ${NAME:-default} in the string values of a config file's local settings, from the environment.
//
// Only local settings (listen, admin, tls, cluster, log, ...) are expanded: they belong to this node, and secrets and
// addresses differ per host. Routes and pools are replicated as written to every node, whose environments differ,
// so a reference there is refused rather than expanded; and since they are never expanded, writing them back
// never puts an expanded value in the file (local sections are never rewritten: they keep ${NAME}).

import { isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { Path } from './spec.js';

/** `$${` is a literal `${`; otherwise `${NAME}` or `${NAME:-default}` (default used when NAME is unset or empty). */
const REFERENCE = /\$\$\{|\$\{([^}]*)\}|\$\{/g;
const NAME = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s;

export interface EnvProblem {
  readonly path: Path;
  readonly at: 'value';
  readonly message: string;
}

type Environment = Readonly<Record<string, string | undefined>>;

/** Expands `text`, or says what is wrong with a reference in it. */
export function expandReferences(text: string, env: Environment): { value: string } | { problem: string } {
  let problem: string | null = null;
  const value = text.replace(REFERENCE, (match: string, inner: string | undefined) => {
    if (match === '$${') return '${';
    if (inner === undefined) {
      problem ??= 'unterminated ${: write ${NAME} or ${NAME:-default} (or $${ for a literal ${)';
      return match;
    }
    const parsed = NAME.exec(inner);
    if (parsed === null) {
      problem ??= `invalid reference ${match}: write \${NAME} or \${NAME:-default}, NAME being letters, digits and _`;
      return match;
    }
    const name = parsed[1]!;
    const fallback = parsed[2];
    const set = env[name];
    if (set !== undefined && (set !== '' || fallback === undefined)) return set;
    if (fallback !== undefined) return fallback;
    problem ??= `environment variable ${name} is not set; set it, or give a default: \${${name}:-value}`;
    return match;
  });
  return problem === null ? { value } : { problem };
}

/** Replaces references in the local settings' string scalars of `document` in place; returns every problem. */
export function expandEnvironment(document: Document, replicatedKeys: readonly string[], env: Environment = process.env): EnvProblem[] {
  const problems: EnvProblem[] = [];
  const root = document.contents;
  if (!isMap(root)) return problems;
  for (const pair of root.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const replicated = replicatedKeys.includes(key);
    visit(pair.value as Node | null, [key], (scalar, path) => {
      if (typeof scalar.value !== 'string' || !scalar.value.includes('${')) return;
      // Route header rules have per-request variables of their own (${clientIp}, ...), which the route spec checks.
      if (replicated && isRouteHeaderRule(path)) return;
      if (replicated) {
        problems.push({
          path,
          at: 'value',
          message: `\${...} is expanded only in local settings: ${key} is replicated to every node as written, so write the value itself`,
        });
        return;
      }
      const expanded = expandReferences(scalar.value, env);
      if ('problem' in expanded) problems.push({ path, at: 'value', message: expanded.problem });
      else scalar.value = expanded.value;
    });
  }
  return problems;
}

/** routes[N].headers.request|response.set|add.NAME */
function isRouteHeaderRule(path: Path): boolean {
  return path.length === 6 && path[0] === 'routes' && path[2] === 'headers' && (path[4] === 'set' || path[4] === 'add');
}

function visit(node: Node | null, path: Path, onScalar: (scalar: { value: unknown }, path: Path) => void): void {
  if (node === null) return;
  if (isScalar(node)) {
    onScalar(node, path);
  } else if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      visit(pair.value as Node | null, [...path, key], onScalar);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, index) => visit(item as Node | null, [...path, index], onScalar));
  }
}
