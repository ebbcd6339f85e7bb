#!/usr/bin/env bash
# Memory bound under unpack-heavy mail: many messages at once, each holding a zip
# whose one deflated entry unpacks to 400 MiB (about 77 times its packed size:
# under every inspection limit), sent straight to congvu-milter by congvu-loadgen
# (the milter protocol as Postfix 3.7 speaks it; no Postfix, no root), ClamAV off
# so that only the milter's own memory is measured.
#
#   bench/soak/unpack-budget.sh [--messages 100] [--connections 100] [--entry-mib 400]
#        [--budget "512 MiB"] [--nested] [--baseline BINARY [--baseline-messages 6]]
#        [--work DIR] [--results bench/soak/RESULTS.md | --no-results]
#
# 1. Fixed overhead: a fresh milter, VmRSS idle, then ONE message; VmHWM (peak RSS
#    since start) is the process plus one message in flight.
# 2. A fresh milter, then --messages messages over --connections connections at
#    once; VmHWM at the end (congvu-loadgen resets it at the start).
# Check: VmHWM <= max_buffered_bytes + the overhead of step 1, and every message
# answered 2xx or 4xx (the ones the budget or the inspection turns deferred are
# what a sending MTA retries), none 5xx, no connection error.
# --nested puts the zip inside another zip (stored), so that every message must
# hold an archive whole (charged to the budget) as well as stream the entry.
# --baseline runs an older build the same way (step 2 only, --baseline-messages
# at once: an unbounded build held about 1 GB per message).
set -euo pipefail

REPO=$(readlink -f "$(dirname "$(readlink -f "$0")")/../..")
args="$*"
messages=100 connections=100 entry_mib=400 budget="512 MiB" nested=0 baseline='' baseline_messages=6
W=/tmp/congvu-unpack-budget results=$REPO/bench/soak/RESULTS.md
while (($#)); do
    case $1 in
    --messages) messages=$2 && shift ;;
    --connections) connections=$2 && shift ;;
    --entry-mib) entry_mib=$2 && shift ;;
    --budget) budget=$2 && shift ;;
    --nested) nested=1 ;;
    --baseline) baseline=$(readlink -f "$2") && shift ;;
    --baseline-messages) baseline_messages=$2 && shift ;;
    --work) W=$2 && shift ;;
    --results) results=$2 && shift ;;
    --no-results) results='' ;;
    -h | --help) sed -n '2,23s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) echo "unpack-budget.sh: unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done
say() { echo "unpack-budget.sh: $*" >&2; }
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cd "$REPO"
cargo build --release --bins --quiet
milter=$REPO/target/release/congvu-milter
loadgen=$REPO/target/release/congvu-loadgen
rm -rf "$W" && mkdir -p "$W/msg"
pid=''
stop_milter() {
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" && wait "$pid" 2>/dev/null || true
    fi
    pid=''
}
trap stop_milter EXIT

# The message (the same shape as bench/sample_data.rs big_entry_zip): one 1 MiB
# chunk of text deflated once with a full flush, its deflated bytes repeated.
python3 - "$W/msg/0000-unpack.eml" "$entry_mib" "$nested" <<'PY'
import base64, struct, sys, zlib
out, mib, nested = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
text = bytearray()
line = 0
while len(text) < 1 << 20:
    text += b"%06d Ban scan ho so luu tru, trang %d." % (line, line % 7)
    text += b" Noi dung da duoc kiem tra va dong dau." * 7 + b"\n"
    line += 1
text = bytes(text[: 1 << 20])
c = zlib.compressobj(6, zlib.DEFLATED, -15)
block = c.compress(text) + c.flush(zlib.Z_FULL_FLUSH)
data = block * mib + b"\x03\x00"
crc = 0
for _ in range(mib):
    crc = zlib.crc32(text, crc)

