// Lint for src, test, bench and scripts: the import boundaries of the architecture, so a module that reaches across one fails `npm test`.

import tseslint from 'typescript-eslint';

/**
 * Who may import whom (docs/design.md, "Import boundaries"). Specifiers are matched as written: every module imports
 * with relative paths, and src/ is one directory deep but for raft/, so `../x/` (or `../../x/` from raft/)
 * names the top-level directory x.
 */
const outside = (dirs, message) => ({ regex: `^(\\.\\./)+(${dirs.join('|')})/`, message });

const DATA_PLANE_RULE = outside(
  ['raft', 'cluster', 'control', 'admin', 'workers', 'cli'],
  'The data plane (proxy, balancer, health) knows nothing of Raft, the cluster, the control plane, the admin API, workers or the CLI: it sees snapshots and status types that live with it.',
);

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'bench/results/**'] },
  {
    files: ['**/*.ts', '**/*.js'],
    languageOptions: { parser: tseslint.parser, ecmaVersion: 2022, sourceType: 'module' },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    // TypeScript files get this from the compiler (noUnusedLocals, noUnusedParameters); the JavaScript benchmark from here.
    files: ['**/*.js'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
    },
  },
  {
    files: ['src/raft/core/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              // Anything but itself, errors.ts and clock.ts (for types only, below).
              regex: '^(?!\\./|\\.\\./\\.\\./errors\\.js$|\\.\\./\\.\\./clock\\.js$)',
              message: 'The Raft core is pure: it imports only itself, errors.ts and the clock types (no timers, sockets, files or other modules).',
            },
            {
              regex: '^\\.\\./\\.\\./clock\\.js$',
              allowTypeImports: true,
              message: 'The Raft core takes time and randomness as injected values: import the clock types only (import type).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/raft/runtime/**/*.ts', 'src/raft/sim/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [outside(['cluster', 'config', 'proxy', 'admin', 'control', 'balancer', 'health', 'workers', 'cli'], 'Raft knows nothing of what it replicates: no imports from the config, the cluster, the data plane, the admin API or the CLI.')] },
      ],
    },
  },
  {
    files: ['src/proxy/**/*.ts', 'src/balancer/**/*.ts', 'src/health/**/*.ts'],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns: [DATA_PLANE_RULE] }] },
  },
  {
    files: ['src/config/**/*.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        { patterns: [outside(['raft', 'cluster', 'control', 'admin', 'workers', 'cli'], 'Config is validated in one place that knows nothing of who stores or serves it: no imports from Raft, the cluster, the control plane, the admin API, workers or the CLI.')] },
      ],
    },
  },
);
