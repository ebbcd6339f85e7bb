#!/bin/sh
# Speed and memory of `congvu-milter report` (and `trace`) on a generated year of
# audit records for a province (bench/tools/gen-audit.rs).
#
#   bench/report.sh                  5,000,000 records (about 3 GB), a few minutes
#   RECORDS=50000000 bench/report.sh a full year (about 30 GB of log): on demand
#   GZ_RECORDS=16000000 bench/report.sh   also a ~1 GB gzip file (default: gzip of
#                                    the RECORDS file)
#
# Prints MB/s of log (uncompressed bytes) per second of CPU and of wall time, and
# peak RSS (GNU time). Needs gzip and /usr/bin/time; writes into a temporary
# directory ($TMPDIR) which it removes.
set -eu
cd "$(dirname "$0")/.."
RECORDS=${RECORDS:-5000000}
GZ_RECORDS=${GZ_RECORDS:-}
cargo build --release --quiet --bin congvu-milter --example gen-audit
bin=target/release/congvu-milter
gen=target/release/examples/gen-audit
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure LABEL BYTES COMMAND...: runs COMMAND under GNU time, prints the figures.
measure() {
    label=$1 bytes=$2
    shift 2
    /usr/bin/time -f '%e %U %S %M' -o "$work/time" "$@" >"$work/out" 2>"$work/err"
    read -r wall user sys rss_kb <"$work/time"
    awk -v l="$label" -v b="$bytes" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss_kb" 'BEGIN {
        cpu = u + s; if (cpu < 0.01) cpu = 0.01; if (w < 0.01) w = 0.01
        printf "%-34s %8.0f MB  %7.2f s wall  %7.2f s cpu  %6.0f MB/s cpu  %6.0f MB/s wall  peak RSS %5.0f MB\n",
            l, b / 1e6, w, cpu, b / 1e6 / cpu, b / 1e6 / w, r / 1024 }'
}

echo "generating $RECORDS records..."
"$gen" "$RECORDS" >"$work/audit.jsonl"
size=$(stat -c %s "$work/audit.jsonl")

measure "report --by agency (csv)" "$size" "$bin" report --log "$work/audit.jsonl" --format csv
tail -n 1 "$work/err"
measure "report --by day --repeat 3" "$size" "$bin" report --log "$work/audit.jsonl" --by day --repeat 3 --format json
measure "report --by mailbox (text)" "$size" "$bin" report --log "$work/audit.jsonl" --by mailbox
measure "trace --name 'so_lieu*.xlsx'" "$size" "$bin" trace --log "$work/audit.jsonl" --name 'so_lieu*.xlsx' --format json
measure "report --log - (from cat)" "$size" sh -c "cat '$work/audit.jsonl' | '$bin' report --log - --format csv"
# Generated on the fly: the generator is the slower side, so this is its speed.
measure "gen-audit | report --log -" "$size" sh -c "'$gen' $RECORDS | '$bin' report --log - --format csv"

if [ -n "$GZ_RECORDS" ]; then
    echo "generating $GZ_RECORDS records into gzip..."
    "$gen" "$GZ_RECORDS" | gzip -6 >"$work/audit.jsonl.1.gz"
    rm -f "$work/audit.jsonl"
else
    gzip -6 -c "$work/audit.jsonl" >"$work/audit.jsonl.1.gz"
fi
gz_plain=$(gzip -l "$work/audit.jsonl.1.gz" | awk 'NR == 2 { print $2 }')
gz_size=$(stat -c %s "$work/audit.jsonl.1.gz")
# gzip -l keeps the size modulo 4 GiB: count the bytes when that may be wrong.
if [ "$gz_plain" -lt "$gz_size" ] || [ "$gz_size" -gt 400000000 ]; then
    gz_plain=$(gzip -dc "$work/audit.jsonl.1.gz" | wc -c)
fi
echo "gzip file: $((gz_size / 1000000)) MB compressed, $((gz_plain / 1000000)) MB of log"
measure "report on gzip (csv)" "$gz_plain" "$bin" report --log "$work/audit.jsonl.1.gz" --format csv
measure "gzip -dc (for comparison)" "$gz_plain" sh -c "gzip -dc '$work/audit.jsonl.1.gz' >/dev/null"
