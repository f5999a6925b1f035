// Transpiles the storage modules to plain ESM in a temp dir, so a real child `node` process can open a data dir.

import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Source files (relative to src/) a child needs to import storage.ts; type-only imports are erased. */
const STORAGE_SOURCES = ['errors.ts', 'atomic-write.ts', 'raft/core/storage.ts', 'raft/runtime/raft-fs.ts', 'raft/runtime/fs-util.ts', 'raft/runtime/record-shapes.ts', 'raft/runtime/wal.ts', 'raft/runtime/storage.ts'];

/** Returns the path of the compiled storage.js inside `outDir`. */
export async function buildStorageForChild(outDir: string): Promise<string> {
  for (const relative of STORAGE_SOURCES) {
    const source = await readFile(join(repoRoot, 'src', relative), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
      fileName: relative,
    });
    const target = join(outDir, 'src', relative.replace(/\.ts$/, '.js'));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, outputText);
  }
  await writeFile(join(outDir, 'package.json'), '{"type":"module"}\n');
  return join(outDir, 'src', 'raft', 'runtime', 'storage.js');
}
