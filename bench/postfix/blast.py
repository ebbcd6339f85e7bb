#!/usr/bin/env python3
"""Sends a corpus of .eml files to an SMTP server over S parallel persistent sessions.

Usage: blast.py CORPUS_DIR --port 2625 [--sessions 8] [--count N] [--results FILE]
                [--id-header X-Soak-Id] [--id-prefix RUN] [--retry-deferred]
                [--retry-delay 5] [--retry-max-rounds 60] [--threads] [--quiet]

Message k (k = 0 .. count-1) is corpus file k mod len(corpus) (sorted names, or the
order of CORPUS_DIR/manifest.json); session s sends k = s, s+S, s+2S, ... over ONE
SMTP connection (reconnecting only when the server closes it). Each message is sent
unchanged apart from SMTP wire form (CRLF, dot-stuffing), prepared once per file, so
the client spends no time per message re-encoding megabytes. Envelope:
sender@example.org -> nguoidung@bacgiang.gov.vn unless the manifest says otherwise.

--id-header NAME prepends "NAME: PREFIX-k" to every message (soak: find each message
in the sink). --retry-deferred: after the run, messages that got a 4xx are sent again
(fresh sessions, every --retry-delay seconds) until each gets 2xx or 5xx, like a
sending MTA's queue; every attempt is recorded.

Sessions are processes (no GIL contention) unless --threads (one process; needed
for 100 sessions of 20 MB messages, which then share one copy of each file).

--results FILE: one JSON object per attempt:
  {"k", "file", "id", "session", "attempt", "t0", "t1", "code", "stage", "reply", "bytes",
   "data_end_ms"}
(t0/t1: wall-clock seconds; stage: connect/mail/rcpt/data/ok; data_end_ms: from the
final dot of DATA, handed to the kernel in the same write as the body, to the
server's reply, present when there was one). Summary on stdout (and as JSON with
--summary FILE): messages/s, MB/s, 2xx/4xx/5xx counts, percentiles of the whole
transaction's time (latency_ms) and of the final dot to the reply (data_end_ms). Exit 0 unless a message got no SMTP answer at all (network error that
could not be retried) after the run and the retries.
Python 3.11 standard library only.
"""

import argparse
import json
import multiprocessing as mp
import os
import re
import socket
import smtplib
import sys
import threading
import time
from pathlib import Path

DEF_SENDER = "sender@example.org"
DEF_RCPT = "nguoidung@bacgiang.gov.vn"


def wire(data: bytes) -> bytes:
    """CRLF line ends, dot-stuffed, ending with CRLF (the final '.' is added when sending)."""
    data = re.sub(rb"\r?\n", b"\r\n", data)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def load_corpus(d: Path):
    mf = d / "manifest.json"
    if mf.exists():
        entries = json.loads(mf.read_text())
    else:
        entries = [{"file": p.name} for p in sorted(d.glob("*.eml"))]
    out = []
    for e in entries:
        out.append((e["file"], wire((d / e["file"]).read_bytes()),
                    e.get("sender", DEF_SENDER), e.get("rcpt", DEF_RCPT)))
    if not out:
        raise SystemExit(f"blast.py: no .eml files in {d}")
    return out


def send_all(sock, parts):
    """Writes the parts in as few system calls as the kernel allows (one for a
    small message): the final dot leaves with the body, so that the client's own
    Nagle algorithm never holds it back waiting for an ACK of the body."""
    views = [memoryview(p) for p in parts if p]
    while views:
        n = sock.sendmsg(views)
        while n and views:
            if n >= len(views[0]):
                n -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][n:]
                n = 0