def one_entry_zip(name, method, crc, payload, size):
    n = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x5863, crc, len(payload), size, len(n), 0) + n
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x5863, crc, len(payload), size,
                          len(n), 0, 0, 0, 0, 0, 0) + n
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(payload), 0)
    return local + payload + central + end

zip_bytes = one_entry_zip("nhat-ky.txt", 8, crc, data, mib << 20)
if nested:
    zip_bytes = one_entry_zip("ho-so.zip", 0, zlib.crc32(zip_bytes), zip_bytes, len(zip_bytes))
b64 = base64.encodebytes(zip_bytes).replace(b"\n", b"\r\n")
msg = (b"From: Nguoi gui <sender@example.org>\r\nTo: nguoidung@bacgiang.gov.vn\r\nSubject: Ho so luu tru\r\n"
       b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\n\r\nGui kem ho so.\r\n--=_b\r\n"
       b"Content-Type: application/zip; name=\"ho-so.zip\"\r\nContent-Disposition: attachment; filename=\"ho-so.zip\"\r\n"
       b"Content-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--=_b--\r\n")
open(out, "wb").write(msg)
print(f"unpack-budget.sh: message {len(msg)} bytes, zip {len(zip_bytes)} bytes, entry {mib} MiB "
      f"(ratio {(mib << 20) / len(data):.0f}){', inside a stored zip' if nested else ''}", file=sys.stderr)
PY

port=$(free_port) mport=$(free_port)
cat >"$W/policy.toml" <<EOF
[milter]
listen = ["inet:127.0.0.1:$port"]
[metrics]
listen = "127.0.0.1:$mport"
[clamav]
enabled = false
[limits]
max_message_size = "25 MiB"
max_buffered_bytes = "$budget"
EOF

start_milter() { # BINARY LOG
    "$1" serve --config "$W/policy.toml" 2>>"$2" &
    pid=$!
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    say "the milter did not listen; see $2"
    exit 1
}

# 1. Overhead: idle, then one message.
start_milter "$milter" "$W/one.log"
sleep 1
idle=$(kib "$pid" VmRSS)
"$loadgen" --milter "127.0.0.1:$port" --dir "$W/msg" --connections 1 --messages 1 --json >"$W/one.json"
one_hwm=$(kib "$pid" VmHWM)
stop_milter

burst() { # BINARY LABEL MESSAGES
    start_milter "$1" "$W/$2.log"
    sleep 1
    local idle_burst
    idle_burst=$(kib "$pid" VmRSS)
    "$loadgen" --milter "127.0.0.1:$port" --dir "$W/msg" --connections "$(($3 < connections ? $3 : connections))" \
        --messages "$3" --per-connection 1 --pid "$pid" --timeout 600 --json >"$W/$2.json"
    echo "$idle_burst" >"$W/$2.idle"
    curl -s "http://127.0.0.1:$mport/metrics" >"$W/$2.metrics" || true
    stop_milter
}
burst "$milter" many "$messages"
[[ -n $baseline ]] && burst "$baseline" baseline "$baseline_messages"

budget_bytes=$(python3 -c 'import re,sys
m = re.fullmatch(r"\s*(\d+)\s*(MiB|GiB|MB|GB)?\s*", sys.argv[1]) or sys.exit("bad --budget")
print(int(m.group(1)) * {"MiB": 2**20, "GiB": 2**30, "MB": 10**6, "GB": 10**9, None: 1}[m.group(2)])' "$budget")
report=$(python3 - "$W" "$budget_bytes" "$budget" "$idle" "$one_hwm" "$messages" "$connections" "$entry_mib" \
    "$nested" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(nproc) cores ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo))" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$args" "$baseline" <<'PY'
import json, os, re, sys
(w, budget, budget_s, idle, one_hwm, messages, connections, entry_mib, nested, date_s, machine, load,
 args, baseline) = sys.argv[1:]
budget, idle, one_hwm, messages = int(budget), int(idle), int(one_hwm), int(messages)
mib = lambda k: f"{k / 1024:.1f} MiB"
limit_kib = budget // 1024 + one_hwm

