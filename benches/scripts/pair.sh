# Sourced by the paired scripts beside this file (small-pair.sh, large-pair.sh), with
# A_BIN and B_BIN set to two `datamesh` binaries: two fresh 7-node testnets up at once,
# one of each build, in $A and $B, destroyed with their homes when the script exits.
set -euo pipefail
: "${A_BIN:?set A_BIN}" "${B_BIN:?set B_BIN}"
SCRATCH="${TMPDIR:-/tmp}"
A=$(mktemp -d "$SCRATCH/datamesh-pair-a.XXXXXX")
B=$(mktemp -d "$SCRATCH/datamesh-pair-b.XXXXXX")
down() {
  "$A_BIN" testnet destroy --dir "$A" >/dev/null 2>&1 || true
  "$B_BIN" testnet destroy --dir "$B" >/dev/null 2>&1 || true
  rm -rf "$A" "$B"
}
trap down EXIT
"$A_BIN" testnet up --nodes 7 --dir "$A" >/dev/null 2>&1
"$B_BIN" testnet up --nodes 7 --dir "$B" >/dev/null 2>&1
