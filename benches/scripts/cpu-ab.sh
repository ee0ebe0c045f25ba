#!/usr/bin/env bash
# cpu-ab.sh BIN [ROUNDS]: a fresh 7-node testnet; ROUNDS (default 2) puts and gets of one
# 256 MiB file through node 0; the CPU of the seven node processes (cs) and the wall time.
BIN=$1
source "$(dirname "$0")/common.sh"
up
out="$D/copy"
for r in $(seq "${2:-2}"); do
  c0=$(cs_all); t0=$(now); id=$(put "$F256"); t1=$(now); c1=$(cs_all)
  get "$id" "$out"; t2=$(now); c2=$(cs_all)
  echo "round $r put cs $((c1 - c0)) wall $(secs "$t0" "$t1") get cs $((c2 - c1)) wall $(secs "$t1" "$t2")"
done
