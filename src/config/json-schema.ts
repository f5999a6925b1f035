// The JSON Schema of balancer.yaml, derived from the validator's own spec so editors and validator cannot disagree on shape.

import { fileSpec } from './file-spec.js';
import type { JsonSchema } from './spec.js';

export const SCHEMA_FILE_NAME = 'balancer.schema.json';

/**
 * Draft-07: what yaml-language-server (VS Code, Neovim, JetBrains via LSP) supports best.
 * It checks shape and ranges; rules across fields (routes naming pools, duplicate backends) remain the validator's.
 */
export function configJsonSchema(): JsonSchema {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'balancer.yaml',
    ...fileSpec.schema(),
  };
}

/** The committed file's exact text: stable key order, two-space indent, final newline. */
export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
