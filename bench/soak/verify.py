#!/usr/bin/env python3
"""Checks a soak run (bench/soak/soak.sh) and prints its report as Markdown.

Usage: verify.py --work DIR --count N [--margin 15] [--date ..] [--machine ..]
                 [--vmhwm-kib K] [--command ..]

Reads DIR/send/results.jsonl (every SMTP attempt, from blast.py), DIR/events.tsv,
DIR/rss.tsv, DIR/pf/sink/* (one file per delivered message), DIR/metrics.txt and
DIR/corpus/manifest.json. Exit 0 when every check passes.
"""
import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--margin", type=float, default=15)
    ap.add_argument("--date", default="")
    ap.add_argument("--machine", default="")
    ap.add_argument("--vmhwm-kib", type=int, default=0)
    ap.add_argument("--command", default="bench/soak/soak.sh")
    a = ap.parse_args()
    w = Path(a.work)

    manifest = json.loads((w / "corpus" / "manifest.json").read_text())
    attempts = defaultdict(list)
    for line in open(w / "send" / "results.jsonl"):
        r = json.loads(line)
        attempts[r["id"]].append(r)
    for v in attempts.values():
        v.sort(key=lambda r: r["t1"])

    events = []
    for line in open(w / "events.tsv"):
        t, what = line.rstrip("\n").split("\t", 1)
        events.append((float(t), what))
    t_start = events[0][0]
    t_down = next((t for t, e in events if e.startswith("clamd stop")), None)
    t_up = next((t for t, e in events if e.startswith("clamd up")), None)

    # What reached the sink.
    sink = Counter()
    scanned = Counter()
    for f in (w / "pf" / "sink").iterdir():
        head = f.open("rb").read(16384).decode("latin-1")
        m = re.search(r"^X-Soak-Id: (\S+)", head, re.M)
        if m:
            sink[m.group(1)] += 1
        m = re.search(r"^X-Virus-Scanned: (.*?)\r?$", head, re.M)
        scanned[m.group(1) if m else "(none)"] += 1

    def cls(code):
        return "2xx" if 200 <= code < 300 else "4xx" if 400 <= code < 500 else "5xx" if 500 <= code < 600 else "none"

    outcome = Counter()
    lost, wrong = [], []
    undelivered_2xx, unacked = [], []
    n_ids = a.count
    for k in range(n_ids):
        mid = f"soak-{k}"
        att = attempts.get(mid, [])
        classes = [cls(r["code"]) for r in att]
        if not att:
            lost.append((mid, "never sent"))
            continue
        final = classes[-1]
        deferred = any(c in ("4xx", "none") for c in classes[:-1])
        if final == "2xx":
            outcome["deferred, then delivered" if deferred else "delivered"] += 1
            if sink[mid] == 0:
                undelivered_2xx.append(mid)
        elif final == "5xx":
            outcome["deferred, then rejected (5xx)" if deferred else "rejected (5xx)"] += 1
            if sink[mid]:
                unacked.append(mid)
        else:
            lost.append((mid, f"last reply {att[-1]['code']} {att[-1]['reply'][:80]}"))
        expect = manifest[k % len(manifest)]["expect"]
        if (expect == "accept" and final != "2xx") or (expect.startswith("reject") and final != "5xx"):
            wrong.append((mid, manifest[k % len(manifest)]["file"], att[-1]["code"], att[-1]["reply"][:100]))
    dups = sum(1 for v in sink.values() if v > 1)

    # 4xx outside the clamd-down window.
    all_att = [r for v in attempts.values() for r in v]
    t4 = [r for r in all_att if cls(r["code"]) == "4xx"]
    lo = (t_down - 1) if t_down else None
    hi = (t_up + a.margin) if t_up else None
    outside = [r for r in t4 if lo is None or not (lo <= r["t1"] <= hi)]
    none_replies = [r for r in all_att if cls(r["code"]) == "none"]
    first4 = min((r["t1"] for r in t4), default=None)
    last4 = max((r["t1"] for r in t4), default=None)
    reasons4 = Counter(re.sub(r"\d", "#", r["reply"][:60]) for r in t4)

    # RSS.
    rss = []
    heap = {}  # sample time -> heap KiB in use (-1: not read)
    for line in list(open(w / "rss.tsv"))[1:]:
        t, p, kib, *h = line.split()
        rss.append((float(t), int(p), int(kib)))
        heap[float(t)] = int(h[0]) if h else -1
    # The settled reference (soak.sh pauses the sender at 1,000 messages), or, in a
    # run made before it existed, the first sample past 1,000 under load.
    ref = w / "rss-ref.tsv"
    if ref.exists():
        t, p, kib, *h = open(ref).read().split()
        r1000, settled = (float(t), int(p), int(kib)), True
        heap[float(t)] = int(h[0]) if h else -1
    else:
        r1000 = next(((t, p, k) for t, p, k in rss if p >= 1000), None)
        settled = False
    rend = rss[-1]
    rmax = max(rss, key=lambda x: x[2])
    # The check is for growth (a leak, or memory kept after busy moments): the end
    # may be lower than the reference (the paused sessions at the reference hold
    # their buffers; at the end they are closed).
    rss_ok = r1000 is not None and rend[2] - r1000[2] <= 0.10 * r1000[2]

    # Reloads.
    metrics = (w / "metrics.txt").read_text() if (w / "metrics.txt").exists() else ""
    reload_ok = sum(float(m.group(1)) for m in re.finditer(r'^congvu_milter_policy_reloads_total\{[^}]*result="success"[^}]*\} (\S+)', metrics, re.M))
    reload_err = sum(float(m.group(1)) for m in re.finditer(r'^congvu_milter_policy_reloads_total\{[^}]*result="(?!success)[^"]*"[^}]*\} (\S+)', metrics, re.M))
    msgs_metric = {m.group(1): float(m.group(2)) for m in re.finditer(r'^congvu_milter_messages_total\{action="([^"]+)"\} (\S+)', metrics, re.M)}
    policies_seen = sorted(v for v in scanned if "policy" in v)

    t_end = max(r["t1"] for r in all_att)
    checks = [
        ("zero lost: every message delivered, rejected (5xx), or deferred and then delivered/rejected",
         not lost and not undelivered_2xx),
        (f"4xx only while clamd was down (stop - 1 s .. PING again + {a.margin:g} s)", t_down is not None and not outside),
        ("every message got the expected kind of verdict (documents delivered, violations refused)", not wrong),
        ("milter RSS at the end at most 10 % above its RSS after the first 1,000 messages", rss_ok),
        ("both policy reloads succeeded and took effect on delivered mail",
         reload_ok >= 2 and reload_err == 0 and len(policies_seen) >= 3),
    ]
    ok = all(c for _, c in checks)

    def ts(t):
        return f"{t - t_start:7.1f} s" if t is not None else "-"

    o = []
    o.append("## Soak: Postfix + congvu-milter + clamd, clamd restarted once, policy reloaded twice")
    o.append("")
    o.append(f"Produced by `sudo {a.command}`; measured {a.date} on {a.machine}, Debian 12.")
    o.append(f"**{'PASS' if ok else 'FAIL'}**.")
    o.append("")
    o.append("| check | result |")
    o.append("|---|---|")
    for what, c in checks:
        o.append(f"| {what} | {'pass' if c else '**FAIL**'} |")
    o.append("")
    o.append(f"Messages: {n_ids} distinct (X-Soak-Id), {len(all_att)} SMTP attempts in {t_end - t_start:.0f} s "
             f"({n_ids / (t_end - t_start):.1f} msg/s overall, including the clamd outage and the retries).")
    o.append("")
    o.append("| outcome | messages |")
    o.append("|---|---|")
    for k2 in ("delivered", "deferred, then delivered", "rejected (5xx)", "deferred, then rejected (5xx)"):
        o.append(f"| {k2} | {outcome[k2]} |")
    o.append(f"| lost (no final answer, or 2xx but not in the sink) | {len(lost) + len(undelivered_2xx)} |")
    o.append("")
    o.append(f"Sink: {sum(sink.values())} files, {len(sink)} distinct ids, {dups} ids more than once; "
             f"{len(unacked)} ids in the sink although their last reply was 5xx. "
             f"Attempts without any SMTP answer (connection errors, retried at once): {len(none_replies)}.")
    o.append("")
    o.append("Timeline (seconds from the start):")
    o.append("")
    for t, e in events:
        o.append(f"- {ts(t)}  {e}")
    o.append("")
    o.append(f"4xx replies: {len(t4)}, first at {ts(first4)}, last at {ts(last4)}; clamd down from {ts(t_down)} "
             f"to {ts(t_up)} (answers PING); outside the window: {len(outside)}.")
    for text, n in reasons4.most_common(3):
        o.append(f"  - {n} x `{text}`")
    for r in outside[:5]:
        o.append(f"  - outside: {r['id']} at {ts(r['t1'])}: {r['code']} {r['reply'][:100]}")
    o.append("")
    if r1000:
        o.append(f"Milter RSS (VmRSS, {len(rss)} samples every 2 s): {r1000[2] / 1024:.1f} MiB after the first "
                 f"1,000 messages ({'settled, sender paused at' if settled else 'under load, sample at'} {r1000[1]}), "
                 f"{rend[2] / 1024:.1f} MiB at the end after the queue drain "
                 f"({100 * (rend[2] - r1000[2]) / r1000[2]:+.1f} %), highest sample {rmax[2] / 1024:.1f} MiB "
                 f"at {rmax[1]} messages; VmHWM {a.vmhwm_kib / 1024:.1f} MiB.")
        h0, h1 = heap.get(r1000[0], -1), heap.get(rend[0], -1)
        if h0 >= 0 and h1 >= 0:
            o.append("")
            o.append(f"Heap bytes in use (congvu_milter_heap_bytes, counted at the allocator) at the same two "
                     f"moments: {h0 / 1024:.1f} MiB and {h1 / 1024:.1f} MiB ({h1 - h0:+d} KiB); the rest of RSS is "
                     "code, stacks and memory the allocator keeps for reuse.")
        o.append("")
        traj, step = [], max(1, n_ids // 10)
        for i in range(1, 11):
            s = next(((t, p, k) for t, p, k in rss if p >= i * step), None)
            if s:
                traj.append(f"{s[1]}: {s[2] / 1024:.1f}")
        o.append("RSS (MiB) by messages sent (first pass): " + ", ".join(traj) +
                 f"; after the retries and the queue drain: {rend[2] / 1024:.1f}.")
    o.append("")
    o.append("X-Virus-Scanned on delivered mail: " + "; ".join(f"`{k2}` {n}" for k2, n in sorted(scanned.items())) + ".")
    o.append("")
    o.append(f"Milter metrics at the end: policy_reloads_total ok {reload_ok:g}, failed {reload_err:g}; "
             "messages_total " + ", ".join(f"{k2} {v:g}" for k2, v in sorted(msgs_metric.items())) + ".")
    if lost or undelivered_2xx or wrong:
        o.append("")
        o.append("Problems (first 10):")
        for x in (lost + [(m, "2xx but not in the sink") for m in undelivered_2xx] + wrong)[:10]:
            o.append(f"- {x}")
    print("\n".join(o))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
