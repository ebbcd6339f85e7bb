#!/usr/bin/env python3
"""Sends the demo's sample messages through Postfix and checks each answer.

Usage: send-samples.py REPO_ROOT [--port 2525] [--results FILE]

Every fixtures/messages/*.eml (sent unchanged apart from SMTP wire encoding:
bare LF -> CRLF, dot-stuffing), archives from fixtures/archives attached to a
message built here, an EICAR attachment, a 16 MiB attachment and a Gmail
auto-forward. Prints one line per message with the reply Postfix gave the
client. Exit status 0 when every message got the expected kind of answer
(accept / reject / tempfail, and the expected code where one is given).
"""

import argparse
import json
import re
import smtplib
import sys
import time
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

SENDER = "sender@example.org"
RCPT = "nguoidung@bacgiang.gov.vn"

# Archives attached to a message: file -> expected kind ("accept"/"reject").
ARCHIVES = [
    ("zipcrypto.zip", "reject"),  # ZipCrypto: encrypted archive
    ("encrypted-headers.7z", "reject"),  # 7z with encrypted names
    ("exe-in.7z", "reject"),  # an executable inside a 7z
    ("report.docx", "accept"),  # an ordinary Word document
    ("plain.7z", "accept"),  # a 7z with a text file
    ("rar5-encrypted-files.rar", "reject"),  # RAR 5, encrypted files
    ("bomb-nested.zip", "reject"),  # 42.zip-style bomb: uninspectable
]

CONTENT_TYPES = {
    ".docx": ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ".zip": ("application", "zip"),
    ".7z": ("application", "x-7z-compressed"),
    ".rar": ("application", "vnd.rar"),
}


def eicar() -> bytes:
    # Assembled at run time so this file does not trip a virus scanner.
    s = "".join(["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"])
    assert len(s) == 68
    return s.encode()


def base_message(subject: str, text: str) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Nguoi gui <{SENDER}>"
    m["To"] = RCPT
    m["Subject"] = subject
    m["Date"] = formatdate(localtime=True)
    m["Message-ID"] = f"<demo-{time.time_ns()}@example.org>"
    m.set_content(text)
    return m


def with_attachment(subject: str, filename: str, data: bytes, maintype: str, subtype: str) -> bytes:
    m = base_message(subject, f"Kinh gui anh/chi,\n\nXin gui tep {filename}.\n")
    m.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return m.as_bytes()


def to_wire(raw: bytes) -> bytes:
    """Bare LF -> CRLF (smtplib does the dot-stuffing and the final dot)."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def cases(repo: Path):
    """Yields (label, envelope sender, raw message, expected kind, expected code, must contain)."""
    msgs = sorted((repo / "fixtures/messages").glob("*.eml"))
    if not msgs:
        sys.exit(f"send-samples: no fixtures in {repo / 'fixtures/messages'}")
    for f in msgs:
        kind = "accept" if f.name.startswith("pass-") else "reject"
        yield f.name, SENDER, f.read_bytes(), kind, None, None

    for name, kind in ARCHIVES:
        data = (repo / "fixtures/archives" / name).read_bytes()
        maintype, subtype = CONTENT_TYPES.get(Path(name).suffix, ("application", "octet-stream"))
        raw = with_attachment(f"Tai lieu {name}", name, data, maintype, subtype)
        yield f"archive {name}", SENDER, raw, kind, None, None

    raw = with_attachment("Ghi chu", "ghi-chu.txt", eicar(), "text", "plain")
    yield "EICAR test virus (ghi-chu.txt)", SENDER, raw, "reject", 554, None

    # 16 MiB decoded: over the 15 MiB attachment limit (Dieu 10), under the
    # 25 MiB message limit once base64-encoded (about 22 MB).
    line = b"ma_ho_so,ten_don_vi,so_tien,ghi_chu\n"
    big = (line * (16 * 1024 * 1024 // len(line) + 1))[: 16 * 1024 * 1024]
    raw = with_attachment("So lieu ca nam", "so-lieu-2025.csv", big, "text", "csv")
    yield "16 MiB attachment (so-lieu-2025.csv)", SENDER, raw, "reject", 552, None

    # Gmail's automatic forwarding (Settings > Forwarding) into the province.
    m = EmailMessage()
    m["X-Forwarded-To"] = RCPT
    m["X-Forwarded-For"] = f"someone@gmail.com {RCPT}"
    m["From"] = "Doi tac <partner@example.com>"
    m["To"] = "someone@gmail.com"
    m["Subject"] = "Ho so du an"
    m["Date"] = formatdate(localtime=True)
    m["Message-ID"] = f"<fwd-{time.time_ns()}@example.com>"
    m.set_content("Gui chi ho so du an.\n")
    yield (
        "Gmail auto-forward into bacgiang.gov.vn",
        "someone+caf_=nguoidung=bacgiang.gov.vn@gmail.com",
        m.as_bytes(),
        "reject",
        550,
        "Dieu 4 khoan 4",
    )


def kind_of(code: int) -> str:
    if 200 <= code < 300:
        return "accept"
    if 400 <= code < 500:
        return "tempfail"
    return "reject"


def send(port: int, sender: str, raw: bytes):
    """One SMTP session. Returns (code, reply text) of the step that decided."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.demo.invalid", timeout=180) as s:
        s.ehlo()
        code, msg = s.mail(sender)
        if code == 250:
            code, msg = s.rcpt(RCPT)
        if code in (250, 251):
            try:
                code, msg = s.data(to_wire(raw))
            except smtplib.SMTPDataError as e:  # refused at DATA itself
                code, msg = e.smtp_code, e.smtp_error
        else:
            s.rset()
    text = msg.decode("utf-8", "replace").replace("\n", " / ")
    return code, text


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("repo", type=Path)
    ap.add_argument("--port", type=int, default=2525)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()

    results = []
    bad = 0
    all_cases = list(cases(args.repo))
    width = max(len(c[0]) for c in all_cases)
    for label, sender, raw, kind, want_code, want_text in all_cases:
        try:
            code, text = send(args.port, sender, raw)
        except (OSError, smtplib.SMTPException) as e:
            code, text = 0, f"SMTP error: {e}"
        got = kind_of(code) if code else "error"
        ok = got == kind
        ok = ok and (want_code is None or code == want_code)
        ok = ok and (want_text is None or want_text in text)
        bad += not ok
        mark = "ok  " if ok else "FAIL"
        print(f"  {mark} {label:<{width}}  {code} {text}", flush=True)
        if not ok:
            want = kind + (f" {want_code}" if want_code else "") + (f" containing {want_text!r}" if want_text else "")
            print(f"       {'':<{width}}  ^ expected {want}", flush=True)
        results.append({"message": label, "code": code, "reply": text, "kind": got, "expected": kind, "ok": ok})
    if args.results:
        args.results.write_text("".join(json.dumps(r) + "\n" for r in results))
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
