import { createRequire } from 'node:module';

/**
 * Loads a CommonJS package with require(). An ESM `import` of one makes Node
 * scan its source for the names it exports (cjs-module-lexer), in every
 * thread that imports it. For the generated loaders of the native packages
 * (20 to 30 KB each) and the AWS SDK's bundles, that scan, and V8 optimizing
 * the scanner, cost about 0.1 s of CPU per thread: in each chunk worker, and
 * again in the main thread, on every command. Every CommonJS package is loaded
 * this way; packages with an ESM entry (lru-cache, commander) are imported.
 */
export const requireCjs = createRequire(import.meta.url);
