#!/usr/bin/env bash
# mem-seq.sh BIN: a fresh 7-node testnet; three puts and gets of one 256 MiB file through
# node 0; the peak RSS (VmHWM, reset before each) of the gateway and of the six others.
BIN=$1
source "$(dirname "$0")/common.sh"
up
out="$D/copy"
for r in 1 2 3; do
  hwm_reset 0 1 2 3 4 5 6; t0=$(now); id=$(put "$F256"); t1=$(now)
  put_peak=$(hwm 0); after=$(rss 0); hwm_reset 0
  get "$id" "$out"; t2=$(now)
  echo "put $r: gateway peak ${put_peak}MiB, ${after}MiB after, $(secs "$t0" "$t1") s | get: gateway peak $(hwm 0)MiB, $(secs "$t1" "$t2") s | storage peaks $(hwm 1 2 3 4 5 6)MiB"
done
