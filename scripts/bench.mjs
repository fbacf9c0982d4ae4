#!/usr/bin/env node
// kloset benchmark: compares kloset against reference tools on the same
// deterministic dataset, on the same disk, and prints a side-by-side table.
//
//   npm run bench                 full datasets (local: ~550 MiB, 20,000 small + 4 large files;
//                                 mount: one 1 GiB file + 50,000 small files, in a local store
//                                 and in a store on a local s3rver;
//                                 s3: a bucket of 2,000 objects of 1–256 KiB + 4 × 32 MiB)
//   npm run bench -- --quick      smaller datasets, fast smoke run
//
// Options:
//   --quick              smaller datasets under .bench/*-quick
//   --tools=a,b          only run these tools (default: kloset,restic,rclone)
//   --sections=a,b       only run these sections: local, mount, s3 (default: all)
//   --no-build           do not run `npm run build` before benchmarking kloset
//   --verify-full        verify restores with `diff -rq` instead of sampled hashes
//   --timeout=SECONDS    per-step timeout (default 3600)
//   --runs=N             repeat each tool's cycle N times, report medians (default 1)
//   --regen              force dataset regeneration
//   --cache-size=SIZE    mount section: pass --cache-size SIZE to `kloset mount`
//                        (default: kloset's own, 512 MiB); sets the RSS target
//
// Output: a table on stdout and the same as Markdown in .bench/results.md.
// Exit code: 0 when every step ran and every restore verified, 1 otherwise
// (missed performance targets do not change the exit code).
//
// Structure: SECTIONS is a list of { name, title, run(ctx) } where run returns
// { columns, rows, targets, notes, errors }. Sections: `local` (backup and
// restore of a directory, kloset vs restic), `mount` (reads through
// `kloset mount` vs `restic mount` vs a trivial in-memory FUSE file system,
// scripts/bench-memfs.cjs, with the stores on the local disk; then kloset vs
// restic again with the stores on a local s3rver) and `s3` (backup of a bucket
// and restore into a bucket on a local s3rver, kloset vs plain `rclone copy`,
// with request counts kept by the server itself).

import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = path.join(ROOT, '.bench');
const GENERATOR_VERSION = 1;
const MiB = 1024 * 1024;
const KiB = 1024;

// ---------------------------------------------------------------------------
// CLI options

