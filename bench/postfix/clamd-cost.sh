#!/usr/bin/env bash
# The milter's own cost on top of clamd (the ClamAV issue): the same
# attachment-bearing messages (make-mix.py --only-attachments: office documents,
# archives, large PDF-like files, violations; no plain-text mail)
#   s  scanned raw by `clamdscan --stream` alone, 8 clamdscan processes in parallel
#      (clamd decodes the MIME itself), no MTA
#   a  sent through Postfix alone (no scanning): the MTA's share
#   c  sent through Postfix + congvu-milter + clamd (decoded attachments, each
#      scanned on its own by INSTREAM)
#   d  sent through Postfix + clamav-milter + clamd (the raw message by INSTREAM)
# all against the same private clamd, 8 parallel SMTP sessions (blast.py), 3 runs
# each in one sitting, medians and ratios; plus CPU seconds per message of the
# filter process and of clamd. The milter's own cost is what c adds over a, set
# against s.
#
#   sudo bench/postfix/clamd-cost.sh [--runs 3] [--count 240] [--corpus 60]
#        [--results bench/postfix/RESULTS.md | --no-results] [--clamd-cache]
#
# It is run-peers.sh with configurations s,a,c,d and the attachments-only corpus;
# the figures go to the "clamd-cost" section of RESULTS.md. clamd runs with
# DisableCache yes (no clean-file cache), so that the 4 passes over the corpus all
# cost clamd the full scan, for every configuration; --clamd-cache keeps the cache.
set -euo pipefail
HERE=$(dirname "$(readlink -f "$0")")
runs=3 count=240 corpus=60 extra=(--clamd-no-cache)
while (($#)); do
    case $1 in
    --runs) runs=$2 && shift ;;
    --count) count=$2 && shift ;;
    --corpus) corpus=$2 && shift ;;
    --results) extra+=(--results "$2") && shift ;;
    --no-results) extra+=(--no-results) ;;
    --clamd-cache) extra=("${extra[@]/--clamd-no-cache/}") ;;
    -h | --help) sed -n '2,23s/^# \{0,1\}//p' "$0" && exit 0 ;;
    *) echo "clamd-cost.sh: unknown option $1" >&2 && exit 2 ;;
    esac
    shift
done
PRODUCED_BY="bench/postfix/clamd-cost.sh --runs $runs --count $count --corpus $corpus" \
    exec bash "$HERE/run-peers.sh" --configs s,a,c,d --runs "$runs" --count "$count" \
    --corpus "$corpus" --corpus-opts --only-attachments --section clamd-cost \
    --work /tmp/congvu-clamd-cost \
    --title "The milter's own cost on top of clamd: clamdscan --stream alone vs through congvu-milter vs clamav-milter" \
    "${extra[@]}"
