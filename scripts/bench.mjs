#!/usr/bin/env node
// kloset benchmark: compares kloset against reference tools on the same
// deterministic dataset, on the same disk, and prints a side-by-side table.
//
//   npm run bench                 full dataset (~550 MiB, 20,000 small + 4 large files)
//   npm run bench -- --quick      1/10 dataset, fast smoke run
//
// Options:
//   --quick              smaller dataset (1/10) under .bench/data-quick
//   --tools=a,b          only run these tools (default: kloset,restic)
//   --sections=a,b       only run these sections (default: all)
//   --no-build           do not run `npm run build` before benchmarking kloset
//   --verify-full        verify restores with `diff -rq` instead of sampled hashes
//   --timeout=SECONDS    per-step timeout (default 3600)
//   --runs=N             repeat each tool's cycle N times, report medians (default 1)
//   --regen              force dataset regeneration
//
// Output: a table on stdout and the same as Markdown in .bench/results.md.
// Exit code: 0 when every step ran and every restore verified, 1 otherwise
// (missed performance targets do not change the exit code).
//
// Structure: SECTIONS is a list of { name, title, run(ctx) } where run returns
// { columns, rows, targets, notes, errors }. Future sections (S3 vs rclone,
// FUSE mount vs restic mount) are added to that list.

import { spawn, spawnSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
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
    tools: ['kloset', 'restic'],
    sections: null,
    build: true,
    verifyFull: false,
    timeout: 3600,
    regen: false,
    runs: 1,
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
    else if (a === '-h' || a === '--help') {
      const src = fs.readFileSync(fileURLToPath(import.meta.url), 'utf8');
      console.log(src.split('\n').slice(1, 22).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else {
      console.error(`bench: unknown argument ${a}`);
      process.exit(2);
    }
  }
  return opts;
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
  return { ok, code, timedOut, seconds, rssMiB, stdout, stderr, cmdline };
}

function run(cmd, args, { env = {} } = {}) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 256 * MiB });
  return { ok: r.status === 0, code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') };
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
      if (opts.build) {
        log('building kloset (npm run build)');
        const r = run('npm', ['run', 'build', '--silent']);
        if (!r.ok) return `npm run build failed:\n${tail(r.stdout + r.stderr, 40)}`;
      }
      if (!fs.existsSync(path.join(ROOT, 'dist/cli/main.js'))) return 'dist/cli/main.js is missing (build kloset first)';
      return null;
    },
    env: (ctx) => ({ KLOSET_PASSPHRASE: 'bench', XDG_CACHE_HOME: ctx.cacheDir }),
    init: (ctx) => ['./bin/kloset.js', ['at', ctx.store, 'create']],
    backup: (ctx) => ['./bin/kloset.js', ['at', ctx.store, 'backup', ctx.data]],
    async snapshotId(ctx) {
      const r = run('./bin/kloset.js', ['at', ctx.store, 'ls', '--json'], { env: this.env(ctx) });
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
      return r.ok ? r.stdout.trim() : 'unknown';
    },
    prepare() {
      try {
        ensureDebianPackages(['restic']);
      } catch (e) {
        return e.message;
      }
      return null;
    },
    env: (ctx) => ({ RESTIC_PASSWORD: 'bench', XDG_CACHE_HOME: ctx.cacheDir, RESTIC_PROGRESS_FPS: '0.016' }),
    init: (ctx) => ['restic', ['init', '--repo', ctx.store]],
    backup: (ctx) => ['restic', ['-r', ctx.store, 'backup', ctx.data]],
    snapshotId: async () => 'latest',
    restore: (ctx, id) => ['restic', ['-r', ctx.store, 'restore', id, '--target', ctx.restoreDir]],
  },
};

// Full local cycle for one tool: init, backup, re-backup, restore, verify.
async function localCycle(tool, dataset, opts) {
  const base = path.join(BENCH, opts.quick ? 'quick' : 'full', tool.name);
  const ctx = {
    store: path.join(base, 'store'),
    restoreDir: path.join(base, 'restore'),
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
  // Restored copy is not needed any more; keep the store and logs for inspection.
  fresh(ctx.restoreDir);
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
  const { dataset, opts } = ctx;
  const names = ['kloset', 'restic'];
  const results = {};
  log('warming page cache (reading the dataset once)');
  await warmCache(dataset);
  // With --runs=N the tools are interleaved, alternating the order each round
  // (k r, r k, k r, ...), so a load change on the machine hits both alike.
  const active = names.filter((n) => opts.tools.includes(n));
  const runs = Object.fromEntries(active.map((n) => [n, []]));
  for (let i = 0; i < opts.runs; i++) {
    const order = i % 2 === 0 ? active : [...active].reverse();
    for (const name of order) {
      const prev = runs[name][runs[name].length - 1];
      if (prev && !prev.ok) continue;
      if (opts.runs > 1) log(`${name}: run ${i + 1}/${opts.runs}`);
      runs[name].push(await localCycle(TOOLS[name], dataset, opts));
    }
  }
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
    target('kloset peak RSS < 300 MB', pk, pk < 300, fmt.mib(pk)),
  ];
  const notes = [
    `Dataset: ${dataset.files.length} files in ${dataset.dirCount} directories, ${(dataset.bytes / MiB).toFixed(1)} MiB ` +
      `(${dataset.spec.smallFiles} small files 1–64 KiB log-uniform, half text / half random; ` +
      `${dataset.spec.largeFiles} × ${(dataset.spec.largeSize / MiB).toFixed(1)} MiB large files, two text, two random).`,
    'Both tools run on the same disk under .bench/, kloset first then restic (alternating with --runs), each with a fresh store and a fresh cache dir (XDG_CACHE_HOME). ' +
      'Page caches are not dropped; the dataset is read once beforehand so both tools start warm.',
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

const SECTIONS = [
  { name: 'local', title: 'Local directory: kloset vs restic', run: sectionLocal },
  // Later: { name: 's3', title: 'S3 bucket: kloset vs rclone', run: sectionS3 },
  // Later: { name: 'mount', title: 'FUSE mount: kloset mount vs restic mount', run: sectionMount },
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

  const dataset = await ensureDataset(opts);
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