function parseArgs(argv) {
  const opts = {
    quick: false,
    tools: ['kloset', 'restic', 'rclone'],
    sections: null,
    build: true,
    verifyFull: false,
    timeout: 3600,
    regen: false,
    runs: 1,
    cacheSize: null,
  };
  for (const a of argv) {
    if (a === '--quick') opts.quick = true;
    else if (a === '--no-build') opts.build = false;
    else if (a === '--verify-full') opts.verifyFull = true;
    else if (a === '--regen') opts.regen = true;
    else if (a.startsWith('--tools=')) opts.tools = a.slice(8).split(',').filter(Boolean);
    else if (a.startsWith('--sections=')) opts.sections = a.slice(11).split(',').filter(Boolean);
    else if (a.startsWith('--timeout=')) opts.timeout = Number(a.slice(10));
    else if (a.startsWith('--runs=')) opts.runs = Math.max(1, Number(a.slice(7)) | 0);
    else if (a.startsWith('--cache-size=')) {
      opts.cacheSize = a.slice(13);
      if (parseSize(opts.cacheSize) == null) {
        console.error(`bench: invalid --cache-size ${opts.cacheSize} (examples: 512M, 2G, 1048576)`);
        process.exit(2);
      }
    }
    else if (a === '-h' || a === '--help') {
      const src = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
      const lines = src.split('\n').slice(1);
      console.log(lines.slice(0, lines.findIndex((l) => l.startsWith('// Structure:'))).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else {
      console.error(`bench: unknown argument ${a}`);
      process.exit(2);
    }
  }
  return opts;
}

// "512M", "2GiB", "1048576" -> bytes (as `kloset mount --cache-size` reads it), or null.
function parseSize(text) {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(String(text).trim());
  if (!m) return null;
  return Math.round(Number(m[1]) * 1024 ** ' kmgt'.indexOf(m[2].toLowerCase() || ' '));
}

function log(msg) {
  process.stderr.write(`[bench] ${msg}\n`);
}

// ---------------------------------------------------------------------------
// System packages

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function dpkgInstalled(pkg) {
  const r = spawnSync('dpkg', ['-s', pkg], { encoding: 'utf8' });
  return r.status === 0 && /^Status: install ok installed/m.test(r.stdout);
}

function ensureDebianPackages(pkgs) {
  const hasDpkg = spawnSync('sh', ['-c', 'command -v dpkg'], { stdio: 'ignore' }).status === 0;
  if (!hasDpkg) return;
  const missing = pkgs.filter((p) => !dpkgInstalled(p));
  if (missing.length === 0) return;
  const sudo = isRoot() ? [] : ['sudo'];
  log(`installing Debian packages: ${missing.join(' ')}`);
  const run = (args) => {
    const cmd = [...sudo, ...args];
    const r = spawnSync(cmd[0], cmd.slice(1), {
      encoding: 'utf8',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (r.status !== 0) {
      throw new Error(`${cmd.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
    }
  };
  run(['apt-get', 'update']);
  run(['apt-get', 'install', '-y', '--no-install-recommends', ...missing]);
}

// ---------------------------------------------------------------------------
// Deterministic dataset

function mulberry32(seed) {
  let a = seed >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Random (incompressible) bytes: AES-256-CTR keystream with a key derived from
// a fixed seed and a per-file IV, so every file is distinct and reproducible.
const RANDOM_KEY = createHash('sha256').update('kloset-bench-random-v1').digest();
function randomBytes(stream, size) {
  const iv = createHash('sha256').update(`iv:${stream}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-256-ctr', RANDOM_KEY, iv);
  return c.update(Buffer.alloc(size));
}

// Compressible text: pseudo-random words from a seeded vocabulary with a
// skewed (roughly Zipfian) distribution, arranged into lines.
function makeVocabulary(rand, n) {
  const letters = 'etaoinshrdlcumwfgypbvkjxqz';
  const words = [];
  const seen = new Set();
  while (words.length < n) {
    const len = 2 + Math.floor(rand() * rand() * 10);
    let w = '';
    for (let i = 0; i < len; i++) {
      // bias towards frequent letters
      w += letters[Math.floor(rand() * rand() * letters.length)];
    }
    if (!seen.has(w)) {
      seen.add(w);
      words.push(Buffer.from(w));
    }
  }
  return words;
}

function textBytes(rand, vocab, size) {
  const buf = Buffer.allocUnsafe(size);
  let off = 0;
  let col = 0;
  const n = vocab.length;
  while (off < size) {
    const r = rand();
    const w = vocab[Math.floor(r * r * r * n)];
    const len = Math.min(w.length, size - off);
    w.copy(buf, off, 0, len);
    off += len;
    col += len;
    if (off >= size) break;
    if (col > 72) {
      buf[off++] = 0x0a;
      col = 0;
    } else {
      if (rand() < 0.07 && off + 1 < size) {
        buf[off++] = 0x2c; // ','
        col++;
      }
      buf[off++] = 0x20;
      col++;
    }
  }
  return buf;
}

function datasetSpec(quick) {
  return quick
    ? { smallFiles: 2000, dirs: 40, largeFiles: 4, largeSize: 64 * MiB / 10, seed: 0x6b6c6f73 }
    : { smallFiles: 20000, dirs: 400, largeFiles: 4, largeSize: 64 * MiB, seed: 0x6b6c6f73 };
}

async function walk(dir) {
  // Returns [{ rel, size }] of regular files, sorted by rel.
  const out = [];
  async function rec(abs, rel) {
    const ents = await fsp.readdir(abs, { withFileTypes: true });
    for (const e of ents) {
      const a = path.join(abs, e.name);
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await rec(a, r);
      else if (e.isFile()) out.push({ rel: r, size: (await fsp.stat(a)).size });
    }
  }
  await rec(dir, '');
  out.sort((x, y) => (x.rel < y.rel ? -1 : x.rel > y.rel ? 1 : 0));
  return out;
}

async function ensureDataset(opts) {
  const spec = datasetSpec(opts.quick);
  const dataDir = path.join(BENCH, opts.quick ? 'data-quick' : 'data');
  const marker = `${dataDir}.version`;
  const want = JSON.stringify({ generator: GENERATOR_VERSION, ...spec });
  const have = fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8') : '';
  if (!opts.regen && have === want && fs.existsSync(dataDir)) {
    log(`dataset ${path.relative(ROOT, dataDir)} up to date`);
  } else {
    log(`generating dataset in ${path.relative(ROOT, dataDir)} ...`);
    const t0 = performance.now();
    fs.rmSync(marker, { force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.mkdirSync(dataDir, { recursive: true });
    const rand = mulberry32(spec.seed);
    const vocab = makeVocabulary(rand, 4000);
    const nameWord = () => vocab[Math.floor(rand() * 200)].toString();

    // Directory tree: each new directory picks a random existing parent,
    // with a depth cap, giving a bushy tree of varied depth.
    const dirs = [{ rel: '', depth: 0 }];
    for (let i = 0; i < spec.dirs; i++) {
      let parent;
      do parent = dirs[Math.floor(rand() * dirs.length)];
      while (parent.depth >= 7);
      const name = `d${String(i).padStart(3, '0')}-${nameWord()}`;
      const rel = parent.rel ? `${parent.rel}/${name}` : name;
      dirs.push({ rel, depth: parent.depth + 1 });
      fs.mkdirSync(path.join(dataDir, rel), { recursive: true });
    }

    // Small files: log-uniform size in [1 KiB, 64 KiB], half text, half random.
    const logMin = Math.log(1 * KiB);
    const logMax = Math.log(64 * KiB);
    for (let i = 0; i < spec.smallFiles; i++) {
      const dir = dirs[Math.floor(rand() * dirs.length)];
      const size = Math.round(Math.exp(logMin + rand() * (logMax - logMin)));
      const isText = rand() < 0.5;
      const name = `f${String(i).padStart(5, '0')}-${nameWord()}.${isText ? 'txt' : 'bin'}`;
      const data = isText ? textBytes(rand, vocab, size) : randomBytes(`small:${i}`, size);
      fs.writeFileSync(path.join(dataDir, dir.rel, name), data);
    }

    // Large files: two compressible, two random; written in 4 MiB chunks.
    fs.mkdirSync(path.join(dataDir, 'large'), { recursive: true });
    for (let i = 0; i < spec.largeFiles; i++) {
      const isText = i % 2 === 0;
      const file = path.join(dataDir, 'large', `large-${i}.${isText ? 'txt' : 'bin'}`);
      const fd = fs.openSync(file, 'w');
      const chunk = 4 * MiB;
      const iv = `large:${i}`;
      const c = isText ? null : createCipheriv('aes-256-ctr', RANDOM_KEY,
        createHash('sha256').update(`iv:${iv}`).digest().subarray(0, 16));
      const zero = Buffer.alloc(chunk);
      for (let off = 0; off < spec.largeSize; off += chunk) {
        const n = Math.min(chunk, spec.largeSize - off);
        const buf = isText ? textBytes(rand, vocab, n) : c.update(zero.subarray(0, n));
        fs.writeSync(fd, buf);
      }
      fs.closeSync(fd);
    }
    fs.writeFileSync(marker, want);
    log(`dataset generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const files = await walk(dataDir);
  const bytes = files.reduce((s, f) => s + f.size, 0);
  const dirCount = Number(spawnSync('sh', ['-c', `find "${dataDir}" -type d | wc -l`], { encoding: 'utf8' }).stdout.trim());
  log(`dataset: ${files.length} files, ${dirCount} directories, ${(bytes / MiB).toFixed(1)} MiB`);
  return { dir: dataDir, files, bytes, dirCount, spec };
}

// Read every file once so both tools start with the same (warm) page cache.
async function warmCache(dataset) {
  for (const f of dataset.files) {
    await fsp.readFile(path.join(dataset.dir, f.rel)).catch(() => {});
  }
}

// ---------------------------------------------------------------------------
// Running and measuring commands

// Runs cmd under /usr/bin/time, returns { ok, code, seconds, rssMiB, stdout, stderr, cmdline }.
async function measure(label, cmd, args, { env = {}, timeout, logDir }) {
  fs.mkdirSync(logDir, { recursive: true });
  const rssFile = path.join(logDir, `${label}.rss`);
  const outFile = path.join(logDir, `${label}.stdout`);
  const errFile = path.join(logDir, `${label}.stderr`);
  fs.rmSync(rssFile, { force: true });
  const cmdline = [cmd, ...args].map(shellQuote).join(' ');
  // Flush dirty pages left by earlier steps (deleted trees, previous restores)
  // so that their writeback is not charged to this step.
  spawnSync('sync');
  log(`run ${label}: ${cmdline}`);
  const outFd = fs.openSync(outFile, 'w');
  const errFd = fs.openSync(errFile, 'w');
  const t0 = performance.now();
  const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', outFd, errFd],
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeout * 1000);
  const code = await new Promise((resolve) => {
    child.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
    child.on('error', () => resolve(127));
  });
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(outFd);
  fs.closeSync(errFd);
  let rssMiB = null;
  try {
    // GNU time writes "Command exited with non-zero status N" before the value on failure.
    const lines = fs.readFileSync(rssFile, 'utf8').trim().split('\n');
    const kb = Number(lines[lines.length - 1]);
    if (Number.isFinite(kb)) rssMiB = kb / 1024;
  } catch {}
  const stdout = fs.readFileSync(outFile, 'utf8');
  const stderr = fs.readFileSync(errFile, 'utf8');
  const ok = code === 0 && !timedOut;
  if (!ok) log(`FAILED ${label} (exit ${code}${timedOut ? ', timeout' : ''}): ${cmdline}\n${tail(stderr, 40)}`);
  else log(`  ${label}: ${seconds.toFixed(2)} s, peak RSS ${rssMiB?.toFixed(0)} MiB`);
  // Every timed step runs quietly (no terminal): anything here is a warning the run should show.
  if (ok && stderr.trim()) log(`  ${label} wrote to stderr:\n${tail(stderr, 10)}`);
  return { ok, code, timedOut, seconds, rssMiB, stdout, stderr, cmdline };
}

function run(cmd, args, { env = {}, timeout } = {}) {
  const r = spawnSync(cmd, args, {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    maxBuffer: 256 * MiB,
    ...(timeout ? { timeout: timeout * 1000, killSignal: 'SIGKILL' } : {}),
  });
  return { ok: r.status === 0, code: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}` };
}

function shellQuote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function tail(s, n) {
  const lines = String(s).trimEnd().split('\n');
  return lines.slice(-n).join('\n');
}

function duBytes(dir) {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return Number(r.stdout.split(/\s/)[0]);
}

function fresh(dir) {
  fs.rmSync(dir, { recursive: true, force: true });
}

// Locate where a restore put the dataset content: directly under the target,
// under target/<basename>, or under target/<absolute source path>.
function findRestoredRoot(target, sourceDir, sampleRel) {
  const candidates = [
    path.join(target, sourceDir),
    path.join(target, path.basename(sourceDir)),
    target,
  ];
  for (const c of candidates) {
    if (fs.existsSync(path.join(c, sampleRel))) return c;
  }
  return null;
}

async function sha256File(file) {
  const h = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk);
  return h.digest('hex');
}

// Verify a restore: same file list and sizes, and equal content for all large
// files plus a deterministic sample of small files (or a full diff -rq).
async function verifyRestore(dataset, target, { full }) {
  const probe = dataset.files[0].rel;
  const root = findRestoredRoot(target, dataset.dir, probe);
  if (!root) return { ok: false, error: `restored tree not found under ${target} (looked for ${probe})` };
  if (full) {
    const r = run('diff', ['-rq', dataset.dir, root]);
    return r.ok ? { ok: true, root, checked: 'diff -rq' } : { ok: false, root, error: `diff -rq: ${tail(r.stdout + r.stderr, 20)}` };
  }
  const restored = await walk(root);
  const want = new Map(dataset.files.map((f) => [f.rel, f.size]));
  const got = new Map(restored.map((f) => [f.rel, f.size]));
  const problems = [];
  for (const [rel, size] of want) {
    if (!got.has(rel)) problems.push(`missing ${rel}`);
    else if (got.get(rel) !== size) problems.push(`size ${rel}: ${got.get(rel)} != ${size}`);
  }
  for (const rel of got.keys()) if (!want.has(rel)) problems.push(`extra ${rel}`);
  const sample = dataset.files.filter((f, i) => f.rel.startsWith('large/') || i % 97 === 0);
  for (const f of sample) {
    if (!got.has(f.rel)) continue;
    const [a, b] = await Promise.all([sha256File(path.join(dataset.dir, f.rel)), sha256File(path.join(root, f.rel))]);
    if (a !== b) problems.push(`content ${f.rel}`);
  }
  if (problems.length) {
    return { ok: false, root, error: `${problems.length} mismatches: ${problems.slice(0, 10).join('; ')}` };
  }
  return { ok: true, root, checked: `${dataset.files.length} files listed+sized, ${sample.length} hashed` };
}

// ---------------------------------------------------------------------------
// Tools

const TOOLS = {
  kloset: {
    name: 'kloset',
    version() {
      const r = run('./bin/kloset.js', ['--version']);
      const git = run('git', ['rev-parse', '--short', 'HEAD']);
      let v = r.ok ? r.stdout.trim().split('\n')[0] : null;
      if (!v) {
        try {
          v = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
        } catch {
          v = 'unknown';
        }
      }
      return `${v}${git.ok ? ` (git ${git.stdout.trim()})` : ''}`;
    },
    prepare(opts) {
      if (opts.build && !this.built) {
        log('building kloset (npm run build)');
        const r = run('npm', ['run', 'build', '--silent']);
        if (!r.ok) return `npm run build failed:\n${tail(r.stdout + r.stderr, 40)}`;
        this.built = true;
      }
      if (!fs.existsSync(path.join(ROOT, 'dist/cli/main.js'))) return 'dist/cli/main.js is missing (build kloset first)';
      return null;
    },
    // ctx.storeEnv: what a store other than a local directory needs (on S3: the XDG_CONFIG_HOME of its alias).
    env: (ctx) => ({ KLOSET_PASSPHRASE: 'bench', XDG_CACHE_HOME: ctx.cacheDir, ...ctx.storeEnv }),
    init: (ctx) => ['./bin/kloset.js', ['at', ctx.store, 'create']],
    backup: (ctx) => ['./bin/kloset.js', ['at', ctx.store, 'backup', ctx.data]],
    async snapshotId(ctx) {
      const r = await runAsync('./bin/kloset.js', ['at', ctx.store, 'ls', '--json'], { env: this.env(ctx), timeout: 600 });
      if (!r.ok) throw new Error(`./bin/kloset.js at ${ctx.store} ls --json failed (exit ${r.code}):\n${tail(r.stderr, 40)}`);
      let list;
      try {
        list = JSON.parse(r.stdout);
      } catch (e) {
        throw new Error(`kloset ls --json: invalid JSON: ${e.message}\n${r.stdout.slice(0, 500)}`);
      }
      if (!Array.isArray(list) || list.length === 0 || !list[list.length - 1].id) {
        throw new Error(`kloset ls --json: no snapshot id in ${r.stdout.slice(0, 500)}`);
      }
      return String(list[list.length - 1].id);
    },
    restore: (ctx, id) => ['./bin/kloset.js', ['at', ctx.store, 'restore', '-to', ctx.restoreDir, id]],
  },
  restic: {
    name: 'restic',
    version() {
      const r = run('restic', ['version']);
      return r.ok ? r.stdout.trim().replace(/^restic /, '') : 'unknown';
    },
    prepare() {
      try {
        ensureDebianPackages(['restic']);
      } catch (e) {
        return e.message;
      }
      return null;
    },
    env: (ctx) => ({ RESTIC_PASSWORD: 'bench', XDG_CACHE_HOME: ctx.cacheDir, RESTIC_PROGRESS_FPS: '0.016', ...ctx.storeEnv }),
    init: (ctx) => ['restic', ['init', '--repo', ctx.store]],
    backup: (ctx) => ['restic', ['-r', ctx.store, 'backup', ctx.data]],
    snapshotId: async () => 'latest',
    restore: (ctx, id) => ['restic', ['-r', ctx.store, 'restore', id, '--target', ctx.restoreDir]],
  },
};

// Restores of the local section stay until the section ends: ext4 skips
// inodes freed in the last few minutes when it allocates new ones
// (recently_deleted() in fs/ext4/ialloc.c), so a restore that follows the
// deletion of another tool's 20,000 restored files spends seconds in the
// kernel that the other tool did not. Each restore gets a directory of its own.
function localRestoresDir(opts) {
  return path.join(BENCH, opts.quick ? 'quick' : 'full', 'restores');
}

// Full local cycle for one tool: init, backup, re-backup, restore, verify.
async function localCycle(tool, dataset, opts, run) {
  const base = path.join(BENCH, opts.quick ? 'quick' : 'full', tool.name);
  const ctx = {
    store: path.join(base, 'store'),
    restoreDir: path.join(localRestoresDir(opts), `${tool.name}-${run}`),
    cacheDir: path.join(base, 'cache'),
    data: dataset.dir,
  };
  const logDir = path.join(base, 'logs');
  const res = { tool: tool.name, ok: false, errors: [] };
  const prepErr = tool.prepare(opts);
  res.version = prepErr ? 'n/a' : tool.version();
  if (prepErr) {
    res.errors.push(`${tool.name}: ${prepErr}`);
    return res;
  }
  fresh(base);
  fs.mkdirSync(base, { recursive: true });
  const env = tool.env(ctx);
  const m = (label, [cmd, args]) => measure(label, cmd, args, { env, timeout: opts.timeout, logDir });
  const fail = (step, r) => {
    res.errors.push(`${tool.name} ${step} failed (exit ${r.code}${r.timedOut ? ', timeout' : ''}): ${r.cmdline}\n${tail(r.stderr, 30)}`);
    return res;
  };

  const init = await m('init', tool.init(ctx));
  if (!init.ok) return fail('init', init);
  const b1 = await m('backup', tool.backup(ctx));
  res.backup = b1;
  if (!b1.ok) return fail('backup', b1);
  res.storeBytes = duBytes(ctx.store);
  const b2 = await m('rebackup', tool.backup(ctx));
  res.rebackup = b2;
  if (!b2.ok) return fail('re-backup', b2);
  res.storeBytesAfter = duBytes(ctx.store);
  let id;
  try {
    id = await tool.snapshotId(ctx);
  } catch (e) {
    res.errors.push(`${tool.name} snapshot id: ${e.message}`);
    return res;
  }
  const r = await m('restore', tool.restore(ctx, id));
  res.restore = r;
  if (!r.ok) return fail('restore', r);
  const v = await verifyRestore(dataset, ctx.restoreDir, { full: opts.verifyFull });
  res.verify = v;
  if (!v.ok) {
    res.errors.push(`${tool.name} restore verification failed: ${v.error}`);
    return res;
  }
  log(`  ${tool.name} restore verified (${v.checked})`);
  res.ok = true;
  return res;
}

// Combine repeated cycles: median time per step, max RSS, last store size.
function aggregateRuns(runs) {
  if (runs.length === 1) return runs[0];
  const last = runs[runs.length - 1];
  const median = (xs) => {
    const v = [...xs].sort((a, b) => a - b);
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  const out = { ...last, errors: runs.flatMap((r) => r.errors) };
  for (const step of ['backup', 'rebackup', 'restore']) {
    const ok = runs.map((r) => r[step]).filter((x) => x?.ok);
    if (ok.length === runs.length) {
      out[step] = {
        ...last[step],
        seconds: median(ok.map((x) => x.seconds)),
        rssMiB: Math.max(...ok.map((x) => x.rssMiB ?? 0)),
        all: ok.map((x) => x.seconds),
      };
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Row helpers

const fmt = {
  s: (v) => (v == null ? '—' : `${v.toFixed(2)} s`),
  mib: (v) => (v == null ? '—' : `${v.toFixed(1)} MiB`),
  mibs: (v) => (v == null ? '—' : `${v.toFixed(0)} MiB/s`),
  x: (v) => (v == null || !Number.isFinite(v) ? '—' : `${v.toFixed(2)}x`),
};

function ratio(num, den) {
  if (num == null || den == null || den === 0) return null;
  return num / den;
}

// ---------------------------------------------------------------------------
// Sections

async function sectionLocal(ctx) {
  const { opts } = ctx;
  const dataset = await ctx.dataset();
  const names = ['kloset', 'restic'];
  const results = {};
  log('warming page cache (reading the dataset once)');
  await warmCache(dataset);
  // With --runs=N the tools are interleaved, alternating the order each round
  // (k r, r k, k r, ...), so a load change on the machine hits both alike.
  const active = names.filter((n) => opts.tools.includes(n));
  const runs = Object.fromEntries(active.map((n) => [n, []]));
  fresh(localRestoresDir(opts));
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? active : [...active].reverse();
    for (const name of order) {
      const prev = runs[name][runs[name].length - 1];
      if (prev && !prev.ok) continue;
      if (opts.runs > 1) log(`${name}: run ${i + 1}/${opts.runs}`);
      runs[name].push(await localCycle(TOOLS[name], dataset, opts, i + 1));
    }
  }
  // Restored copies are not needed any more; the stores and logs stay for inspection.
  fresh(localRestoresDir(opts));
  for (const name of names) {
    results[name] = active.includes(name)
      ? aggregateRuns(runs[name])
      : { tool: name, ok: false, skipped: true, errors: [] };
  }
  const k = results.kloset;
  const r = results.restic;
  const get = (res, f) => (res && !res.skipped ? f(res) : null);
  const secs = (step) => (res) => (res[step]?.ok ? res[step].seconds : null);
  const rss = (step) => (res) => (res[step]?.ok ? res[step].rssMiB : null);
  const mb = (res) => (res.storeBytes != null ? res.storeBytes / MiB : null);
  const peak = (res) => {
    const vals = ['backup', 'rebackup', 'restore'].map((s) => res[s]?.rssMiB).filter((v) => v != null);
    return vals.length ? Math.max(...vals) : null;
  };
  const thr = (step) => (res) => (res[step]?.ok ? dataset.bytes / MiB / res[step].seconds : null);

  // kind 'time': ratio = restic/kloset (>1: kloset faster); 'less': ratio = kloset/restic.
  const rows = [];
  const add = (metric, kind, f, unit) => {
    const kv = get(k, f);
    const rv = get(r, f);
    // 'time': restic/kloset, 'more' (throughput): kloset/restic — both > 1 when kloset is faster.
    // 'less' (size, RSS): kloset/restic — < 1 when kloset is smaller.
    const x = kind === 'time' ? ratio(rv, kv) : kind === 'less' ? ratio(kv, rv) : kind === 'more' ? ratio(kv, rv) : null;
    rows.push({ metric, kloset: unit(kv), restic: unit(rv), ratio: fmt.x(x), raw: { kv, rv, x } });
  };
  add('initial backup', 'time', secs('backup'), fmt.s);
  add('initial backup throughput', 'more', thr('backup'), fmt.mibs);
  add('unchanged re-backup', 'time', secs('rebackup'), fmt.s);
  add('restore', 'time', secs('restore'), fmt.s);
  add('restore throughput', 'more', thr('restore'), fmt.mibs);
  add('store size (du -sb)', 'less', mb, fmt.mib);
  add('peak RSS, backup', 'less', rss('backup'), fmt.mib);
  add('peak RSS, re-backup', 'less', rss('rebackup'), fmt.mib);
  add('peak RSS, restore', 'less', rss('restore'), fmt.mib);
  add('peak RSS, max', 'less', peak, fmt.mib);

  const byMetric = Object.fromEntries(rows.map((row) => [row.metric, row.raw]));
  const target = (name, value, pass, fmtd) => ({
    name,
    value: fmtd,
    status: value == null ? 'n/a' : pass ? 'PASS' : 'MISS',
  });
  const bx = byMetric['initial backup'].x;
  const rbx = byMetric['unchanged re-backup'].x;
  const rx = byMetric['restore'].x;
  const sx = byMetric['store size (du -sb)'].x;
  const pk = byMetric['peak RSS, max'].kv;
  const targets = [
    target('initial backup ≥ 1.5x faster than restic', bx, bx >= 1.5, fmt.x(bx)),
    target('unchanged re-backup at least as fast as restic', rbx, rbx >= 1.0, fmt.x(rbx)),
    target('restore ≥ 1.5x faster than restic', rx, rx >= 1.5, fmt.x(rx)),
    target('store no larger than restic', sx, sx <= 1.0, fmt.x(sx)),
    // The target is in megabytes (10^6), the measure in MiB: 300 MB is 286.1 MiB.
    target('kloset peak RSS < 300 MB', pk, pk != null && (pk * MiB) / 1e6 < 300, pk == null ? '—' : `${fmt.mib(pk)} (${((pk * MiB) / 1e6).toFixed(1)} MB)`),
  ];
  const notes = [
    `Dataset: ${dataset.files.length} files in ${dataset.dirCount} directories, ${(dataset.bytes / MiB).toFixed(1)} MiB ` +
      `(${dataset.spec.smallFiles} small files 1–64 KiB log-uniform, half text / half random; ` +
      `${dataset.spec.largeFiles} × ${(dataset.spec.largeSize / MiB).toFixed(1)} MiB large files, two text, two random).`,
    'Both tools run on the same disk under .bench/, kloset first then restic (alternating with --runs), each with a fresh store and a fresh cache dir (XDG_CACHE_HOME). ' +
      'Page caches are not dropped; the dataset is read once beforehand so both tools start warm. ' +
      'Restored trees are deleted only at the end of the section, so that no restore allocates inodes among ones freed minutes before (ext4 skips those, at a cost of seconds); ' +
      'for the same reason, runs of this section started less than about five minutes after the previous one ended are not comparable.',
    'Ratios: times are restic/kloset and throughputs kloset/restic (> 1 means kloset is faster); size and RSS are kloset/restic (< 1 means kloset is smaller).',
    'Peak RSS is GNU time %M (max resident set of the command) per step. `sync` runs (untimed) before each step.',
    ...(opts.runs > 1 ? [`Times are medians of ${opts.runs} runs; RSS is the max over runs.`] : []),
    `Versions: kloset ${k.version ?? 'n/a'}; restic ${r.version ?? 'n/a'}.`,
    `${ctx.loadNote}.`,
  ];
  for (const res of [k, r]) {
    if (res.skipped) notes.push(`${res.tool}: skipped (--tools).`);
    else if (res.verify?.ok) notes.push(`${res.tool} restore verified: ${res.verify.checked}.`);
  }
  const errors = [k, r].flatMap((x) => x.errors ?? []);
  return { columns: ['metric', 'kloset', 'restic', 'ratio'], rows, targets, notes, errors };
}

// ---------------------------------------------------------------------------
// Mount section: reads through `kloset mount` vs `restic mount` vs a trivial
// in-memory FUSE file system (scripts/bench-memfs.cjs), on one dataset; then
// kloset and restic again with their stores on the local S3 server the s3
// section uses (startLocalS3), reads only.

const MOUNT_GENERATOR_VERSION = 1;
const MOUNT_BIG = 'big.bin';
const MOUNT_TREE = 'tree';
const RANDOM_READS = 2000;
const RANDOM_READ_SIZE = 4 * KiB;
const MOUNT_READY_MS = 60_000; // spawn -> usable, at most
const MOUNT_STOP_MS = 20_000; // signal -> exited, before SIGKILL
// The stores on the local S3 server: one bucket per tool, the store under store/.
const MOUNT_S3_BUCKETS = { kloset: 'kloset', restic: 'restic' };
const MOUNT_S3_ALIAS = 's3_store';
const S3_ROW = ' (S3 store)';

function mountDatasetSpec(quick) {
  // One partly compressible large file (each 4 MiB block: 2 MiB of text, 2 MiB
  // of random bytes, nothing repeated) and a tree of small files (0-2 KiB,
  // half text, half random).
  return quick
    ? { bigSize: 128 * MiB, dirs: 50, filesPerDir: 100, maxSmall: 2 * KiB, seed: 0x6d6f756e }
    : { bigSize: 1024 * MiB, dirs: 500, filesPerDir: 100, maxSmall: 2 * KiB, seed: 0x6d6f756e };
}

async function ensureMountDataset(opts) {
  const spec = mountDatasetSpec(opts.quick);
  const dir = path.join(BENCH, opts.quick ? 'mount-data-quick' : 'mount-data');
  const marker = `${dir}.version`;
  const want = JSON.stringify({ generator: MOUNT_GENERATOR_VERSION, ...spec });
  const have = fs.existsSync(marker) ? fs.readFileSync(marker, 'utf8') : '';
  if (!opts.regen && have === want && fs.existsSync(dir)) {
    log(`mount dataset ${path.relative(ROOT, dir)} up to date`);
  } else {
    log(`generating mount dataset in ${path.relative(ROOT, dir)} ...`);
    const t0 = performance.now();
    fs.rmSync(marker, { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(path.join(dir, MOUNT_TREE), { recursive: true });
    const rand = mulberry32(spec.seed);
    const vocab = makeVocabulary(rand, 4000);

    const fd = fs.openSync(path.join(dir, MOUNT_BIG), 'w');
    const block = 4 * MiB;
    const c = createCipheriv('aes-256-ctr', RANDOM_KEY, createHash('sha256').update('iv:mount-big').digest().subarray(0, 16));
    const zero = Buffer.alloc(block);
    for (let off = 0; off < spec.bigSize; off += block) {
      const n = Math.min(block, spec.bigSize - off);
      const text = n >> 1;
      fs.writeSync(fd, textBytes(rand, vocab, text));
      fs.writeSync(fd, c.update(zero.subarray(0, n - text)));
    }
    fs.closeSync(fd);

    for (let d = 0; d < spec.dirs; d++) {
      const sub = path.join(dir, MOUNT_TREE, `d${String(d).padStart(3, '0')}`);
      fs.mkdirSync(sub);
      for (let f = 0; f < spec.filesPerDir; f++) {
        const size = Math.floor(rand() * (spec.maxSmall + 1));
        const isText = rand() < 0.5;
        const name = `f${String(f).padStart(3, '0')}.${isText ? 'txt' : 'bin'}`;
        fs.writeFileSync(path.join(sub, name), isText ? textBytes(rand, vocab, size) : randomBytes(`mount:${d}:${f}`, size));
      }
    }
    fs.writeFileSync(marker, want);
    log(`mount dataset generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const files = spec.dirs * spec.filesPerDir;
  return {
    dir,
    spec,
    bigRel: MOUNT_BIG,
    bigSize: fs.statSync(path.join(dir, MOUNT_BIG)).size,
    treeRel: MOUNT_TREE,
    treeFiles: files,
    treeDirs: spec.dirs,
    treeEntries: files + spec.dirs,
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves like `promise`, or rejects after `ms` with a message naming `what`.
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result after ${(ms / 1000).toFixed(0)} s`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function unescapeMountinfo(field) {
  return field.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
}

function mountPoints() {
  try {
    return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
      .map((line) => unescapeMountinfo(line.split(' ')[4]));
  } catch {
    return [];
  }
}

function isMounted(dir) {
  return mountPoints().includes(path.resolve(dir));
}

// `fusermount -uz` (lazy unmount) of dir, and of anything mounted below it.
function forceUnmount(dir) {
  const abs = path.resolve(dir);
  for (const m of mountPoints().reverse()) {
    if (m === abs || m.startsWith(`${abs}/`)) {
      log(`  fusermount -uz ${m}`);
      const r = spawnSync('fusermount', ['-uz', m], { encoding: 'utf8', timeout: 15_000 });
      if (r.status !== 0) spawnSync('umount', ['-l', m], { timeout: 15_000 });
    }
  }
}

// Mount processes and mount points still up, for the exit / signal safety net.
const liveMounts = new Set();

function cleanupMountsSync() {
  for (const m of liveMounts) {
    try {
      if (!m.exited) process.kill(m.pid, 'SIGKILL');
    } catch {}
    forceUnmount(m.mountpoint);
  }
  liveMounts.clear();
}

// Runs `cleanup` (synchronous) on exit or on a signal, then exits: an interrupted bench leaves no mount or server behind.
// Returns the way to take the net down once the section has cleaned up after itself.
function installSafetyNet(what, cleanup) {
  const onSignal = (sig) => {
    log(`${sig}: ${what}`);
    cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const handlers = ['SIGINT', 'SIGTERM', 'SIGHUP'].map((sig) => {
    const h = () => onSignal(sig);
    process.on(sig, h);
    return [sig, h];
  });
  process.on('exit', cleanup);
  return () => {
    for (const [sig, h] of handlers) process.off(sig, h);
    process.off('exit', cleanup);
  };
}

// Starts a foreground mount process. `ready` resolves when its output matches
// readyRe (the process's own "mounted" message); stop() signals it, waits,
// kills it if needed and lazily unmounts whatever is left.
function startMount(label, cmd, args, { env = {}, mountpoint, readyRe, stopSignal, logDir }) {
  fs.mkdirSync(logDir, { recursive: true });
  const cmdline = [cmd, ...args].map(shellQuote).join(' ');
  log(`mount ${label}: ${cmdline}`);
  const spawnedAt = performance.now();
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const m = { label, cmdline, child, pid: child.pid, mountpoint, spawnedAt, readyAt: null, exited: false, exit: null, out: '', err: '' };
  liveMounts.add(m);
  const cap = (s) => (s.length > 1e6 ? s.slice(-1e6) : s);
  let resolveReady;
  m.ready = new Promise((resolve) => (resolveReady = resolve));
  const check = () => {
    if (m.readyAt == null && readyRe.test(m.out + m.err)) {
      m.readyAt = performance.now();
      resolveReady(true);
    }
  };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { m.out = cap(m.out + d); check(); });
  child.stderr.on('data', (d) => { m.err = cap(m.err + d); check(); });
  m.done = new Promise((resolve) => {
    child.on('exit', (code, sig) => {
      m.exited = true;
      m.exit = code ?? sig;
      resolveReady(false);
      resolve(m.exit);
    });
    child.on('error', (e) => {
      m.exited = true;
      m.exit = `spawn error: ${e.message}`;
      m.err += `\n${e.message}`;
      resolveReady(false);
      resolve(m.exit);
    });
  });
  m.describe = () => `${cmdline} (exit ${m.exit ?? 'still running'})\n${tail(m.err || m.out, 20)}`;
  m.stop = async () => {
    if (!m.exited) {
      child.kill(stopSignal);
      await Promise.race([m.done, sleep(MOUNT_STOP_MS)]);
    }
    if (!m.exited) {
      log(`  ${label}: no exit ${MOUNT_STOP_MS / 1000} s after ${stopSignal}; SIGKILL`);
      child.kill('SIGKILL');
      await Promise.race([m.done, sleep(5000)]);
    }
    forceUnmount(mountpoint);
    liveMounts.delete(m);
    fs.writeFileSync(path.join(logDir, `${label}.stdout`), m.out);
    fs.writeFileSync(path.join(logDir, `${label}.stderr`), m.err);
  };
  return m;
}

// Polls probe() until it answers true: the time the mount became usable.
async function waitUsable(m, probe) {
  const deadline = m.spawnedAt + MOUNT_READY_MS;
  while (performance.now() < deadline) {
    if (m.exited) throw new Error(`mount exited before it was usable: ${m.describe()}`);
    const ok = await withTimeout(probe(), Math.max(1, deadline - performance.now()), 'mount probe').catch((e) => {
      if (/no result after/.test(e.message)) throw e;
      return false;
    });
    if (ok) return performance.now();
    await sleep(5);
  }
  throw new Error(`mount not usable after ${MOUNT_READY_MS / 1000} s: ${m.describe()}`);
}

const nonEmptyDir = (dir) => async () => (await fsp.readdir(dir)).length > 0;

// Peak resident set (VmHWM) of a live process, in MiB.
function peakRssMiB(pid) {
  try {
    const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return kb ? Number(kb[1]) / 1024 : null;
  } catch {
    return null;
  }
}

// The directory holding the dataset (big file and tree) somewhere under root.
async function findDatasetRoot(root, maxDepth = 24) {
  let level = [root];
  for (let depth = 0; depth <= maxDepth && level.length; depth++) {
    const next = [];
    for (const dir of level) {
      const ents = await fsp.readdir(dir, { withFileTypes: true });
      const names = new Set(ents.map((e) => e.name));
      if (names.has(MOUNT_BIG) && names.has(MOUNT_TREE)) return dir;
      for (const e of ents) if (e.isDirectory()) next.push(path.join(dir, e.name));
    }
    level = next;
  }
  throw new Error(`${MOUNT_BIG} and ${MOUNT_TREE}/ not found under ${root}`);
}

// Writes the store a backup just made out to disk before it is mounted: a
// cold read should not share the disk with the write-back of the backup
// before it (about a gigabyte of packs, for either tool).
function flushWrites() {
  spawnSync('sync', [], { stdio: 'ignore' });
}

// Reads a whole file front to back with a 1 MiB buffer: { bytes, seconds, mibs }.
async function readSequential(file) {
  const t0 = performance.now();
  const fh = await fsp.open(file, 'r');
  const buf = Buffer.allocUnsafe(MiB);
  let bytes = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, bytes);
      if (bytesRead === 0) break;
      bytes += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { bytes, seconds, mibs: bytes / MiB / seconds };
}

function randomOffsets(size, n, seed) {
  const rand = mulberry32(seed);
  const blocks = Math.floor((size - RANDOM_READ_SIZE) / RANDOM_READ_SIZE) + 1;
  return Array.from({ length: n }, () => Math.floor(rand() * blocks) * RANDOM_READ_SIZE);
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

// One 4 KiB read at a time at each offset (one open file handle); checks every
// block against the source file. Returns latencies in ms and the mismatch count.
async function randomReads(file, offsets, sourceFile) {
  const fh = await fsp.open(file, 'r');
  const src = sourceFile ? await fsp.open(sourceFile, 'r') : null;
  const got = Buffer.alloc(RANDOM_READ_SIZE);
  const want = Buffer.alloc(RANDOM_READ_SIZE);
  const lat = [];
  let mismatches = 0;
  try {
    for (const off of offsets) {
      const t0 = performance.now();
      const { bytesRead } = await fh.read(got, 0, RANDOM_READ_SIZE, off);
      lat.push(performance.now() - t0);
      if (src) {
        const w = await src.read(want, 0, RANDOM_READ_SIZE, off);
        if (bytesRead !== w.bytesRead || !got.subarray(0, bytesRead).equals(want.subarray(0, w.bytesRead))) mismatches++;
      }
    }
  } finally {
    await fh.close();
    await src?.close();
  }
  const sorted = [...lat].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), mean: lat.reduce((s, x) => s + x, 0) / lat.length, mismatches };
}

// `ls -lR dir`, output kept in a file: { seconds, files, dirs }.
async function lsRecursive(dir, outFile, timeoutMs) {
  const fd = fs.openSync(outFile, 'w');
  const t0 = performance.now();
  const child = spawn('ls', ['-lR', dir], { stdio: ['ignore', fd, 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const code = await new Promise((resolve) => {
    child.on('exit', (c, sig) => resolve(c ?? sig));
    child.on('error', () => resolve(127));
  });
  clearTimeout(timer);
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  if (code !== 0) throw new Error(`ls -lR ${dir}: exit ${code}${timedOut ? ' (timeout)' : ''}: ${tail(err, 10)}`);
  let files = 0;
  let dirs = 0;
  for (const line of fs.readFileSync(outFile, 'utf8').split('\n')) {
    if (line.startsWith('-')) files++;
    else if (line.startsWith('d')) dirs++;
  }
  return { seconds, files, dirs };
}

// How each tool stores the dataset and mounts it. setup() creates the store
// and backs up; mount() says what to run and where the snapshot root is;
// useS3() points c.store at a store of its own on the local S3 server instead
// of a local directory (s3: what startLocalS3 returned).
const MOUNT_TOOLS = {
  kloset: {
    stopSignal: 'SIGTERM',
    readyRe: /\bmounted\b/,
    readyText: '"mounted" printed',
    async useS3(c, s3) {
      c.storeEnv = { XDG_CONFIG_HOME: path.join(c.base, 'config') };
      await klosetS3Aliases(TOOLS.kloset.env(c), s3.endpoint, [[MOUNT_S3_ALIAS, 'location', `s3://${MOUNT_S3_BUCKETS.kloset}/store`]]);
      c.store = `@${MOUNT_S3_ALIAS}`;
    },
    async setup(c) {
      const tool = TOOLS.kloset;
      const env = tool.env(c);
      for (const [label, [cmd, args]] of [['init', tool.init(c)], ['backup', tool.backup(c)]]) {
        const r = await measure(label, cmd, args, { env, timeout: c.opts.timeout, logDir: c.logDir });
        if (!r.ok) throw new Error(`kloset ${label} failed (exit ${r.code}${r.timedOut ? ', timeout' : ''}): ${r.cmdline}\n${tail(r.stderr, 30)}`);
        c.steps[label] = r;
      }
      c.snapshot = await tool.snapshotId(c);
    },
    mount(c) {
      const cache = c.opts.cacheSize ? ['--cache-size', c.opts.cacheSize] : [];
      return {
        cmd: './bin/kloset.js',
        args: ['at', c.store, 'mount', ...cache, c.mnt, c.snapshot],
        env: TOOLS.kloset.env(c),
        snapshotRoot: c.mnt,
      };
    },
  },
  restic: {
    stopSignal: 'SIGINT',
    readyRe: /Now serving the repository at/,
    readyText: '"Now serving" printed',
    // minio-go, restic's S3 client, addresses buckets path-style on an IP
    // endpoint by itself, and ignores AWS_CA_BUNDLE (which broke rclone).
    async useS3(c, s3) {
      c.storeEnv = { AWS_ACCESS_KEY_ID: S3_KEY, AWS_SECRET_ACCESS_KEY: S3_KEY };
      c.store = `s3:${s3.endpoint}/${MOUNT_S3_BUCKETS.restic}/store`;
    },
    async setup(c) {
      const tool = TOOLS.restic;
      const env = tool.env(c);
      for (const [label, [cmd, args]] of [['init', tool.init(c)], ['backup', tool.backup(c)]]) {
        const r = await measure(label, cmd, args, { env, timeout: c.opts.timeout, logDir: c.logDir });
        if (!r.ok) throw new Error(`restic ${label} failed (exit ${r.code}${r.timedOut ? ', timeout' : ''}): ${r.cmdline}\n${tail(r.stderr, 30)}`);
        c.steps[label] = r;
      }
      const r = await runAsync('restic', ['-r', c.store, 'snapshots', '--json'], { env, timeout: 600 });
      let list;
      try {
        list = JSON.parse(r.stdout);
      } catch {
        throw new Error(`restic snapshots --json failed (exit ${r.code}): ${tail(r.stderr || r.stdout, 20)}`);
      }
      const last = list[list.length - 1];
      if (!last?.id) throw new Error(`restic snapshots --json: no snapshot in ${r.stdout.slice(0, 300)}`);
      c.snapshot = last.short_id ?? last.id.slice(0, 8);
    },
    mount(c) {
      return {
        cmd: 'restic',
        args: ['-r', c.store, 'mount', c.mnt],
        env: TOOLS.restic.env(c),
        snapshotRoot: path.join(c.mnt, 'ids', c.snapshot),
      };
    },
  },
  memfs: {
    stopSignal: 'SIGTERM',
    readyRe: /\bmounted\b/,
    readyText: '"mounted" printed',
    async setup() {},
    mount(c, { kernelCache }) {
      return {
        cmd: process.execPath,
        args: [path.join(ROOT, 'scripts', 'bench-memfs.cjs'), c.mnt, String(c.ds.bigSize), ...(kernelCache ? ['--kernel-cache'] : [])],
        env: {},
        snapshotRoot: c.mnt,
      };
    },
  },
};

// Mounts once: returns the mount (usable, readiness timed), the caller does
// its reads, then always stops it.
async function withMount(name, c, label, mountOpts, work) {
  const tool = MOUNT_TOOLS[name];
  const spec = tool.mount(c, mountOpts ?? {});
  forceUnmount(c.mnt);
  fs.mkdirSync(c.mnt, { recursive: true });
  const m = startMount(`${name}-${label}`, spec.cmd, spec.args, {
    env: spec.env,
    mountpoint: c.mnt,
    readyRe: tool.readyRe,
    stopSignal: tool.stopSignal,
    logDir: c.logDir,
  });
  try {
    const usableAt = await waitUsable(m, nonEmptyDir(spec.snapshotRoot));
    // The readiness line may come just after the first successful probe.
    await withTimeout(m.ready, 5000, `${name}: readiness message`).catch(() => {});
    const timing = {
      usable: (usableAt - m.spawnedAt) / 1000,
      printed: m.readyAt != null ? (m.readyAt - m.spawnedAt) / 1000 : null,
    };
    log(`  ${name} ${label}: usable after ${timing.usable.toFixed(3)} s` +
      (timing.printed != null ? `, ${tool.readyText} after ${timing.printed.toFixed(3)} s` : ', no readiness message'));
    const result = await work({ m, spec, timing });
    const rss = peakRssMiB(m.pid);
    return { ...result, timing, rssMiB: rss };
  } finally {
    await m.stop();
    // restic exits with 130 after SIGINT, as it does on Ctrl-C.
    if (m.exit !== 0 && !(tool.stopSignal === 'SIGINT' && m.exit === 130)) log(`  ${name} ${label}: mount process exited with ${m.exit}`);
    const report = /^unmounted .*$/m.exec(m.out)?.[0];
    c.exits.push({ label, exit: m.exit, report: report?.replace(/^unmounted [^:]*: /, '') });
  }
}

// Where the dataset is in a mounted snapshot (restic: under the absolute path backed up).
async function datasetInMount(who, c, snapshotRoot) {
  const root = await withTimeout(findDatasetRoot(snapshotRoot), 60_000, `${who}: finding the dataset in the mount`);
  log(`  ${who}: dataset at ${path.relative(c.mnt, root) || '.'} in the mount`);
  return root;
}

// readSequential(file) with a time limit, logged; `what`: "cold sequential read" or "warm re-read".
async function timedRead(who, what, file, stepMs) {
  const r = await withTimeout(readSequential(file), stepMs, `${who} ${what}`);
  log(`  ${who} ${what}: ${r.mibs.toFixed(0)} MiB/s (${r.seconds.toFixed(2)} s)`);
  return r;
}

// The warm re-read, for every tool alike: the faster of two reads from the
// page cache. A single one varies by a fifth from run to run on this kind of
// machine (the first pass over cached pages is the slower), more than the
// tools differ there.
async function warmRead(read) {
  const r1 = await read();
  const r2 = await read();
  return { ...(r1.mibs >= r2.mibs ? r1 : r2), all: [r1.mibs, r2.mibs] };
}

// Everything measured for one tool (kloset or restic): store + backup, then
// mount A (cold and warm sequential read, ls -lR cold and warm), then a fresh
// mount B (4 KiB random reads, cold then warm).
async function mountCycle(name, ds, opts, base) {
  const c = {
    opts,
    ds,
    store: path.join(base, 'store'),
    cacheDir: path.join(base, 'cache'),
    mnt: path.join(base, 'mnt'),
    logDir: path.join(base, 'logs'),
    data: ds.dir,
    steps: {},
    exits: [],
  };
  const res = { tool: name, ok: false, errors: [], exits: c.exits };
  const stepMs = Math.min(opts.timeout, 900) * 1000;
  try {
    if (name !== 'memfs') {
      const prepErr = TOOLS[name].prepare(opts);
      res.version = prepErr ? 'n/a' : TOOLS[name].version();
      if (prepErr) throw new Error(prepErr);
    }
    forceUnmount(base);
    fresh(base);
    fs.mkdirSync(c.logDir, { recursive: true });
    await MOUNT_TOOLS[name].setup(c);
    flushWrites();
    res.backup = c.steps.backup;
    res.storeBytes = name === 'memfs' ? null : duBytes(c.store);
    const offsets = randomOffsets(ds.bigSize, RANDOM_READS, 0x72616e64);
    const source = path.join(ds.dir, ds.bigRel);

    if (name === 'memfs') {
      // Same FUSE options as kloset (kernel_cache): first read goes through
      // FUSE, the re-read comes from the page cache.
      const a = await withMount(name, c, 'kernel-cache', { kernelCache: true }, async () => {
        const file = path.join(c.mnt, ds.bigRel);
        const cold = await withTimeout(readSequential(file), stepMs, 'memfs cold read');
        const warm = await warmRead(() => withTimeout(readSequential(file), stepMs, 'memfs warm read'));
        const randWarm = await withTimeout(randomReads(file, offsets, null), stepMs, 'memfs warm random reads');
        return { cold, warm, randWarm };
      });
      // No kernel cache: every read goes through FUSE (best of two reads).
      const b = await withMount(name, c, 'no-kernel-cache', { kernelCache: false }, async () => {
        const file = path.join(c.mnt, ds.bigRel);
        const r1 = await withTimeout(readSequential(file), stepMs, 'memfs read 1');
        const r2 = await withTimeout(readSequential(file), stepMs, 'memfs read 2');
        const randCold = await withTimeout(randomReads(file, offsets, null), stepMs, 'memfs random reads');
        return { fuse: r1.mibs >= r2.mibs ? r1 : r2, fuseAll: [r1.mibs, r2.mibs], randCold };
      });
      Object.assign(res, {
        mountUsable: a.timing.usable,
        mountPrinted: a.timing.printed,
        mountTimes: [a.timing.usable, b.timing.usable],
        cold: a.cold,
        warm: a.warm,
        randWarm: a.randWarm,
        fuse: b.fuse,
        fuseAll: b.fuseAll,
        randCold: b.randCold,
        rssMiB: Math.max(a.rssMiB ?? 0, b.rssMiB ?? 0) || null,
      });
      for (const r of [a.cold, a.warm, b.fuse]) {
        if (r.bytes !== ds.bigSize) res.errors.push(`memfs: read ${r.bytes} bytes, expected ${ds.bigSize}`);
      }
      res.ok = res.errors.length === 0;
      return res;
    }

    let rootRel;
    const a = await withMount(name, c, 'A', null, async ({ spec }) => {
      const root = await datasetInMount(name, c, spec.snapshotRoot);
      rootRel = path.relative(spec.snapshotRoot, root);
      const file = path.join(root, ds.bigRel);
      const cold = await timedRead(name, 'cold sequential read', file, stepMs);
      const warm = await warmRead(() => timedRead(name, 'warm re-read', file, stepMs));
      const tree = path.join(root, ds.treeRel);
      const ls1 = await lsRecursive(tree, path.join(c.logDir, 'ls-cold.txt'), stepMs);
      log(`  ${name} ls -lR cold: ${ls1.seconds.toFixed(2)} s (${ls1.files} files, ${ls1.dirs} dirs)`);
      const ls2 = await lsRecursive(tree, path.join(c.logDir, 'ls-warm.txt'), stepMs);
      log(`  ${name} ls -lR warm: ${ls2.seconds.toFixed(2)} s`);
      return { cold, warm, ls1, ls2 };
    });
    const b = await withMount(name, c, 'B', null, async ({ spec }) => {
      const file = path.join(spec.snapshotRoot, rootRel, ds.bigRel);
      const randCold = await withTimeout(randomReads(file, offsets, source), stepMs, `${name} cold random reads`);
      log(`  ${name} random 4 KiB reads, cold: p50 ${randCold.p50.toFixed(3)} ms, p99 ${randCold.p99.toFixed(3)} ms`);
      const randWarm = await withTimeout(randomReads(file, offsets, source), stepMs, `${name} warm random reads`);
      log(`  ${name} random 4 KiB reads, warm: p50 ${randWarm.p50.toFixed(3)} ms, p99 ${randWarm.p99.toFixed(3)} ms`);
      return { randCold, randWarm };
    });
    Object.assign(res, {
      mountUsable: a.timing.usable,
      mountPrinted: a.timing.printed,
      mountTimes: [a.timing.usable, b.timing.usable],
      cold: a.cold,
      warm: a.warm,
      ls1: a.ls1,
      ls2: a.ls2,
      randCold: b.randCold,
      randWarm: b.randWarm,
      rssMiB: Math.max(a.rssMiB ?? 0, b.rssMiB ?? 0) || null,
      rssByMount: [a.rssMiB, b.rssMiB],
    });
    checkSequentialReads(res, name, [a.cold, a.warm], ds.bigSize);
    for (const l of [a.ls1, a.ls2]) {
      if (l.files !== ds.treeFiles || l.dirs !== ds.treeDirs) {
        res.errors.push(`${name}: ls -lR listed ${l.files} files and ${l.dirs} directories, expected ${ds.treeFiles} and ${ds.treeDirs}`);
      }
    }
    for (const r of [b.randCold, b.randWarm]) {
      if (r.mismatches) res.errors.push(`${name}: ${r.mismatches} of ${RANDOM_READS} random 4 KiB reads differ from the source file`);
    }
    res.ok = res.errors.length === 0;
  } catch (e) {
    res.errors.push(`${name}: ${e.message ?? e}`);
  } finally {
    forceUnmount(base);
  }
  return res;
}

// A sequential read that did not return the whole file is an error of the run, not a slow figure.
function checkSequentialReads(res, who, reads, size) {
  for (const r of reads) {
    if (r.bytes !== size) res.errors.push(`${who}: sequential read gave ${r.bytes} bytes, expected ${size}`);
  }
}

// One tool (kloset or restic) with its store on the local S3 server (s3: what
// startLocalS3 returned): store + backup on that server, then one
// mount: time to mount, cold and warm sequential read of the large file, as
// mount A does, and peak RSS; plus the requests of each step. No `ls -lR` or
// random reads: they would add minutes to the section.
async function mountS3Cycle(name, ds, opts, base, s3) {
  const c = {
    opts,
    ds,
    base,
    cacheDir: path.join(base, 'cache'),
    mnt: path.join(base, 'mnt'),
    logDir: path.join(base, 'logs'),
    data: ds.dir,
    steps: {},
    exits: [],
  };
  const who = `${name}${S3_ROW}`;
  const res = { tool: name, ok: false, errors: [], exits: c.exits, requests: {} };
  const stepMs = Math.min(opts.timeout, 900) * 1000;
  // Requests the server saw while fn ran.
  const counted = async (step, fn) => {
    const before = await s3.counts();
    try {
      return await fn();
    } finally {
      res.requests[step] = statsDelta(before, await s3.counts());
      log(`  ${who} ${step} requests: ${fmtDelta(res.requests[step])}`);
    }
  };
  try {
    const prepErr = TOOLS[name].prepare(opts);
    res.version = prepErr ? 'n/a' : TOOLS[name].version();
    if (prepErr) throw new Error(prepErr);
    forceUnmount(base);
    fresh(base);
    fs.mkdirSync(c.logDir, { recursive: true });
    await MOUNT_TOOLS[name].useS3(c, s3);
    await counted('backup', () => MOUNT_TOOLS[name].setup(c));
    flushWrites();
    res.backup = c.steps.backup;
    const beforeMount = await s3.counts();
    const a = await withMount(name, c, 'S3', null, async ({ spec }) => {
      res.requests.mount = statsDelta(beforeMount, await s3.counts());
      log(`  ${who} mount requests: ${fmtDelta(res.requests.mount)}`);
      const file = path.join(await datasetInMount(who, c, spec.snapshotRoot), ds.bigRel);
      const cold = await counted('cold read', () => timedRead(who, 'cold sequential read', file, stepMs));
      const warm = await counted('warm re-read', () => warmRead(() => timedRead(who, 'warm re-read', file, stepMs)));
      return { cold, warm };
    });
    Object.assign(res, {
      mountUsable: a.timing.usable,
      mountPrinted: a.timing.printed,
      cold: a.cold,
      warm: a.warm,
      rssMiB: a.rssMiB,
    });
    checkSequentialReads(res, who, [a.cold, a.warm], ds.bigSize);
    res.ok = res.errors.length === 0;
  } catch (e) {
    res.errors.push(`${who}: ${e.message ?? e}`);
  } finally {
    forceUnmount(base);
  }
  return res;
}

async function sectionMount(ctx) {
  const { opts } = ctx;
  const errors = [];
  if (!fs.existsSync('/dev/fuse')) {
    return { columns: ['metric'], rows: [], targets: [], notes: [], errors: ['mount: /dev/fuse is missing (FUSE is not available here)'] };
  }
  try {
    ensureDebianPackages(['libfuse2', 'fuse3']);
  } catch (e) {
    errors.push(`mount: ${e.message}`);
  }
  const ds = await ensureMountDataset(opts);
  const cacheBytes = opts.cacheSize ? parseSize(opts.cacheSize) : 512 * MiB;
  const baseDir = path.join(BENCH, opts.quick ? 'quick' : 'full', 'mount');
  const s3Dir = path.join(baseDir, 's3');
  const removeSafetyNet = installSafetyNet('unmounting and stopping mount processes', cleanupMountsSync);
  const results = {};
  const s3Results = {};
  try {
    forceUnmount(baseDir);
    // Same starting point for both tools: the dataset's pages in the page cache.
    log('warming page cache (reading the mount dataset once)');
    await readSequential(path.join(ds.dir, ds.bigRel));
    spawnSync('sh', ['-c', `find ${shellQuote(path.join(ds.dir, ds.treeRel))} -type f -exec cat {} + > /dev/null`]);
    for (const name of ['kloset', 'restic', 'memfs']) {
      if (name !== 'memfs' && !opts.tools.includes(name)) {
        results[name] = { tool: name, skipped: true, errors: [] };
        continue;
      }
      log(`mount: ${name}`);
      results[name] = await mountCycle(name, ds, opts, path.join(baseDir, name));
    }
    // The same tools with their stores on the local S3 server, started only
    // now so that it does not run beside the local mounts.
    const s3Tools = ['kloset', 'restic'].filter((name) => opts.tools.includes(name));
    if (s3Tools.length) {
      let s3;
      try {
        s3 = await startLocalS3({
          directory: path.join(s3Dir, 's3rver'),
          buckets: Object.values(MOUNT_S3_BUCKETS),
          logDir: s3Dir,
        });
        for (const name of s3Tools) {
          log(`mount: ${name}, store on S3`);
          s3Results[name] = await mountS3Cycle(name, ds, opts, path.join(s3Dir, name), s3);
        }
      } catch (e) {
        errors.push(`mount, S3 store: ${e.stack ?? e.message ?? e}`);
      } finally {
        await s3?.stop();
      }
    }
  } finally {
    removeSafetyNet();
    cleanupMountsSync();
    forceUnmount(baseDir);
  }
  for (const name of ['kloset', 'restic']) s3Results[name] ??= { tool: name, skipped: true, errors: [] };
  const k = results.kloset;
  const r = results.restic;
  const t = results.memfs;
  const kS3 = s3Results.kloset;
  const rS3 = s3Results.restic;
  const get = (res, f) => (res && !res.skipped ? f(res) ?? null : null);
  const fmtMs = (v) => (v == null ? '—' : `${v < 1 ? v.toFixed(3) : v.toFixed(2)} ms`);
  const fmtSeconds3 = (v) => (v == null ? '—' : `${v.toFixed(3)} s`);
  const rows = [];
  // kind 'time' (less is better): ratio restic/kloset; 'more': kloset/restic —
  // both > 1 when kloset is faster. 'less' (RSS): kloset/restic, < 1 when smaller.
  // adder(into, kloset's, restic's, the trivial fs's results) adds rows to `into`.
  const adder = (into, kRes, rRes, tRes) => (metric, kind, f, unit, fTrivial = f) => {
    const kv = get(kRes, f);
    const rv = get(rRes, f);
    const tv = fTrivial ? get(tRes, fTrivial) : null;
    const x = kind === 'time' ? ratio(rv, kv) : ratio(kv, rv);
    into.push({ metric, kloset: unit(kv), restic: unit(rv), ratio: fmt.x(x), 'trivial fs': unit(tv), raw: { kv, rv, tv, x } });
  };
  const add = adder(rows, k, r, t);
  const entries = ds.treeEntries.toLocaleString('en-US');
  add('time to mount (spawn → mount usable)', 'time', (x) => x.mountUsable, fmtSeconds3);
  add('time to mount (spawn → readiness message)', 'time', (x) => x.mountPrinted, fmtSeconds3);
  add(`cold sequential read, ${(ds.bigSize / MiB).toFixed(0)} MiB file`, 'more', (x) => x.cold?.mibs, fmt.mibs);
  add('warm sequential re-read', 'more', (x) => x.warm?.mibs, fmt.mibs);
  add('4 KiB random read p50, cold', 'time', (x) => x.randCold?.p50, fmtMs);
  add('4 KiB random read p99, cold', 'time', (x) => x.randCold?.p99, fmtMs);
  add('4 KiB random read p50, warm', 'time', (x) => x.randWarm?.p50, fmtMs);
  add('4 KiB random read p99, warm', 'time', (x) => x.randWarm?.p99, fmtMs);
  add(`ls -lR of ${entries} entries, cold`, 'time', (x) => x.ls1?.seconds, fmt.s);
  add(`ls -lR of ${entries} entries, warm`, 'time', (x) => x.ls2?.seconds, fmt.s);
  add('peak RSS of the mount process (VmHWM)', 'less', (x) => x.rssMiB, fmt.mib);
  add('sequential read through FUSE, no kernel cache', 'more', () => null, fmt.mibs, (x) => x.fuse?.mibs);

  const raw = Object.fromEntries(rows.map((row) => [row.metric.split(',')[0], row.raw]));

  // The S3 rows: the local rows' metrics and ratios, with the suffix S3_ROW;
  // no trivial fs there.
  const s3Rows = [];
  const addS3 = adder(s3Rows, kS3, rS3, null);
  addS3(`time to mount (spawn → mount usable)${S3_ROW}`, 'time', (x) => x.mountUsable, fmtSeconds3);
  addS3(`cold sequential read, ${(ds.bigSize / MiB).toFixed(0)} MiB file${S3_ROW}`, 'more', (x) => x.cold?.mibs, fmt.mibs);
  addS3(`warm sequential re-read${S3_ROW}`, 'more', (x) => x.warm?.mibs, fmt.mibs);
  addS3(`peak RSS of the mount process (VmHWM)${S3_ROW}`, 'less', (x) => x.rssMiB, fmt.mib);
  // Requests per GiB the backup sent, over the bytes it sent: both tools write packs of about 16 MiB.
  const putsPerGiBUp = (x) => {
    const delta = x.requests?.backup;
    if (!delta) return null;
    const up = Object.values(delta).reduce((sum, b) => sum + b.bytesUp, 0);
    const puts = totalKinds(delta).PUT ?? 0;
    return up > 0 ? puts / (up / GiB) : null;
  };
  addS3(`PUT per GiB uploaded by the backup${S3_ROW}`, 'less', putsPerGiBUp, (v) => (v == null ? '—' : v.toFixed(0)), null);
  const rawS3 = Object.fromEntries(s3Rows.map((row) => [row.metric.replace(S3_ROW, '').split(',')[0], row.raw]));
  rows.push(...s3Rows);
  const target = (name, value, pass, shown) => ({ name, value: shown, status: value == null ? 'n/a' : pass ? 'PASS' : 'MISS' });
  const coldX = raw['cold sequential read'].x;
  const coldS3X = rawS3['cold sequential read'].x;
  const warmK = raw['warm sequential re-read'].kv;
  const warmT = raw['warm sequential re-read'].tv;
  const warmX = ratio(warmK, warmT);
  const fuseT = raw['sequential read through FUSE'].tv;
  const mountK = raw['time to mount (spawn → mount usable)'].kv;
  const rssK = raw['peak RSS of the mount process (VmHWM)'].kv;
  const rssLimit = (cacheBytes + 150e6) / MiB;
  const cacheText = `${opts.cacheSize ? `--cache-size ${opts.cacheSize}` : 'default cache 512 MiB'}`;
  const targets = [
    target('cold sequential read ≥ 2x restic mount', coldX, coldX >= 2, fmt.x(coldX)),
    target(`cold sequential read ≥ 2x restic mount${S3_ROW}`, coldS3X, coldS3X >= 2, fmt.x(coldS3X)),
    target('warm re-read ≥ 80% of the trivial fs (same FUSE options)', warmX, warmX >= 0.8,
      warmX == null ? '—' : `${(warmX * 100).toFixed(0)}%`),
    target('time to mount (spawn → usable) < 1 s', mountK, mountK < 1, fmtSeconds3(mountK)),
    target(`peak RSS ≤ cache + 150 MB (${cacheText}: ${rssLimit.toFixed(0)} MiB)`, rssK, rssK <= rssLimit, fmt.mib(rssK)),
  ];
  const ver = (x) => x?.version ?? 'n/a';
  const notes = [
    `Dataset (${path.relative(ROOT, ds.dir)}): one ${(ds.bigSize / MiB).toFixed(0)} MiB file (each 4 MiB block half text, half random: ` +
      `partly compressible, no duplicate blocks) and a tree of ${ds.treeDirs} directories × ${ds.spec.filesPerDir} files of 0–2 KiB ` +
      `(${entries} entries). Each tool backs it up into a fresh local store under ${path.relative(ROOT, baseDir)}/ ` +
      `(kloset backup ${fmt.s(get(k, (x) => x.backup?.seconds))}, restic backup ${fmt.s(get(r, (x) => x.backup?.seconds))}), ` +
      'and its own snapshot is mounted in the foreground as a child process.',
    `Mount A: time to mount, then the large file read front to back with a 1 MiB buffer three times (cold: the first read after mounting; warm: the faster of the two re-reads, ` +
      `kloset ${(get(k, (x) => x.warm?.all) ?? []).map((v) => v.toFixed(0)).join(', ') || '—'}, trivial fs ${(get(t, (x) => x.warm?.all) ?? []).map((v) => v.toFixed(0)).join(', ') || '—'} MiB/s), ` +
      'then `ls -lR` of the tree twice. Mount B (fresh): ' +
      `${RANDOM_READS} reads of 4 KiB at 4 KiB-aligned seeded random offsets, one at a time, cold, then the same offsets again (warm); every block is checked against the source file.`,
    'Time to mount: spawn until the snapshot root lists entries (polled every 5 ms; kloset: the mount point, restic: ids/<id>), ' +
      `and until the process prints its readiness line (kloset "mounted …", restic "Now serving the repository at …"); the table shows mount A, ` +
      `all mounts: kloset ${(get(k, (x) => x.mountTimes) ?? []).map((v) => v.toFixed(3)).join(', ') || '—'} s, ` +
      `restic ${(get(r, (x) => x.mountTimes) ?? []).map((v) => v.toFixed(3)).join(', ') || '—'} s.`,
    `Peak RSS: VmHWM of the mount process from /proc/<pid>/status just before unmounting, the larger of mounts A and B ` +
      `(kloset ${(get(k, (x) => x.rssByMount) ?? []).map((v) => fmt.mib(v)).join(' / ') || '—'}, ` +
      `restic ${(get(r, (x) => x.rssByMount) ?? []).map((v) => fmt.mib(v)).join(' / ') || '—'}); kloset ran with ${cacheText}. ` +
      'kloset runs through its shebang (./bin/kloset.js, with its malloc settings).',
    'Trivial fs (scripts/bench-memfs.cjs): one file of the same size served from a 64 MiB in-memory pattern by fuse-native, the binding kloset uses, with ' +
      'kloset\'s FUSE options (kernel_cache, max_read 1 MiB): its cold row is the first read (through FUSE), its warm row the faster re-read (page cache), its p50/p99 cold rows ' +
      `come from a mount without kernel_cache. Its "no kernel cache" row is the best of two reads on that mount (${(get(t, (x) => x.fuseAll) ?? []).map((v) => v.toFixed(0)).join(', ')} MiB/s).` +
      (warmK != null && fuseT != null ? ` kloset's warm re-read is ${(ratio(warmK, fuseT) * 100).toFixed(0)}% of that FUSE-only rate.` : ''),
    `Rows "${S3_ROW.trim()}": the same dataset in a store on the local S3 server, measured after the local mounts: s3rver 3.7 on loopback ` +
      `(test/helpers/s3rver-launcher.mjs, started as the s3 section starts it; objects as files under ${path.relative(ROOT, s3Dir)}/s3rver/, removed afterwards), ` +
      'which counts the requests it serves (no proxy in between). ' +
      `kloset: alias ${MOUNT_S3_ALIAS} (location s3://${MOUNT_S3_BUCKETS.kloset}/store; endpoint, access keys, use_tls false) in a private XDG_CONFIG_HOME, ` +
      `\`at @${MOUNT_S3_ALIAS} create\`, \`backup\` of the dataset, \`mount <dir> <id>\`; ` +
      `restic: \`-r s3:http://127.0.0.1:<port>/${MOUNT_S3_BUCKETS.restic}/store\` with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, init, backup, \`mount <dir>\` ` +
      `(backups: kloset ${fmt.s(get(kS3, (x) => x.backup?.seconds))}, restic ${fmt.s(get(rS3, (x) => x.backup?.seconds))}; each mount keeps the cache directory its backup filled). ` +
      'One mount per tool, measured as mount A (time to mount, cold then warm read of the large file) without `ls -lR` or random reads; ' +
      `readiness line after kloset ${fmtSeconds3(get(kS3, (x) => x.mountPrinted))}, restic ${fmtSeconds3(get(rS3, (x) => x.mountPrinted))}; peak RSS as above, of that one mount.`,
    ...(rS3.skipped ? [] : [
      'restic on s3rver: minio-go, restic\'s S3 client, signs each upload chunk by chunk (aws-chunked) on plain http, and s3rver 3.7 stores such a body as it comes, ' +
        'chunk signatures included, so restic could not read its repository back ("Unmarshal: invalid character \'b\'" on its config). ' +
        'The launcher decodes these uploads before s3rver handles them (s3rver does not check V4 signatures). Path-style addressing needs no option (minio-go uses it for an IP endpoint).',
    ]),
    'Ratios: times and latencies restic/kloset, throughputs kloset/restic (> 1: kloset faster); RSS kloset/restic (< 1: kloset smaller). ' +
      'No caches are dropped: the dataset is read once before the backups, and each store\'s files sit in the page cache as the backup left them, written out to disk (sync) before the mount.',
    `Versions: kloset ${ver(k)}; restic ${ver(r)}.`,
    `${ctx.loadNote}.`,
  ];
  // Requests of each step on the S3 store, as the server counted them.
  const s3Requests = (x) => ['backup', 'mount', 'cold read', 'warm re-read'].filter((step) => x.requests?.[step]).map((step) => {
    const delta = x.requests[step];
    const down = Object.values(delta).reduce((sum, b) => sum + b.bytesDown, 0);
    return `${step} ${fmtKinds(totalKinds(delta))} (${down < MiB ? `${(down / KiB).toFixed(0)} KiB` : fmt.mib(down / MiB)} down)`;
  }).join(', ');
  const requestNotes = [kS3, rS3].map((x) => [x.tool, get(x, s3Requests)]).filter(([, text]) => text);
  if (requestNotes.length) notes.push(`Requests on the wire${S3_ROW}: ${requestNotes.map(([tool, text]) => `${tool}: ${text}`).join('; ')}.`);
  const reports = [k, kS3].flatMap((res) => get(res, (x) => x.exits.filter((e) => e.report).map((e) => `mount ${e.label}: ${e.report}`)) ?? []);
  if (reports.length) notes.push(`kloset's own account at unmount: ${reports.join('; ')}.`);
  for (const x of [k, r]) if (x?.skipped) notes.push(`${x.tool}: skipped (--tools).`);
  errors.push(...[k, r, t, kS3, rS3].flatMap((x) => x?.errors ?? []));
  return { columns: ['metric', 'kloset', 'restic', 'ratio', 'trivial fs'], rows, targets, notes, errors };
}

// ---------------------------------------------------------------------------
// S3 section: backup of a bucket and restore into a bucket, everything on one
// s3rver on loopback (test/helpers/s3rver-launcher.mjs as a child process),
// against a plain `rclone copy` download and upload of the same objects from
// the same server in the same run. The server counts the requests it serves by
// bucket and kind (s3rver-launcher.mjs --count-requests): no proxy sits in the
// timed traffic, whose cost would fall on the tool that moves more bytes.

const S3_GENERATOR_VERSION = 1;
const S3_LAUNCHER = path.join(ROOT, 'test', 'helpers', 's3rver-launcher.mjs');
const S3_KEY = 'S3RVER';
const S3_REGION = 'us-east-1';
const S3_START_MS = 20_000;
const S3_STOP_MS = 5_000;
const S3_STORE_PREFIX = 'kloset';
const S3_UPLOAD_CONCURRENCY = 8;
const S3_PACK_SIZE = 16 * MiB;
const S3_PUT_TARGET = 64; // per GiB stored: one PUT per 16 MiB pack
const GiB = 1024 * MiB;
const S3_TYPES = {
  txt: 'text/plain; charset=utf-8',
  csv: 'text/csv',
  json: 'application/json',
  bin: 'application/octet-stream',
  jpg: 'image/jpeg',
};

function s3DatasetSpec(quick) {
  // Objects of 1–256 KiB (log-uniform, half text, half random) under nested
  // prefixes, plus four large objects (two text, two random).
  return quick
    ? { objects: 200, prefixes: 12, minSize: 1 * KiB, maxSize: 256 * KiB, largeObjects: 4, largeSize: Math.round((32 * MiB) / 10), seed: 0x73336273 }
    : { objects: 2000, prefixes: 120, minSize: 1 * KiB, maxSize: 256 * KiB, largeObjects: 4, largeSize: 32 * MiB, seed: 0x73336273 };
}

// The objects (keys, sizes, content types, user metadata) without their bodies;
// s3Body() makes each body from its own stream name, whatever the order.
function s3Manifest(spec) {
  const rand = mulberry32(spec.seed);
  const vocab = makeVocabulary(rand, 4000);
  const word = () => vocab[Math.floor(rand() * 200)].toString();
  const prefixes = [{ key: '', depth: 0 }];
  for (let i = 0; i < spec.prefixes; i++) {
    let parent;
    do parent = prefixes[Math.floor(rand() * prefixes.length)];
    while (parent.depth >= 4);
    prefixes.push({ key: `${parent.key}p${String(i).padStart(3, '0')}-${word()}/`, depth: parent.depth + 1 });
  }
  const objects = [];
  const logMin = Math.log(spec.minSize);
  const logMax = Math.log(spec.maxSize);
  for (let i = 0; i < spec.objects; i++) {
    const prefix = prefixes[Math.floor(rand() * prefixes.length)];
    const size = Math.round(Math.exp(logMin + rand() * (logMax - logMin)));
    const text = rand() < 0.5;
    const ext = text ? ['txt', 'csv', 'json'][Math.floor(rand() * 3)] : ['bin', 'jpg'][Math.floor(rand() * 2)];
    objects.push({
      key: `${prefix.key}o${String(i).padStart(5, '0')}-${word()}.${ext}`,
      size,
      text,
      stream: `s3:small:${i}`,
      contentType: S3_TYPES[ext],
      metadata: i % 4 === 0 ? { 'bench-seq': String(i), 'bench-origin': 'kloset-bench' } : {},
    });
  }
  for (let i = 0; i < spec.largeObjects; i++) {
    const text = i % 2 === 0;
    const ext = text ? 'txt' : 'bin';
    objects.push({
      key: `large/blob-${i}.${ext}`,
      size: spec.largeSize,
      text,
      stream: `s3:large:${i}`,
      contentType: S3_TYPES[ext],
      metadata: { 'bench-seq': `large-${i}`, 'bench-origin': 'kloset-bench' },
      large: true,
    });
  }
  return { objects, vocab, bytes: objects.reduce((s, o) => s + o.size, 0), prefixes: prefixes.length - 1 };
}

function s3Body(obj, vocab) {
  if (!obj.text) return randomBytes(obj.stream, obj.size);
  const seed = createHash('sha256').update(obj.stream).digest().readUInt32LE(0);
  return textBytes(mulberry32(seed), vocab, obj.size);
}

// Like run(), but without blocking the event loop.
function runAsync(cmd, args, { env = {}, timeout = 60 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout * 1000);
    const done = (code, error) => {
      clearTimeout(timer);
      resolve({ ok: code === 0 && !timedOut, code, stdout, stderr: `${stderr}${timedOut ? `\n(killed after ${timeout} s)` : ''}${error ? `\n${error}` : ''}` });
    };
    child.on('exit', (code, sig) => done(code ?? sig));
    child.on('error', (e) => done(127, e.message));
  });
}

// Runs fn(item) over items with at most `limit` at once.
async function forEachLimit(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

// s3rver in its own process (it needs --openssl-legacy-provider), on a port the kernel picks.
async function startS3rver(directory) {
  fs.mkdirSync(directory, { recursive: true });
  const child = spawn(process.execPath, ['--openssl-legacy-provider', S3_LAUNCHER, directory, '--count-requests', '--decode-aws-chunked'], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => (err = (err + d).slice(-20_000)));
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig)));
  const stopSync = () => {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill('SIGKILL');
      } catch {}
    }
  };
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    if ((await Promise.race([exited.then(() => true), sleep(S3_STOP_MS).then(() => false)])) === false) {
      log(`  s3rver: no exit ${S3_STOP_MS / 1000} s after SIGTERM; SIGKILL`);
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(S3_STOP_MS)]);
    }
  };
  try {
    const port = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${S3_START_MS / 1000} s: ${err}`)), S3_START_MS);
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (d) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl < 0) return;
        clearTimeout(timer);
        try {
          resolve(JSON.parse(out.slice(0, nl)).port);
        } catch (e) {
          reject(new Error(`s3rver launcher printed ${JSON.stringify(out)}: ${e.message}`));
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited (${code}) before listening: ${err}`));
      });
    });
    return { child, pid: child.pid, port, endpoint: `http://127.0.0.1:${port}`, stop, stopSync, stderr: () => err };
  } catch (e) {
    stopSync();
    throw e;
  }
}

// What happened between two snapshots of the server's request counts: per bucket, counts that grew.
function statsDelta(before, after) {
  const out = {};
  for (const [bucket, a] of Object.entries(after)) {
    const b = before[bucket] ?? { kinds: {}, areas: {}, statuses: {}, bytesUp: 0, bytesDown: 0 };
    const d = (x, y) => Object.fromEntries(Object.entries(x).map(([k, v]) => [k, v - (y[k] ?? 0)]).filter(([, v]) => v > 0));
    const delta = { kinds: d(a.kinds, b.kinds), areas: d(a.areas, b.areas), statuses: d(a.statuses, b.statuses), bytesUp: a.bytesUp - b.bytesUp, bytesDown: a.bytesDown - b.bytesDown };
    if (Object.keys(delta.kinds).length) out[bucket] = delta;
  }
  return out;
}

// { GET: n, PUT: n, … } summed over buckets.
function totalKinds(delta) {
  const out = {};
  for (const r of Object.values(delta)) for (const [k, v] of Object.entries(r.kinds)) out[k] = (out[k] ?? 0) + v;
  return out;
}

const KIND_ORDER = ['LIST', 'HEAD', 'GET', 'PUT', 'POST', 'DELETE'];
function fmtKinds(kinds) {
  const rank = (kind) => (KIND_ORDER.includes(kind) ? KIND_ORDER.indexOf(kind) : KIND_ORDER.length);
  const keys = Object.keys(kinds).sort((a, b) => rank(a) - rank(b));
  return keys.length ? keys.map((k) => `${kinds[k].toLocaleString('en-US')} ${k}`).join(', ') : '—';
}
const sumKinds = (kinds) => Object.values(kinds).reduce((s, v) => s + v, 0);
function fmtDelta(delta) {
  return Object.entries(delta).map(([bucket, r]) => {
    const st = Object.keys(r.statuses).length ? `; errors ${Object.entries(r.statuses).map(([k, v]) => `${v}×${k}`).join(', ')}` : '';
    return `s3://${bucket}: ${fmtKinds(r.kinds)}${st}`;
  }).join('; ') || 'none';
}

async function loadS3Sdk() {
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return import('@aws-sdk/client-s3');
}

function s3Client(sdk, endpoint) {
  return new sdk.S3Client({
    endpoint,
    region: S3_REGION,
    forcePathStyle: true,
    credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_KEY },
    // s3rver does not understand the SDK's default aws-chunked checksum trailers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { httpAgent: new http.Agent({ keepAlive: true, maxSockets: 32 }), requestTimeout: 120_000 },
  });
}

// Map key -> { size, etag } for every object of a bucket (ListObjectsV2, page by page).
async function s3ListAll(sdk, client, bucket) {
  const out = new Map();
  let token;
  do {
    const r = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token, MaxKeys: 1000 }));
    for (const o of r.Contents ?? []) out.set(o.Key, { size: Number(o.Size), etag: String(o.ETag ?? '').replace(/"/g, '') });
    token = r.IsTruncated ? r.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function s3Sha256(sdk, client, bucket, key) {
  const r = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key }));
  const h = createHash('sha256');
  for await (const chunk of r.Body) h.update(chunk);
  return { sha256: h.digest('hex'), contentType: r.ContentType, metadata: r.Metadata ?? {} };
}

// Compares a bucket (or what a listing gave) with the manifest: keys and sizes
// always; ETags where the copy's is a plain MD5 (single-part upload); with
// `sample`, sha256, content type and user metadata of the large objects and
// every 50th small one, read back from the bucket.
async function s3Verify(sdk, client, bucket, manifest, { sample }) {
  const got = await s3ListAll(sdk, client, bucket);
  const want = new Map(manifest.objects.map((o) => [o.key, o]));
  const problems = [];
  let etags = 0;
  for (const [key, o] of want) {
    const g = got.get(key);
    if (!g) problems.push(`missing ${key}`);
    else if (g.size !== o.size) problems.push(`size ${key}: ${g.size} != ${o.size}`);
    else if (/^[0-9a-f]{32}$/.test(g.etag)) {
      etags++;
      if (g.etag !== o.md5) problems.push(`content ${key}: ETag ${g.etag} != MD5 ${o.md5}`);
    }
  }
  for (const key of got.keys()) if (!want.has(key)) problems.push(`extra ${key}`);
  let hashed = 0;
  if (sample) {
    const picks = manifest.objects.filter((o, i) => o.large || i % 50 === 0).filter((o) => got.has(o.key));
    await forEachLimit(picks, 4, async (o) => {
      const r = await s3Sha256(sdk, client, bucket, o.key);
      hashed++;
      if (r.sha256 !== o.sha256) problems.push(`content ${o.key}: sha256 differs`);
      if (r.contentType !== o.contentType) problems.push(`content type ${o.key}: ${r.contentType} != ${o.contentType}`);
      const meta = Object.fromEntries(Object.entries(r.metadata).map(([k, v]) => [k.toLowerCase(), v]));
      if (JSON.stringify(meta, Object.keys(meta).sort()) !== JSON.stringify(o.metadata, Object.keys(o.metadata).sort())) {
        problems.push(`metadata ${o.key}: ${JSON.stringify(meta)} != ${JSON.stringify(o.metadata)}`);
      }
    });
  }
  const checked = `${got.size.toLocaleString('en-US')} keys listed and sized, ${etags.toLocaleString('en-US')} ETags = MD5` +
    (sample ? `, ${hashed} read back (sha256, content type, user metadata)` : '');
  return problems.length
    ? { ok: false, checked, error: `s3://${bucket}: ${problems.length} mismatches: ${problems.slice(0, 10).join('; ')}` }
    : { ok: true, checked };
}

// rclone's local copy: same relative paths and sizes as the keys.
async function verifyLocalCopy(dir, manifest) {
  const files = await walk(dir);
  const got = new Map(files.map((f) => [f.rel, f.size]));
  const problems = [];
  for (const o of manifest.objects) {
    if (!got.has(o.key)) problems.push(`missing ${o.key}`);
    else if (got.get(o.key) !== o.size) problems.push(`size ${o.key}`);
  }
  if (got.size !== manifest.objects.length) problems.push(`${got.size} files for ${manifest.objects.length} objects`);
  return problems.length ? `${problems.length} mismatches: ${problems.slice(0, 10).join('; ')}` : null;
}


// The local S3 server as the mount and s3 sections use it: s3rver with its
// objects in `directory` (emptied first), counting the requests it serves
// (`counts()`) and its own CPU time (`cpuSeconds()`), decoding aws-chunked uploads (`endpoint` is for the tools
// measured), an SDK client (`direct`, for the bench's own set-up and checks),
// and `buckets` created. stop() ends it all, keeps s3rver's stderr in logDir
// and removes `directory`; an interrupt or exit before stop() kills s3rver and
// removes `directory` and the `alsoRemove` directories.
async function startLocalS3({ directory, buckets, logDir, alsoRemove = [] }) {
  fresh(directory);
  fs.mkdirSync(directory, { recursive: true });
  const sdk = await loadS3Sdk();
  const server = await startS3rver(directory);
  const removeSafetyNet = installSafetyNet('stopping s3rver', () => {
    server.stopSync();
    for (const d of [directory, ...alsoRemove]) fresh(d);
  });
  log(`s3rver (pid ${server.pid}) on ${server.endpoint}, data in ${path.relative(ROOT, directory)}`);
  const direct = s3Client(sdk, server.endpoint);
  const counts = async () => (await fetch(`${server.endpoint}/__requests`)).json();
  const cpuSeconds = async () => (await (await fetch(`${server.endpoint}/__cpu`)).json()).seconds;
  const stop = async () => {
    direct.destroy();
    await server.stop();
    if (server.stderr().trim()) {
      fs.mkdirSync(logDir, { recursive: true });
      fs.writeFileSync(path.join(logDir, 's3rver.stderr'), server.stderr());
    }
    removeSafetyNet();
    fresh(directory);
  };
  try {
    for (const bucket of buckets) {
      await withTimeout(direct.send(new sdk.CreateBucketCommand({ Bucket: bucket })), 30_000, `creating bucket ${bucket}`);
    }
    return { sdk, server, direct, endpoint: server.endpoint, counts, cpuSeconds, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

// `./bin/kloset.js args`; throws with the end of its output when it fails.
async function runKloset(args, env, timeout = 60) {
  const r = await runAsync('./bin/kloset.js', args, { env, timeout });
  if (!r.ok) throw new Error(`./bin/kloset.js ${args.map(shellQuote).join(' ')} failed (exit ${r.code}): ${tail(r.stderr || r.stdout, 20)}`);
  return r;
}

// kloset aliases for places on the local S3 server, set with `kloset config`
// under env's XDG_CONFIG_HOME: each [name, key, value] (key `location` for a
// store, `uri` for a source or destination) also gets type s3, the endpoint,
// the access keys and use_tls false.
async function klosetS3Aliases(env, endpoint, aliases) {
  for (const [name, key, value] of aliases) {
    await runKloset(['config', name, 'create', name], env);
    for (const [k, v] of [['type', 's3'], [key, value], ['endpoint', endpoint], ['access_key', S3_KEY], ['secret_access_key', S3_KEY], ['use_tls', 'false']]) {
      await runKloset(['config', name, 'set', name, k, v], env);
    }
  }
}

async function sectionS3(ctx) {
  const { opts } = ctx;
  const errors = [];
  const spec = s3DatasetSpec(opts.quick);
  const base = path.join(BENCH, opts.quick ? 'quick' : 'full', 's3');
  const dirs = {
    s3rver: path.join(base, 's3rver'),
    config: path.join(base, 'config'),
    cache: path.join(base, 'cache'),
    local: path.join(base, 'rclone-local'),
    localStore: path.join(base, 'kloset-local-store'),
    logDir: path.join(base, 'logs'),
  };
  const stepS = opts.timeout;
  const stepMs = Math.min(opts.timeout, 1800) * 1000;
  const k = { tool: 'kloset', steps: {} };
  const rc = { tool: 'rclone', steps: {} };
  const wantKloset = opts.tools.includes('kloset');
  const wantRclone = opts.tools.includes('rclone');
  let verify = null;
  let storeBytes = null;
  let storeObjects = null;
  let manifest;
  let s3;
  let sdk;
  let direct;

  const prepErr = wantKloset ? TOOLS.kloset.prepare(opts) : null;
  if (prepErr) errors.push(`kloset: ${prepErr}`);
  k.version = wantKloset && !prepErr ? TOOLS.kloset.version() : 'n/a';
  let rcloneOk = false;
  if (wantRclone) {
    try {
      ensureDebianPackages(['rclone']);
      rcloneOk = true;
    } catch (e) {
      errors.push(`rclone: ${e.message}`);
    }
  }
  const rv = rcloneOk ? run('rclone', ['version'], { timeout: 30 }) : null;
  rc.version = rv?.ok ? rv.stdout.split('\n')[0].replace(/^rclone\s+/, '') : 'n/a';

  try {
    for (const d of Object.values(dirs)) fresh(d);
    for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });

    // Server, buckets, dataset.
    s3 = await startLocalS3({
      directory: dirs.s3rver,
      buckets: ['src', 'store', 'dest', 'dest2'],
      logDir: dirs.logDir,
      alsoRemove: [dirs.config, dirs.cache, dirs.local, dirs.localStore],
    });
    ({ sdk, direct } = s3);
    const { endpoint } = s3;
    manifest = s3Manifest(spec);
    log(`filling s3://src: ${manifest.objects.length.toLocaleString('en-US')} objects, ${(manifest.bytes / MiB).toFixed(1)} MiB ...`);
    const t0 = performance.now();
    await withTimeout(forEachLimit(manifest.objects, S3_UPLOAD_CONCURRENCY, async (o) => {
      const body = s3Body(o, manifest.vocab);
      o.md5 = createHash('md5').update(body).digest('hex');
      o.sha256 = createHash('sha256').update(body).digest('hex');
      await direct.send(new sdk.PutObjectCommand({ Bucket: 'src', Key: o.key, Body: body, ContentType: o.contentType, Metadata: o.metadata }));
    }), stepMs, 'filling s3://src');
    log(`  filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const srcCheck = await withTimeout(s3Verify(sdk, direct, 'src', manifest, { sample: false }), stepMs, 'checking s3://src');
    if (!srcCheck.ok) throw new Error(`the source bucket does not hold the dataset: ${srcCheck.error}`);

    const counted = async (label, cmd, args, env) => {
      const before = await s3.counts();
      const cpuBefore = await s3.cpuSeconds();
      const r = await measure(label, cmd, args, { env, timeout: stepS, logDir: dirs.logDir });
      r.serverCpu = (await s3.cpuSeconds()) - cpuBefore;
      r.requests = statsDelta(before, await s3.counts());
      log(`  ${label} requests: ${fmtDelta(r.requests)}; s3rver CPU ${r.serverCpu.toFixed(2)} s`);
      return r;
    };
    const failed = (tool, step, r) => `${tool} ${step} failed (exit ${r.code}${r.timedOut ? ', timeout' : ''}): ${r.cmdline}\n${tail(r.stderr || r.stdout, 30)}`;

    // kloset: aliases, store, backup of the bucket, restore into another bucket.
    const kEnv = { KLOSET_PASSPHRASE: 'bench', XDG_CACHE_HOME: dirs.cache, XDG_CONFIG_HOME: dirs.config };
    let id = null;
    if (wantKloset && !prepErr) {
      try {
        await klosetS3Aliases(kEnv, endpoint, [['s3_src', 'uri', 's3://src'], ['s3_store', 'location', `s3://store/${S3_STORE_PREFIX}`], ['s3_dest', 'uri', 's3://dest']]);
        const create = await counted('kloset-create', './bin/kloset.js', ['at', '@s3_store', 'create'], kEnv);
        k.steps.create = create;
        if (!create.ok) throw new Error(failed('kloset', 'create', create));
        const before = await s3ListAll(sdk, direct, 'store');
        const backup = await counted('kloset-backup', './bin/kloset.js', ['at', '@s3_store', 'backup', '@s3_src'], kEnv);
        k.steps.backup = backup;
        if (!backup.ok) throw new Error(failed('kloset', 'backup', backup));
        const after = await s3ListAll(sdk, direct, 'store');
        storeObjects = after.size;
        storeBytes = [...after.values()].reduce((s, o) => s + o.size, 0);
        k.addedBytes = [...after].filter(([key]) => !before.has(key)).reduce((s, [, o]) => s + o.size, 0);
        const ls = await runKloset(['at', '@s3_store', 'ls', '--json'], kEnv, Math.min(stepS, 600));
        const list = JSON.parse(ls.stdout);
        id = Array.isArray(list) && list.length ? String(list[list.length - 1].id) : null;
        if (!id) throw new Error(`kloset ls --json: no snapshot id in ${ls.stdout.slice(0, 300)}`);
      } catch (e) {
        errors.push(`kloset: ${e.message}`);
      }
      // The same backup into a store on local disk, where rclone's download also writes:
      // the server then serves only the reads, as it does for rclone.
      try {
        fresh(dirs.localStore);
        await runKloset(['at', dirs.localStore, 'create'], kEnv, Math.min(stepS, 600));
        const backupLocal = await counted('kloset-backup-local-store', './bin/kloset.js', ['at', dirs.localStore, 'backup', '@s3_src'], kEnv);
        k.steps.backupLocal = backupLocal;
        if (!backupLocal.ok) throw new Error(failed('kloset', 'backup into a local store', backupLocal));
      } catch (e) {
        errors.push(`kloset: ${e.message}`);
      }
    }

    // rclone: plain download of the bucket, the counterpart of the backup.
    const rEnv = {
      RCLONE_CONFIG: path.join(base, 'rclone.conf'),
      RCLONE_CONFIG_S3_TYPE: 's3',
      RCLONE_CONFIG_S3_PROVIDER: 'Other',
      RCLONE_CONFIG_S3_ENDPOINT: endpoint,
      RCLONE_CONFIG_S3_ACCESS_KEY_ID: S3_KEY,
      RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: S3_KEY,
      RCLONE_CONFIG_S3_REGION: S3_REGION,
      RCLONE_CONFIG_S3_FORCE_PATH_STYLE: 'true',
      // A CA bundle from the environment makes rclone's S3 client fail to start
      // (LoadCustomCABundleError), and plain http on loopback needs none.
      AWS_CA_BUNDLE: '',
    };
    fs.writeFileSync(rEnv.RCLONE_CONFIG, ''); // everything comes from the environment
    if (rcloneOk) {
      const down = await counted('rclone-download', 'rclone', ['copy', 's3:src', dirs.local], rEnv);
      rc.steps.download = down;
      if (!down.ok) errors.push(failed('rclone', 'download', down));
      else {
        const bad = await verifyLocalCopy(dirs.local, manifest);
        if (bad) errors.push(`rclone download incomplete: ${bad}`);
      }
    }

    if (id) {
      const restore = await counted('kloset-restore', './bin/kloset.js', ['at', '@s3_store', 'restore', '-to', '@s3_dest', id], kEnv);
      k.steps.restore = restore;
      if (!restore.ok) errors.push(failed('kloset', 'restore', restore));
      else {
        verify = await withTimeout(s3Verify(sdk, direct, 'dest', manifest, { sample: true }), stepMs, 'verifying s3://dest');
        if (!verify.ok) errors.push(`kloset restore verification failed: ${verify.error}`);
        else log(`  kloset restore verified: ${verify.checked}`);
      }
    }

    // rclone: plain upload of the same objects, the counterpart of the restore.
    if (rcloneOk && rc.steps.download?.ok) {
      const upload = await counted('rclone-upload', 'rclone', ['copy', dirs.local, 's3:dest2'], rEnv);
      rc.steps.upload = upload;
      if (!upload.ok) errors.push(failed('rclone', 'upload', upload));
      else {
        const v = await withTimeout(s3Verify(sdk, direct, 'dest2', manifest, { sample: false }), stepMs, 'checking s3://dest2');
        if (!v.ok) errors.push(`rclone upload incomplete: ${v.error}`);
      }
    }
  } catch (e) {
    errors.push(`s3: ${e.stack ?? e.message ?? e}`);
  } finally {
    await s3?.stop();
    for (const d of [dirs.s3rver, dirs.config, dirs.cache, dirs.local, dirs.localStore]) fresh(d);
    fs.rmSync(path.join(base, 'rclone.conf'), { force: true });
  }

  // Rows: kloset backup vs rclone download, kloset restore vs rclone upload.
  const bytes = manifest?.bytes ?? null;
  const ok = (r) => (r?.ok ? r : null);
  const secs = (r) => ok(r)?.seconds ?? null;
  const thr = (r) => (ok(r) && bytes ? bytes / MiB / r.seconds : null);
  const reqs = (r) => (ok(r) ? totalKinds(r.requests) : null);
  const perGiB = (n, b) => (n == null || !b ? null : n / (b / GiB));
  const rows = [];
  const add = (metric, kv, rv, unit, x) => rows.push({ metric, kloset: unit(kv), rclone: unit(rv), ratio: fmt.x(x), raw: { kv, rv, x } });
  const kb = k.steps.backup;
  const kr = k.steps.restore;
  const rd = rc.steps.download;
  const ru = rc.steps.upload;
  add('backup of the bucket (rclone: download)', secs(kb), secs(rd), fmt.s, ratio(secs(rd), secs(kb)));
  add('backup throughput', thr(kb), thr(rd), fmt.mibs, ratio(thr(kb), thr(rd)));
  const kbl = k.steps.backupLocal;
  add('backup of the bucket into a local store', secs(kbl), secs(rd), fmt.s, ratio(secs(rd), secs(kbl)));
  const cpu = (r) => ok(r)?.serverCpu ?? null;
  add('s3rver CPU, backup / download', cpu(kb), cpu(rd), fmt.s, ratio(cpu(kb), cpu(rd)));
  add('s3rver CPU, backup into a local store', cpu(kbl), cpu(rd), fmt.s, ratio(cpu(kbl), cpu(rd)));
  add('restore into a bucket (rclone: upload)', secs(kr), secs(ru), fmt.s, ratio(secs(ru), secs(kr)));
  add('restore throughput', thr(kr), thr(ru), fmt.mibs, ratio(thr(kr), thr(ru)));
  add('s3rver CPU, restore / upload', cpu(kr), cpu(ru), fmt.s, ratio(cpu(kr), cpu(ru)));
  const kinds = (v) => (v ? fmtKinds(v) : '—');
  rows.push({ metric: 'requests, backup / download', kloset: kinds(reqs(kb)), rclone: kinds(reqs(rd)), ratio: fmt.x(ratio(reqs(kb) && sumKinds(reqs(kb)), reqs(rd) && sumKinds(reqs(rd)))) });
  rows.push({ metric: 'requests, restore / upload', kloset: kinds(reqs(kr)), rclone: kinds(reqs(ru)), ratio: fmt.x(ratio(reqs(kr) && sumKinds(reqs(kr)), reqs(ru) && sumKinds(reqs(ru)))) });
  const storeReq = (r) => ok(r)?.requests?.store ?? null;
  const putsStored = storeReq(kb)?.kinds.PUT ?? null;
  const putPerGiB = perGiB(putsStored, k.addedBytes);
  const getsStore = storeReq(kr)?.kinds.GET ?? null;
  const getPerGiB = perGiB(getsStore, bytes);
  const num = (v) => (v == null ? '—' : v.toFixed(0));
  const rdGets = reqs(rd)?.GET ?? null;
  const ruPuts = reqs(ru)?.PUT ?? null;
  const aside = (v, what) => (v == null ? '—' : `(${num(v)} per GiB ${what})`);
  rows.push({ metric: 'PUT per GiB stored (store bucket)', kloset: num(putPerGiB), rclone: aside(perGiB(ruPuts, bytes), 'uploaded'), ratio: '' });
  rows.push({ metric: 'GET per GiB restored (from the store)', kloset: num(getPerGiB), rclone: aside(perGiB(rdGets, bytes), 'downloaded'), ratio: '' });
  const rss = (r) => ok(r)?.rssMiB ?? null;
  add('peak RSS, backup / download', rss(kb), rss(rd), fmt.mib, ratio(rss(kb), rss(rd)));
  add('peak RSS, restore / upload', rss(kr), rss(ru), fmt.mib, ratio(rss(kr), rss(ru)));

  const target = (name, value, pass, shown) => ({ name, value: shown, status: value == null ? 'n/a' : pass ? 'PASS' : 'MISS' });
  const bx = ratio(thr(kb), thr(rd));
  const rx = ratio(thr(kr), thr(ru));
  const packs = storeReq(kb)?.areas['PUT packs'] ?? null;
  const otherPuts = putsStored != null && packs != null ? putsStored - packs : null;
  const targets = [
    target('backup throughput ≥ 0.8x rclone download', bx, bx >= 0.8, fmt.x(bx)),
    target('the same, into a store on local disk', ratio(secs(rd), secs(kbl)), ratio(secs(rd), secs(kbl)) >= 0.8, fmt.x(ratio(secs(rd), secs(kbl)))),
    target('restore throughput ≥ 0.8x rclone upload', rx, rx >= 0.8, fmt.x(rx)),
    target(`PUT per GiB stored ≈ ${S3_PUT_TARGET} (one per ${S3_PACK_SIZE / MiB} MiB pack; ≤ ${S3_PUT_TARGET * 1.25} passes)`, putPerGiB,
      putPerGiB <= S3_PUT_TARGET * 1.25,
      putPerGiB == null ? '—' : `${putPerGiB.toFixed(0)} (${putsStored} PUT for ${(k.addedBytes / MiB).toFixed(1)} MiB: ${packs ?? '?'} packs + ${otherPuts ?? '?'} other)`),
    { name: 'restored bucket equals the source', value: verify ? (verify.ok ? verify.checked : 'mismatch') : '—', status: verify ? (verify.ok ? 'PASS' : 'FAIL') : 'n/a' },
  ];

  const notes = [];
  if (manifest) {
    const small = manifest.objects.filter((o) => !o.large);
    notes.push(
      `Dataset: s3://src with ${manifest.objects.length.toLocaleString('en-US')} objects, ${(bytes / MiB).toFixed(1)} MiB: ` +
        `${small.length.toLocaleString('en-US')} of 1–256 KiB (log-uniform, half text, half random) under ${manifest.prefixes} nested prefixes and at the root, ` +
        `${spec.largeObjects} × ${(spec.largeSize / MiB).toFixed(1)} MiB (two text, two random); content types by extension, user metadata on every 4th object and the large ones. ` +
        'Uploaded with the AWS SDK straight to s3rver before the timed steps.',
    );
  }
  notes.push(
    's3rver 3.7 (test/helpers/s3rver-launcher.mjs, node --openssl-legacy-provider) on loopback, one process, objects as files under ' +
      `${path.relative(ROOT, dirs.s3rver)}/ (removed afterwards). Both tools talk to it directly; it counts the requests it serves (retries included; ` +
      'LIST is any GET on a bucket itself, PUT includes multipart parts).',
    'kloset: aliases s3_src (uri s3://src), s3_store (location s3://store/kloset), s3_dest (uri s3://dest) set with `kloset config` (endpoint, access_key, secret_access_key, use_tls false) ' +
      'in a private XDG_CONFIG_HOME; `at @s3_store create`, then timed `at @s3_store backup @s3_src` and `at @s3_store restore -to @s3_dest <id>`, run through the shebang (./bin/kloset.js).',
    'rclone: remote `s3:` from RCLONE_CONFIG_S3_* variables (provider Other, path style; AWS_CA_BUNDLE emptied), default flags (4 transfers, 8 checkers): timed `rclone copy s3:src <local dir>` and `rclone copy <local dir> s3:dest2` ' +
      '(the local copy sits on the same disk as s3rver, under .bench/, and is removed afterwards).',
    '`backup of the bucket into a local store`: timed `at <dir> backup @s3_src` into a fresh store on the disk rclone\'s copy goes to, right after the backup into s3://store, ' +
      'so the server serves the reads only, as for rclone. s3rver CPU: the CPU seconds the server process used during the step (from process.cpuUsage in the launcher).',
    'Ratios: kloset throughput / rclone throughput (> 1: kloset faster; the time rows give the same number); request and RSS ratios kloset/rclone. ' +
      'Throughput is the dataset size over the step\'s wall time. PUT per GiB stored: PUTs to s3://store during the backup over the bytes it added there; ' +
      'GET per GiB restored: GETs to s3://store during the restore over the dataset size.',
  );
  if (storeBytes != null) {
    notes.push(`Store after the backup: ${storeObjects} objects, ${(storeBytes / MiB).toFixed(1)} MiB (${(k.addedBytes / MiB).toFixed(1)} MiB added by the backup).`);
  }
  for (const [label, r] of [['kloset backup', kb], ['kloset restore', kr], ['rclone download', rd], ['rclone upload', ru]]) {
    if (ok(r)) notes.push(`Requests, ${label}: ${fmtDelta(r.requests)}.`);
  }
  const areas = storeReq(kb)?.areas;
  if (areas) notes.push(`PUTs to the store by area during the backup: ${Object.entries(areas).filter(([a]) => a.startsWith('PUT')).map(([a, v]) => `${a.slice(4)} ${v}`).join(', ')}.`);
  const own = [kb, kr].filter(ok).map((r) => /requests to [^\n]*/.exec(`${r.stdout}\n${r.stderr}`)?.[0]).filter(Boolean);
  if (own.length) notes.push(`kloset's own count: ${own.join('; ')}.`);
  if (opts.quick && putPerGiB != null) {
    notes.push('With --quick the store takes a few MiB, so the fixed PUTs of a backup (index, snapshot, lock) weigh heavily in PUT per GiB.');
  }
  if (verify?.ok) notes.push(`kloset restore verified: ${verify.checked}.`);
  notes.push(`Versions: kloset ${k.version}; rclone ${rc.version}.`);
  notes.push(`${ctx.loadNote}.`);
  if (!wantKloset) notes.push('kloset: skipped (--tools).');
  if (!wantRclone) notes.push('rclone: skipped (--tools).');
  return { columns: ['metric', 'kloset', 'rclone', 'ratio'], rows, targets, notes, errors };
}

const SECTIONS = [
  { name: 'local', title: 'Local directory: kloset vs restic', run: sectionLocal },
  { name: 'mount', title: 'FUSE mount: kloset mount vs restic mount vs a trivial FUSE file system', run: sectionMount },
  { name: 's3', title: 'S3 bucket on a local s3rver: kloset vs rclone copy', run: sectionS3 },
];

// ---------------------------------------------------------------------------
// Rendering

function renderText(title, columns, rows) {
  const cells = rows.map((r) => columns.map((c) => String(r[c] ?? '')));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (vals) => vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join(' | ');
  return [
    title,
    line(columns),
    widths.map((w) => '-'.repeat(w)).join('-+-'),
    ...cells.map(line),
  ].join('\n');
}

function renderMarkdown(columns, rows) {
  const esc = (v) => String(v ?? '').replace(/\|/g, '\\|');
  return [
    `| ${columns.join(' | ')} |`,
    `| ${columns.map((c, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map((r) => `| ${columns.map((c) => esc(r[c])).join(' | ')} |`),
  ].join('\n');
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  fs.mkdirSync(BENCH, { recursive: true });
  ensureDebianPackages(['time']);
  if (!fs.existsSync('/usr/bin/time')) throw new Error('/usr/bin/time not available');

  const known = SECTIONS.map((s) => s.name);
  const unknown = (opts.sections ?? []).filter((s) => !known.includes(s));
  if (unknown.length) throw new Error(`unknown section(s) ${unknown.join(', ')} (known: ${known.join(', ')})`);
  // Each section asks for the dataset it needs; the local one is generated on first use.
  let localDataset;
  const dataset = () => (localDataset ??= ensureDataset(opts));
  const load = os.loadavg()[0];
  const loadNote = `1-min load average at start: ${load.toFixed(2)} on ${os.cpus().length} CPUs` +
    (load > os.cpus().length / 2 ? ' — machine busy, timings are noisy' : '');
  if (load > os.cpus().length / 2) log(`WARNING: ${loadNote}`);
  const ctx = { opts, dataset, loadNote };
  const machine = `${os.cpus().length} × ${os.cpus()[0]?.model?.trim() ?? 'cpu'}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, ` +
    `${os.type()} ${os.release()}, Node ${process.version}`;

  const md = [
    `# kloset benchmark${opts.quick ? ' (quick)' : ''}`,
    '',
    `Run ${new Date().toISOString()} on ${machine}.`,
    '',
  ];
  let failed = false;
  const out = [];
  for (const section of SECTIONS) {
    if (opts.sections && !opts.sections.includes(section.name)) continue;
    log(`section ${section.name}: ${section.title}`);
    let res;
    try {
      res = await section.run(ctx);
    } catch (e) {
      res = { columns: ['metric'], rows: [], targets: [], notes: [], errors: [`${section.name}: ${e.stack ?? e}`] };
    }
    if (res.errors.length) failed = true;
    const text = [renderText(`== ${section.title}${opts.quick ? ' (--quick)' : ''}`, res.columns, res.rows)];
    if (res.targets.length) {
      text.push('', renderText('Targets', ['target', 'value', 'status'], res.targets.map((t) => ({ target: t.name, value: t.value, status: t.status }))));
    }
    if (res.notes.length) text.push('', ...res.notes.map((n) => `* ${n}`));
    if (res.errors.length) text.push('', 'ERRORS:', ...res.errors.map((e) => `! ${e}`));
    out.push(text.join('\n'));

    md.push(`## ${section.title}`, '', renderMarkdown(res.columns, res.rows), '');
    if (res.targets.length) {
      md.push(renderMarkdown(['target', 'value', 'status'], res.targets.map((t) => ({ target: t.name, value: t.value, status: t.status }))), '');
    }
    if (res.notes.length) md.push(...res.notes.map((n) => `- ${n}`), '');
    if (res.errors.length) md.push('Errors:', '', '```', ...res.errors, '```', '');
  }
  const resultsFile = path.join(BENCH, opts.quick ? 'results-quick.md' : 'results.md');
  fs.writeFileSync(resultsFile, md.join('\n'));
  console.log(`\n${out.join('\n\n')}\n\nMarkdown written to ${path.relative(ROOT, resultsFile)}`);
  process.exitCode = failed ? 1 : 0;
}

main().catch((e) => {
  console.error(`bench: ${e.stack ?? e}`);
  process.exitCode = 1;
});
