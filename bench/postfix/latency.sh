#!/usr/bin/env bash
# The latency-bound run, beside run-peers.sh's throughput-bound one: small
# everyday mail (make-mix.py --everyday: 21 messages that every filter must pass,
# mean ~2.3 KB, median ~1 KB, largest ~17 KB) through a real Postfix into
# smtp-sink, 8 parallel SMTP sessions, so that what counts is the time a milter
# makes each message wait, not the bytes it moves. Configurations (--configs, in
# this order by default; the congvu-old-* ones only with --old-bin):
#   alone                 Postfix alone
#   libmilter-unix        a do-nothing milter on Sendmail's libmilter
#                         (bench/postfix/null-libmilter.c, built with gcc), unix socket
#   libmilter-tcp         the same, loopback TCP
#   congvu-unix           congvu-milter, [clamav] enabled = false, unix socket
#   congvu-tcp            congvu-milter, [clamav] enabled = false, loopback TCP
#   congvu-clamd-tcp      congvu-milter with the private clamd, loopback TCP
#   congvu-old-tcp        as congvu-tcp, the build given by --old-bin
#   congvu-old-clamd-tcp  as congvu-clamd-tcp, the build given by --old-bin
#   rspamd-tcp            rspamd (as peers.sh runs it, same clamd), loopback TCP
#   rspamd-unix           the same rspamd proxy worker, unix socket
#   clamav-milter-tcp     Debian's clamav-milter on the same clamd, loopback TCP
# Every configuration is measured --runs times in one sitting, rounds interleaved
# (a b c ..., then b c ... a, ...), after one unmeasured warm-up run each, each run
# in a fresh Postfix instance. Reported per configuration (medians of the runs):
# messages/s end to end (first SMTP connection .. Postfix logged the last message
# status=sent) and SMTP side (.. last reply); the time from the final dot of DATA
# to Postfix's 250 (blast.py), p50 and p99, over all messages and over those
# without attachments; the same minus Postfix alone's: the latency each milter
# adds per message; the milter's CPU seconds; the 1-minute load average before
# and after every run. Then the ratios of issue 15's goals.
#
#   sudo bench/postfix/latency.sh [--runs 3] [--count 1500] [--sessions 8]
#        [--configs alone,libmilter-unix,...] [--old-bin PATH]
#        [--work /tmp/congvu-latency] [--port-base 28000]
#        [--results bench/postfix/RESULTS.md | --no-results] [--profile]
#   bench/postfix/latency.sh --report-only [--work DIR] [--no-results]
#
# --report-only rebuilds the report (and the results section) from the runs of
# the last finished sitting in --work, without measuring anything.
#
# --old-bin: an older congvu-milter build for the congvu-old-* configurations,
# e.g. the one before TCP_QUICKACK was re-armed on every read:
#   git worktree add --detach /tmp/congvu-old 993be80a~1
#   (cd /tmp/congvu-old && cargo build --release --bin congvu-milter)
#   sudo bench/postfix/latency.sh --old-bin /tmp/congvu-old/target/release/congvu-milter
# CONGVU_BIN chooses the current build as in peers.sh (default: target/release,
# built when stale). --profile: after the measurement, one more run of
# congvu-tcp and congvu-clamd-tcp each under `perf record -a -g`, top symbols of
# congvu-milter and the CPU by command, into the results.
#
# Ports 127.0.0.1:BASE+25 (smtpd), +26 (sink), +40.. (milters), +60.. (metrics),
# +33/+34 (rspamd normal/controller); unix sockets in WORK/sock/. Loopback only;
# everything started is stopped on exit. Needs root (Postfix's master).
set -euo pipefail

lab_name=latency.sh
REPO=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
HERE=$REPO/bench/postfix
# shellcheck source=peers.sh
source "$HERE/peers.sh"

ALL=alone,libmilter-unix,libmilter-tcp,congvu-unix,congvu-tcp,congvu-clamd-tcp,congvu-old-tcp,congvu-old-clamd-tcp,rspamd-tcp,rspamd-unix,clamav-milter-tcp
runs=3 count=1500 sessions=8 configs='' old_bin=''
BENCH_WORK=/tmp/congvu-latency results=$HERE/RESULTS.md base=28000 profile=0 report_only=0
args_given=("$@")
while (($#)); do
    case $1 in
    --runs) runs=$2 && shift ;;
    --count) count=$2 && shift ;;
    --sessions) sessions=$2 && shift ;;
    --configs) configs=$2 && shift ;;
    --old-bin) old_bin=$(readlink -f "$2") && shift ;;
    --work) BENCH_WORK=$2 && shift ;;
    --port-base) base=$2 && shift ;;
    --results) results=$2 && shift ;;
    --no-results) results='' ;;
    --profile) profile=1 ;;
    --report-only) report_only=1 ;;
    -h | --help) sed -n '2,52s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
