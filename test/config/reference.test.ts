// The config reference in docs/configuration.md is generated from the validator's spec: this fails when they drift apart.

import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { CONFIG_REFERENCE_DOC, withReference } from '../../src/config/gen-reference.js';

it('docs/configuration.md matches the spec (run `npm run docs:config` after changing file-spec.ts)', () => {
  const doc = readFileSync(new URL(`../../${CONFIG_REFERENCE_DOC}`, import.meta.url), 'utf8');
  expect(withReference(doc)).toBe(doc);
});
