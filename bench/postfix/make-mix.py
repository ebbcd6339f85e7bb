#!/usr/bin/env python3
"""Writes a deterministic, realistic corpus of .eml files for the Postfix benchmarks.

Usage: make-mix.py OUT_DIR [--count 200] [--seed 1] [--repo DIR]
                   [--large-min-mb 2] [--large-max-mb 8] [--only-attachments]
       make-mix.py OUT_DIR --everyday [--seed 1] [--repo DIR]

Proportions (of --count, rounded; the rest goes to small text):
  60 %  small text       1-8 KB plain text, a third also with an HTML alternative
  20 %  office documents the fixtures report.docx / budget.xlsx / minutes.odt, and
                         generated .docx (zip of XML, 30-400 KB) and PDF-like files
                         (50-600 KB, mostly incompressible streams)
  12 %  archives         the fixtures plain.zip / plain.7z, and generated .zip of
                         csv/txt files (20-200 KB)
   5 %  large            one PDF-like attachment of --large-min-mb..--large-max-mb MB
   3 %  violations       exe-in.zip (an executable inside a zip; ClamAV's test file),
                         hoso.pdf.exe (ClamAV's test executable, named .exe), and the
                         EICAR test string as a .txt (a "virus": rejected only by
                         scanners that use ClamAV)

Every message has its own Message-ID and its own generated text and documents (the
fixtures are the same bytes each time, so clamd's clean-file cache sees them again,
as it would in real traffic). Envelope: sender@example.org -> nguoidung@bacgiang.gov.vn
(stored in manifest.json, not in the files). Files are written with CRLF line ends.

--only-attachments leaves out the small-text messages (for clamd-cost.sh: only
messages that give a scanner something to scan).

--everyday writes instead 21 small everyday messages that every filter must pass
(bench/postfix/latency.sh; --count is ignored): the six fixtures/messages/pass-*.eml
(plain text, PGP and S/MIME signed, an HTML alternative with an inline image, and
look-alikes: a "danh-sach.com.txt" attachment, a DMARC report zip named with "!"),
7 short notes, 3 text+HTML alternatives, a longer plain report, the fixtures
budget.xlsx and minutes.odt, a small PDF-like file and a generated .docx of about
12 KB. Mean about 2.3 KB, median about 0.9 KB, largest about 17 KB.

Writes OUT_DIR/NNNN-CATEGORY.eml and OUT_DIR/manifest.json, prints a size summary.
Python 3.11 standard library only.
"""

import argparse
import email
import io
import json
import random
import sys
import zipfile
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from datetime import datetime, timezone, timedelta
from pathlib import Path

SENDER = "sender@example.org"
RCPT = "nguoidung@bacgiang.gov.vn"

MIME = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".7z": "application/x-7z-compressed",
    ".exe": "application/octet-stream",
    ".txt": "text/plain",
}

WORDS = (
    "cong van so ke hoach bao cao tinh hinh thuc hien nhiem vu nam quy thang "
    "uy ban nhan dan tinh bac giang so thong tin truyen thong huong dan trien khai "
    "he thong thu dien tu cong vu dam bao an toan thong tin cac co quan don vi "
    "de nghi xem xet phe duyet du toan kinh phi hop giao ban dinh ky ket qua"
).split()


def text(rng: random.Random, nbytes: int) -> str:
    out, n = [], 0
    while n < nbytes:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 14)))
        out.append(line.capitalize() + ".")
        n += len(line) + 2
    return "\n".join(out) + "\n"


def eicar() -> bytes:
    # Assembled at run time so this file does not trip a virus scanner.
    s = "".join(["X5O!P%@AP[4\\PZX54(P^)7CC)7}$", "EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"])
    assert len(s) == 68
    return s.encode()


