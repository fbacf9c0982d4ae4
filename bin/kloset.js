#!/usr/bin/env -S MALLOC_ARENA_MAX=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=134217728 node --max-semi-space-size=2 --initial-old-space-size=48
// The malloc settings keep chunk-sized buffers in the heap instead of fresh
// mmap()ed pages: every read, seal and decrypt allocates about a megabyte, and
// faulting new pages in for each costs more than the cryptography. One arena
// lets the worker threads reuse what the others freed, which bounds memory.
// A small young generation: the main thread's garbage is short-lived message
// and entry objects, and 32 MiB of semi-spaces would only add to the RSS.
// A larger first old-generation limit: every 64 KiB a socket reads is a new
// buffer, and with the default limit V8 ran a full collection for every
// 8 MiB or so of a download (over a hundred for a 1 GiB read through a
// mount of a store on S3, a fifth of its CPU time; half as many at 48 MiB).
// 64 MiB halved them again but raised a backup's peak RSS by 20 MB.
// Without the two V8 flags a backup of the benchmark's tree peaked 20 to 30 MiB
// higher. They have a price: with any V8 flag, Node compiles its own modules
// from source rather than from its code cache, about 85 ms more CPU per start.
import { typedArguments } from '../dist/cli/commandline.js';
import { main } from '../dist/cli/main.js';

main(typedArguments()).then((code) => {
  process.exitCode = code;
});