def run(label):
    r = json.load(open(f"{w}/{label}.json"))
    metrics = open(f"{w}/{label}.metrics").read() if os.path.exists(f"{w}/{label}.metrics") else ""
    rule = lambda name: sum(float(v) for v in re.findall(
        r'^congvu_milter_verdicts_total\{[^}]*rule="' + name + r'"[^}]*\} (\S+)', metrics, re.M))
    return r, int(open(f"{w}/{label}.idle").read()), rule("memory_budget"), rule("inspection_queue")

r, idle_many, mem_deferred, queue_deferred = run("many")
hwm = r["milter"]["peak_rss_kib"]
checks = [
    (f"VmHWM <= budget ({budget_s}) + overhead (VmHWM with one message: {mib(one_hwm)}) = {mib(limit_kib)}",
     hwm <= limit_kib and r["milter"]["peak_rss_reset"]),
    ("every message answered 2xx or 4xx: none 5xx, no error",
     r["reject"] == 0 and r["other"] == 0 and r["errors"] == 0 and r["accept"] + r["tempfail"] == messages),
]
ok = all(c for _, c in checks)
shape = f"a zip inside a zip whose entry unpacks to {entry_mib} MiB" if nested == "1" else \
    f"a zip whose one entry unpacks to {entry_mib} MiB"
o = [f"## Memory bound, unpack-heavy: {messages} messages at once, each {shape}, max_buffered_bytes = {budget_s}", "",
     f"Produced by `bench/soak/unpack-budget.sh {args}`".rstrip() + f"; measured {date_s} on {machine}, "
     f"load average before the run {load}. **{'PASS' if ok else 'FAIL'}**.", "",
     "| check | result |", "|---|---|"]
o += [f"| {what} | {'pass' if c else '**FAIL**'} |" for what, c in checks]
o += ["",
      f"Message: {r['bytes'] // r['messages']} bytes; {messages} messages over {connections} milter connections "
      f"at once (congvu-loadgen, one message per connection), ClamAV off.", "",
      f"- Fixed overhead: VmRSS idle {mib(idle)}; VmHWM after one message alone {mib(one_hwm)}.",
      f"- {messages} at once (fresh process, idle {mib(idle_many)}): VmHWM {mib(hwm)} = "
      f"{hwm / limit_kib:.2f} of budget + overhead; highest sampled VmRSS {mib(r['milter']['sampled_max_rss_kib'])}; "
      f"milter CPU {r['milter']['cpu_seconds']:.1f} s over {r['seconds']:.1f} s.",
      f"- Replies: 2xx {r['accept']}, 4xx {r['tempfail']} (memory_budget {mem_deferred:.0f}, inspection_queue "
      f"{queue_deferred:.0f}), 5xx {r['reject']}, other {r['other']}, errors {r['errors']}; decision latency "
      f"p50 {r['latency_ms_p50'] / 1000:.1f} s, max {r['latency_ms_max'] / 1000:.1f} s."]
if os.path.exists(f"{w}/baseline.json"):
    b, idle_b, _, _ = run("baseline")
    o.append(f"- The baseline build (`{baseline}`), {b['messages']} of the same messages "
             f"at once: VmHWM {mib(b['milter']['peak_rss_kib'])} "
             f"({b['milter']['peak_rss_kib'] / limit_kib:.2f} of budget + overhead); replies 2xx {b['accept']}, "
             f"4xx {b['tempfail']}, 5xx {b['reject']}, errors {b['errors']}.")
print("\n".join(o))
sys.exit(0 if ok else 1)
PY
) || rc=$?
printf '\n%s\n' "$report"
if [[ -n $results ]]; then
    section=unpack-budget
    [[ $nested == 1 ]] && section=unpack-budget-nested
    printf '%s\n' "$report" | python3 "$REPO/bench/postfix/results-section.py" "$results" "$section"
    say "wrote the $section section of $results"
fi
exit "${rc:-0}"
