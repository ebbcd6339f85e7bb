#!/usr/bin/env bash
# Soak: N messages (default 20,000) through a real Postfix + congvu-milter + a real
# clamd, with clamd stopped for ~20 s at ~30 % and the policy reloaded (SIGHUP, a
# harmless change: [clamav] scanned_value) at ~50 % and ~80 %.
#
#   sudo bench/soak/soak.sh [--count 20000] [--corpus 400] [--sessions 8]
#        [--clamd-down 20] [--margin 15] [--work /tmp/congvu-soak]
#        [--results bench/soak/RESULTS.md | --no-results] [--port-base 28000]
#
# The sender (bench/postfix/blast.py) tags every message with "X-Soak-Id: soak-K",
# records every SMTP reply, and after the run re-sends every message that got a
# 4xx (every 5 s, as a sending MTA's queue would) until it gets 2xx or 5xx. The sink
# (smtp-sink -d) keeps one file per delivered message. Then it checks:
#   - zero lost: every id is delivered (its X-Soak-Id is in the sink), or refused
#     with 5xx, or deferred and then delivered; every 2xx reply is in the sink;
#   - 4xx only while clamd was down: from stopping it until it answered PING again
#     plus --margin seconds (the milter probes a failed clamd every
#     [clamav] probe_interval = 10 s before using it again);
#   - the milter's RSS at the end at most 10 % above its RSS after the first 1,000
#     messages, both taken settled: at 1,000 messages the sender is paused
#     (SIGSTOP) until the milter has answered everything Postfix holds, and the
#     end sample follows the queue drain, so neither catches a burst of large
#     messages in flight (VmRSS is also sampled every 2 s under load, for the
#     trajectory);
#   - both reloads took effect (policy_reloads_total, and the X-Virus-Scanned value
#     of delivered mail changes).
# Exit 0 when every check passes. The corpus is make-mix.py's mix with smaller
# "large" messages (0.3-1 MB) so that 20,000 messages take ~10 min on 2 cores.
set -euo pipefail

lab_name=soak.sh
REPO=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
PB=$REPO/bench/postfix
# shellcheck source=../postfix/peers.sh
source "$PB/peers.sh"

count=20000 corpus_n=400 sessions=8 down=20 margin=15
BENCH_WORK=/tmp/congvu-soak results=$REPO/bench/soak/RESULTS.md base=28000
while (($#)); do
    case $1 in
    --count) count=$2 && shift ;;
    --corpus) corpus_n=$2 && shift ;;
    --sessions) sessions=$2 && shift ;;
    --clamd-down) down=$2 && shift ;;
    --margin) margin=$2 && shift ;;
    --work) BENCH_WORK=$2 && shift ;;
    --results) results=$2 && shift ;;
    --no-results) results='' ;;
    --port-base) base=$2 && shift ;;
    -h | --help) sed -n '2,28s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root "Postfix's master and the private daemons"
W=$BENCH_WORK
SMTP=$((base + 25)) SINK=$((base + 26)) MPORT=$((base + 91)) XPORT=$((base + 81))

stop_all() {
    [[ -n ${blast_pid:-} ]] && kill "$blast_pid" 2>/dev/null || true
    bash "$LAB/postfix.sh" stop "$W/pf" 2>/dev/null || true
    congvu_stop "$W/milter"
    bash "$LAB/clamd.sh" stop "$W/clamd" 2>/dev/null || true
}
rm -rf "$W/pf" "$W/milter" "$W/send" "$W/events.tsv" "$W/rss.tsv" "$W/rss-ref.tsv"
mkdir -p "$W/milter" "$W/send"
chmod 755 "$W"
trap stop_all EXIT
trap 'exit 130' INT TERM

bench_install
bench_build
python3 "$PB/make-mix.py" "$W/corpus" --count "$corpus_n" --seed 7 --large-min-mb 0.3 --large-max-mb 1.0 \
    --repo "$REPO" | tee "$W/corpus.txt"

bash "$LAB/clamd.sh" start "$W/clamd" --threads 8 --stream-max 30M
SOCK=$(<"$W/clamd/socket")
POLICY=$W/policy.toml
congvu_policy "$POLICY" "$MPORT" "$XPORT" "$SOCK" true 'clamav.scanned_value="ClamAV using congvu-milter (policy 0)"'
congvu_start "$W/milter" "$POLICY" "$MPORT" "$XPORT"
MPID=$(<"$W/milter/milter.pid")
bash "$LAB/postfix.sh" sink "$W/pf" --port "$SINK"
bash "$LAB/postfix.sh" start "$W/pf" --port "$SMTP" --sink-port "$SINK" --milter "inet:127.0.0.1:$MPORT"

