// `npm run schema`: writes balancer.schema.json at the repository top from the validator's spec.

import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { SCHEMA_FILE_NAME, configJsonSchemaText } from './json-schema.js';

const target = fileURLToPath(new URL(`../../${SCHEMA_FILE_NAME}`, import.meta.url));
await writeFile(target, configJsonSchemaText(), 'utf8');
process.stdout.write(`wrote ${target}\n`);
