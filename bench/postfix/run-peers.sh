#!/usr/bin/env bash
# Throughput through a real Postfix into smtp-sink, 8 parallel SMTP sessions, on a
# realistic mix (make-mix.py), for five configurations:
#   a  Postfix alone
#   n  Postfix + null-milter (bench/tools/null-milter.rs: congvu-milter's protocol
#      layer alone, stores each message and accepts it unread): what feeding any
#      milter costs Postfix; only with --configs ...,n,...
#   b  Postfix + congvu-milter, [clamav] enabled = false
#   c  Postfix + congvu-milter with ClamAV
#   d  Postfix + clamav-milter (Debian) on the same clamd
#   e  Postfix + rspamd (Debian; proxy worker in milter mode, antivirus on the same
#      clamd, mime_types bad extensions forced to reject)
# Each configuration is measured --runs times (rounds interleaved: a b c d e, then
# b c d e a, ...) in one sitting; the table gives medians and the ratios
# b/a (goal >= 0.90), c/e (goal >= 1.5) and c/d (and n/a, b/n with n).
#
#   sudo bench/postfix/run-peers.sh [--runs 3] [--count 1000] [--corpus 200]
#        [--sessions 8] [--configs a,b,c,d,e] [--work /tmp/congvu-peers]
#        [--results bench/postfix/RESULTS.md | --no-results] [--port-base 27000]
#        [--clamd-no-cache] [--profile]
#
# Throughput = messages sent / (first SMTP connection .. Postfix logged the last
# accepted message as delivered, status=sent, to the sink). The SMTP-side rate
# (until the last reply) is shown too. Ports 127.0.0.1:BASE+25 (smtpd), +26 (sink),
# +91/+81 (milter b, metrics), +92/+82 (milter c), +93 (clamav-milter), +94 (rspamd
# milter), +95 (null-milter), +33/+34 (rspamd normal/controller). Loopback only.
set -euo pipefail

lab_name=run-peers.sh
REPO=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
HERE=$REPO/bench/postfix
# shellcheck source=peers.sh
source "$HERE/peers.sh"

runs=3 count=1000 corpus_n=200 sessions=8 configs=a,b,c,d,e
BENCH_WORK=/tmp/congvu-peers results=$HERE/RESULTS.md base=27000
corpus_opts='' section=run-peers title='' clamd_cache=1 profile=''
while (($#)); do
    case $1 in
    --runs) runs=$2 && shift ;;
    --count) count=$2 && shift ;;
    --corpus) corpus_n=$2 && shift ;;
    --sessions) sessions=$2 && shift ;;
    --configs) configs=$2 && shift ;;
    --work) BENCH_WORK=$2 && shift ;;
    --results) results=$2 && shift ;;
    --no-results) results='' ;;
    --port-base) base=$2 && shift ;;
    --corpus-opts) corpus_opts=$2 && shift ;;
    --section) section=$2 && shift ;;
    --title) title=$2 && shift ;;
    --clamd-no-cache) clamd_cache=0 ;;
    --profile) profile=1 ;;
    -h | --help) sed -n '2,33s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root "Postfix's master and the private daemons"
W=$BENCH_WORK
SMTP=$((base + 25)) SINK=$((base + 26))
MB=$((base + 91)) XB=$((base + 81)) MC=$((base + 92)) XC=$((base + 82))
MD=$((base + 93)) ME=$((base + 94)) RN=$((base + 33)) RC=$((base + 34)) MN=$((base + 95))
IFS=, read -r -a CFGS <<<"$configs"

stop_all() {
    bash "$LAB/postfix.sh" stop "$W/pf" 2>/dev/null || true
    congvu_stop "$W/congvu-b"
    congvu_stop "$W/congvu-c"
    null_milter_stop "$W/null-milter"
    clamav_milter_stop "$W/clamav-milter"
    rspamd_stop "$W/rspamd"
    bash "$LAB/clamd.sh" stop "$W/clamd" 2>/dev/null || true
}