now() { date +%s.%N; }
event() { printf '%s\t%s\n' "$(now)" "$*" >>"$W/events.tsv"; say "event: $*"; }
progress() { cat "$W/send/results.jsonl.d"/a1-*.jsonl 2>/dev/null | wc -l || true; }
# One line of rss.tsv: time, progress, the milter's VmRSS and its heap bytes in use
# (the congvu_milter_heap_bytes metric), both in KiB.
memory_sample() {
    local heap
    heap=$(python3 -c 'import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=2).read().decode()
m = re.search(r"^congvu_milter_heap_bytes (\S+)", text, re.M)
print(int(float(m.group(1)) / 1024) if m else -1)' "http://127.0.0.1:$XPORT/metrics" 2>/dev/null || echo -1)
    printf '%s\t%s\t%s\t%s\n' "$(now)" "$(progress)" "$(proc_kib "$MPID" VmRSS)" "$heap"
}
# The sender and its session processes.
sender_signal() { # SIGNAL
    pkill "-$1" -P "$blast_pid" 2>/dev/null || true
    kill "-$1" "$blast_pid" 2>/dev/null || true
}
# RSS after the first 1,000 messages, settled: Postfix hands a message to the milter
# only once it has all of it, so with the sender stopped the milter finishes what
# it holds and goes idle; SETTLE_S later (past the 10 s after which tokio ends
# idle blocking threads, and with them their allocator caches) the sample is
# taken. The end sample gets the same SETTLE_S after the queue drain.
SETTLE_S=12
settled_reference() {
    sender_signal STOP
    event "sender paused at progress $(progress) for the settled RSS reference"
    sleep "$SETTLE_S"
    memory_sample >"$W/rss-ref.tsv"
    sender_signal CONT
    event "sender resumed (RSS reference $(cut -f3 "$W/rss-ref.tsv") KiB)"
}
reload() { # N
    sed -i "s/(policy $(($1 - 1)))/(policy $1)/" "$POLICY"
    "$BIN" check-config --config "$POLICY" >/dev/null
    kill -HUP "$MPID"
    event "reload $1 (SIGHUP; scanned_value ... (policy $1))"
}

event "start: $count messages, $sessions sessions"
python3 "$PB/blast.py" "$W/corpus" --port "$SMTP" --sessions "$sessions" --count "$count" \
    --id-header X-Soak-Id --id-prefix soak --retry-deferred --retry-delay 5 --retry-max-rounds 120 \
    --results "$W/send/results.jsonl" --summary "$W/send/summary.json" >"$W/send/blast.out" 2>&1 &
blast_pid=$!

clamd_down_at=$((count * 30 / 100)) reload1_at=$((count * 50 / 100)) reload2_at=$((count * 80 / 100))
phase=0 last_sample=0 clamd_up_deadline=0 reference_taken=0
printf 't\tprogress\trss_kib\theap_kib\n' >"$W/rss.tsv"
while kill -0 "$blast_pid" 2>/dev/null; do
    p=$(progress)
    t=$SECONDS
    if ((t - last_sample >= 2)); then
        memory_sample >>"$W/rss.tsv"
        last_sample=$t
    fi
    if ((!reference_taken && p >= 1000)); then
        settled_reference
        reference_taken=1
    fi
    if ((phase == 0 && p >= clamd_down_at)); then
        event "clamd stop (progress $p)"
        bash "$LAB/clamd.sh" stop "$W/clamd"
        event "clamd stopped"
        clamd_up_deadline=$((SECONDS + down))
        phase=1
    elif ((phase == 1 && SECONDS >= clamd_up_deadline)); then
        event "clamd start"
        bash "$LAB/clamd.sh" start "$W/clamd" --threads 8 --stream-max 30M
        event "clamd up (answers PING)"
        phase=2
    elif ((phase == 2 && p >= reload1_at)); then
        reload 1
        phase=3
    elif ((phase == 3 && p >= reload2_at)); then
        reload 2
        phase=4
    fi
    sleep 0.5
done
blast_rc=0
wait "$blast_pid" || blast_rc=$?
blast_pid=''
event "sender done (exit $blast_rc)"
cat "$W/send/blast.out"
((phase == 4)) || say "warning: the run ended before all events happened (phase $phase)"

# Wait for Postfix to deliver everything it accepted (queue empty, sink has them).
accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["final"]["2xx"])' "$W/send/summary.json")
for ((i = 0; i < 1200; i++)); do
    (($(grep -c 'status=sent' "$W/pf/postfix.log" || true) >= accepted)) && break
    sleep 0.5
done
sleep "$SETTLE_S" # the milter has answered everything; let it settle as for the reference
memory_sample >>"$W/rss.tsv"
event "queue drained: $(grep -c 'status=sent' "$W/pf/postfix.log" || true) status=sent for $accepted accepted"
python3 -c 'import urllib.request,sys; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
    "http://127.0.0.1:$XPORT/metrics" >"$W/metrics.txt" || true
vmhwm=$(proc_kib "$MPID" VmHWM)

date_s=$(date -u '+%Y-%m-%d %H:%M UTC')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
rc=0
report=$(python3 "$REPO/bench/soak/verify.py" --work "$W" --count "$count" --margin "$margin" \
    --date "$date_s" --machine "$(nproc) cores ($cpu_model)" --vmhwm-kib "$vmhwm" \
    --command "bench/soak/soak.sh --count $count --corpus $corpus_n --sessions $sessions --clamd-down $down --margin $margin") || rc=$?
printf '\n%s\n' "$report"
if [[ -n $results ]]; then
    printf '%s\n' "$report" | python3 "$PB/results-section.py" "$results" soak
    say "wrote the soak section of $results"
fi
exit "$rc"
