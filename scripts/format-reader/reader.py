#!/usr/bin/env python3
"""An independent reader of a Kloset store, written from src/kloset/FORMAT.md alone.

    reader.py STORE [--passphrase-env VAR] [--compare SOURCE_DIR] [--check-chunking] [--cache XDG_CACHE_HOME]

run.sh beside it makes a source tree, backs it up into an encrypted and a
plaintext store with the CLI and runs this reader on both.

Opens the store (Argon2id KEK, unwrap the master key, check the CONFIG MAC),
reads every index delta and every pack trailer, lists the snapshots, walks
each one's tree (inline and paged directories) and rebuilds every file from
its chunks. With --compare it checks the newest snapshot against a directory on
disk: kinds, names as bytes, sizes, modes, ids, times, symlink targets,
extended attributes, hard links and file bytes. With --check-chunking it
also cuts every file with its own FastCDC and expects the same chunks. With
--cache it checks the local merged index copy. Prints one line per problem
and exits 1 if there was any.

Needs: cryptography, argon2-cffi, zstandard, msgpack (from PyPI, or Debian's
python3-cryptography, python3-argon2, python3-zstandard, python3-msgpack).
"""
import argparse
import base64
import bisect
import hashlib
import hmac
import json
import os
import stat
import struct
import sys

import msgpack
import zstandard
from argon2.low_level import Type, hash_secret_raw
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

T_CHUNK, T_CONTENT, T_TREE, T_PAGE, T_SNAPSHOT, T_TRAILER, T_INDEX, T_LOCK = range(1, 9)
OVERHEAD = 28
PAGE = 1000
INLINE_CHUNKS = 8

problems = []


def problem(msg):
    problems.append(msg)
    print('PROBLEM: ' + msg)


def unpack(b):
    return msgpack.unpackb(b, raw=False, strict_map_key=False)


def hkdf(master, name):
    prk = hmac.new(b'\0' * 32, master, hashlib.sha256).digest()  # salt = empty -> HashLen zeros (RFC 5869)
    info = b'kloset ' + name.encode()
    return hmac.new(prk, info + b'\x01', hashlib.sha256).digest()  # 32 bytes: one block


