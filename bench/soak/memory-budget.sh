#!/usr/bin/env bash
# Memory bound: 100 concurrent 20 MB messages through a real Postfix (100 parallel
# SMTP sessions) into congvu-milter with [limits] max_buffered_bytes = 512 MiB
# (max_message_size 25 MiB, as shipped) and a real clamd.
#
#   sudo bench/soak/memory-budget.sh [--sessions 100] [--size-mb 20]
#        [--budget "512 MiB"] [--work /tmp/congvu-membudget]
#        [--results bench/soak/RESULTS.md | --no-results] [--port-base 29000]
#
# 1. Fixed overhead: the milter is started, VmRSS idle is read, ONE 20 MB message is
#    sent through Postfix, and VmHWM (peak RSS since start) is read: that peak is
#    the overhead of the process plus one message in flight.
# 2. The milter is restarted (fresh VmHWM) and 100 copies of the message (each its
#    own X-Soak-Id) are sent at once over 100 SMTP sessions; VmRSS is sampled every
#    0.2 s and VmHWM read at the end.
# Checks: VmHWM <= budget + the overhead of step 1; every message got 2xx or 4xx
# (none 5xx, none without an answer); every 2xx was delivered (Postfix logged
# status=sent). The deferred ones are then re-sent (as the sending MTA would)
# until accepted, to show that none is lost.
# The message: a short text part and one PDF-like attachment of ~14.6 MB
# (base64 ~19.6 MB; under the 15 MiB attachment limit, so no 5xx by policy).
set -euo pipefail

lab_name=memory-budget.sh
REPO=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
PB=$REPO/bench/postfix
# shellcheck source=../postfix/peers.sh
source "$PB/peers.sh"

sessions=100 size_mb=20 budget="512 MiB"
BENCH_WORK=/tmp/congvu-membudget results=$REPO/bench/soak/RESULTS.md base=29000
while (($#)); do
    case $1 in
    --sessions) sessions=$2 && shift ;;
    --size-mb) size_mb=$2 && shift ;;
    --budget) budget=$2 && shift ;;
    --work) BENCH_WORK=$2 && shift ;;
    --results) results=$2 && shift ;;
    --no-results) results='' ;;
    --port-base) base=$2 && shift ;;
    -h | --help) sed -n '2,22s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