class Session:
    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.s = None

    def close(self):
        if self.s is not None:
            try:
                self.s.quit()
            except Exception:
                try:
                    self.s.close()
                except Exception:
                    pass
            self.s = None

    def send(self, sender, rcpt, prefix: bytes, body: bytes):
        """Returns (code, stage, reply). code 0 = no SMTP answer (network error).
        Sets self.t_dot to the time the final dot was handed to the kernel and
        self.t_reply to the time the reply to it was read (None if the message
        did not get that far)."""
        self.t_dot = self.t_reply = None
        stage = "connect"
        try:
            if self.s is None:
                self.s = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                self.s.ehlo("blast.example.org")
            stage = "mail"
            code, msg = self.s.mail(sender, [f"SIZE={len(prefix) + len(body)}"])
            if code != 250:
                self.s.rset()
                return code, stage, msg.decode(errors="replace")
            stage = "rcpt"
            code, msg = self.s.rcpt(rcpt)
            if code not in (250, 251):
                self.s.rset()
                return code, stage, msg.decode(errors="replace")
            stage = "data"
            self.s.putcmd("data")
            code, msg = self.s.getreply()
            if code != 354:
                self.s.rset()
                return code, stage, msg.decode(errors="replace")
            send_all(self.s.sock, (prefix, body, b".\r\n"))
            self.t_dot = time.time()
            code, msg = self.s.getreply()
            self.t_reply = time.time()
            if code == 421:
                self.close()
            return code, ("ok" if code == 250 else "data-end"), msg.decode(errors="replace")
        except smtplib.SMTPServerDisconnected as e:
            self.s = None
            return 0, stage, f"disconnected: {e}"
        except smtplib.SMTPResponseException as e:  # e.g. 421 on connect
            self.close()
            return e.smtp_code, stage, e.smtp_error.decode(errors="replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        except (OSError, smtplib.SMTPException) as e:
            try:
                if self.s is not None:
                    self.s.close()
            except Exception:
                pass
            self.s = None
            return 0, stage, f"{type(e).__name__}: {e}"


def worker(args, corpus, jobs, session_no, attempt, out_path, lock=None):
    """Sends jobs (list of k) over one session; writes JSON lines to out_path."""
    sess = Session(args.host, args.port, args.timeout)
    n = len(corpus)
    with open(out_path, "a", buffering=1) as out:
        for k in jobs:
            name, body, sender, rcpt = corpus[k % n]
            mid = f"{args.id_prefix}-{k}"
            prefix = f"{args.id_header}: {mid}\r\n".encode() if args.id_header else b""
            code = 0
            for tries in range(3):  # a network error (no answer) is retried at once
                t0 = time.time()
                code, stage, reply = sess.send(sender, rcpt, prefix, body)
                t1 = time.time()
                rec = {"k": k, "file": name, "id": mid, "session": session_no, "attempt": attempt,
                       "t0": round(t0, 4), "t1": round(t1, 4), "code": code, "stage": stage,
                       "reply": reply[:300], "bytes": len(prefix) + len(body)}
                if sess.t_reply is not None:
                    rec["data_end_ms"] = round(1000 * (sess.t_reply - sess.t_dot), 3)
                if lock:
                    with lock:
                        out.write(json.dumps(rec) + "\n")
                else:
                    out.write(json.dumps(rec) + "\n")
                if code != 0:
                    break
                time.sleep(0.2)
        sess.close()


def run_round(args, corpus, ks, attempt, outdir):
    """Sends messages ks over args.sessions parallel sessions; returns result files."""
    S = max(1, min(args.sessions, len(ks)))
    parts = [ks[s::S] for s in range(S)]
    paths = [outdir / f"a{attempt}-s{s}.jsonl" for s in range(S)]
    for p in paths:
        p.write_text("")
    if args.threads:
        ts = [threading.Thread(target=worker, args=(args, corpus, parts[s], s, attempt, paths[s])) for s in range(S)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        ctx = mp.get_context("fork")
        ps = [ctx.Process(target=worker, args=(args, corpus, parts[s], s, attempt, paths[s])) for s in range(S)]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
    return paths


def read_results(paths):
    recs = []
    for p in paths:
        with open(p) as f:
            recs.extend(json.loads(line) for line in f if line.strip())
    return recs


def pct(xs, q):
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--count", type=int, default=0, help="messages to send (default: the corpus once)")
    ap.add_argument("--results", default="", help="JSON lines of every attempt (default: a temp dir)")
    ap.add_argument("--summary", default="", help="write the summary as JSON here")
    ap.add_argument("--id-header", default="")
    ap.add_argument("--id-prefix", default="m")
    ap.add_argument("--retry-deferred", action="store_true")
    ap.add_argument("--retry-delay", type=float, default=5)
    ap.add_argument("--retry-max-rounds", type=int, default=60)
    ap.add_argument("--threads", action="store_true")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("blast.py: loopback only")

    corpus = load_corpus(Path(args.corpus))
    count = args.count or len(corpus)
    outdir = Path(args.results + ".d") if args.results else Path(f"/tmp/blast-{os.getpid()}.d")
    outdir.mkdir(parents=True, exist_ok=True)

    t_start = time.time()
    paths = run_round(args, corpus, list(range(count)), 1, outdir)
    t_end = time.time()
    recs = read_results(paths)
    final = {}
    for r in sorted(recs, key=lambda r: r["t1"]):
        final[r["k"]] = r
    main_final = dict(final)

    # Retry 4xx (and no-answer) like a sending MTA's queue would.
    rounds = 0
    if args.retry_deferred:
        attempt = 1
        while rounds < args.retry_max_rounds:
            todo = sorted(k for k, r in final.items() if not (200 <= r["code"] < 300 or 500 <= r["code"] < 600))
            if not todo:
                break
            rounds += 1
            attempt += 1
            time.sleep(args.retry_delay)
            if not args.quiet:
                print(f"blast.py: retry round {rounds}: {len(todo)} deferred message(s)", flush=True)
            ps = run_round(args, corpus, todo, attempt, outdir)
            paths += ps
            for r in sorted(read_results(ps), key=lambda r: r["t1"]):
                final[r["k"]] = r
    all_recs = read_results(paths)
    if args.results:
        with open(args.results, "w") as f:
            for r in sorted(all_recs, key=lambda r: (r["t0"], r["k"])):
                f.write(json.dumps(r) + "\n")

    def cls(code):
        return "2xx" if 200 <= code < 300 else "4xx" if 400 <= code < 500 else "5xx" if 500 <= code < 600 else "none"

    main_counts = {"2xx": 0, "4xx": 0, "5xx": 0, "none": 0}
    for r in main_final.values():
        main_counts[cls(r["code"])] += 1
    final_counts = {"2xx": 0, "4xx": 0, "5xx": 0, "none": 0}
    for r in final.values():
        final_counts[cls(r["code"])] += 1
    secs = t_end - t_start
    nbytes = sum(r["bytes"] for r in main_final.values())
    lat = [r["t1"] - r["t0"] for r in main_final.values()]
    dend = [r["data_end_ms"] for r in main_final.values() if "data_end_ms" in r]
    summary = {
        "messages": count, "sessions": args.sessions, "seconds": round(secs, 3),
        "t_start": t_start, "t_end": t_end,
        "msgs_per_s": round(count / secs, 2), "mb_per_s": round(nbytes / 1e6 / secs, 2),
        "bytes": nbytes, "first_pass": main_counts, "final": final_counts,
        "retry_rounds": rounds, "attempts": len(all_recs),
        "latency_ms": {"p50": round(1000 * pct(lat, 0.5), 1), "p90": round(1000 * pct(lat, 0.9), 1),
                       "p99": round(1000 * pct(lat, 0.99), 1), "max": round(1000 * max(lat), 1)},
        "data_end_ms": {"n": len(dend), "p50": round(pct(dend, 0.5), 3), "p90": round(pct(dend, 0.9), 3),
                        "p99": round(pct(dend, 0.99), 3), "max": round(max(dend, default=0), 3)},
    }
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1))
    if not args.quiet:
        print(f"blast.py: {count} messages over {args.sessions} sessions in {secs:.2f} s: "
              f"{summary['msgs_per_s']} msg/s, {summary['mb_per_s']} MB/s; "
              f"2xx {main_counts['2xx']}, 4xx {main_counts['4xx']}, 5xx {main_counts['5xx']}, "
              f"no answer {main_counts['none']}; latency p50 {summary['latency_ms']['p50']} ms "
              f"p99 {summary['latency_ms']['p99']} ms; final dot to reply p50 {summary['data_end_ms']['p50']} ms "
              f"p99 {summary['data_end_ms']['p99']} ms")
        if args.retry_deferred:
            print(f"blast.py: after {rounds} retry round(s): 2xx {final_counts['2xx']}, 5xx {final_counts['5xx']}, "
                  f"still 4xx {final_counts['4xx']}, no answer {final_counts['none']}")
    return 0 if final_counts["none"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
