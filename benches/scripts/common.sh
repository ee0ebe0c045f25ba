# Helpers for the A/B scripts beside this file (benches/PROFILE.md): sourced, with BIN
# set to the `datamesh` binary under test. Each script starts a fresh testnet of real
# node processes on 127.0.0.1 and destroys it, with the copies it got, when it exits.
# Needs jq and awk.
set -euo pipefail
: "${BIN:?set BIN to a datamesh binary}"
SCRATCH="${TMPDIR:-/tmp}"
F256="$SCRATCH/datamesh-bench-256M"
[[ -f $F256 ]] || head -c 268435456 /dev/urandom >"$F256"
D=""
up() {
  D=$(mktemp -d "$SCRATCH/datamesh-ab.XXXXXX")
  trap down EXIT
  "$BIN" testnet up --nodes "${1:-7}" --dir "$D" >/dev/null
}
down() { [[ -z $D ]] || { "$BIN" testnet destroy --dir "$D" >/dev/null 2>&1 || true; rm -rf "$D"; }; }
pid() { jq -r .pid "$D/node-$1/node.json"; }
# utime + stime, in clock ticks (centiseconds), of the nodes named; `cs_all`: all seven.
cs() {
  local s=0 i f
  for i in "$@"; do
    read -ra f < <(cut -d')' -f2- "/proc/$(pid "$i")/stat")
    s=$((s + f[11] + f[12]))
  done
  echo "$s"
}
cs_all() { cs 0 1 2 3 4 5 6; }
hwm_reset() { local i; for i in "$@"; do echo 5 >"/proc/$(pid "$i")/clear_refs"; done; }
hwm() { local i; for i in "$@"; do awk '/VmHWM/{printf "%d ", $2/1024}' "/proc/$(pid "$i")/status"; done; }
rss() { local i; for i in "$@"; do awk '/VmRSS/{printf "%d ", $2/1024}' "/proc/$(pid "$i")/status"; done; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
put() { "$BIN" --home "$D/node-0" put "$1" 2>/dev/null | tail -1; }
get() { rm -f "$2"; "$BIN" --home "$D/node-0" get "$1" -o "$2" >/dev/null 2>&1; }