class Store:
    def __init__(self, root, passphrase):
        self.root = root
        raw = open(os.path.join(root, 'CONFIG'), 'rb').read()
        cfg = json.loads(raw.decode('utf-8'))
        self.cfg = cfg
        self.check_shape(cfg)
        enc = cfg['encryption']
        if enc is None:
            if 'plaintextKey' not in cfg:
                raise SystemExit('plaintext CONFIG without plaintextKey')
            master = base64.b64decode(cfg['plaintextKey'])
            self.encrypted = False
        else:
            if cfg.get('plaintextKey') is not None:
                problem('encrypted CONFIG holds plaintextKey')
            kdf = enc['kdf']
            if enc['cipher'] != 'aes-256-gcm' or kdf['algorithm'] != 'argon2id':
                raise SystemExit('unknown cipher or kdf')
            kek = hash_secret_raw(passphrase.encode('utf-8'), base64.b64decode(kdf['salt']),
                                  time_cost=kdf['iterations'], memory_cost=kdf['memoryKiB'],
                                  parallelism=kdf['parallelism'], hash_len=32, type=Type.ID, version=19)
            wk = base64.b64decode(enc['wrappedKey'])
            master = AESGCM(kek).decrypt(wk[:12], wk[12:], b'kloset master key v1')
            self.encrypted = True
        if len(master) != 64:
            problem(f'master key is {len(master)} bytes, not 64')
        self.id_key = hkdf(master, 'blob id')
        self.enc_key = hkdf(master, 'blob encryption')
        self.mac_key = hkdf(master, 'blob mac')
        self.chunker_seed = hkdf(master, 'chunker seed')
        self.aes = AESGCM(self.enc_key)
        # CONFIG MAC: HMAC-SHA256(macKey, JSON.stringify(config without mac)), keys in file order.
        body = {k: v for k, v in cfg.items() if k != 'mac'}
        text = json.dumps(body, separators=(',', ':'), ensure_ascii=False)
        want = hmac.new(self.mac_key, text.encode('utf-8'), hashlib.sha256).digest()
        if not hmac.compare_digest(want, base64.b64decode(cfg['mac'])):
            raise SystemExit('CONFIG MAC does not match')
        self.level = cfg['compression']['level']

    @staticmethod
    def check_shape(c):
        ok = True
        ok &= c.get('format') == 'kloset-store' and c.get('version') == 1
        sid = c.get('storeId', '')
        ok &= len(sid) == 32 and all(ch in '0123456789abcdef' for ch in sid)
        ch = c['chunking']
        ok &= ch['algorithm'] == 'fastcdc' and 64 <= ch['minSize'] <= ch['avgSize'] <= ch['maxSize'] <= 64 << 20
        ok &= c['compression']['algorithm'] == 'zstd' and -7 <= c['compression']['level'] <= 22
        ok &= 0 < c['packfile']['targetSize'] <= 1 << 30
        e = c['encryption']
        if e is not None:
            k = e['kdf']
            ok &= 1 <= k['parallelism'] <= 16 and 8 * k['parallelism'] <= k['memoryKiB'] <= 4 << 20 and 1 <= k['iterations'] <= 64
            ok &= len(base64.b64decode(k['salt'])) == 16 and len(base64.b64decode(e['wrappedKey'])) == 92
        else:
            ok &= len(base64.b64decode(c['plaintextKey'])) == 64
        if not ok:
            raise SystemExit('CONFIG shape refused')

    def blob_id(self, plaintext):
        return hmac.new(self.id_key, plaintext, hashlib.sha256).digest()

    def open_sealed(self, sealed, typ, bid):
        aad = bytes([typ]) + bid
        if self.encrypted:
            return self.aes.decrypt(sealed[:12], sealed[12:], aad)
        framed, tag = sealed[:-28], sealed[-28:]
        want = hmac.new(self.mac_key, aad + framed, hashlib.sha256).digest()[:28]
        if not hmac.compare_digest(want, tag):
            raise ValueError(f'MAC fails on blob type {typ} id {bid.hex()}')
        return framed

    def unframe(self, framed):
        codec, body = framed[0], framed[1:]
        if codec == 0:
            return body
        if codec == 1:
            out = zstandard.ZstdDecompressor().decompress(body, max_output_size=1 << 30)
            if len(body) > len(out) - len(out) // 32:
                problem(f'compressed body {len(body)} of {len(out)} saves less than 1/32')
            return out
        raise ValueError(f'unknown codec {codec}')

    def path(self, *p):
        return os.path.join(self.root, *p)

    # ---- packs and index ----
    def load(self):
        self.packs = {}  # packid hex -> list of trailer rows
        pdir = self.path('packs')
        for hh in sorted(os.listdir(pdir)):
            for name in sorted(os.listdir(os.path.join(pdir, hh))):
                if '.tmp-' in name:
                    continue
                data = open(os.path.join(pdir, hh, name), 'rb').read()
                if hashlib.sha256(data).hexdigest() != name or name[:2] != hh:
                    problem(f'pack {hh}/{name} is not named by the SHA-256 of its bytes')
                self.packs[name] = self.read_trailer(name, data)
        self.index = {}  # (id) -> (type, packhex, offset, length, rawLength)
        self.deltas = sorted(os.listdir(self.path('index')))
        for name in self.deltas:
            sealed = open(self.path('index', name), 'rb').read()
            d = unpack(self.unframe(self.open_sealed(sealed, T_INDEX, bytes.fromhex(name))))
            if set(d) != {'v', 'packs', 'blobs'} or d['v'] != 1:
                problem(f'index delta {name} keys {sorted(d)}')
            for row in d['blobs']:
                typ, bid, pn, off, length, raw = row
                packhex = d['packs'][pn].hex()
                rec = (typ, packhex, off, length, raw)
                if bid in self.index and self.index[bid][0] != typ:
                    problem(f'id {bid.hex()} indexed under two types')
                self.index.setdefault(bid, rec)
                tr = self.trailer_rows.get((packhex, bid))
                if tr is None:
                    problem(f'index names {bid.hex()} in pack {packhex[:8]} whose trailer lacks it')
                elif tr != (typ, off, length, raw):
                    problem(f'index row {rec} differs from trailer row {tr}')
        for (packhex, bid) in self.trailer_rows:
            if bid not in self.index:
                problem(f'blob {bid.hex()} in pack {packhex[:8]} is in no index delta')
        self.blob_cache = {}

    trailer_rows = {}

    def read_trailer(self, name, data):
        if data[:8] != b'KLPK\x01\x00\x00\x00':
            problem(f'pack {name} header {data[:8]!r}')
        tlen = struct.unpack('<I', data[-4:])[0]
        sealed = data[-4 - tlen:-4]
        rows = unpack(self.open_sealed(sealed, T_TRAILER, b'\0' * 32))
        end = 8
        for r in rows:
            typ, bid, off, length, raw = r
            if off != end:
                problem(f'pack {name[:8]}: blob at {off}, previous ended at {end}')
            end = off + length
            self.trailer_rows[(name, bid)] = (typ, off, length, raw)
            self.check_blob(name, data, typ, bid, off, length, raw)
        if end != len(data) - 4 - tlen:
            problem(f'pack {name[:8]}: blobs end at {end}, trailer starts at {len(data) - 4 - tlen}')
        return rows

    def check_blob(self, packname, data, typ, bid, off, length, raw):
        framed = self.open_sealed(data[off:off + length], typ, bid)
        if len(framed) + OVERHEAD != length:
            problem(f'blob {bid.hex()[:8]}: sealed {length} != framed {len(framed)} + 28')
        plain = self.unframe(framed)
        if len(plain) != raw:
            problem(f'blob {bid.hex()[:8]} type {typ}: rawLength {raw}, plaintext {len(plain)} bytes, framed {len(framed)}')
        if typ in (T_CHUNK, T_CONTENT, T_TREE, T_PAGE) and self.blob_id(plain) != bid:
            problem(f'blob {bid.hex()[:8]} type {typ}: id is not HMAC(idKey, plaintext)')

    def get(self, bid, typ):
        if bid in self.blob_cache:
            return self.blob_cache[bid]
        rec = self.index.get(bid)
        if rec is None:
            raise KeyError(f'blob {bid.hex()} not in index')
        t, packhex, off, length, raw = rec
        if t != typ:
            raise ValueError(f'blob {bid.hex()} indexed as type {t}, wanted {typ}')
        with open(self.path('packs', packhex[:2], packhex), 'rb') as f:
            f.seek(off)
            sealed = f.read(length)
        plain = self.unframe(self.open_sealed(sealed, typ, bid))
        if typ != T_CHUNK:
            self.blob_cache[bid] = plain
        return plain

    # ---- snapshots ----
    def snapshots(self):
        out = []
        for name in sorted(os.listdir(self.path('snapshots'))):
            if '.tmp-' in name:
                continue
            sealed = open(self.path('snapshots', name), 'rb').read()
            h = unpack(self.unframe(self.open_sealed(sealed, T_SNAPSHOT, bytes.fromhex(name))))
            if h.get('v') != 1 or h.get('id') != bytes.fromhex(name):
                problem(f'snapshot {name}: v {h.get("v")}, id {h.get("id")!r}')
            out.append(h)
        return sorted(out, key=lambda h: h['time'])

    def tree_entries(self, tid):
        t = unpack(self.get(tid, T_TREE))
        if t.get('v') != 1:
            problem(f'tree {tid.hex()[:8]} v {t.get("v")}')
        if 'e' in t:
            ents = t['e']
            if len(ents) >= PAGE:
                problem(f'tree {tid.hex()[:8]} has {len(ents)} inline entries')
            if t['n'] != len(ents):
                problem(f'tree n {t["n"]} != {len(ents)}')
            return ents
        ents = []
        pages = t['p']
        if t['n'] < PAGE:
            problem(f'paged tree with n = {t["n"]}')
        for i, (first, count, pid) in enumerate(pages):
            page = unpack(self.get(pid, T_PAGE))
            if set(page) != {'v', 'e'} or page['v'] != 1:
                problem(f'page keys {sorted(page)}')
            pe = page['e']
            if len(pe) != count or pe[0]['n'] != first:
                problem(f'page {i}: count {count} vs {len(pe)}, first {first!r} vs {pe[0]["n"]!r}')
            if i < len(pages) - 1 and count != PAGE:
                problem(f'page {i} of {len(pages)} holds {count}, not {PAGE}')
            ents.extend(pe)
        if len(ents) != t['n']:
            problem(f'paged tree n {t["n"]} != {len(ents)}')
        return ents

    def chunk_list(self, e):
        c = e.get('c')
        if c is None:
            return []
        if isinstance(c, dict):
            body = unpack(self.get(c['l'], T_CONTENT))
            if set(body) != {'v', 'c'} or body['v'] != 1:
                problem(f'content blob keys {sorted(body)}')
            lst = body['c']
            if len(lst) != c['n']:
                problem(f'content n {c["n"]} != {len(lst)}')
            if len(lst) <= INLINE_CHUNKS:
                problem(f'content blob for {len(lst)} chunks')
            return lst
        if len(c) > INLINE_CHUNKS:
            problem(f'{len(c)} chunks inline')
        return c

    def file_bytes(self, e):
        parts = []
        for cid, size in self.chunk_list(e):
            b = self.get(cid, T_CHUNK)
            if len(b) != size:
                problem(f'chunk {cid.hex()[:8]} is {len(b)} bytes, listed {size}')
            parts.append(b)
        return b''.join(parts)

    def read_at(self, e, offset, n):
        """A ranged read as the spec describes: cumulative offsets, binary search."""
        lst = self.chunk_list(e)
        starts, pos = [], 0
        for _, size in lst:
            starts.append(pos)
            pos += size
        out = b''
        i = bisect.bisect_right(starts, offset) - 1
        while n > 0 and 0 <= i < len(lst):
            b = self.get(lst[i][0], T_CHUNK)
            piece = b[offset - starts[i]:offset - starts[i] + n]
            out += piece
            offset += len(piece)
            n -= len(piece)
            i += 1
        return out

    # ---- chunking ----
    def gear(self):
        g = []
        for b in range(32):
            h = hmac.new(self.chunker_seed, ('gear %d' % b).encode(), hashlib.sha256).digest()
            g.extend(struct.unpack('<8i', h))
        return g

    def cut(self, data):
        ch = self.cfg['chunking']
        mn, avg, mx = ch['minSize'], ch['avgSize'], ch['maxSize']
        bits = round(__import__('math').log2(avg))
        strict = (0xFFFFFFFF << (32 - (bits + 2))) & 0xFFFFFFFF
        loose = (0xFFFFFFFF << (32 - (bits - 2))) & 0xFFFFFFFF
        gear = [x & 0xFFFFFFFF for x in self.gear()]
        sizes, start, n = [], 0, len(data)
        while start < n:
            rest = n - start
            if rest <= mn:
                sizes.append(rest)
                break
            end = min(rest, mx)
            h, i, cut = 0, mn, None
            a = min(avg, end)
            while i < a:
                h = ((h << 1) + gear[data[start + i]]) & 0xFFFFFFFF
                i += 1
                if h & strict == 0:
                    cut = i
                    break
            if cut is None:
                while i < end:
                    h = ((h << 1) + gear[data[start + i]]) & 0xFFFFFFFF
                    i += 1
                    if h & loose == 0:
                        cut = i
                        break
            if cut is None:
                cut = end
            sizes.append(cut)
            start += cut
        return sizes


