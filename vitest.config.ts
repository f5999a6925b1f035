import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The 45 s chaos run is its own step (`npm run chaos`, also in CI), so `npm test` stays short.
    exclude: process.env['BALANCER_CHAOS'] === '1' ? [...configDefaults.exclude] : [...configDefaults.exclude, 'test/chaos/**'],
    // A test or hook timeout only catches a hang. On the shared two-core machine under load a test that spawns
    // balancer processes runs three to five times slower than alone (a 10 s cluster test took 42 s at 0.2 of a
    // core), so the bound is generous; what a test waits for carries its own deadline naming what it waited for.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Integration tests spawn processes and bind sockets; two cores do not like more than two forks.
    pool: 'forks',
    maxWorkers: 2,
  },
});
