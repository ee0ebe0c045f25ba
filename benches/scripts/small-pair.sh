#!/usr/bin/env bash
# small-pair.sh BIN_A BIN_B [N]: two fresh 7-node testnets up at once, one of each build;
# a client alternates between them request by request (N kept-alive 4 KiB puts each, then
# a get of each file, then two more), so both builds see the same load of this shared
# machine at the same moments; prints each build's p50s and p90s and the CPU its seven
# nodes spent per put and per get (utime + stime over each phase). Needs jq and python3.
set -euo pipefail
A_BIN=$1 B_BIN=$2 N=${3:-300}
source "$(dirname "$0")/pair.sh"
python3 - "$A/node-0" "$B/node-0" "$N" "$A_BIN" "$B_BIN" <<'PY'
import http.client, json, os, statistics, sys, time

def connect(home):
    run = json.load(open(os.path.join(home, "node.json")))
    token = open(os.path.join(home, "api-token")).read().strip()
    host, port = run["api"].rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port)), {"authorization": "Bearer " + token}

def timed(side, method, path, body=None):
    conn, headers = side
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    answer = conn.getresponse()
    data = answer.read()
    took = (time.perf_counter() - started) * 1e3
    if answer.status != 200:
        sys.exit(f"{method} {path}: {answer.status} {data[:200]!r}")
    return took, data

sides = [connect(sys.argv[1]), connect(sys.argv[2])]
n = int(sys.argv[3])

def pids(home):
    root = os.path.dirname(home)
    return [json.load(open(os.path.join(root, f"node-{i}", "node.json")))["pid"] for i in range(7)]

def cpu_ms(pid_list):  # utime + stime of the nodes, in ms
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pid_list:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / ticks

node_pids = [pids(sys.argv[1]), pids(sys.argv[2])]
cpu = {kind: [0.0, 0.0] for kind in ("put", "get")}
def mark():
    return [cpu_ms(node_pids[0]), cpu_ms(node_pids[1])]
# A testnet just brought up still bootstraps its DHT: wait (30 s at most) until both spend
# under 2% of a core, or the one started second pays for it in the measured phases.
for _ in range(30):
    at = mark()
    time.sleep(1)
    if all(after - was < 20 for after, was in zip(mark(), at)):
        break
ids = [[], []]
for i in range(20):  # warm-up
    for side in sides:
        timed(side, "POST", f"/v1/files?name=w{i}", os.urandom(4096))
times = {kind: [[], []] for kind in ("put", "get", "again")}
def turn(i):  # which side goes first alternates
    return (0, 1) if i % 2 == 0 else (1, 0)
before = mark()
for i in range(n):
    for k in turn(i):
        took, data = timed(sides[k], "POST", f"/v1/files?name=f{i}", os.urandom(4096))
        times["put"][k].append(took)
        ids[k].append(json.loads(data)["id"])
cpu["put"] = [after - at for after, at in zip(mark(), before)]
before = mark()
for kind, rounds in (("get", 1), ("again", 2)):
    for _ in range(rounds):
        for i in range(n):
            for k in turn(i):
                took, data = timed(sides[k], "GET", f"/v1/files/{ids[k][i]}")
                assert len(data) == 4096
                times[kind][k].append(took)
cpu["get"] = [(after - at) / 3 for after, at in zip(mark(), before)]
for k, name in enumerate(sys.argv[4:6]):
    p50 = {kind: statistics.median(t[k]) for kind, t in times.items()}
    p90 = {kind: statistics.quantiles(t[k], n=10)[-1] for kind, t in times.items()}
    print(f"{name}: put p50 {p50['put']:.2f} ms, get p50 {p50['get']:.2f} ms, "
          f"read again {p50['again']:.2f} ms; node CPU per put {cpu['put'][k] / n:.2f} ms, "
          f"per get {cpu['get'][k] / n:.2f} ms; p90 put {p90['put']:.2f}, "
          f"get {p90['get']:.2f}, again {p90['again']:.2f} ms")
PY
