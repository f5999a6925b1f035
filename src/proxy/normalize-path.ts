// Request path normalisation (RFC 3986 section 6.2.2) before routes match, so a route meant for /admin cannot be bypassed.
//
// Percent-encoded unreserved characters are decoded (`%61dmin` is `admin`), other escapes get upper-case hex, runs of
// slashes become one, and dot segments are removed (`/pub/../admin` is `/admin`, never above the root). An escaped
// slash or backslash (`%2F`, `%5C`) would be a separator to some backends and not to us: refused by default, kept
// escaped when the operator allows it. The backend receives the path this returns.

export type NormalizedPath = { readonly path: string } | { readonly error: 'encoded-slash' | 'bad-escape'; readonly detail: string };

const HEX = '0123456789ABCDEF';

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 65 && code <= 70) return code - 55;
  if (code >= 97 && code <= 102) return code - 87;
  return -1;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(byte: number): boolean {
  return (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57) || byte === 45 || byte === 46 || byte === 95 || byte === 126;
}

/** `path` is the request path without its query, starting with `/`. */
export function normalizePath(path: string, rejectEncodedSlash: boolean): NormalizedPath {
  // The common path has nothing to do: no escape, no doubled slash, no dot segment.
  if (!path.includes('%') && !path.includes('//') && !path.includes('/.')) return { path };
  let decoded = path;
  if (path.includes('%')) {
    let out = '';
    let from = 0;
    for (let i = path.indexOf('%'); i !== -1; i = path.indexOf('%', from)) {
      const high = hexValue(path.charCodeAt(i + 1));
      const low = hexValue(path.charCodeAt(i + 2));
      if (high < 0 || low < 0) return { error: 'bad-escape', detail: path.slice(i, i + 3) };
      const byte = high * 16 + low;
      out += path.slice(from, i);
      if (isUnreserved(byte)) out += String.fromCharCode(byte);
      else if ((byte === 0x2f || byte === 0x5c) && rejectEncodedSlash) return { error: 'encoded-slash', detail: path.slice(i, i + 3) };
      else out += `%${HEX[high]}${HEX[low]}`;
      from = i + 3;
    }
    decoded = out + path.slice(from);
  }
  const merged = decoded.includes('//') ? decoded.replace(/\/{2,}/g, '/') : decoded;
  return { path: merged.includes('/.') ? removeDotSegments(merged) : merged };
}

/** RFC 3986 section 5.2.4 for an absolute path with single slashes: `.` dropped, `..` drops its parent, never above `/`. */
function removeDotSegments(path: string): string {
  const segments = path.split('/');
  const out: string[] = [];
  // segments[0] is the empty string before the leading slash.
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === '.' || segment === '..') {
      if (segment === '..') out.pop();
      // `/a/b/..` names the directory `/a/`: the trailing slash stays.
      if (last) out.push('');
      continue;
    }
    out.push(segment);
  }
  return `/${out.join('/')}`;
}

/** The request target split at its query: `path` normalised, `query` (with its `?`, or empty) untouched. */
export function splitTarget(url: string): { path: string; query: string } {
  const mark = url.indexOf('?');
  return mark === -1 ? { path: url, query: '' } : { path: url.slice(0, mark), query: url.slice(mark) };
}
