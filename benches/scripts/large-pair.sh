#!/usr/bin/env bash
# large-pair.sh BIN_A BIN_B [ROUNDS]: two fresh 7-node testnets up at once, one of each
# build; ROUNDS (default 4) puts of one 256 MiB file into each, alternating which goes
# first, so both builds see the same load of this shared machine; prints, per put, the
# CPU of the gateway (node 0) and of the six storage nodes together (utime + stime, cs),
# the wall time, and at the end how many bytes of write-ahead logs node 1 keeps.
# Needs jq.
set -euo pipefail
A_BIN=$1 B_BIN=$2 ROUNDS=${3:-4}
source "$(dirname "$0")/pair.sh"
F256="$SCRATCH/datamesh-bench-256M"
[[ -f $F256 ]] || head -c 268435456 /dev/urandom >"$F256"
# utime + stime of node I of testnet D, in clock ticks (cs).
cs() {
  local f
  read -ra f < <(cut -d')' -f2- "/proc/$(jq -r .pid "$1/node-$2/node.json")/stat")
  echo $((f[11] + f[12]))
}
storage() { local s=0 i; for i in 1 2 3 4 5 6; do s=$((s + $(cs "$1" "$i"))); done; echo "$s"; }
sleep 20 # both testnets past their DHT bootstrap
for r in $(seq "$ROUNDS"); do
  if ((r % 2)); then order="A B"; else order="B A"; fi
  for side in $order; do
    if [[ $side == A ]]; then d=$A bin=$A_BIN; else d=$B bin=$B_BIN; fi
    g0=$(cs "$d" 0) s0=$(storage "$d") t0=$(date +%s.%N)
    "$bin" --home "$d/node-0" put "$F256" >/dev/null 2>&1
    t1=$(date +%s.%N) g1=$(cs "$d" 0) s1=$(storage "$d")
    echo "round $r $side ($bin): gateway $((g1 - g0)) cs, storage $((s1 - s0)) cs, wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
  done
done
for side in A B; do
  if [[ $side == A ]]; then d=$A; else d=$B; fi
  logs=("$d"/node-1/node/db/*.log)
  echo "$side: node 1 keeps ${#logs[@]} log files, $(du -cb "${logs[@]}" | tail -1 | cut -f1) bytes"
done
