#!/usr/bin/env python3
"""CPU seconds per MB of `congvu-milter scan` on hostile messages and on the
bench mix; the measuring half of bench/hostile-cpu.sh (which builds, writes the
inputs and the policy, then calls this).

    bench/hostile-cpu.py --policy P --mix DIR --hostile DIR [--runs N]
        [--copies K] [--baseline BIN] BIN

Each figure is the CPU time (user + system, from wait4, so not limited by the
10 ms ticks of `time`) of one `scan` process, divided by the megabytes it read.
A hostile message is given K times to one process so that starting the process
and loading the policy weigh little; the mix is given once (100 files, 52.9 MB).
Every run goes through every input with every build in turn, so old and new
builds see the same load on a shared machine; the median of the runs is
reported. The verdict column is the new build's first line of output.
"""

import argparse
import os
import statistics
import subprocess
import sys

MB = 1_000_000


def cpu_of(cmd):
    """CPU seconds of a command, its first stdout line and its exit status."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    first = out.decode("utf-8", "replace").split("\n", 1)[0]
    return usage.ru_utime + usage.ru_stime, first, proc.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--baseline")
    ap.add_argument("--policy", required=True)
    ap.add_argument("--mix", required=True)
    ap.add_argument("--hostile", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--copies", type=int, default=5)
    args = ap.parse_args()

    builds = [("after", args.binary)]
    if args.baseline:
        builds.insert(0, ("before", args.baseline))

    mix = sorted(os.path.join(args.mix, f) for f in os.listdir(args.mix) if f.endswith(".eml"))
    inputs = [("bench mix", mix)]
    for f in sorted(os.listdir(args.hostile)):
        if f.endswith(".eml"):
            inputs.append((f[:-4], [os.path.join(args.hostile, f)] * args.copies))

    seconds = {}  # (input, build) -> [cpu s per MB]
    verdicts = {}
    for run in range(args.runs):
        for name, files in inputs:
            size = sum(os.path.getsize(f) for f in files) / MB
            for build, binary in builds:
                cpu, first, _ = cpu_of([binary, "scan", "--config", args.policy] + files)
                seconds.setdefault((name, build), []).append(cpu / size)
                if build == "after" and name != "bench mix":
                    verdicts[name] = first.split(": ", 1)[-1][:110]
        print(f"run {run + 1} of {args.runs} done", file=sys.stderr)

    median = {k: statistics.median(v) for k, v in seconds.items()}
    mix_after = median[("bench mix", "after")]
    header = f"{'input':<20} {'MB':>6}"
    if args.baseline:
        header += f" {'before s/MB':>12}"
    header += f" {'after s/MB':>11}"
    if args.baseline:
        header += f" {'before/after':>12}"
    header += f" {'after/mix':>9}  verdict (after)"
    print(header)
    worst = ("", 0.0)
    for name, files in inputs:
        size = os.path.getsize(files[0]) / MB if name != "bench mix" else sum(
            os.path.getsize(f) for f in files) / MB
        line = f"{name:<20} {size:>6.2f}"
        if args.baseline:
            line += f" {median[(name, 'before')]:>12.4f}"
        after = median[(name, "after")]
        line += f" {after:>11.4f}"
        if args.baseline:
            line += f" {median[(name, 'before')] / after:>11.1f}x"
        line += f" {after / mix_after:>8.1f}x  {verdicts.get(name, '')}"
        print(line)
        if name != "bench mix" and after > worst[1]:
            worst = (name, after)
    print(f"worst hostile input (after): {worst[0]}, {worst[1]:.4f} s/MB, "
          f"{worst[1] / mix_after:.1f}x the bench mix ({mix_after:.4f} s/MB); "
          f"medians of {args.runs} runs")


if __name__ == "__main__":
    main()
