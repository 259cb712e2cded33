#!/usr/bin/env bash
# Crash soak (not run in CI): the real rewind-gateway binary SIGKILLed 200 times at random
# moments while four clients write, overwrite, delete and upload in parts; restarted each
# time. Afterwards every acknowledged mutation must be committed in order with the right
# bytes, every version's chunks must read back, the journal must verify, and every segment
# shipped to the vault must be the journal's own records (gateway/tests/crash.rs).
#
#   tests/soak/crash.sh [ROUNDS]        (default 200; REWIND_CRASH_SEED=N replays a run)
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rewind-target}"
export REWIND_CRASH_ROUNDS="${1:-200}"
started=$(date +%s)
# --workspace, not -p: the same features as every other build, so RocksDB is built once.
cargo test --release --locked --workspace --test crash -- --nocapture
echo "crash soak: ${REWIND_CRASH_ROUNDS} SIGKILLs survived in $(( $(date +%s) - started )) s" >&2
