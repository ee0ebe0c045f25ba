#!/usr/bin/env bash
# small-cpu.sh BIN [N]: a fresh 7-node testnet; N (default 200) `datamesh put` processes of
# 4 KiB files through node 0, after 20 to warm up; the CPU of the seven node processes per
# put and the puts per second.
BIN=$1
source "$(dirname "$0")/common.sh"
up
n=${2:-200}
for i in $(seq "$n"); do head -c 4096 /dev/urandom >"$D/f$i"; done
for i in $(seq 20); do head -c 4096 /dev/urandom >"$D/w$i"; put "$D/w$i" >/dev/null; done
c0=$(cs_all); t0=$(now)
for i in $(seq "$n"); do put "$D/f$i" >/dev/null; done
t1=$(now); c1=$(cs_all)
awk -v c=$((c1 - c0)) -v n="$n" -v a="$t0" -v b="$t1" \
  'BEGIN { printf "node CPU per put %.2f ms, %.1f puts/s\n", c * 10 / n, n / (b - a) }'
