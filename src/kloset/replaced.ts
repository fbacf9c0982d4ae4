/**
 * The error code of a local file found replaced by another (renamed over its
 * name) between the walk's lstat and the chunk worker's open. Its own module:
 * the worker's module must not be loaded on the main thread.
 */
export const REPLACED = 'EKLOSETREPLACED';