rm -rf "$W/pf" "$W/runs" "$W/congvu-b" "$W/congvu-c" "$W/clamav-milter" "$W/null-milter"
mkdir -p "$W/runs"
chmod 755 "$W"
trap stop_all EXIT
trap 'exit 130' INT TERM

bench_install
bench_build

say "corpus: make-mix.py --count $corpus_n"
# shellcheck disable=SC2086 # word splitting of --corpus-opts wanted
python3 "$HERE/make-mix.py" "$W/corpus" --count "$corpus_n" --repo "$REPO" $corpus_opts | tee "$W/corpus.txt"

bash "$LAB/clamd.sh" start "$W/clamd" --threads 8 --stream-max 30M
SOCK=$(<"$W/clamd/socket")
((clamd_cache)) || clamd_disable_cache "$W/clamd"

for c in "${CFGS[@]}"; do
    case $c in
    a | s) ;;
    b)
        congvu_policy "$W/policy-b.toml" "$MB" "$XB" "$SOCK" false
        congvu_start "$W/congvu-b" "$W/policy-b.toml" "$MB" "$XB"
        ;;
    c)
        congvu_policy "$W/policy-c.toml" "$MC" "$XC" "$SOCK" true
        congvu_start "$W/congvu-c" "$W/policy-c.toml" "$MC" "$XC"
        ;;
    d) clamav_milter_start "$W/clamav-milter" "$MD" "$SOCK" ;;
    n) null_milter_start "$W/null-milter" "$MN" ;;
    e) rspamd_start "$W/rspamd" "$ME" "$SOCK" "$RN" "$RC" ;;
    *) die "unknown configuration $c" ;;
    esac
done

milter_of() {
    case $1 in
    a) echo '' ;; b) echo "inet:127.0.0.1:$MB" ;; c) echo "inet:127.0.0.1:$MC" ;;
    d) echo "inet:127.0.0.1:$MD" ;; e) echo "inet:127.0.0.1:$ME" ;; n) echo "inet:127.0.0.1:$MN" ;;
    esac
}
pgid_of() {
    case $1 in
    b) cat "$W/congvu-b/milter.pid" ;; c) cat "$W/congvu-c/milter.pid" ;;
    d) cat "$W/clamav-milter/clamav-milter.pid" ;; e) cat "$W/rspamd/rspamd.pid" ;;
    n) cat "$W/null-milter/milter.pid" ;; *) echo 0 ;;
    esac
}

# Busy and total CPU seconds of the whole machine so far, from /proc/stat.
machine_cpu() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; total = busy + $5 + $6; printf "%d %d\n", busy, total }' /proc/stat
}

# One measured run: fresh Postfix instance, sink discarding, blast, wait for delivery.
run_one() { # CFG ROUND N LABEL
    local cfg=$1 round=$2 n=$3 label=$4 milter d=$W/pf
    if [[ $cfg == s ]]; then
        run_clamdscan "$round" "$n" "$label"
        return
    fi
    milter=$(milter_of "$cfg")
    bash "$LAB/postfix.sh" stop "$d" 2>/dev/null || true
    rm -rf "$d"
    bash "$LAB/postfix.sh" sink "$d" --port "$SINK" --discard 2>/dev/null
    bash "$LAB/postfix.sh" start "$d" --port "$SMTP" --sink-port "$SINK" ${milter:+--milter "$milter"} 2>/dev/null
    local pg cpu0 cpu1 clam0 clam1 mach0 mach1
    pg=$(pgid_of "$cfg")
    cpu0=$(group_cpu "$pg") clam0=$(group_cpu "$(<"$W/clamd/clamd.pid")") mach0=$(machine_cpu)
    local perf_pid=''
    if [[ -n $profile ]]; then
        perf record -a -e cpu-clock -F 499 -o "$W/runs/$label.perf" 2>/dev/null &
        perf_pid=$!
    fi
    python3 "$HERE/blast.py" "$W/corpus" --port "$SMTP" --sessions "$sessions" --count "$n" \
        --summary "$W/runs/$label.json" --quiet
    local ok
    ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["first_pass"]["2xx"])' "$W/runs/$label.json")
    local t_done i
    for ((i = 0; i < 6000; i++)); do
        (($(grep -c 'status=sent' "$d/postfix.log" 2>/dev/null || true) >= ok)) && break
        sleep 0.05
    done
    t_done=$(date +%s.%N)
    ((i < 6000)) || say "warning: $label: only $(grep -c 'status=sent' "$d/postfix.log") of $ok delivered after 300 s"
    cpu1=$(group_cpu "$pg") clam1=$(group_cpu "$(<"$W/clamd/clamd.pid")") mach1=$(machine_cpu)
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" && wait "$perf_pid" || true
        perf report -i "$W/runs/$label.perf" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' \
            >"$W/runs/$label.by-command.txt" || true
    fi
    bash "$LAB/postfix.sh" stop "$d" 2>/dev/null
    python3 - "$W/runs/$label.json" "$t_done" "$cfg" "$round" "$cpu0" "$cpu1" "$clam0" "$clam1" "$mach0" "$mach1" <<'PY'
