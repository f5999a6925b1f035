// The README's config reference is generated from the validator's spec: this fails when they drift apart.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { withReference } from '../../src/config/gen-reference.js';

it('README config reference matches the spec (run `npm run docs:config` after changing file-spec.ts)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  expect(withReference(readme)).toBe(readme);
});
