#!/bin/sh
# CPU per MB of `congvu-milter scan` on hostile messages (bench/hostile-mail.py)
# against the bench mix (bench/make-corpus.py), ClamAV off, the shipped policy
# otherwise. Prints one line per input: MB, CPU seconds per MB before (with
# BASELINE_REV) and after, their ratio, and the ratio to the bench mix.
#
#   bench/hostile-cpu.sh                          # this checkout only
#   BASELINE_REV=f11f4f13 bench/hostile-cpu.sh    # and an older commit, alternately
#
# Knobs: RUNS (3), COPIES (5: a hostile message is given this many times to one
# scan), SIZE (2000000 bytes per hostile message), ONLY (shapes, comma
# separated), WORK (a kept work dir; default a temp dir removed at the end),
# BASELINE=/path/to/congvu-milter (an already built older binary).
# The baseline is built with `git archive` into WORK/baseline, its own target dir.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
RUNS=${RUNS:-3}
COPIES=${COPIES:-5}
SIZE=${SIZE:-2000000}
ONLY=${ONLY:-}
if [ -n "${WORK:-}" ]; then
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
fi

cd "$root"
cargo build --release --quiet --bin congvu-milter
binary=$root/target/release/congvu-milter

baseline=${BASELINE:-}
if [ -z "$baseline" ] && [ -n "${BASELINE_REV:-}" ]; then
    rm -rf "$WORK/baseline"
    mkdir -p "$WORK/baseline"
    git archive "$BASELINE_REV" | tar -x -C "$WORK/baseline"
    (cd "$WORK/baseline" && CARGO_TARGET_DIR="$WORK/baseline/target" \
        cargo build --release --quiet --bin congvu-milter)
    baseline=$WORK/baseline/target/release/congvu-milter
fi

# The shipped policy with [clamav] enabled = false.
awk '/^\[/ { section = $0 }
     section == "[clamav]" && /^enabled *=/ { $0 = "enabled = false" }
     { print }' config/congvu-milter.toml > "$WORK/policy.toml"
"$binary" check-config --config "$WORK/policy.toml" > /dev/null

[ -d "$WORK/mix" ] || python3 bench/make-corpus.py "$WORK/mix" > /dev/null
rm -rf "$WORK/hostile"
python3 bench/hostile-mail.py "$WORK/hostile" --size "$SIZE" ${ONLY:+--only "$ONLY"} > /dev/null

echo "$(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC')"
python3 bench/hostile-cpu.py "$binary" ${baseline:+--baseline "$baseline"} \
    --policy "$WORK/policy.toml" --mix "$WORK/mix" --hostile "$WORK/hostile" \
    --runs "$RUNS" --copies "$COPIES"