import json, sys
p, t_done, cfg, rnd, c0, c1, k0, k1, m0, m1 = sys.argv[1:]
s = json.load(open(p))
s.update(cfg=cfg, round=int(rnd), t_done=float(t_done))
s["e2e_seconds"] = round(float(t_done) - s["t_start"], 3)
s["e2e_msgs_per_s"] = round(s["messages"] / s["e2e_seconds"], 2)
s["filter_cpu_s"] = round(float(c1) - float(c0), 2)
s["clamd_cpu_s"] = round(float(k1) - float(k0), 2)
(b0, t0), (b1, t1) = (map(int, m.split()) for m in (m0, m1))
s["machine_busy_pct"] = round(100 * (b1 - b0) / max(1, t1 - t0), 1)
json.dump(s, open(p, "w"), indent=1)
fp = s["first_pass"]
print(f"  {cfg} round {rnd}: {s['e2e_msgs_per_s']:8.1f} msg/s end to end ({s['msgs_per_s']:.1f} SMTP side, "
      f"{s['mb_per_s']} MB/s), 2xx {fp['2xx']} 4xx {fp['4xx']} 5xx {fp['5xx']} none {fp['none']}, "
      f"filter CPU {s['filter_cpu_s']} s, clamd CPU {s['clamd_cpu_s']} s, machine busy {s['machine_busy_pct']} %",
      flush=True)
PY
}

