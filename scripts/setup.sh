#!/usr/bin/env bash
# Idempotent environment setup for kloset: Debian packages, npm deps, build.
# Can be executed (./scripts/setup.sh) or sourced (. scripts/setup.sh).
# Quiet on success; on failure prints the captured output of the failing step.

_kloset_setup() {
  set -euo pipefail

  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  cd "$root"

  local log
  log="$(mktemp "${TMPDIR:-/tmp}/kloset-setup.XXXXXX")"

  # run_quiet LABEL CMD...: run CMD, hide its output unless it fails.
  run_quiet() {
    local label="$1"; shift
    if ! "$@" >"$log" 2>&1; then
      echo "setup: $label failed: $*" >&2
      cat "$log" >&2
      rm -f "$log"
      return 1
    fi
  }

  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo="sudo"
    fi
  fi

  # --- Debian packages -------------------------------------------------------
  # python3-*: the second reader of the store format (scripts/format-reader), written from FORMAT.md alone.
  local pkgs=(libfuse2 fuse3 time chromium attr unzip strace python3 python3-argon2 python3-cryptography python3-zstandard python3-msgpack)
  local missing=()
  local p
  if command -v dpkg >/dev/null 2>&1; then
    for p in "${pkgs[@]}"; do
      if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
      fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      if [ "$(id -u)" -ne 0 ] && [ -z "$sudo" ]; then
        echo "setup: missing Debian packages (${missing[*]}) and not root/no sudo; skipping" >&2
      else
        echo "setup: installing ${missing[*]}" >&2
        run_quiet "apt-get update" $sudo apt-get update
        run_quiet "apt-get install" $sudo env DEBIAN_FRONTEND=noninteractive \
          apt-get install -y --no-install-recommends "${missing[@]}"
      fi
    fi
  else
    echo "setup: dpkg not found; skipping system packages" >&2
  fi

  # --- npm dependencies ------------------------------------------------------
  if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] \
     || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    echo "setup: npm ci" >&2
    if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
      # A lock file that npm ci rejects (e.g. optional platform packages
      # missing from it) should not block the build: say so, then install
      # without the lock file (package-lock.json is left untouched).
      echo "setup: WARNING: npm ci failed; falling back to npm install --package-lock=false" >&2
      grep -E '^npm (error|ERR)' "$log" | grep -vE '^npm error +(-|\[|Usage|Options|aliases|Run "npm help)' \
        | head -n 20 >&2 || true
      run_quiet "npm install" npm install --no-audit --no-fund --loglevel=error --package-lock=false
    fi
  fi

  # --- build -----------------------------------------------------------------
  run_quiet "npm run build" npm run build --silent

  rm -f "$log"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _kloset_setup "$@"
else
  # Sourced: run as a separate bash process so that set -e stays effective
  # (it is ignored inside a `||` list) and cd/options don't leak; propagate failure.
  unset -f _kloset_setup
  bash "${BASH_SOURCE[0]}" "$@" || return $?
fi
