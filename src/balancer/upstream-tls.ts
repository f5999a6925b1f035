// What a pool presents and verifies on https backend connections: its CAs and client certificate, as read from its TLS files.

/** What the forwarder, the WebSocket tunnel and the health checks present and verify on https backend connections. */
export interface UpstreamTlsMaterial {
  /** PEM CAs backends are verified against; null: the system CAs. */
  readonly ca: string | null;
  /** PEM client certificate (chain) and its key, for backends that ask for one; null: none is sent. */
  readonly cert: string | null;
  readonly key: string | null;
  /** Changes whenever a file's content does, so connections made with the old files are not reused. */
  readonly digest: string;
}

export const NO_UPSTREAM_TLS: UpstreamTlsMaterial = { ca: null, cert: null, key: null, digest: '' };
