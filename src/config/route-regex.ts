// Which regular expressions routes may use: an RE2-style subset that cannot backtrack catastrophically, checked at load.
//
// Routes run their patterns on every request with JavaScript's backtracking engine, so a pattern such as `^(a+)+$`
// would let one crafted path hold a core for minutes. Rather than bring in a second regex engine, the validator
// accepts only patterns whose backtracking stays bounded: no backreferences or lookaround (RE2 has neither), no
// repeated group that itself repeats or alternates (`(a+)+`, `(a|ab)*`), and no two unbounded repeats in a row
// (`\d*\d*`), which are the shapes behind exponential and high-polynomial running times. An optional group
// (`(/.*)?`, `(\.json|\.xml)?`) does not repeat and stays allowed.

/** Why a pattern is refused, in words a config author can act on; null when it is accepted. */
export function unsafeRegexReason(pattern: string): string | null {
  try {
    new RegExp(pattern);
  } catch (error) {
    return `is not a valid regular expression: ${(error as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
  return new SubsetChecker(pattern).check();
}

/** What a parsed group or sequence contains, for the nesting rules. */
interface Contents {
  /** A quantifier anywhere inside (other than `?`/`{0,1}`, which cannot loop). */
  repeats: boolean;
  alternates: boolean;
}

class SubsetChecker {
  private index = 0;

  constructor(private readonly source: string) {}

  check(): string | null {
    try {
      this.sequence(0);
      return null;
    } catch (error) {
      if (error instanceof Refused) return error.message;
      throw error;
    }
  }

  /** Parses alternatives up to `)` or the end; returns what they contain. */
  private sequence(depth: number): Contents {
    const contents: Contents = { repeats: false, alternates: false };
    // Whether the previous atom carried an unbounded quantifier, with nothing fixed between it and the next one.
    let previousUnbounded = false;
    while (this.index < this.source.length) {
      const char = this.source[this.index]!;
      if (char === ')') {
        if (depth === 0) throw new Refused('has an unmatched )');
        return contents;
      }
      if (char === '|') {
        contents.alternates = true;
        previousUnbounded = false;
        this.index++;
        continue;
      }
      const atom = this.atom(depth);
      const quantifier = this.quantifier();
      if (quantifier === 'none') {
        // A literal between two repeats anchors the second one; an anchor or empty group does not.
        if (atom.fixedWidth) previousUnbounded = false;
      } else {
        if (quantifier !== 'optional' && (atom.inner.repeats || atom.inner.alternates)) {
          throw new Refused(
            `repeats a group that itself ${atom.inner.repeats ? 'repeats' : 'has alternatives'} (nested quantifiers can take exponential time); ` +
              'rewrite it without the outer repetition, e.g. [a-z0-9/]+ instead of ([a-z0-9]+/)+',
          );
        }
        if (quantifier === 'unbounded') {
          if (previousUnbounded) {
            throw new Refused('has two repetitions in a row with nothing fixed between them (like \\d*\\d* or .*.*), which can take polynomial time; merge them into one');
          }
          previousUnbounded = true;
        } else previousUnbounded = false;
        if (quantifier !== 'optional') contents.repeats = true;
      }
      if (atom.inner.repeats) contents.repeats = true;
      if (atom.inner.alternates) contents.alternates = true;
    }
    return contents;
  }

  /** One atom: a group, a class, an escape or a literal character. */
  private atom(depth: number): { inner: Contents; fixedWidth: boolean } {
    const char = this.source[this.index]!;
    const none: Contents = { repeats: false, alternates: false };
    if (char === '(') {
      this.index++;
      if (this.source.startsWith('?=', this.index) || this.source.startsWith('?!', this.index) || this.source.startsWith('?<=', this.index) || this.source.startsWith('?<!', this.index)) {
        throw new Refused('uses lookahead or lookbehind, which routes do not support (RE2 syntax has neither)');
      }
      if (this.source.startsWith('?:', this.index)) this.index += 2;
      else if (this.source.startsWith('?<', this.index)) this.index = this.source.indexOf('>', this.index) + 1;
      const inner = this.sequence(depth + 1);
      this.index++; // the closing )
      return { inner, fixedWidth: true };
    }
    if (char === '[') {
      this.index++;
      if (this.source[this.index] === '^') this.index++;
      if (this.source[this.index] === ']') this.index++;
      while (this.index < this.source.length && this.source[this.index] !== ']') {
        if (this.source[this.index] === '\\') this.index++;
        this.index++;
      }
      this.index++;
      return { inner: none, fixedWidth: true };
    }
    if (char === '\\') {
      const next = this.source[this.index + 1] ?? '';
      if (/[1-9]/.test(next) || next === 'k') throw new Refused('uses a backreference, which routes do not support (RE2 syntax has none)');
      this.index += 2;
      if (next === 'u' && this.source[this.index] === '{') this.index = this.source.indexOf('}', this.index) + 1;
      else if (next === 'u') this.index += 4;
      else if (next === 'x') this.index += 2;
      else if ((next === 'p' || next === 'P') && this.source[this.index] === '{') this.index = this.source.indexOf('}', this.index) + 1;
      return { inner: none, fixedWidth: next !== 'b' && next !== 'B' };
    }
    this.index++;
    return { inner: none, fixedWidth: char !== '^' && char !== '$' };
  }

  /** The quantifier after an atom, if any: `?`-like ones cannot loop; `{n}`/`{n,m}` loop a bounded number of times. */
  private quantifier(): 'none' | 'optional' | 'bounded' | 'unbounded' {
    const char = this.source[this.index];
    let kind: 'none' | 'optional' | 'bounded' | 'unbounded' = 'none';
    if (char === '*' || char === '+') {
      kind = 'unbounded';
      this.index++;
    } else if (char === '?') {
      kind = 'optional';
      this.index++;
    } else if (char === '{') {
      const counted = /^\{(\d+)(,(\d*))?\}/.exec(this.source.slice(this.index));
      if (counted === null) return 'none';
      this.index += counted[0].length;
      const low = Number(counted[1]);
      const high = counted[2] === undefined ? low : counted[3] === '' ? Infinity : Number(counted[3]);
      kind = high === Infinity ? 'unbounded' : high <= 1 ? (low === 0 ? 'optional' : 'none') : 'bounded';
    }
    // Lazy (`*?`) or possessive-looking suffixes change nothing about the bound.
    if (kind !== 'none' && this.source[this.index] === '?') this.index++;
    return kind;
  }
}

class Refused extends Error {}

/**
 * A route pattern as it runs: anchored at both ends whether or not it was written with ^ and $, as RE2-style
 * route matchers are (a pattern meant for `/api/\d+` must not also take `/x/api/1/y`).
 */
export function compileRouteRegex(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

/** How many capture groups a pattern has: what `$n` in a replacement may refer to. */
export function captureGroupCount(pattern: string): number {
  // An empty alternative always matches, and the match array has one slot per group.
  return new RegExp(`${pattern}|`).exec('')!.length - 1;
}