# Configuration s: the same messages, raw, to clamd by clamdscan --stream, in
# SESSIONS parallel clamdscan processes (each sends its share one file after the
# other, as one SMTP session sends its messages).
run_clamdscan() { # ROUND N LABEL
    local clam0 clam1
    clam0=$(group_cpu "$(<"$W/clamd/clamd.pid")")
    python3 - "$W/corpus" "$2" "$sessions" "$W/clamd/clamd.conf" "$W/runs/$3.json" <<'PY'
import json, os, resource, subprocess, sys, time
from pathlib import Path
d, n, S, conf, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
files = [e["file"] for e in json.load(open(Path(d) / "manifest.json"))]
paths = [str(Path(d) / files[k % len(files)]) for k in range(n)]
t0 = time.time()
ps = [subprocess.Popen(["clamdscan", "-c", conf, "--stream", "--no-summary", *paths[s::S]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for s in range(S)]
outs = [p.communicate()[0].decode(errors="replace") for p in ps]
t1 = time.time()
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
found = sum(o.count(" FOUND") for o in outs)
errors = sum(o.count(" ERROR") for o in outs)
nbytes = sum(os.path.getsize(p) for p in paths)
json.dump({"messages": n, "sessions": S, "t_start": t0, "t_end": t1, "seconds": round(t1 - t0, 3),
           "msgs_per_s": round(n / (t1 - t0), 2), "mb_per_s": round(nbytes / 1e6 / (t1 - t0), 2),
           "first_pass": {"2xx": n - found - errors, "4xx": errors, "5xx": found, "none": 0},
           "client_cpu_s": round(ru.ru_utime + ru.ru_stime, 2)}, open(out, "w"), indent=1)
PY
    clam1=$(group_cpu "$(<"$W/clamd/clamd.pid")")
    python3 - "$W/runs/$3.json" "$1" "$clam0" "$clam1" <<'PY'
import json, sys
p, rnd, k0, k1 = sys.argv[1:]
s = json.load(open(p))
s.update(cfg="s", round=int(rnd), t_done=s["t_end"], e2e_seconds=s["seconds"], e2e_msgs_per_s=s["msgs_per_s"],
         filter_cpu_s=s["client_cpu_s"], clamd_cpu_s=round(float(k1) - float(k0), 2))
json.dump(s, open(p, "w"), indent=1)
fp = s["first_pass"]
print(f"  s round {rnd}: {s['msgs_per_s']:8.1f} msg/s clamdscan --stream ({s['mb_per_s']} MB/s), clean {fp['2xx']} "
      f"FOUND {fp['5xx']} ERROR {fp['4xx']}, clamdscan CPU {s['filter_cpu_s']} s, clamd CPU {s['clamd_cpu_s']} s", flush=True)
PY
}

say "warm-up: $((count / 5)) messages per configuration (not measured)"
for c in "${CFGS[@]}"; do run_one "$c" 0 $((count / 5)) "warmup-$c" >/dev/null; done

say "measuring: $runs rounds x ${#CFGS[@]} configurations x $count messages, $sessions sessions"
for ((r = 1; r <= runs; r++)); do
    k=${#CFGS[@]}
    for ((j = 0; j < k; j++)); do
        c=${CFGS[$(((j + r - 1) % k))]}
        run_one "$c" "$r" "$count" "run-$c-$r"
    done
done

date_s=$(date -u '+%Y-%m-%d %H:%M UTC')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
report=$(CLAMD_CACHE=$clamd_cache python3 - "$W/runs" "$runs" "$configs" "$count" "$sessions" "$date_s" "$(nproc)" "$cpu_model" "$W/corpus.txt" \
    "$(postconf -dh mail_version)" "$(clamd --version)" "$(clamav-milter --version 2>/dev/null | head -1)" \
    "$(rspamd --version 2>/dev/null | head -1 || true)" "$("$BIN" --version 2>/dev/null || echo congvu-milter)" <<'PY'
import json, os, statistics, sys
from pathlib import Path
d, runs, cfgs, count, sessions, date_s, ncpu, model, corpus, pfv, clv, cmv, rsv, cvv = sys.argv[1:]
names = {"s": "clamdscan --stream alone (raw messages, no MTA)", "a": "Postfix alone", "b": "Postfix + congvu-milter, ClamAV off", "c": "Postfix + congvu-milter + clamd",
         "d": "Postfix + clamav-milter + clamd", "n": "Postfix + null-milter (protocol layer only, accepts unread)", "e": "Postfix + rspamd (proxy, milter mode) + clamd"}
cfgs = cfgs.split(",")
rs = {c: [json.load(open(p)) for p in sorted(Path(d).glob(f"run-{c}-*.json"))] for c in cfgs}
med = {c: statistics.median(r["e2e_msgs_per_s"] for r in rs[c]) for c in cfgs if rs[c]}
smed = {c: statistics.median(r["msgs_per_s"] for r in rs[c]) for c in cfgs if rs[c]}
out = []
out.append(f"Measured {date_s} on {ncpu} cores ({model}), Debian 12, in one sitting; "
           f"{count} messages per run over {sessions} parallel SMTP sessions, {runs} runs per configuration "
           f"(rounds interleaved), after one unmeasured warm-up run each.")
out.append("")
out.append("Corpus (bench/postfix/make-mix.py, sent round-robin):")
out.append("")
out.append("```")
out.extend(open(corpus).read().rstrip().splitlines())
out.append("```")
out.append("")
out.append("| config | | msg/s end to end, runs | median | SMTP-side msg/s (median) | MB/s (median) | 2xx / 4xx / 5xx (last run) | filter CPU s / run | clamd CPU s / run | machine busy % |")
out.append("|---|---|---|---|---|---|---|---|---|---|")
for c in cfgs:
    if not rs[c]:
        continue
    r = rs[c]
    last = r[-1]["first_pass"]
    out.append(f"| {c} | {names[c]} | {', '.join('%.1f' % x['e2e_msgs_per_s'] for x in r)} | **{med[c]:.1f}** | "
               f"{smed[c]:.1f} | {statistics.median(x['mb_per_s'] for x in r):.1f} | "
               f"{last['2xx']} / {last['4xx']} / {last['5xx']} | "
               f"{statistics.median(x['filter_cpu_s'] for x in r):.1f} | {statistics.median(x['clamd_cpu_s'] for x in r):.1f} | "
               f"{statistics.median(x.get('machine_busy_pct', 0) for x in r):.0f} |")
out.append("")
out.append("Ratios of medians (end-to-end throughput):")
out.append("")
out.append("| ratio | value | goal |")
out.append("|---|---|---|")
def ratio(x, y, goal, what):
    if x in med and y in med:
        v = med[x] / med[y]
        verdict = "" if goal is None else (" (met)" if v >= goal else " (NOT met)")
        out.append(f"| {what} ({x}/{y}) | **{v:.2f}** | {'' if goal is None else f'>= {goal}'}{verdict} |")
ratio("b", "a", 0.90, "congvu-milter without ClamAV / Postfix alone")
ratio("n", "a", None, "null-milter / Postfix alone: what feeding any milter costs Postfix here")
ratio("b", "n", None, "congvu-milter without ClamAV / null-milter")
ratio("c", "e", 1.5, "congvu-milter + clamd / rspamd + clamd")
ratio("c", "d", None, "congvu-milter + clamd / clamav-milter + clamd")
ratio("c", "a", None, "congvu-milter + clamd / Postfix alone")
ratio("c", "s", None, "through Postfix + congvu-milter / clamdscan --stream alone")
ratio("d", "s", None, "through Postfix + clamav-milter / clamdscan --stream alone")
ratio("a", "s", None, "through Postfix alone (no scanning) / clamdscan --stream alone")
out.append("")
if all(c in med for c in "acs"):
    # Time per message (1/throughput): what each filter adds on top of Postfix alone,
    # against what clamd alone takes for the same message.
    ts, ta = 1000 / med["s"], 1000 / med["a"]
    out.append("Milliseconds of wall time per message (1 / median throughput, 8 in parallel): "
               f"clamdscan alone {ts:.2f}; Postfix alone {ta:.2f}; " + "; ".join(
                   f"{names[c].split(' + ')[1]} adds {1000 / med[c] - ta:.2f} on top of Postfix"
                   for c in "cd" if c in med) + ".")
    cpu = {c: statistics.median(x["filter_cpu_s"] for x in rs[c]) / int(count) * 1000 for c in cfgs if rs[c]}
    kcpu = {c: statistics.median(x["clamd_cpu_s"] for x in rs[c]) / int(count) * 1000 for c in cfgs if rs[c]}
    out.append("")
    out.append("CPU milliseconds per message (median run): " + "; ".join(
        f"{c}: {'clamdscan' if c == 's' else 'filter'} {cpu[c]:.2f} + clamd {kcpu[c]:.2f}" for c in cfgs if c != "a" and rs[c]) + ".")
    out.append("")
out.append("clamd: " + ("clean-file cache OFF (DisableCache yes): every scan does the full work." if os.environ.get("CLAMD_CACHE") == "0"
           else "clean-file cache on (clamd's default): repeated bytes are not rescanned.") + " MaxThreads 8, two-signature test database.")
out.append("")
out.append(f"Versions: Postfix {pfv}; {clv}; {cmv}; {rsv}; {cvv}.")
print("\n".join(out))
PY
)
printf '\n%s\n' "$report"
if [[ -n $results ]]; then
    {
        echo "## ${title:-Throughput through Postfix: congvu-milter vs Postfix alone, clamav-milter, rspamd}"
        echo
        echo "Produced by \`sudo ${PRODUCED_BY:-bench/postfix/run-peers.sh --runs $runs --count $count --corpus $corpus_n}\`."
        echo
        echo "$report"
    } | python3 "$HERE/results-section.py" "$results" "$section"
    say "wrote the $section section of $results"
fi
