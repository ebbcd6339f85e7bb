#!/usr/bin/env bash
# Runs the fuzz targets: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds once (`cargo fuzz build --sanitizer none -O -a`: stable toolchain, no
# sanitizer, optimised, with debug assertions and overflow checks), then runs each
# target for SECONDS (default 600), JOBS at a time (default 2), on the corpus in
# fuzz/corpus/TARGET (not tracked: made here by fuzz/seed.sh, grown by the runs,
# gitignored). A panic, a single input running past TIMEOUT s (default 10)
# and an RSS past RSS_MB MiB (default 2048) all count as crashes; their inputs land
# in fuzz/artifacts/TARGET/ (gitignored). FORK=1 keeps going after a crash
# (libFuzzer -fork=1 -ignore_crashes=1 ...) to collect several in one run.
# The fixtures are (re)added to the corpus first (fuzz/seed.sh creates it when
# missing). At the end each corpus is minimised (libFuzzer -merge=1, what
# `cargo fuzz cmin` does) and files over CORPUS_MAX_FILE bytes (default 16 KiB)
# are dropped, which keeps it small (the larger seeds come back from seed.sh),
# and a summary table is printed and saved to fuzz/artifacts/summary-DATE.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

SECONDS_PER_TARGET=${1:-600}
shift || true
ALL=(milter_codec milter_session mime_walk archive_zip archive_7z archive_rar archive_libarchive inspect_file
     archive_tar archive_compress names tnef uuencode policy_toml forwarding
     carrier_pdf carrier_rtf carrier_html carrier_binhex cms archive_ole audit_log
     text_office text_pdf text_rtf)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
JOBS=${JOBS:-2}
TIMEOUT=${TIMEOUT:-10}
RSS_MB=${RSS_MB:-2048}
FORK=${FORK:-0}
MINIMIZE=${MINIMIZE:-1}
CORPUS_MAX_FILE=${CORPUS_MAX_FILE:-16384}

./seed.sh > /dev/null || exit 1

BUILD=(--sanitizer none -O -a)
cargo fuzz build "${BUILD[@]}" || exit 1
BIN=target/$(rustc -vV | sed -n 's/^host: //p')/release
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOGS=artifacts/logs-$STAMP
mkdir -p "$LOGS"

run_one() {
    local t=$1 start end
    mkdir -p "corpus/$t" "artifacts/$t"
    local before; before=$(ls "artifacts/$t" | wc -l)
    local opts=(-max_total_time="$SECONDS_PER_TARGET" -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB"
                -print_final_stats=1 -artifact_prefix="artifacts/$t/")
    [ "$FORK" = 1 ] && opts+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    start=$(date +%s)
    "$BIN/$t" "${opts[@]}" "corpus/$t" > "$LOGS/$t.log" 2>&1
    local rc=$?
    end=$(date +%s)
    local runs
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$t.log" | tail -1)
    # Fork mode prints progress lines "#N: cov: ..." and no final stats.
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$LOGS/$t.log" | tail -1 | tr -d '#')
    local after; after=$(ls "artifacts/$t" | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "$((end - start))" "${runs:-?}" "$((after - before))" "$rc" \
        > "$LOGS/$t.result"
    echo "done: $t ($((end - start)) s, runs ${runs:-?}, new artifacts $((after - before)), exit $rc)"
}

for t in "${TARGETS[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    echo "start: $t for $SECONDS_PER_TARGET s"
    run_one "$t" &
done
wait

if [ "$MINIMIZE" = 1 ]; then
    for t in "${TARGETS[@]}"; do
        new=corpus/$t.min
        rm -rf "$new"; mkdir -p "$new"
        "$BIN/$t" -merge=1 -timeout="$TIMEOUT" -rss_limit_mb="$RSS_MB" "$new" "corpus/$t" \
            > "$LOGS/$t.merge.log" 2>&1
        if [ -n "$(ls "$new")" ]; then rm -rf "corpus/$t"; mv "$new" "corpus/$t"; else rm -rf "$new"; fi
        find "corpus/$t" -type f -size +"$CORPUS_MAX_FILE"c -delete
    done
fi

{
    echo "fuzz run $STAMP on $(hostname) ($(nproc) cores), $SECONDS_PER_TARGET s per target," \
         "timeout $TIMEOUT s, rss limit $RSS_MB MiB, fork $FORK"
    printf '%-18s %8s %12s %8s %5s %7s\n' target seconds runs crashes exit corpus
    for t in "${TARGETS[@]}"; do
        IFS=$'\t' read -r name secs runs crashes rc < "$LOGS/$t.result"
        printf '%-18s %8s %12s %8s %5s %7s\n' "$name" "$secs" "$runs" "$crashes" "$rc" \
            "$(ls "corpus/$t" | wc -l)"
    done
    echo "corpus total: $(du -sh corpus | cut -f1)"
} | tee "artifacts/summary-$STAMP.txt"
