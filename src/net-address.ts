// Parses the `host:port` listen addresses of the config (`[::1]:8080`, `:8080` for all interfaces).

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(value: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value.trim());
  if (match === null) throw new Error(`invalid address ${JSON.stringify(value)}: expected host:port`);
  const port = Number(match[3]);
  if (port > 65535) throw new Error(`invalid port in ${JSON.stringify(value)}`);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
