// A route's header rules compiled once per config version: set (replace), add (append) and remove, on the request to the backend or the response to the client, with ${variables} filled per request.

import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { requestIdOf } from './request-id.js';
import type { HeaderRules } from '../config/schema.js';

/** What `${name}` in a header value stands for, per request. */
export interface HeaderVariables {
  readonly clientIp: string;
  readonly requestId: string;
  /** The Host the client sent. */
  readonly host: string;
  readonly scheme: string;
}

/** The variables of one request, read before any of its headers is rewritten. */
export function headerVariables(req: IncomingMessage): HeaderVariables {
  const socket = req.socket as IncomingMessage['socket'] & { encrypted?: boolean };
  return { clientIp: socket.remoteAddress ?? '', requestId: requestIdOf(req) ?? '', host: req.headers.host ?? '', scheme: socket.encrypted === true ? 'https' : 'http' };
}

export const HEADER_VARIABLES: readonly (keyof HeaderVariables)[] = ['clientIp', 'requestId', 'host', 'scheme'];

/**
 * Hop-by-hop and framing fields: balancer writes these itself for each connection and message, so a rule that set
 * them could desynchronise framing (smuggling) or the connection; Host is the rewrite's job.
 */
export const UNSETTABLE_HEADERS: ReadonlyMap<string, string> = new Map([
  ['content-length', 'balancer frames each message itself'],
  ['transfer-encoding', 'balancer frames each message itself'],
  ['connection', 'it is hop-by-hop: it describes one connection, not the message'],
  ['keep-alive', 'it is hop-by-hop: it describes one connection, not the message'],
  ['proxy-connection', 'it is hop-by-hop: it describes one connection, not the message'],
  ['te', 'it is hop-by-hop: it describes one connection, not the message'],
  ['trailer', 'it is hop-by-hop: it describes one connection, not the message'],
  ['upgrade', 'it is hop-by-hop: it describes one connection, not the message'],
  ['host', 'use rewrite.host or rewrite.hostFromBackend to change the Host a backend gets'],
]);

type Template = (vars: HeaderVariables) => string;

/** `a ${clientIp} b` -> a function of the variables; a value without `${` is returned as it is. */
export function compileTemplate(value: string): Template {
  if (!value.includes('${')) return () => value;
  const parts: Array<string | keyof HeaderVariables> = [];
  const names: boolean[] = [];
  let from = 0;
  for (const match of value.matchAll(/\$\{(\w+)\}/g)) {
    parts.push(value.slice(from, match.index));
    names.push(false);
    parts.push(match[1] as keyof HeaderVariables);
    names.push(true);
    from = match.index + match[0].length;
  }
  parts.push(value.slice(from));
  names.push(false);
  return (vars) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) out += names[i] ? vars[parts[i] as keyof HeaderVariables] : parts[i];
    return out;
  };
}

/** The names of `${...}` references a value makes that are not variables; empty when all are known. */
export function unknownVariables(value: string): string[] {
  const unknown: string[] = [];
  for (const match of value.matchAll(/\$\{([^}]*)\}/g)) {
    if (!(HEADER_VARIABLES as readonly string[]).includes(match[1]!)) unknown.push(match[1]!);
  }
  return unknown;
}

export interface CompiledHeaderRules {
  readonly set: readonly (readonly [string, Template])[];
  readonly add: readonly (readonly [string, Template])[];
  readonly remove: readonly string[];
}

export function compileHeaderRules(rules: HeaderRules | null): CompiledHeaderRules | null {
  if (rules === null) return null;
  return {
    set: rules.set.map(([name, value]) => [name, compileTemplate(value)] as const),
    add: rules.add.map(([name, value]) => [name, compileTemplate(value)] as const),
    remove: rules.remove,
  };
}

/** On the request headers going to the backend, in place: remove, then set, then add. */
export function applyToRequest(rules: CompiledHeaderRules, headers: IncomingHttpHeaders, vars: HeaderVariables): void {
  for (const name of rules.remove) delete headers[name];
  for (const [name, value] of rules.set) headers[name] = value(vars);
  for (const [name, value] of rules.add) {
    const existing = headers[name];
    const added = value(vars);
    headers[name] = existing === undefined ? added : Array.isArray(existing) ? [...existing, added] : [existing, added];
  }
}

/** Whether a field name is `lowerName` in any ASCII case, without making a lower-cased copy of it. */
export function isFieldNamed(name: string, lowerName: string): boolean {
  if (name.length !== lowerName.length) return false;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    const want = lowerName.charCodeAt(i);
    // An upper-case letter (A-Z) matches its lower-case form; anything else only itself.
    if (code !== want && !(code >= 65 && code <= 90 && code + 32 === want)) return false;
  }
  return true;
}

/** Removes every field called `lowerName` from a flat [name, value, ...] list, in place. */
export function removeField(list: string[], lowerName: string): void {
  let kept = 0;
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!;
    if (isFieldNamed(name, lowerName)) continue;
    if (kept !== i) {
      list[kept] = name;
      list[kept + 1] = list[i + 1]!;
    }
    kept += 2;
  }
  // Assigning `length` is a call into the runtime (about 450 instructions): only when a field went.
  if (kept !== list.length) list.length = kept;
}

/** On a response's flat [name, value, ...] list, in place: remove, then set, then add. */
export function applyToResponse(rules: CompiledHeaderRules, list: string[], vars: HeaderVariables): void {
  for (const name of rules.remove) removeField(list, name);
  for (const [name, value] of rules.set) {
    removeField(list, name);
    list.push(name, value(vars));
  }
  for (const [name, value] of rules.add) list.push(name, value(vars));
}