def lstat_kind(st):
    m = st.st_mode
    if stat.S_ISREG(m): return 0
    if stat.S_ISDIR(m): return 1
    if stat.S_ISLNK(m): return 2
    if stat.S_ISCHR(m) or stat.S_ISBLK(m): return 3
    if stat.S_ISFIFO(m): return 4
    if stat.S_ISSOCK(m): return 5


def name_bytes(n):
    return n.encode('utf-8') if isinstance(n, str) else n


KNOWN_KEYS = {'n', 'k', 'm', 'u', 'g', 'un', 'gn', 's', 'mt', 'ct', 'at', 'i', 'd', 'nl', 'rd', 'l', 'x', 'md', 'c', 't', 'sm'}


def walk(store, tid, src, rel, args, totals, inodes):
    ents = store.tree_entries(tid)
    names = [name_bytes(e['n']) for e in ents]
    if names != sorted(names) or len(set(names)) != len(names):
        problem(f'{rel!r}: entries not sorted by name bytes without repeats')
    files = dirs = size = 0
    seen = set()
    for e in ents:
        extra = set(e) - KNOWN_KEYS
        if extra:
            problem(f'entry {e["n"]!r} has unlisted keys {sorted(extra)}')
        n = e['n']
        nb = name_bytes(n)
        if isinstance(n, bytes):
            try:
                n.decode('utf-8')
                problem(f'name {n!r} is bin but valid UTF-8')
            except UnicodeDecodeError:
                pass
        if nb in (b'', b'.', b'..') or b'/' in nb or b'\0' in nb:
            problem(f'bad name {nb!r}')
        p = rel + b'/' + nb if rel else nb
        seen.add(nb)
        k = e['k']
        if k != 0 and (e['s'] != 0 or 'c' in e):
            problem(f'{p!r}: kind {k} with s {e["s"]} or c')
        if k == 1:
            sub = walk(store, e['t'], src, p, args, totals, inodes)
            if list(e['sm']) != list(sub):
                problem(f'{p!r}: sm {e["sm"]} but walk counts {sub}')
            files += sub[0]; dirs += sub[1] + 1; size += sub[2]
            totals['directories'] += 1
        elif k == 0:
            data = store.file_bytes(e)
            if len(data) != e['s']:
                problem(f'{p!r}: s {e["s"]}, rebuilt {len(data)} bytes')
            if len(data) > 10:
                mid = len(data) // 2
                if store.read_at(e, mid - 3, 7) != data[mid - 3:mid + 4]:
                    problem(f'{p!r}: ranged read differs')
            files += 1; size += len(data)
            totals['files'] += 1; totals['size'] += len(data)
            totals['chunks'] += len(store.chunk_list(e))
            if args.check_chunking and len(data):
                want = store.cut(data)
                got = [s for _, s in store.chunk_list(e)]
                if want != got:
                    problem(f'{p!r}: chunks {got[:6]}..., spec cut gives {want[:6]}...')
            if src is not None:
                disk = open(os.path.join(src, p), 'rb').read()
                if disk != data:
                    problem(f'{p!r}: bytes differ from the source')
                else:
                    totals['compared'] += 1
            if 'i' in e:
                inodes.setdefault((e.get('d'), e['i']), []).append(p)
        elif k == 2:
            totals['symlinks'] += 1
            if src is not None and os.readlink(os.path.join(src, p)) != name_bytes(e['l']):
                problem(f'{p!r}: symlink target {e["l"]!r}')
        if src is not None:
            full = os.path.join(src, p)
            st = os.lstat(full)
            if lstat_kind(st) != k:
                problem(f'{p!r}: kind {k}, disk {lstat_kind(st)}')
            if e['m'] != st.st_mode or e['u'] != st.st_uid or e['g'] != st.st_gid:
                problem(f'{p!r}: m/u/g {e["m"]:o} {e["u"]} {e["g"]} vs {st.st_mode:o} {st.st_uid} {st.st_gid}')
            if k == 0 and e['s'] != st.st_size:
                problem(f'{p!r}: size')
            mt = e['mt']
            if k != 1 and mt[0] * 10**9 + mt[1] != st.st_mtime_ns:  # a directory's may move after the backup
                problem(f'{p!r}: mt {mt} vs {st.st_mtime_ns}')
            if 'i' in e and (e['i'] != st.st_ino or e.get('nl', st.st_nlink) != st.st_nlink):
                problem(f'{p!r}: inode/nlink {e.get("i")} {e.get("nl")} vs {st.st_ino} {st.st_nlink}')
            if k in (0, 1):
                try:
                    disk_x = {a: os.getxattr(full, a, follow_symlinks=False) for a in os.listxattr(full, follow_symlinks=False)}
                except OSError:
                    disk_x = {}
                got_x = {(a if isinstance(a, str) else a.decode()): v for a, v in (e.get('x') or {}).items()}
                if got_x != disk_x:
                    try:
                        p.decode('utf-8')
                        problem(f'{p!r}: xattrs {got_x} vs disk {disk_x}')
                    except UnicodeDecodeError:
                        totals['xattr_skipped'] += 1  # kloset reads xattrs by text path only, and warns
                elif got_x:
                    totals['xattrs'] += 1
    if src is not None:
        on_disk = set(os.listdir(os.path.join(src, rel) if rel else src))
        if isinstance(next(iter(on_disk), b''), str):
            on_disk = {os.fsencode(x) for x in on_disk}
        if on_disk != seen:
            problem(f'{rel!r}: names differ from disk: {sorted(on_disk ^ seen)[:5]}')
    return [files, dirs, size]


