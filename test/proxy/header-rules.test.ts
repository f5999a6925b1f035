// Header rules on a response's flat field list: removeField compares names without lower-casing copies of them, and
// must remove exactly what a lower-cased comparison removes.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { removeField } from '../../src/proxy/header-rules.js';

/** The rule written out: every field whose lower-cased name is `lowerName` goes; the rest keep their order. */
function removeReference(list: readonly string[], lowerName: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (list[i]!.toLowerCase() !== lowerName) out.push(list[i]!, list[i + 1]!);
  return out;
}

// Names that differ from x-request-id by case, by one character, or by characters whose case bit alone differs.
const names = fc.constantFrom('x-request-id', 'X-Request-Id', 'X-REQUEST-ID', 'x-request-iD', 'x-request-ie', 'x-request_id', 'x-request-i', 'Content-Type', 'x-trace-2', 'X-Trace-2', 'x\rrequest-id', 'x-request-id2', 'x-reqUest-id');

describe('removeField', () => {
  it('removes exactly the fields a lower-cased comparison names, in any case, keeping the rest in order', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(names, fc.string({ maxLength: 4 })), { maxLength: 8 }), fc.constantFrom('x-request-id', 'x-trace-2', 'content-type'), (fields, lowerName) => {
        const list = fields.flat();
        const expected = removeReference(list, lowerName);
        removeField(list, lowerName);
        expect(list).toEqual(expected);
      }),
    );
  });

  it('leaves a list without the field as it was', () => {
    const list = ['Content-Type', 'text/plain', 'Content-Length', '2'];
    removeField(list, 'x-request-id');
    expect(list).toEqual(['Content-Type', 'text/plain', 'Content-Length', '2']);
  });
});
