#!/usr/bin/env bash
# Builds a store of each kind with the CLI and reads it back with reader.py,
# which knows only src/kloset/FORMAT.md. PYTHON names an interpreter that has
# the reader's modules (default: Debian's python3, to which scripts/setup.sh
# adds them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-/usr/bin/python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/kloset-format-reader.XXXXXX")
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache XDG_CONFIG_HOME=$work/config KLOSET_PASSPHRASE='format reader'
src=$work/src
mkdir -p "$src/many" "$src/exactly1000" "$src/sub" "$src/emptydir"
"$python" - "$src" <<'PY'
import os, random, sys
src = sys.argv[1].encode()
j = lambda *p: os.path.join(src, *p)
open(j(b'empty'), 'wb').close()
open(j(b'small.txt'), 'wb').write(b'hello\n')
os.link(j(b'small.txt'), j(b'hardlink.txt'))
os.symlink(b'small.txt', j(b'link'))
os.symlink(b'tar\xffget', j(b'badlink'))
open(j(b'bad\xff\xfename'), 'wb').write(b'a name that is not UTF-8\n')
r = random.Random(1)
open(j(b'mid.bin'), 'wb').write(r.randbytes(6_000_000))     # a few chunks, listed inline
open(j(b'big.bin'), 'wb').write(r.randbytes(12_000_000))    # more than 8 chunks: a content blob
with open(j(b'sub', b'text.txt'), 'w') as f:                # compressible, many chunks
    for i in range(700_000):
        f.write('line %d %d\n' % (i, r.randrange(10**9)))
for i in range(1500):
    open(j(b'many', b'f%05d' % i), 'w').write('x%d\n' % i)
for i in range(1000):
    open(j(b'exactly1000', b'%04d' % i), 'w').close()
os.mkfifo(j(b'fifo'))
try:
    os.setxattr(j(b'small.txt'), 'user.kloset', b'value')
except OSError:
    pass  # a file system without user xattrs
PY
kloset="$root/bin/kloset.js"
"$kloset" at "$work/enc" create
"$kloset" at "$work/enc" backup "$src"
"$kloset" at "$work/plain" create -plaintext
"$kloset" at "$work/plain" backup "$src"
"$python" "$here/reader.py" "$work/enc" --compare "$src" --cache "$XDG_CACHE_HOME" --check-chunking
"$python" "$here/reader.py" "$work/plain" --compare "$src" --cache "$XDG_CACHE_HOME"