if ((report_only)); then
    [[ -s $BENCH_WORK/runs/sitting.txt ]] || die "no finished sitting in $BENCH_WORK/runs (see --work)"
    {
        read -r sitting_start && read -r sitting_end && read -r load_start && read -r load_end &&
            read -r configs && read -r runs && read -r count && read -r sessions && read -r old_bin &&
            read -r sitting_args
    } <"$BENCH_WORK/runs/sitting.txt"
    read -r -a args_given <<<"$sitting_args"
fi
[[ $runs =~ ^[1-9][0-9]?$ && $count =~ ^[1-9][0-9]*$ && $sessions =~ ^[1-9][0-9]*$ ]] ||
    die "--runs, --count and --sessions take positive numbers"
if [[ -z $configs ]]; then
    configs=$ALL
    [[ -n $old_bin ]] || configs=${configs//,congvu-old-tcp,congvu-old-clamd-tcp/}
fi
IFS=, read -r -a CFGS <<<"$configs"
for c in "${CFGS[@]}"; do
    [[ ,$ALL, == *,$c,* ]] || die "unknown configuration $c (see --help)"
    ((report_only)) || [[ $c != congvu-old-* || -x $old_bin ]] ||
        die "$c needs --old-bin PATH (an executable congvu-milter)"
done
((report_only)) || need_root "Postfix's master and the private daemons"

W=$BENCH_WORK S=$BENCH_WORK/sock
SMTP=$((base + 25)) SINK=$((base + 26)) RN=$((base + 33)) RC=$((base + 34))
# Milter port and metrics port of each TCP configuration that has its own daemon.
declare -A MPORT=([libmilter-tcp]=$((base + 40)) [congvu-tcp]=$((base + 41)) [congvu-clamd-tcp]=$((base + 42))
    [congvu-old-tcp]=$((base + 43)) [congvu-old-clamd-tcp]=$((base + 44)) [rspamd-tcp]=$((base + 45))
    [clamav-milter-tcp]=$((base + 46)) [congvu-unix]=$S/congvu.sock [libmilter-unix]=$S/libmilter.sock
    [rspamd-unix]=$S/rspamd.sock)
declare -A XPORT=([congvu-unix]=$((base + 60)) [congvu-tcp]=$((base + 61)) [congvu-clamd-tcp]=$((base + 62))
    [congvu-old-tcp]=$((base + 63)) [congvu-old-clamd-tcp]=$((base + 64)))

has() { [[ ,$configs, == *,$1,* ]]; }

stop_all() {
    bash "$LAB/postfix.sh" stop "$W/pf" 2>/dev/null || true
    local c
    for c in congvu-unix congvu-tcp congvu-clamd-tcp congvu-old-tcp congvu-old-clamd-tcp; do
        congvu_stop "$W/$c"
    done
    null_libmilter_stop "$W/libmilter-unix"
    null_libmilter_stop "$W/libmilter-tcp"
    clamav_milter_stop "$W/clamav-milter"
    rspamd_stop "$W/rspamd"
    bash "$LAB/clamd.sh" stop "$W/clamd" 2>/dev/null || true
}

if ((report_only == 0)); then
    mkdir -p "$W"
    rm -rf "$W/pf" "$W/runs" "$S"
    mkdir -p "$W/runs" "$S"
    chmod 755 "$W" "$S"
    trap stop_all EXIT
    trap 'exit 130' INT TERM

    bench_install
    bench_build
    [[ -z $old_bin ]] || say "old build: $old_bin"

    python3 "$HERE/make-mix.py" "$W/corpus" --everyday --repo "$REPO" | tee "$W/corpus.txt"

    CLAMD_SOCK=''
    if has congvu-clamd-tcp || has congvu-old-clamd-tcp || has rspamd-tcp || has rspamd-unix || has clamav-milter-tcp; then
        bash "$LAB/clamd.sh" start "$W/clamd" --threads 8 --stream-max 30M
        CLAMD_SOCK=$(<"$W/clamd/socket")
    fi

    # congvu-milter for configuration CFG: BIN (current or old build), ClamAV on or off,
    # listening on CFG's TCP port or unix socket.
    start_congvu() { # CFG BIN CLAMAV(true|false)
        local c=$1 listen
        listen=inet:127.0.0.1:${MPORT[$c]}
        [[ ${MPORT[$c]} != /* ]] || listen=unix:${MPORT[$c]}
        BIN=$2 congvu_policy "$W/policy-$c.toml" 0 "${XPORT[$c]}" "${CLAMD_SOCK:-/nonexistent}" "$3" \
            "milter.listen=[\"$listen\"]"
        BIN=$2 congvu_start "$W/$c" "$W/policy-$c.toml" "${MPORT[$c]}" "${XPORT[$c]}"
    }

    rspamd_started=0
    for c in "${CFGS[@]}"; do
        case $c in
        alone) ;;
        libmilter-unix) null_libmilter_start "$W/$c" "unix:${MPORT[$c]}" ;;
        libmilter-tcp) null_libmilter_start "$W/$c" "inet:${MPORT[$c]}@127.0.0.1" ;;
        congvu-unix | congvu-tcp) start_congvu "$c" "$BIN" false ;;
        congvu-clamd-tcp) start_congvu "$c" "$BIN" true ;;
        congvu-old-tcp) start_congvu "$c" "$old_bin" false ;;
        congvu-old-clamd-tcp) start_congvu "$c" "$old_bin" true ;;
        rspamd-tcp | rspamd-unix)
            if ((!rspamd_started)); then
                rspamd_start "$W/rspamd" "${MPORT[rspamd-tcp]}" "$CLAMD_SOCK" "$RN" "$RC" "${MPORT[rspamd-unix]}"
                rspamd_started=1
            fi
            ;;
        clamav-milter-tcp) clamav_milter_start "$W/clamav-milter" "${MPORT[$c]}" "$CLAMD_SOCK" ;;
        esac
    done
fi

milter_of() { # CFG -> Postfix's milter address
    case $1 in
    alone) echo '' ;;
    *-unix) echo "unix:${MPORT[$1]}" ;;
    *) echo "inet:127.0.0.1:${MPORT[$1]}" ;;
    esac
}
pgid_of() { # CFG -> the milter's process group
    case $1 in
    alone) echo 0 ;;
    rspamd-*) cat "$W/rspamd/rspamd.pid" ;;
    clamav-milter-tcp) cat "$W/clamav-milter/clamav-milter.pid" ;;
    *) cat "$W/$1/milter.pid" ;;
    esac
}
load1() { cut -d' ' -f1 /proc/loadavg; }

# One run: fresh Postfix, sink discarding, blast.py, wait until all are delivered.
run_one() { # CFG ROUND N LABEL [PERF_OUT]
    local cfg=$1 round=$2 n=$3 label=$4 perf_out=${5:-} milter d=$W/pf pg cpu0 cpu1 l0 l1 perf_pid='' ok i t_done
    milter=$(milter_of "$cfg")
    bash "$LAB/postfix.sh" stop "$d" 2>/dev/null || true
    rm -rf "$d"
    bash "$LAB/postfix.sh" sink "$d" --port "$SINK" --discard 2>/dev/null
    bash "$LAB/postfix.sh" start "$d" --port "$SMTP" --sink-port "$SINK" ${milter:+--milter "$milter"} 2>/dev/null
    pg=$(pgid_of "$cfg")
    l0=$(load1) cpu0=$(group_cpu "$pg")
    if [[ -n $perf_out ]]; then
        perf record -a -g -e cpu-clock -F 499 -o "$perf_out" >/dev/null 2>&1 &
        perf_pid=$!
        sleep 1
    fi
    python3 "$HERE/blast.py" "$W/corpus" --port "$SMTP" --sessions "$sessions" --count "$n" \
        --results "$W/runs/$label.jsonl" --summary "$W/runs/$label.json" --quiet
    ok=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["first_pass"]["2xx"])' "$W/runs/$label.json")
    for ((i = 0; i < 3000; i++)); do
        (($(grep -c 'status=sent' "$d/postfix.log" 2>/dev/null || true) >= ok)) && break
        sleep 0.02
    done
    t_done=$(date +%s.%N)
    ((i < 3000)) || say "warning: $label: only $(grep -c 'status=sent' "$d/postfix.log") of $ok delivered after 60 s"
    cpu1=$(group_cpu "$pg")
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" && wait "$perf_pid" || true
    fi
    l1=$(load1)
    bash "$LAB/postfix.sh" stop "$d" 2>/dev/null
    rm -rf "$W/runs/$label.jsonl.d"
    python3 - "$W/runs/$label.json" "$t_done" "$cfg" "$round" "$cpu0" "$cpu1" "$l0" "$l1" <<'PY'
import json, sys
p, t_done, cfg, rnd, c0, c1, l0, l1 = sys.argv[1:]
s = json.load(open(p))
s.update(cfg=cfg, round=int(rnd), t_done=float(t_done), load_before=float(l0), load_after=float(l1))
s["e2e_seconds"] = round(float(t_done) - s["t_start"], 3)
s["e2e_msgs_per_s"] = round(s["messages"] / s["e2e_seconds"], 2)
s["filter_cpu_s"] = round(float(c1) - float(c0), 2)
json.dump(s, open(p, "w"), indent=1)
fp, de = s["first_pass"], s["data_end_ms"]
print(f"  {cfg:22s} round {rnd}: {s['e2e_msgs_per_s']:7.1f} msg/s end to end ({s['msgs_per_s']:.1f} SMTP side), "
      f"dot->250 p50 {de['p50']:.2f} ms p99 {de['p99']:.2f} ms, 2xx {fp['2xx']} 4xx {fp['4xx']} 5xx {fp['5xx']} "
      f"none {fp['none']}, filter CPU {s['filter_cpu_s']} s, load {l0} -> {l1}", flush=True)
PY
}

if ((report_only == 0)); then
    sitting_start=$(date -u '+%Y-%m-%d %H:%M:%S UTC') load_start=$(cut -d' ' -f1-3 /proc/loadavg)
    say "warm-up: $((count / 5)) messages per configuration (not measured)"
    for c in "${CFGS[@]}"; do run_one "$c" 0 $((count / 5)) "warmup-$c" >/dev/null; done

    say "measuring: $runs rounds x ${#CFGS[@]} configurations x $count messages, $sessions sessions"
    k=${#CFGS[@]}
    for ((r = 1; r <= runs; r++)); do
        for ((j = 0; j < k; j++)); do
            c=${CFGS[$(((j + r - 1) % k))]}
            run_one "$c" "$r" "$count" "run-$c-$r"
        done
    done
    sitting_end=$(date -u '+%H:%M:%S UTC') load_end=$(cut -d' ' -f1-3 /proc/loadavg)
    printf '%s\n' "$sitting_start" "$sitting_end" "$load_start" "$load_end" "$configs" "$runs" "$count" \
        "$sessions" "$old_bin" "${args_given[*]}" >"$W/runs/sitting.txt"

    profiles=()
    if ((profile)); then
        for c in congvu-tcp congvu-clamd-tcp; do
            has "$c" || continue
            say "profile: $c, one run of $count messages under perf record -a -g"
            run_one "$c" 0 "$count" "profile-$c" "$W/runs/profile-$c.perf" >/dev/null
            {
                echo "CPU by command, $c (perf report --sort comm, all CPUs):"
                perf report -i "$W/runs/profile-$c.perf" --no-children --sort comm --stdio -g none 2>/dev/null |
                    grep -v '^#' | grep -v '^$' | grep '%' | head -12 || true
                echo
                echo "congvu-milter's top symbols, $c (perf report --pid of the daemon --sort dso,sym, self, % of the daemon's samples):"
                perf report -i "$W/runs/profile-$c.perf" --no-children --pid "$(pgid_of "$c")" --percentage relative \
                    --sort dso,sym --stdio -g none 2>/dev/null |
                    grep -v '^#' | grep -v '^$' | grep '%' | head -25 || true
            } >"$W/runs/profile-$c.txt"
            profiles+=("$W/runs/profile-$c.txt")
        done
    fi
else
    profiles=()
    for f in "$W"/runs/profile-*.txt; do
        [[ ! -s $f ]] || profiles+=("$f")
    done
fi

report=$(python3 - "$W/runs" "$configs" "$runs" "$count" "$sessions" "$(nproc)" "$sitting_start" "$sitting_end" \
    "$load_start" "$load_end" "$W/corpus.txt" "$W/corpus/manifest.json" \
    "$(postconf -dh mail_version)" "$(clamd --version)" "$(rspamd --version 2>/dev/null | head -1 || true)" \
    "$(clamav-milter --version 2>/dev/null | head -1 || true)" "$(dpkg-query -W -f='${Version}' libmilter-dev 2>/dev/null || true)" \
    "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$old_bin" "${profiles[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path
(d, cfgs, runs, count, sessions, ncpu, t0, t1, l0, l1, corpus_txt, manifest, pfv, clv, rsv, cmv, lmv, model,
 old_bin, *profiles) = sys.argv[1:]
cfgs = cfgs.split(",")
names = {
    "alone": "Postfix alone",
    "libmilter-unix": "do-nothing libmilter milter, unix socket",
    "libmilter-tcp": "do-nothing libmilter milter, loopback TCP",
    "congvu-unix": "congvu-milter, ClamAV off, unix socket",
    "congvu-tcp": "congvu-milter, ClamAV off, loopback TCP",
    "congvu-clamd-tcp": "congvu-milter with clamd, loopback TCP",
    "congvu-old-tcp": "congvu-milter before the TCP_QUICKACK change, ClamAV off, TCP",
    "congvu-old-clamd-tcp": "congvu-milter before the TCP_QUICKACK change, with clamd, TCP",
    "rspamd-tcp": "rspamd (same clamd), loopback TCP",
    "rspamd-unix": "rspamd (same clamd), unix socket",
    "clamav-milter-tcp": "clamav-milter (same clamd), loopback TCP",
}
bare = {e["file"] for e in json.load(open(manifest)) if not e["attachments"]}

def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

rs = {}
for c in cfgs:
    rows = []
    for p in sorted(Path(d).glob(f"run-{c}-*.json")):
        s = json.load(open(p))
        recs = [json.loads(line) for line in open(p.with_suffix(".jsonl")) if line.strip()]
        ok = [r for r in recs if r["attempt"] == 1 and 200 <= r["code"] < 300 and "data_end_ms" in r]
        allv = [r["data_end_ms"] for r in ok]
        barev = [r["data_end_ms"] for r in ok if r["file"] in bare]
        s.update(p50=pct(allv, 0.5), p99=pct(allv, 0.99), bp50=pct(barev, 0.5), bp99=pct(barev, 0.99),
                 over35=100 * sum(v > 35 for v in allv) / max(1, len(allv)))
        rows.append(s)
    if rows:
        rs[c] = rows
med = lambda c, k: statistics.median(r[k] for r in rs[c])
out = [f"Measured {t0} to {t1} on {ncpu} cores ({model}), Debian 12, in one sitting; {count} messages per run "
       f"over {sessions} parallel SMTP sessions, {runs} runs per configuration (rounds interleaved), after one "
       f"unmeasured warm-up run of {int(count) // 5} each. 1-minute load average (3 figures: 1, 5, 15 min) "
       f"{l0} at the start of the sitting, {l1} at its end.", "",
       "Corpus (bench/postfix/make-mix.py --everyday, sent round-robin):", "", "```"]
out += open(corpus_txt).read().rstrip().splitlines()
out += ["```", "",
        "\"dot->250\" is the time from the final dot of DATA (sent with the body in one write) to Postfix's 250, "
        "per message, as blast.py sees it; p50 and p99 over a run's accepted messages, \"bare\" over the 13 "
        "without attachments; each figure is the median of the runs' figures. \"Added\" is that minus the same "
        "figure for Postfix alone. \"> 35 ms\": the share of messages whose dot->250 took longer than 35 ms, "
        "the mark of a delayed-ACK stall (Linux delays an ACK by 40 ms at most). Load: the 1-minute load average "
        "before and after each run (a run's own load counts in it).", "",
        "| configuration | msg/s end to end, runs | median | SMTP-side msg/s | dot->250 p50 / p99 ms | added p50 / p99 ms | bare: added p50 / p99 ms | > 35 ms | 2xx / 4xx / 5xx (last run) | milter CPU ms / msg | load before -> after, per run |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
A = "alone" in rs
for c in cfgs:
    if c not in rs:
        continue
    r = rs[c]
    fp = r[-1]["first_pass"]
    add = f"{med(c, 'p50') - med('alone', 'p50'):+.2f} / {med(c, 'p99') - med('alone', 'p99'):+.2f}" if A and c != "alone" else ""
    badd = f"{med(c, 'bp50') - med('alone', 'bp50'):+.2f} / {med(c, 'bp99') - med('alone', 'bp99'):+.2f}" if A and c != "alone" else ""
    cpu = "" if c == "alone" else f"{med(c, 'filter_cpu_s') / int(count) * 1000:.2f}"
    loads = ", ".join(f"{x['load_before']:.2f}->{x['load_after']:.2f}" for x in sorted(r, key=lambda x: x["round"]))
    out.append(f"| {names[c]} | {', '.join('%.1f' % x['e2e_msgs_per_s'] for x in r)} | **{med(c, 'e2e_msgs_per_s'):.1f}** | "
               f"{med(c, 'msgs_per_s'):.1f} | {med(c, 'p50'):.2f} / {med(c, 'p99'):.2f} | {add} | {badd} | {med(c, 'over35'):.1f} % | "
               f"{fp['2xx']} / {fp['4xx']} / {fp['5xx']} | {cpu} | {loads} |")
out += ["", "Goals of issue 15 (ratios of the median end-to-end msg/s, same sitting):", "",
        "| goal | figures | value | met? |", "|---|---|---|---|"]
def ratio(x, y, goal, what):
    if x in rs and y in rs:
        v = med(x, "e2e_msgs_per_s") / med(y, "e2e_msgs_per_s")
        out.append(f"| {what} >= {goal} | {med(x, 'e2e_msgs_per_s'):.1f} / {med(y, 'e2e_msgs_per_s'):.1f} | **{v:.2f}** | "
                   f"{'yes' if v >= goal else '**no**'} |")
ratio("congvu-tcp", "libmilter-unix", 0.95, "congvu-milter ClamAV off, TCP / do-nothing libmilter milter, unix socket")
ratio("congvu-clamd-tcp", "rspamd-tcp", 3, "congvu-milter with clamd, TCP / rspamd, TCP")
ratio("congvu-clamd-tcp", "rspamd-unix", 1, "congvu-milter with clamd, TCP / rspamd, unix socket")
if A:
    for c in ("congvu-tcp", "congvu-clamd-tcp"):
        if c in rs:
            v = med(c, "bp99") - med("alone", "bp99")
            out.append(f"| {names[c]}: p99 added per message without attachments <= 5 ms | "
                       f"{med(c, 'bp99'):.2f} - {med('alone', 'bp99'):.2f} ms | **{v:.2f} ms** | {'yes' if v <= 5 else '**no**'} |")
out += ["", "Other ratios of the median end-to-end msg/s:", "", "| ratio | value |", "|---|---|"]
for x, y in [("libmilter-tcp", "libmilter-unix"), ("congvu-tcp", "congvu-unix"), ("congvu-unix", "libmilter-unix"),
             ("congvu-tcp", "libmilter-tcp"), ("congvu-tcp", "congvu-old-tcp"), ("congvu-clamd-tcp", "congvu-old-clamd-tcp"),
             ("rspamd-tcp", "rspamd-unix"), ("congvu-clamd-tcp", "clamav-milter-tcp"), ("congvu-tcp", "alone"),
             ("libmilter-unix", "alone")]:
    if x in rs and y in rs:
        out.append(f"| {names[x]} / {names[y]} | {med(x, 'e2e_msgs_per_s') / med(y, 'e2e_msgs_per_s'):.2f} |")
for p in profiles:
    out += ["", "```"] + open(p).read().rstrip().splitlines() + ["```"]
out += ["", f"Versions: Postfix {pfv}; {clv}; {rsv}; {cmv}; libmilter {lmv}; clamd with the two-signature test "
        "database of contrib/lab/clamd.sh, clean-file cache on (its default), MaxThreads 8."
        + (f" Old congvu-milter build: {old_bin}." if old_bin else "")]
print("\n".join(out))
PY
)
printf '\n%s\n' "$report"
if [[ -n $results ]]; then
    {
        echo "## Latency-bound: small everyday mail, milters over TCP and unix sockets (issue 15)"
        echo
        echo "Produced by \`sudo bench/postfix/latency.sh${args_given[*]:+ ${args_given[*]}}\`."
        echo
        echo "$report"
    } | python3 "$HERE/results-section.py" "$results" latency
    say "wrote the latency section of $results"
fi