need_root "Postfix's master and the private daemons"
W=$BENCH_WORK
SMTP=$((base + 25)) SINK=$((base + 26)) MPORT=$((base + 91)) XPORT=$((base + 81))
budget_bytes=$(python3 -c 'import re,sys
m = re.fullmatch(r"\s*(\d+)\s*(MiB|GiB|MB|GB)?\s*", sys.argv[1]) or sys.exit("bad --budget")
print(int(m.group(1)) * {"MiB": 2**20, "GiB": 2**30, "MB": 10**6, "GB": 10**9, None: 1}[m.group(2)])' "$budget")

stop_all() {
    [[ -n ${sampler_pid:-} ]] && kill "$sampler_pid" 2>/dev/null || true
    bash "$LAB/postfix.sh" stop "$W/pf" 2>/dev/null || true
    congvu_stop "$W/milter"
    bash "$LAB/clamd.sh" stop "$W/clamd" 2>/dev/null || true
}
rm -rf "$W/pf" "$W/milter" "$W/one" "$W/many" "$W/msg"
mkdir -p "$W/milter" "$W/one" "$W/many" "$W/msg"
chmod 755 "$W"
trap stop_all EXIT
trap 'exit 130' INT TERM

bench_install
bench_build

python3 - "$W/msg" "$size_mb" <<'PY'
import random, sys
from email.message import EmailMessage
from email.policy import SMTP
out, mb = sys.argv[1], float(sys.argv[2])
rng = random.Random(20)
m = EmailMessage()
m["From"] = "Nguoi gui <sender@example.org>"
m["To"] = "nguoidung@bacgiang.gov.vn"
m["Subject"] = "Ban scan ho so (lon)"
m["Date"] = "Mon, 03 Mar 2025 08:00:00 +0700"
m["Message-ID"] = "<membudget@example.org>"
m.set_content("Gui kem ban scan ho so.\n")
# base64 with CRLF: 4/3 x 78/76; aim at mb x 10^6 bytes for the whole message.
size = int((mb * 1_000_000 - 1200) * 3 / 4 * 76 / 78)
m.add_attachment(b"%PDF-1.7\n" + rng.randbytes(size - 9), maintype="application", subtype="pdf", filename="ho-so-scan.pdf")
data = m.as_bytes(policy=SMTP)
open(f"{out}/0000-large.eml", "wb").write(data)
print(f"memory-budget.sh: message of {len(data)} bytes ({len(data) / 2**20:.1f} MiB), attachment {size} bytes decoded")
PY

bash "$LAB/clamd.sh" start "$W/clamd" --threads 8 --stream-max 30M
SOCK=$(<"$W/clamd/socket")
POLICY=$W/policy.toml
congvu_policy "$POLICY" "$MPORT" "$XPORT" "$SOCK" true "limits.max_buffered_bytes=\"$budget\"" \
    'limits.max_message_size="25 MiB"'
bash "$LAB/postfix.sh" sink "$W/pf" --port "$SINK" --discard --backlog 512
bash "$LAB/postfix.sh" start "$W/pf" --port "$SMTP" --sink-port "$SINK" --milter "inet:127.0.0.1:$MPORT" \
    --main "default_process_limit = $((sessions + 50))" \
    --main 'smtpd_client_connection_count_limit = 0' \
    --main 'smtpd_client_connection_rate_limit = 0' \
    --main "smtp_destination_concurrency_limit = $sessions" \
    --main 'default_destination_concurrency_limit = 100'

sent() { grep -c 'status=sent' "$W/pf/postfix.log" || true; }
wait_sent() { # N
    local i
    for ((i = 0; i < 1200; i++)); do
        (($(sent) >= $1)) && return 0
        sleep 0.25
    done
    return 1
}

# 1. Overhead: idle + one message.
congvu_start "$W/milter" "$POLICY" "$MPORT" "$XPORT"
MPID=$(<"$W/milter/milter.pid")
sleep 1
idle_rss=$(proc_kib "$MPID" VmRSS)
python3 "$PB/blast.py" "$W/msg" --port "$SMTP" --sessions 1 --count 1 --id-header X-Soak-Id --id-prefix one \
    --summary "$W/one/summary.json" --results "$W/one/results.jsonl"
wait_sent 1 || die "the single message was not delivered"
one_hwm=$(proc_kib "$MPID" VmHWM)
one_rss=$(proc_kib "$MPID" VmRSS)
say "idle VmRSS $((idle_rss / 1024)) MiB; after one message VmHWM $((one_hwm / 1024)) MiB, VmRSS $((one_rss / 1024)) MiB"
congvu_stop "$W/milter"
base_sent=$(sent)

# 2. 100 at once, on a fresh milter process.
congvu_start "$W/milter" "$POLICY" "$MPORT" "$XPORT"
MPID=$(<"$W/milter/milter.pid")
sleep 1
idle2_rss=$(proc_kib "$MPID" VmRSS)
: >"$W/many/rss.tsv"
(
    while kill -0 "$MPID" 2>/dev/null; do
        printf '%s\t%s\t%s\n' "$(date +%s.%N)" "$(proc_kib "$MPID" VmRSS)" \
            "$(curl -s "http://127.0.0.1:$XPORT/metrics" 2>/dev/null | awk '/^congvu_milter_buffered_bytes / { print $2 }' || true)"
        sleep 0.2
    done
) >>"$W/many/rss.tsv" & # append: the burst-end marker is appended too
sampler_pid=$!
python3 "$PB/blast.py" "$W/msg" --port "$SMTP" --sessions "$sessions" --count "$sessions" --threads \
    --id-header X-Soak-Id --id-prefix many --summary "$W/many/summary.json" --results "$W/many/results.jsonl"
first=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["first_pass"]; print(s["2xx"], s["4xx"], s["5xx"], s["none"])' "$W/many/summary.json")
read -r n2 n4 n5 n0 <<<"$first"
wait_sent $((base_sent + n2)) || say "warning: not all accepted messages were delivered"
delivered_first=$(($(sent) - base_sent))
hwm=$(proc_kib "$MPID" VmHWM)
rss_after_burst=$(proc_kib "$MPID" VmRSS)
printf 'burst-end\n' >>"$W/many/rss.tsv"
curl -s "http://127.0.0.1:$XPORT/metrics" >"$W/many/metrics.txt" || true
deferrals=$(awk '/^congvu_milter_memory_budget_deferrals_total / { print $2 }' "$W/many/metrics.txt")

# 3. The deferred ones, re-sent until accepted (as the sending MTA's queue would).
retry_note="none deferred"
if ((n4 > 0)); then
    python3 "$PB/blast.py" "$W/msg" --port "$SMTP" --sessions "$n4" --count "$n4" --threads \
        --id-header X-Soak-Id --id-prefix retry --retry-deferred --retry-delay 3 \
        --summary "$W/many/retry-summary.json" --results "$W/many/retry-results.jsonl" >"$W/many/retry.out"
    cat "$W/many/retry.out"
    r2=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["final"]; print(s["2xx"], s["4xx"], s["5xx"], s["none"])' "$W/many/retry-summary.json")
    read -r rr2 rr4 rr5 rr0 <<<"$r2"
    wait_sent $((base_sent + n2 + rr2)) || say "warning: not all re-sent messages were delivered"
    retry_note="the $n4 deferred ones re-sent (same message, fresh sessions, retried every 3 s until accepted): 2xx $rr2, still 4xx $rr4, 5xx $rr5, no answer $rr0; delivered in all: $(($(sent) - base_sent)) of $sessions"
fi
hwm_end=$(proc_kib "$MPID" VmHWM)
sleep 2
rss_idle_end=$(proc_kib "$MPID" VmRSS)
kill "$sampler_pid" 2>/dev/null || true
sampler_pid=''

date_s=$(date -u '+%Y-%m-%d %H:%M UTC')
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
msg_bytes=$(stat -c %s "$W/msg/0000-large.eml")
report=$(python3 - "$W/many/rss.tsv" "$budget_bytes" "$idle_rss" "$one_hwm" "$one_rss" "$idle2_rss" "$hwm" "$hwm_end" \
    "$n2" "$n4" "$n5" "$n0" "$delivered_first" "${deferrals:-?}" "$sessions" "$msg_bytes" "$budget" \
    "$date_s" "$(nproc) cores ($cpu_model)" "$retry_note" "$rss_after_burst" "$rss_idle_end" <<'PY'
import sys
(rssf, budget, idle, one_hwm, one_rss, idle2, hwm, hwm_end, n2, n4, n5, n0, deliv, defer, sessions, msg_bytes,
 budget_s, date_s, machine, retry_note, rss_burst_end, rss_idle_end) = sys.argv[1:]
rss_burst_end, rss_idle_end = int(rss_burst_end), int(rss_idle_end)
budget, idle, one_hwm, one_rss, idle2, hwm, hwm_end = map(int, (budget, idle, one_hwm, one_rss, idle2, hwm, hwm_end))
n2, n4, n5, n0, deliv, sessions, msg_bytes = map(int, (n2, n4, n5, n0, deliv, sessions, msg_bytes))
samples, later = [], []
cur = samples
for line in open(rssf):
    if line.startswith("burst-end"):
        cur = later
        continue
    p = line.split("\t")
    if len(p) >= 2 and p[1].strip().isdigit():
        cur.append((int(p[1]), float(p[2]) if len(p) > 2 and p[2].strip() else 0.0))
peak_buf = max((b for _, b in samples), default=0)
limit_kib = budget // 1024 + one_hwm
mib = lambda k: f"{k / 1024:.1f} MiB"
checks = [
    (f"VmHWM <= budget ({budget_s}) + overhead (VmHWM with one message: {mib(one_hwm)}) = {mib(limit_kib)}", hwm <= limit_kib),
    ("every message got 2xx or 4xx: none 5xx, none without an answer", n5 == 0 and n0 == 0 and n2 + n4 == sessions),
    ("every 2xx delivered (Postfix status=sent)", deliv >= n2),
]
ok = all(c for _, c in checks)
o = ["## Memory bound: 100 concurrent 20 MB messages, max_buffered_bytes = " + budget_s, "",
     f"Produced by `sudo bench/soak/memory-budget.sh`; measured {date_s} on {machine}, Debian 12. "
     f"**{'PASS' if ok else 'FAIL'}**.", "",
     "| check | result |", "|---|---|"]
o += [f"| {w} | {'pass' if c else '**FAIL**'} |" for w, c in checks]
o += ["",
      f"Message: {msg_bytes} bytes ({msg_bytes / 2**20:.1f} MiB), one ~14.6 MB attachment; {sessions} SMTP sessions "
      f"through Postfix (smtpd process limit raised), congvu-milter with clamd (attachments scanned).", "",
      f"- Fixed overhead: VmRSS idle {mib(idle)}; after one message alone VmHWM {mib(one_hwm)} (VmRSS after it {mib(one_rss)}).",
      f"- {sessions} at once (fresh process, idle {mib(idle2)}): VmHWM {mib(hwm)} "
      f"= {(hwm - idle2) / 1024:.1f} MiB above idle, {hwm / limit_kib:.2f} of budget + overhead; highest VmRSS sample "
      f"{mib(max((r for r, _ in samples), default=0))}; highest buffered_bytes metric sample {peak_buf / 2**20:.1f} MiB.",
      f"- Replies: 2xx {n2}, 4xx {n4} (memory_budget_deferrals_total {defer}), 5xx {n5}, no answer {n0}; "
      f"delivered {deliv} of the {n2} accepted.",
      f"- VmRSS right after the burst (all answered, accepted ones delivered): {mib(rss_burst_end)}.",
      f"- Retry: {retry_note}. During the retries: highest VmRSS sample {mib(max((r for r, _ in later), default=0))}, "
      f"highest buffered_bytes sample {max((b for _, b in later), default=0) / 2**20:.1f} MiB; VmHWM after the retries "
      f"{mib(hwm_end)}; VmRSS idle at the end {mib(rss_idle_end)}."]
print("\n".join(o))
sys.exit(0 if ok else 1)
PY
) || rc=$?
printf '\n%s\n' "$report"
if [[ -n $results ]]; then
    printf '%s\n' "$report" | python3 "$PB/results-section.py" "$results" memory-budget
    say "wrote the memory-budget section of $results"
fi
exit "${rc:-0}"
