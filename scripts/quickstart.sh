#!/usr/bin/env bash
# End-to-end smoke run of the main job: create a store, back up a sample
# directory, list, cat, restore, and compare the restored tree.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kloset-quickstart.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

export KLOSET_PASSPHRASE="${KLOSET_PASSPHRASE:-quickstart-passphrase}"
# keep npx itself quiet (npm config warnings); kloset's own output is shown
export npm_config_loglevel=error

# run CMD...: echo then run; "npx kloset" is shown as "kloset".
run() {
  local shown="$*"
  shown="${shown#npx }"
  echo "+ $shown" >&2
  "$@"
}

# --- sample data -------------------------------------------------------------
SAMPLE="$TMP/sample"
mkdir -p "$SAMPLE/docs/notes" "$SAMPLE/src/lib/deep" "$SAMPLE/empty-dir"
printf 'hello kloset\n' > "$SAMPLE/hello.txt"
printf '# Notes\n\nSome notes about the sample.\n' > "$SAMPLE/docs/README.md"
for i in $(seq 1 200); do echo "line $i: the quick brown fox jumps over the lazy dog"; done \
  > "$SAMPLE/docs/notes/fox.txt"
printf 'export const x = 42;\n' > "$SAMPLE/src/lib/deep/x.js"
printf '' > "$SAMPLE/src/empty.txt"
head -c $((5 * 1024 * 1024)) /dev/urandom > "$SAMPLE/blob.bin"
# a duplicate of the blob to exercise deduplication
cp "$SAMPLE/blob.bin" "$SAMPLE/src/blob-copy.bin"

STORE="$TMP/store"

# --- exercise the CLI ----------------------------------------------------------
run npx kloset at "$STORE" create
run npx kloset at "$STORE" backup "$SAMPLE"
run npx kloset at "$STORE" ls

echo "+ kloset at $STORE ls --json" >&2
json="$(npx kloset at "$STORE" ls --json)"
ID="$(printf '%s' "$json" | node -e '
  let s = ""; process.stdin.on("data", d => s += d).on("end", () => {
    const a = JSON.parse(s);
    if (!Array.isArray(a) || a.length === 0 || !a[a.length - 1].id) {
      console.error("quickstart: unexpected ls --json output: " + s); process.exit(1);
    }
    process.stdout.write(String(a[a.length - 1].id));
  });')"
echo "snapshot id: $ID" >&2

# Paths inside a snapshot are relative to the backed-up directory (id:/docs);
# fall back to absolute source paths (id:/abs/path/docs) if the store uses those.
P=""
if ! npx kloset at "$STORE" ls "$ID:/hello.txt" >/dev/null 2>&1 \
   && npx kloset at "$STORE" ls "$ID:$SAMPLE" >/dev/null 2>&1; then
  P="$SAMPLE"
fi

run npx kloset at "$STORE" ls "$ID:${P:-/}"
run npx kloset at "$STORE" ls "$ID:$P/docs"

out="$(run npx kloset at "$STORE" cat "$ID:$P/hello.txt")"
printf '%s\n' "$out"
if [ "$out" != "hello kloset" ]; then
  echo "quickstart: cat returned unexpected content" >&2
  exit 1
fi

run npx kloset at "$STORE" restore -to "$TMP/restored" "$ID"

# --- verify ------------------------------------------------------------------
# Restore may place the content directly under the target, or under
# target/<basename of source>, or under target/<absolute source path>.
RESTORED="$TMP/restored"
if [ -d "$TMP/restored/$(basename "$SAMPLE")" ]; then
  RESTORED="$TMP/restored/$(basename "$SAMPLE")"
elif [ -d "$TMP/restored$SAMPLE" ]; then
  RESTORED="$TMP/restored$SAMPLE"
fi
run diff -r "$SAMPLE" "$RESTORED"

echo "quickstart: OK"