def check_cache(store, cache_root):
    path = os.path.join(cache_root, 'kloset', store.cfg['storeId'], 'index')
    if not os.path.exists(path):
        problem(f'no index cache at {path}')
        return
    sealed = open(path, 'rb').read()
    c = unpack(store.unframe(store.open_sealed(sealed, T_INDEX, b'\0' * 32)))
    if c.get('v') != 2 or sorted(c.get('deltas', [])) != ['index/' + d for d in store.deltas]:
        problem(f'cache v {c.get("v")} deltas {c.get("deltas")} vs {store.deltas}')
    rec = c['records']
    if len(rec) % 49:
        problem('cache records not a multiple of 49 bytes')
    ids = []
    for o in range(0, len(rec), 49):
        bid = rec[o:o + 32]
        pn, off, length, raw = struct.unpack_from('<4I', rec, o + 32)
        typ = rec[o + 48]
        ids.append(bid)
        want = store.index.get(bid)
        got = (typ, c['packs'][pn].hex(), off, length, raw)
        if want != got:
            problem(f'cache record {bid.hex()[:8]} {got} vs index {want}')
    if ids != sorted(set(ids)) or len(ids) != len(store.index):
        problem(f'cache records unsorted or incomplete: {len(ids)} vs {len(store.index)}')
    print(f'cache: {len(ids)} records match the index')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('store')
    ap.add_argument('--passphrase-env', default='KLOSET_PASSPHRASE')
    ap.add_argument('--compare', help='source directory the newest snapshot should equal')
    ap.add_argument('--check-chunking', action='store_true')
    ap.add_argument('--cache', help='XDG_CACHE_HOME whose index copy to check')
    args = ap.parse_args()
    store = Store(args.store, os.environ.get(args.passphrase_env, ''))
    print(f'store {store.cfg["storeId"]} {"encrypted" if store.encrypted else "plaintext"}, CONFIG MAC ok')
    store.load()
    print(f'{len(store.packs)} packs, {len(store.deltas)} index deltas, {len(store.index)} blobs')
    if args.cache:
        check_cache(store, args.cache)
    for name in sorted(os.listdir(store.path('locks'))):
        lock = json.loads(store.unframe(store.open_sealed(open(store.path('locks', name), 'rb').read(), T_LOCK, bytes.fromhex(name))))
        print(f'lock {name[:8]}: {lock}')
    snaps = store.snapshots()
    for h in snaps:
        want_keys = {'v', 'id', 'time', 'host', 'user', 'importer', 'origin', 'source', 'tags', 'root', 'stats'}
        if not want_keys <= set(h) or set(h) - want_keys - {'parent'}:
            problem(f'snapshot keys {sorted(h)}')
        print(f'snapshot {h["id"].hex()} {h["time"]} {h["source"]} tags={h["tags"]} stats={h["stats"]}')
        root = h['root']
        if root['n'] != '' or root['k'] != 1:
            problem(f'root entry n {root["n"]!r} k {root["k"]}')
        if h.get('parent') is not None and len(h['parent']) != 32:
            problem(f'parent {h["parent"]!r}')
        totals = dict(files=0, directories=0, symlinks=0, size=0, chunks=0, compared=0, xattrs=0, xattr_skipped=0)
        inodes = {}
        src = os.fsencode(args.compare) if args.compare and h is snaps[-1] else None
        sm = walk(store, root['t'], src, b'', args, totals, inodes)
        if list(root['sm']) != sm:
            problem(f'root sm {root["sm"]} vs {sm}')
        st = h['stats']
        for k in ('files', 'symlinks', 'size'):
            if st[k] != totals[k]:
                problem(f'stats.{k} {st[k]} vs walk {totals[k]}')
        if st['directories'] != totals['directories'] + 1:
            problem(f'stats.directories {st["directories"]} vs walk {totals["directories"]} + root')
        links = [v for v in inodes.values() if len(v) > 1]
        print(f'  walked: {totals}; hard-link groups: {links}')
    if problems:
        print(f'{len(problems)} problems')
        sys.exit(1)
    print('all checks passed')


if __name__ == '__main__':
    main()
