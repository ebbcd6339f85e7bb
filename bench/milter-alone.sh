#!/usr/bin/env bash
# The milter alone under load (ClamAV off): builds release, writes a realistic mix
# of messages (bench/make-corpus.py), starts congvu-milter on a free loopback
# port, and runs congvu-loadgen RUNS times; prints the median messages/s, MB/s,
# the same per milter CPU-second (per core), decision latency and peak RSS.
# Then, unless PROFILE=none, profiles the milter under a smaller load with perf
# (PROFILE=perf, the default) or valgrind's callgrind (PROFILE=callgrind) and
# prints the top functions.
#
#   bench/milter-alone.sh                      # defaults below
#   CONNECTIONS=16 MESSAGES=2000 RUNS=3 PROFILE=none bench/milter-alone.sh
#   KEEP=1 bench/milter-alone.sh               # keep the work dir (corpus, logs, profiles)
#   BASELINE=/tmp/old-congvu-milter bench/milter-alone.sh
#       # runs an older build and this one alternately and prints the ratio
#
# A bench, not a test: it asserts nothing about speed. Loopback only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNECTIONS=${CONNECTIONS:-8}
MESSAGES=${MESSAGES:-1000}
PER_CONNECTION=${PER_CONNECTION:-5}
RUNS=${RUNS:-3}
PROFILE=${PROFILE:-perf}
PROFILE_MESSAGES=${PROFILE_MESSAGES:-300}
SCALE=${SCALE:-1}

# The profilers come with the benchmark packages.
case $PROFILE in
perf) profiler=perf ;;
callgrind) profiler=valgrind ;;
*) profiler="" ;;
esac
if [[ -n $profiler ]] && ! command -v "$profiler" >/dev/null 2>&1; then
    echo "milter-alone.sh: $profiler not found; installing the benchmark packages (tests/testbed/install.sh --bench)" >&2
    bash tests/testbed/install.sh --bench
fi

cargo build --release --bins --quiet
milter=target/release/congvu-milter
loadgen=${LOADGEN:-target/release/congvu-loadgen}

work=$(mktemp -d /tmp/congvu-bench.XXXXXX)
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "work dir kept: $work"; fi
}
trap cleanup EXIT

python3 bench/make-corpus.py "$work/corpus" --scale "$SCALE"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port=$(free_port)
metrics_port=$(free_port)
cat >"$work/policy.toml" <<EOF
[milter]
listen = ["inet:127.0.0.1:$port"]

[metrics]
listen = "127.0.0.1:$metrics_port"

[clamav]
enabled = false
EOF

start_milter() {
    "$milter" serve --config "$work/policy.toml" 2>>"$work/milter.log" &
    pid=$!
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "milter did not listen; log:" >&2
    cat "$work/milter.log" >&2
    exit 1
}

stop_milter() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=""
}

# One measured run of binary $1 as label $2, round $3: a fresh milter, a
# warm-up (not counted: page cache, allocator arenas, lazy statics), the load.
measure() {
    local bin=$1 label=$2 round=$3
    milter=$bin
    start_milter
    "$loadgen" --milter "127.0.0.1:$port" --dir "$work/corpus" --connections "$CONNECTIONS" \
        --messages 100 --json >/dev/null
    "$loadgen" --milter "127.0.0.1:$port" --dir "$work/corpus" --connections "$CONNECTIONS" \
        --messages "$MESSAGES" --per-connection "$PER_CONNECTION" --pid "$pid" --json \
        >"$work/$label-$round.json"
    stop_milter
    python3 - "$work/$label-$round.json" "$label $round" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["milter"]
print(f"{sys.argv[2]}: {r['messages_per_s']:.1f} msg/s {r['mb_per_s']:.2f} MB/s"
      f" | per core {m['messages_per_cpu_s']:.1f} msg/s {m['mb_per_cpu_s']:.2f} MB/s"
      f" | p50 {r['latency_ms_p50']:.2f} ms p99 {r['latency_ms_p99']:.2f} ms max {r['latency_ms_max']:.2f} ms"
      f" | peak RSS {m['peak_rss_kib'] / 1024:.1f} MiB | errors {r['errors']}")
EOF
}

echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== load: $MESSAGES messages over $CONNECTIONS connections ($PER_CONNECTION per connection), $RUNS runs"
labels=(current)
[[ -n "${BASELINE:-}" ]] && labels=(baseline current)
new_milter=$milter
for i in $(seq "$RUNS"); do
    # With a baseline, the two binaries alternate, so that both see the same noise.
    for label in "${labels[@]}"; do
        if [[ $label == baseline ]]; then measure "$BASELINE" baseline "$i"; else measure "$new_milter" current "$i"; fi
    done
done
milter=$new_milter

python3 - "$work" "$RUNS" "${labels[@]}" <<'EOF'
import json, statistics, sys
work, runs, labels = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
fields = [
    ("messages/s", lambda r: r["messages_per_s"], "{:10.1f}"),
    ("MB/s", lambda r: r["mb_per_s"], "{:10.2f}"),
    ("milter CPU s", lambda r: r["milter"]["cpu_seconds"], "{:10.2f}"),
    ("messages/s per core", lambda r: r["milter"]["messages_per_cpu_s"], "{:10.1f}"),
    ("MB/s per core", lambda r: r["milter"]["mb_per_cpu_s"], "{:10.2f}"),
    ("latency p50 ms", lambda r: r["latency_ms_p50"], "{:10.2f}"),
    ("latency p99 ms", lambda r: r["latency_ms_p99"], "{:10.2f}"),
    ("latency max ms", lambda r: r["latency_ms_max"], "{:10.2f}"),
    ("peak RSS MiB", lambda r: r["milter"]["peak_rss_kib"] / 1024, "{:10.1f}"),
]
res = {l: [json.load(open(f"{work}/{l}-{i}.json")) for i in range(1, runs + 1)] for l in labels}
r0 = res[labels[-1]][0]
print(f"\n== median of {runs} runs ({r0['messages']} messages, {r0['bytes'] / 1e6:.1f} MB each)")
print(f"  {'':22}" + "".join(f"{l:>11}" for l in labels) + ("      ratio" if len(labels) == 2 else ""))
for name, f, fmt in fields:
    meds = [statistics.median(f(r) for r in res[l]) for l in labels]
    line = f"  {name:22}" + "".join(" " + fmt.format(m) for m in meds)
    if len(labels) == 2 and meds[0]:
        line += f" {meds[1] / meds[0]:9.2f}x"
    print(line)
for l in labels:
    r = res[l][0]
    errors = sum(x["errors"] for x in res[l])
    print(f"  {l}: replies accept {r['accept']} reject {r['reject']} tempfail {r['tempfail']} other {r['other']}; errors (all runs) {errors}")
EOF

start_milter
if [[ "$PROFILE" == perf ]]; then
    echo
    echo "== perf (cpu-clock) on the milter, $PROFILE_MESSAGES messages"
    perf record -e cpu-clock -F 999 -g -o "$work/perf.data" -p "$pid" 2>"$work/perf.err" &
    perf_pid=$!
    sleep 0.5
    "$loadgen" --milter "127.0.0.1:$port" --dir "$work/corpus" --connections "$CONNECTIONS" \
        --messages "$PROFILE_MESSAGES" >/dev/null
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    perf report -i "$work/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -30 | tee "$work/perf-top.txt"
elif [[ "$PROFILE" == callgrind ]]; then
    stop_milter
    echo
    echo "== callgrind on the milter, $PROFILE_MESSAGES messages (slow)"
    valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
        "$milter" serve --config "$work/policy.toml" 2>>"$work/milter.log" &
    pid=$!
    for _ in $(seq 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
        sleep 0.1
    done
    "$loadgen" --milter "127.0.0.1:$port" --dir "$work/corpus" --connections "$CONNECTIONS" \
        --messages "$PROFILE_MESSAGES" --timeout 600 >/dev/null
    stop_milter
    callgrind_annotate "$work/callgrind.out" 2>/dev/null | head -40 | tee "$work/callgrind-top.txt"
fi
