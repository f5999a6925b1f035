import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The 45 s chaos run is its own step (`npm run chaos`, also in CI), so `npm test` stays short.
    exclude: process.env['BALANCER_CHAOS'] === '1' ? [...configDefaults.exclude] : [...configDefaults.exclude, 'test/chaos/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Integration tests spawn processes and bind sockets; two cores do not like more than two forks.
    pool: 'forks',
    maxWorkers: 2,
  },
});
