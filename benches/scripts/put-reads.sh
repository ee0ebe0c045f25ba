#!/usr/bin/env bash
# put-reads.sh BIN [DISK]: a fresh 7-node testnet; three 256 MiB puts; the reads the
# disk (default vda) completed during each (/proc/diskstats) and the nodes' CPU (cs).
BIN=$1
disk=${2:-vda}
source "$(dirname "$0")/common.sh"
up
reads() { awk -v d="$disk" '$3==d{print $4, $6}' /proc/diskstats; }
for r in 1 2 3; do
  read -r n0 s0 < <(reads); c0=$(cs_all); t0=$(now)
  put "$F256" >/dev/null; t1=$(now); c1=$(cs_all); read -r n1 s1 < <(reads)
  echo "put $r: $(secs "$t0" "$t1") s, cpu $((c1 - c0)) cs, disk reads $((n1 - n0)) ($(((s1 - s0) / 2)) KiB)"
done