def docx(rng: random.Random, size: int) -> bytes:
    """A zip laid out like a .docx: compressible XML plus one stored 'image'."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships/>')
        paras = "".join(f"<w:p><w:r><w:t>{text(rng, 400)}</w:t></w:r></w:p>" for _ in range(max(1, size // 4000)))
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document><w:body>{paras}</w:body></w:document>')
        z.writestr(zipfile.ZipInfo("word/media/image1.png"), b"\x89PNG\r\n\x1a\n" + rng.randbytes(size // 2),
                   compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def pdf_like(rng: random.Random, size: int) -> bytes:
    """%PDF header, a few objects, then incompressible stream data up to SIZE bytes."""
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    body = b"3 0 obj\n<< /Length %d /Filter /FlateDecode >>\nstream\n" % size
    tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
    return head + body + rng.randbytes(max(0, size - len(head) - len(body) - len(tail))) + tail


def zip_of_csv(rng: random.Random, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(rng.randint(2, 5)):
            rows = "\n".join(f"{j},{rng.choice(WORDS)},{rng.randint(0, 10**9)}" for j in range(size // 25))
            z.writestr(f"bang-ke-{i + 1}.csv", "stt,noi_dung,so_tien\n" + rows)
        z.writestr(zipfile.ZipInfo("phu-luc.bin"), rng.randbytes(size // 3), compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def base(rng: random.Random, idx: int, subject: str, nbytes: int, when: datetime) -> EmailMessage:
    m = EmailMessage()
    m["From"] = f"Nguoi gui <{SENDER}>"
    m["To"] = RCPT
    m["Subject"] = f"{subject} ({idx})"
    m["Date"] = format_datetime(when)
    m["Message-ID"] = f"<mix-{idx:05d}-{rng.getrandbits(48):012x}@example.org>"
    m.set_content(text(rng, nbytes))
    return m


def attach(m: EmailMessage, name: str, data: bytes) -> None:
    maintype, subtype = MIME.get(Path(name).suffix.lower(), "application/octet-stream").split("/")
    m.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)


def attachments(data: bytes) -> int:
    """Leaf parts that have a file name or are neither text/plain nor text/html
    (an S/MIME signature and an inline image count)."""
    msg = email.message_from_bytes(data, policy=SMTP)
    return sum(1 for part in msg.walk() if not part.is_multipart() and (
        part.get_filename() or part.get_content_disposition() == "attachment"
        or part.get_content_type() not in ("text/plain", "text/html")))


def everyday(a) -> int:
    """The latency-bound mix: small everyday mail, all of it to be accepted."""
    repo = Path(a.repo)
    fx = repo / "fixtures" / "archives"
    rng = random.Random(a.seed)
    when0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone(timedelta(hours=7)))
    msgs = []  # (kind, bytes)
    for f in sorted((repo / "fixtures" / "messages").glob("pass-*.eml")):
        msgs.append((f.stem, f.read_bytes()))
    i = len(msgs)

    def html_of(m):
        body = m.get_body(("plain",)).get_content()
        m.add_alternative("<html><body><p>" + body.replace("\n", "</p><p>") + "</p></body></html>", subtype="html")

    gen = []
    for n in range(7):
        gen.append(("note", lambda i, w: base(rng, i, "Thong bao", rng.randint(250, 600), w)))
    for n in range(3):
        def alt(i, w):
            m = base(rng, i, "Giay moi hop", rng.randint(700, 1100), w)
            html_of(m)
            return m
        gen.append(("html", alt))
    gen.append(("report", lambda i, w: base(rng, i, "Bao cao tuan", rng.randint(2600, 3000), w)))
    for name in ("budget.xlsx", "minutes.odt"):
        def doc(i, w, name=name):
            m = base(rng, i, "Gui tai lieu", rng.randint(200, 400), w)
            attach(m, name, (fx / name).read_bytes())
            return m
        gen.append(("fixture-" + name.split(".")[1], doc))

    def pdf(i, w):
        m = base(rng, i, "To trinh", rng.randint(200, 400), w)
        attach(m, f"to-trinh-{i}.pdf", pdf_like(rng, 1500))
        return m
    gen.append(("pdf", pdf))

    def docx_small(i, w):
        m = base(rng, i, "Van ban", rng.randint(300, 500), w)
        attach(m, f"van-ban-{i}.docx", docx(rng, 20_000))
        return m
    gen.append(("docx", docx_small))
    for kind, make in gen:
        msgs.append((kind, make(i, when0 + timedelta(seconds=37 * i)).as_bytes(policy=SMTP)))
        i += 1
    order = list(range(len(msgs)))
    rng.shuffle(order)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.eml"):
        old.unlink()
    manifest = []
    for n, k in enumerate(order):
        kind, data = msgs[k]
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        name = f"{n:04d}-{kind}.eml"
        (out / name).write_bytes(data)
        manifest.append({"file": name, "category": kind, "size": len(data), "expect": "accept",
                         "attachments": attachments(data), "sender": SENDER, "rcpt": RCPT})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    sz = sorted(e["size"] for e in manifest)
    print(f"make-mix.py --everyday: {len(sz)} messages, {sum(sz) / 1e3:.1f} KB in {out} (seed {a.seed}): "
          f"mean {sum(sz) / len(sz) / 1e3:.2f} KB, median {sz[len(sz) // 2] / 1e3:.2f} KB, "
          f"min {sz[0] / 1e3:.2f} KB, max {sz[-1] / 1e3:.1f} KB")
    print("  KB: " + ", ".join(f"{e['category']} {e['size'] / 1e3:.1f}" for e in sorted(manifest, key=lambda e: e["size"])))
    bare = [e for e in manifest if not e["attachments"]]
    print(f"  {len(bare)} without attachments (text/plain and text/html parts, no file name): "
          + ", ".join(sorted(e["category"] for e in bare)))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--large-min-mb", type=float, default=2)
    ap.add_argument("--large-max-mb", type=float, default=8)
    ap.add_argument("--only-attachments", action="store_true")
    ap.add_argument("--everyday", action="store_true")
    a = ap.parse_args()
    if a.everyday:
        return everyday(a)

    fx = Path(a.repo) / "fixtures" / "archives"
    fixtures = {n: (fx / n).read_bytes() for n in ("report.docx", "budget.xlsx", "minutes.odt", "plain.zip", "plain.7z", "exe-in.zip")}
    clam_exe = Path("/usr/share/clamav-testfiles/clam.exe")
    if not clam_exe.exists():
        print(f"make-mix.py: {clam_exe} missing (apt-get install clamav-testfiles)", file=sys.stderr)
        return 1
    clam = clam_exe.read_bytes()

    rng = random.Random(a.seed)
    n = a.count
    shares = {"office": 0.20, "archive": 0.12, "large": 0.05, "violation": 0.03}
    if a.only_attachments:
        total = sum(shares.values())
        shares = {k: v / total for k, v in shares.items()}
    counts = {k: max(1, round(n * v)) for k, v in shares.items()}
    counts["text"] = max(0, n - sum(counts.values())) if not a.only_attachments else 0
    if a.only_attachments:
        counts["office"] += n - sum(counts.values())
    cats = [c for c, k in counts.items() for _ in range(k)]
    rng.shuffle(cats)

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.eml"):
        old.unlink()
    when0 = datetime(2025, 3, 3, 8, 0, tzinfo=timezone(timedelta(hours=7)))
    manifest = []
    vio_kinds = ["exe-in.zip", "hoso.pdf.exe", "eicar.txt"]
    vio_i = 0
    for i, cat in enumerate(cats):
        when = when0 + timedelta(seconds=37 * i)
        if cat == "text":
            m = base(rng, i, "Thong bao", rng.randint(1000, 8000), when)
            if rng.random() < 1 / 3:
                body = m.get_body(("plain",)).get_content()
                m.add_alternative("<html><body><p>" + body.replace("\n", "</p><p>") + "</p></body></html>", subtype="html")
            expect = "accept"
        elif cat == "office":
            m = base(rng, i, "Gui tai lieu", rng.randint(500, 3000), when)
            r = rng.random()
            if r < 0.3:
                name = rng.choice(["report.docx", "budget.xlsx", "minutes.odt"])
                attach(m, name, fixtures[name])
            elif r < 0.65:
                attach(m, f"van-ban-{i}.docx", docx(rng, rng.randint(30_000, 400_000)))
            else:
                attach(m, f"to-trinh-{i}.pdf", pdf_like(rng, rng.randint(50_000, 600_000)))
            expect = "accept"
        elif cat == "archive":
            m = base(rng, i, "Ho so nen", rng.randint(500, 2000), when)
            r = rng.random()
            if r < 0.4:
                name = rng.choice(["plain.zip", "plain.7z"])
                attach(m, name, fixtures[name])
            else:
                attach(m, f"bang-ke-{i}.zip", zip_of_csv(rng, rng.randint(20_000, 200_000)))
            expect = "accept"
        elif cat == "large":
            m = base(rng, i, "Tai lieu lon", rng.randint(500, 2000), when)
            size = int(rng.uniform(a.large_min_mb, a.large_max_mb) * 1_000_000)
            attach(m, f"ban-scan-{i}.pdf", pdf_like(rng, size))
            expect = "accept"
        else:
            m = base(rng, i, "Tep dang ngo", rng.randint(500, 2000), when)
            kind = vio_kinds[vio_i % len(vio_kinds)]
            vio_i += 1
            if kind == "exe-in.zip":
                attach(m, "exe-in.zip", fixtures["exe-in.zip"])
                expect = "reject"
            elif kind == "hoso.pdf.exe":
                attach(m, "hoso.pdf.exe", clam)
                expect = "reject"
            else:
                attach(m, "ghi-chu.txt", eicar())
                expect = "reject-if-clamav"
        data = m.as_bytes(policy=SMTP)
        name = f"{i:04d}-{cat}.eml"
        (out / name).write_bytes(data)
        manifest.append({"file": name, "category": cat, "size": len(data), "expect": expect,
                         "sender": SENDER, "rcpt": RCPT})

    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    tot = sum(e["size"] for e in manifest)
    print(f"make-mix.py: {len(manifest)} messages, {tot / 1e6:.1f} MB in {out} (seed {a.seed})")
    for cat in ("text", "office", "archive", "large", "violation"):
        sz = [e["size"] for e in manifest if e["category"] == cat]
        if sz:
            print(f"  {cat:10s} {len(sz):5d} ({100 * len(sz) / len(manifest):4.1f} %)  "
                  f"min {min(sz) / 1e3:8.1f} KB  median {sorted(sz)[len(sz) // 2] / 1e3:8.1f} KB  "
                  f"max {max(sz) / 1e3:8.1f} KB  total {sum(sz) / 1e6:7.1f} MB")
    print(f"  mean message size {tot / len(manifest) / 1e3:.1f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
