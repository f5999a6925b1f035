// ConfigFileSync.writeBack: the file shows the newest config; write-backs that queue up behind each other collapse into one.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigFileSync } from '../../src/cluster/config-file.js';
import type { ReplicatedConfig } from '../../src/config/schema.js';
import { validateConfigText, type ParsedConfigText } from '../../src/config/validate.js';
import { memoryLogger } from '../../src/log.js';
import { ONE_BACKEND_FILE as FILE, withWeight } from '../helpers/one-backend-file.js';


describe('ConfigFileSync.writeBack', () => {
  let dir: string;
  let file: string;
  let writes: string[];
  let sync: ConfigFileSync;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'config-file-'));
    file = join(dir, 'balancer.yaml');
    await writeFile(file, FILE);
    writes = [];
    sync = await ConfigFileSync.open({ file, dataDir: dir, logger: memoryLogger('warn'), noteOwnWrite: (text) => writes.push(text) });
    await sync.noteShown(1, FILE);
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  it('once it found the file showing the applied config, knows the file as that config (not its own equal validation), so the next one-backend edit compares references', async () => {
    const applied = withWeight(1);
    expect(sync.knownReading(FILE)).toBeNull();
    // The file already says weight 1 (the default): nothing is written, and the file is known to read as `applied`.
    expect(await sync.writeBack(2, applied)).toBe(true);
    expect(writes).toHaveLength(0);
    expect(sync.knownReading(FILE)).toBe(applied);
    expect(sync.knownReading(`${FILE}# edited\n`)).toBeNull();
    // What the reducer makes of a weight edit: the pool and backend are new, the rest shared with `applied`.
    const pool = applied.pools['web']!;
    const heavier: ReplicatedConfig = { routes: applied.routes, pools: { web: { ...pool, backends: [{ ...pool.backends[0]!, weight: 3 }] } } };
    expect(await sync.writeBack(3, heavier)).toBe(true);
    const text = await readFile(file, 'utf8');
    expect(text).toBe(FILE.replace('id: web-1 }', 'id: web-1, weight: 3 }'));
    expect(sync.knownReading(text)).toBe(heavier);
  });

  it('writes the newest of the configs that queued up behind each other, once', async () => {
    const results = await Promise.all([2, 3, 4, 5].map((weight) => sync.writeBack(weight, withWeight(weight))));
    expect(results).toEqual([true, true, true, true]);
    expect(writes).toHaveLength(1);
    const text = await readFile(file, 'utf8');
    const read = validateConfigText(text, file);
    expect(read.ok && read.config.pools['web']!.backends[0]!.weight).toBe(5);
    expect(text.startsWith('# kept\n')).toBe(true);
    expect(sync.version).toBe(5);
  });

  it('reuses its own parse of the file for the next rewrite, but never writes a local ${...} value it expanded into the file', async () => {
    process.env['BALANCER_TEST_WRITE_BACK_TOKEN'] = 'expanded-secret';
    try {
      for (const text of [
        // One-line (flow) file: a rewrite writes it out whole.
        '{ "admin": { "listen": "127.0.0.1:0", "token": "${BALANCER_TEST_WRITE_BACK_TOKEN}" }, "pools": { "web": { "backends": [{ "url": "http://127.0.0.1:9001", "id": "web-1" }] } } }\n',
        // Block file without references: the parse is reused.
        FILE,
      ]) {
       for (const seeded of [false, true]) {
        await writeFile(file, text);
        const fresh = await ConfigFileSync.open({ file, dataDir: join(dir, `data-${writes.length}-${seeded}`), logger: memoryLogger('warn'), noteOwnWrite: (written) => writes.push(written) });
        if (seeded) {
          // As a seeding leader does: the file validated, recorded as shown with what its validation parsed.
          let parsed: ParsedConfigText | undefined;
          const validated = validateConfigText(text, file, (found) => (parsed = found));
          if (!validated.ok) throw new Error('invalid fixture');
          await fresh.noteShown(1, text, validated.config, parsed);
        }
        expect(await fresh.writeBack(1, withWeight(1))).toBe(true);
        expect(await readFile(file, 'utf8')).toBe(text);
        expect(await fresh.writeBack(2, withWeight(4))).toBe(true);
        const rewritten = await readFile(file, 'utf8');
        expect(rewritten).not.toContain('expanded-secret');
        const read = validateConfigText(rewritten, file);
        expect(read.ok && read.config.pools['web']!.backends[0]!.weight).toBe(4);
        if (text === FILE) expect(rewritten).toBe(FILE.replace('id: web-1 }', 'id: web-1, weight: 4 }'));
       }
      }
    } finally {
      delete process.env['BALANCER_TEST_WRITE_BACK_TOKEN'];
    }
  });

  it('keeps the order of other file work: a write-back queued after it is not merged into one before it', async () => {
    const first = sync.writeBack(2, withWeight(2));
    const shown = sync.saveRejected('not: [valid');
    const second = sync.writeBack(3, withWeight(3));
    expect(await Promise.all([first, second])).toEqual([true, true]);
    await shown;
    expect(writes).toHaveLength(2);
    expect(sync.version).toBe(3);
  });
});
