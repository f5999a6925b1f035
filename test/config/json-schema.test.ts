import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { parse } from 'yaml';
import { configJsonSchema, configJsonSchemaText } from '../../src/config/json-schema.js';
import { toPlainReplicated } from '../../src/config/plain.js';
import type { JsonSchema, JsonValue } from '../../src/config/spec.js';
import { validateReplicated } from '../../src/config/validate.js';
import { replicatedFileArb } from './arbitraries.js';
import { FULL_EXAMPLE } from './fixtures.js';

const SCHEMA_PATH = fileURLToPath(new URL('../../balancer.schema.json', import.meta.url));

/**
 * Just enough of draft-07 for the keywords the generator emits, so the test needs no schema library.
 * Unknown keywords fail loudly, so the generator cannot start emitting something this does not check.
 */
function schemaErrors(schema: JsonSchema, value: unknown, path = '$'): string[] {
  const known = new Set(['$schema', 'title', 'description', 'default', 'type', 'properties', 'additionalProperties', 'required', 'enum', 'const', 'pattern', 'minLength', 'maxLength', 'minimum', 'maximum', 'anyOf', 'items', 'minItems', 'maxItems', 'propertyNames']);
  for (const keyword of Object.keys(schema)) if (!known.has(keyword)) throw new Error(`unsupported keyword ${keyword} at ${path}`);
  const errors: string[] = [];
  const type = schema['type'];
  const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
  if (type !== undefined) {
    const ok =
      (type === 'object' && isObject) ||
      (type === 'array' && Array.isArray(value)) ||
      (type === 'string' && typeof value === 'string') ||
      (type === 'boolean' && typeof value === 'boolean') ||
      (type === 'number' && typeof value === 'number') ||
      (type === 'integer' && Number.isInteger(value));
    if (!ok) return [`${path}: not ${String(type)}`];
  }
  if (schema['enum'] !== undefined && !(schema['enum'] as JsonValue[]).includes(value as JsonValue)) errors.push(`${path}: not in enum`);
  if (schema['const'] !== undefined && schema['const'] !== value) errors.push(`${path}: not const`);
  if (typeof value === 'string') {
    if (schema['pattern'] !== undefined && !new RegExp(schema['pattern'] as string).test(value)) errors.push(`${path}: pattern`);
    if (schema['minLength'] !== undefined && value.length < (schema['minLength'] as number)) errors.push(`${path}: minLength`);
    if (schema['maxLength'] !== undefined && value.length > (schema['maxLength'] as number)) errors.push(`${path}: maxLength`);
  }
  if (typeof value === 'number') {
    if (schema['minimum'] !== undefined && value < (schema['minimum'] as number)) errors.push(`${path}: minimum`);
    if (schema['maximum'] !== undefined && value > (schema['maximum'] as number)) errors.push(`${path}: maximum`);
  }
  if (schema['anyOf'] !== undefined) {
    const options = schema['anyOf'] as JsonSchema[];
    if (!options.some((option) => schemaErrors(option, value, path).length === 0)) errors.push(`${path}: matches no anyOf option`);
  }
  if (Array.isArray(value)) {
    if (schema['items'] !== undefined) value.forEach((item, i) => errors.push(...schemaErrors(schema['items'] as JsonSchema, item, `${path}[${i}]`)));
    if (schema['minItems'] !== undefined && value.length < (schema['minItems'] as number)) errors.push(`${path}: minItems`);
    if (schema['maxItems'] !== undefined && value.length > (schema['maxItems'] as number)) errors.push(`${path}: maxItems`);
  }
  if (isObject) {
    const record = value as Record<string, unknown>;
    const properties = (schema['properties'] ?? {}) as Record<string, JsonSchema>;
    for (const name of (schema['required'] ?? []) as string[]) if (!(name in record)) errors.push(`${path}.${name}: required`);
    for (const [key, item] of Object.entries(record)) {
      if (schema['propertyNames'] !== undefined) errors.push(...schemaErrors(schema['propertyNames'] as JsonSchema, key, `${path}.${key} (name)`));
      const property = properties[key];
      if (property !== undefined) errors.push(...schemaErrors(property, item, `${path}.${key}`));
      else if (schema['additionalProperties'] === false) errors.push(`${path}.${key}: additional property`);
      else if (typeof schema['additionalProperties'] === 'object') errors.push(...schemaErrors(schema['additionalProperties'] as JsonSchema, item, `${path}.${key}`));
    }
  }
  return errors;
}

describe('balancer.schema.json', () => {
  test('the committed file is exactly what the spec generates (npm run schema)', () => {
    if (process.env['UPDATE_SCHEMA'] === '1') writeFileSync(SCHEMA_PATH, configJsonSchemaText());
    expect(readFileSync(SCHEMA_PATH, 'utf8')).toBe(configJsonSchemaText());
  });

  test('is draft-07, closed at every level, and documents defaults', () => {
    const schema = configJsonSchema();
    expect(schema['$schema']).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema['additionalProperties']).toBe(false);
    const pools = (schema['properties'] as Record<string, JsonSchema>)['pools']!;
    const pool = pools['additionalProperties'] as JsonSchema;
    expect(pool['additionalProperties']).toBe(false);
    const poolProperties = pool['properties'] as Record<string, JsonSchema>;
    expect(poolProperties['strategy']!['default']).toBe('round-robin');
    const healthCheck = poolProperties['healthCheck']!['properties'] as Record<string, JsonSchema>;
    expect(healthCheck['interval']!['default']).toBe('2s');
  });

  test('accepts the full example', () => {
    expect(schemaErrors(configJsonSchema(), parse(FULL_EXAMPLE))).toEqual([]);
  });

  test('flags unknown keys, wrong types and bad enums', () => {
    const schema = configJsonSchema();
    expect(schemaErrors(schema, { poools: {} })).toEqual(['$.poools: additional property']);
    expect(schemaErrors(schema, { pools: { web: { backends: [{ url: 'http://a:1', wieght: 2 }] } } })).toEqual([
      '$.pools.web.backends[0].wieght: additional property',
    ]);
    expect(schemaErrors(schema, { pools: { web: { strategy: 'fastest' } } })).toEqual(['$.pools.web.strategy: not in enum']);
    expect(schemaErrors(schema, { pools: { web: { retries: 'abc' } } })).toEqual(['$.pools.web.retries: not integer']);
    expect(schemaErrors(schema, { pools: { web: { timeouts: { connect: '5 seconds' } } } })).toEqual(['$.pools.web.timeouts.connect: matches no anyOf option']);
    expect(schemaErrors(schema, { pools: { web: { backends: [{ weight: 0 }] } } })).toEqual([
      '$.pools.web.backends[0].url: required',
      '$.pools.web.backends[0].weight: minimum',
    ]);
    expect(schemaErrors(schema, { pools: { 'web pool': {} } })).toEqual(['$.pools.web pool (name): pattern']);
    expect(schemaErrors(schema, { workers: 'many' })).toEqual(['$.workers: matches no anyOf option']);
  });

  test('property: whatever the validator accepts, the schema accepts (it is never stricter)', () => {
    const schema = configJsonSchema();
    fc.assert(
      fc.property(replicatedFileArb, (input) => {
        const result = validateReplicated(input);
        if (!result.ok) return;
        expect(schemaErrors(schema, input)).toEqual([]);
        expect(schemaErrors(schema, JSON.parse(JSON.stringify(toPlainReplicated(result.config))))).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});
