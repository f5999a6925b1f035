// The one parser of host names and `host:port` addresses (`api.internal:80`, `[::1]:8080`, `:8080` for all interfaces): the config spec, the Raft transport, the listeners and the membership API all use it.

import { isIP, type LookupFunction } from 'node:net';
import { BalancerError } from './errors.js';

export interface HostPort {
  /** `0.0.0.0` for `:port`; an IPv6 address without its brackets. */
  readonly host: string;
  readonly port: number;
}

export interface HostPortRules {
  /** Port 0 (let the kernel choose) makes sense for a listener, never for an address a peer dials. */
  readonly allowPortZero: boolean;
}

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A DNS name or IP literal (IPv6 without brackets), lower-cased; or why not (a message without the value). */
export function checkHostname(input: string): { value: string } | { error: string } {
  const host = input.toLowerCase();
  if (isIP(host) !== 0) return { value: host };
  if (host.length > 253 || !host.split('.').every((label) => HOST_LABEL.test(label))) {
    return { error: 'must be a host name like api.example.com' };
  }
  return { value: host };
}

/** `host:port`, `[ipv6]:port` or `:port` split into its parts; or why not (a message without the value). */
export function checkHostPort(input: string, rules: HostPortRules): { value: HostPort } | { error: string } {
  const bad = { error: 'must be host:port, [ipv6]:port or :port' };
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(input);
  if (bracketed !== null) {
    host = bracketed[1]!;
    port = bracketed[2]!;
    if (isIP(host) !== 6) return { error: 'must put only an IPv6 address in brackets' };
  } else {
    const colon = input.lastIndexOf(':');
    if (colon === -1) return bad;
    host = input.slice(0, colon);
    port = input.slice(colon + 1);
    if (host.includes(':')) return { error: 'must put an IPv6 address in brackets ([::1]:8080)' };
    if (host !== '' && 'error' in checkHostname(host)) return bad;
  }
  if (!/^\d{1,5}$/.test(port)) return bad;
  const portNumber = Number(port);
  if (portNumber > 65535 || (portNumber === 0 && !rules.allowPortZero)) {
    return { error: `must have a port from ${rules.allowPortZero ? 0 : 1} to 65535` };
  }
  return { value: { host: host === '' ? '0.0.0.0' : host, port: portNumber } };
}

/** checkHostPort for an address that was validated already (config, membership): a bad one is a CONFIG_INVALID error. */
export function splitHostPort(input: string, rules: HostPortRules = { allowPortZero: true }): HostPort {
  const checked = checkHostPort(input, rules);
  if ('error' in checked) throw new BalancerError('CONFIG_INVALID', `address ${JSON.stringify(input)} ${checked.error}`);
  return checked.value;
}

/** `host:port`, with an IPv6 address in brackets: how backend ids and DNS answers are written. */
export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * A `lookup` for net/tls connect options that answers with addresses resolved beforehand (DNS discovery's, kept through
 * DNS failures), so a connect never waits on DNS; all of them when asked for all, so Happy Eyeballs can try each.
 */
export function fixedLookup(addresses: readonly string[]): LookupFunction {
  const entries = addresses.map((address) => ({ address, family: isIP(address) }));
  return (_hostname, options, callback) => {
    if (options.all === true) (callback as unknown as (error: null, found: Array<{ address: string; family: number }>) => void)(null, entries);
    else callback(null, entries[0]!.address, entries[0]!.family);
  };
}

/**
 * Backend URLs seen lately, parsed. A config change rebuilds the pool it touches, and each of its backends' URLs was
 * parsed again by the pool, its connection pools and DNS discovery: most of a 1,000-backend pool's rebuild. Bounded:
 * emptied when full.
 */
const parsedUrls = new Map<string, Readonly<URL>>();
const PARSED_URLS_SIZE = 20_000;

/**
 * `new URL(text)`, parsed once per distinct text: the URL is shared by every caller, so it is read-only. Throws as
 * `new URL` does (nothing invalid is kept).
 */
export function parsedUrl(text: string): Readonly<URL> {
  let url = parsedUrls.get(text);
  if (url === undefined) {
    url = new URL(text);
    if (parsedUrls.size >= PARSED_URLS_SIZE) parsedUrls.clear();
    parsedUrls.set(text, url);
  }
  return url;
}
