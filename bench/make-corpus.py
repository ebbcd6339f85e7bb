#!/usr/bin/env python3
"""Writes a deterministic mix of .eml files for the milter-alone load test.

    bench/make-corpus.py OUT_DIR [--scale N]

100 files per scale unit (file counts are the proportions, since the load
generator replays them round-robin):

  60  small text mails, 2-17 KB (plain, or multipart/alternative plain+html)
  15  office documents: docx/xlsx/odt grown from the fixtures (50-300 KB messages)
      (deflated XML plus a stored image), base64 attachments
  10  plain archives: fixtures plain.zip and plain.7z, a zip in a tar.gz and a
      300-entry zip
  10  refused: 5 fixtures/messages/fail-* (bad charset name, broken base64,
      double extension, exe in zip, renamed exe), and a PE, an exe in a zip,
      in a 7z, in a docx, in zip in 7z in tar.gz (fixtures/archives)
   5  large: one 5, 6, 7, 8 and 10 MB PDF-like base64 attachment each

Only the Python standard library; the same bytes on every run (seeded).
"""

import base64
import io
import os
import random
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
ARCH = os.path.join(FIX, "archives")
MSGS = os.path.join(FIX, "messages")

WORDS = (
    "cong van so ve viec trien khai ke hoach nam thuc hien chi dao cua uy ban "
    "nhan dan tinh bac giang so thong tin va truyen thong de nghi cac don vi "
    "bao cao ket qua truoc ngay thang kinh gui dong chi giam doc phong ban"
).split()


def para(rng, n_words):
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def text_block(rng, size):
    lines = []
    total = 0
    while total < size:
        line = para(rng, rng.randint(8, 14)).capitalize() + "."
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines) + "\r\n"


def b64(data):
    enc = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return enc


def headers(i, subject, ctype, extra=""):
    return (
        f"Return-Path: <sender{i}@example.org>\r\n"
        f"Received: from mail.example.org (mail.example.org [198.51.100.7])\r\n"
        f"\tby mx.bacgiang.gov.vn (Postfix) with ESMTPS id 4T{i:08X}\r\n"
        f"\tfor <nhanvien@bacgiang.gov.vn>; Mon, 13 Nov 2023 08:00:00 +0700\r\n"
        f"From: Nguoi Gui {i} <sender{i}@example.org>\r\n"
        f"To: Nhan Vien <nhanvien@bacgiang.gov.vn>\r\n"
        f"Date: Mon, 13 Nov 2023 08:{i % 60:02d}:00 +0700\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <bench-{i}@example.org>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}\r\n"
        f"{extra}"
        "\r\n"
    )


def small_text(rng, i):
    body = text_block(rng, rng.randint(2000, 8000))
    if i % 2:
        return (
            headers(i, f"Cong van {i}", 'text/plain; charset="utf-8"',
                    "Content-Transfer-Encoding: 8bit\r\n")
            + body
        ).encode()
    html = "<html><body><p>" + body.replace("\r\n", "</p>\r\n<p>") + "</p></body></html>\r\n"
    return (
        headers(i, f"Thong bao {i}", 'multipart/alternative; boundary="=_alt"')
        + "--=_alt\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + body
        + "--=_alt\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + html
        + "--=_alt--\r\n"
    ).encode()


def with_attachments(rng, i, subject, files):
    """files: [(name, content_type, bytes)]"""
    out = headers(i, subject, 'multipart/mixed; boundary="=_mix"')
    out += "--=_mix\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    out += text_block(rng, 600)
    for name, ctype, data in files:
        out += (
            f'--=_mix\r\nContent-Type: {ctype}; name="{name}"\r\n'
            f'Content-Disposition: attachment; filename="{name}"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n"
        )
        out += b64(data)
    out += "--=_mix--\r\n"
    return out.encode()


def grown_office(rng, fixture, size):
    """The fixture's entries, its main XML grown with text and a stored image."""
    src = zipfile.ZipFile(os.path.join(ARCH, fixture))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename in ("word/document.xml", "content.xml", "xl/worksheets/sheet1.xml"):
                filler = "".join(f"<p>{para(rng, 12)}</p>" for _ in range(size // 200))
                data = data.replace(b"</", filler.encode() + b"</", 1)
            z.writestr(info, data, compress_type=info.compress_type)
        media = "word/media/image1.png" if fixture.endswith("docx") else "Pictures/image1.png"
        z.writestr(media, b"\x89PNG\r\n\x1a\n" + rng.randbytes(size // 2),
                   compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def pdf_like(rng, size):
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(size - 15)


def big_zip(rng, entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n in range(entries):
            z.writestr(f"ho-so/{n:04d}.txt", para(rng, 40))
    return buf.getvalue()


def zip_in_tar_gz(rng):
    inner = big_zip(rng, 20)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("ho-so/phu-luc.zip")
        info.size = len(inner)
        info.mtime = 1699833600
        t.addfile(info, io.BytesIO(inner))
    return buf.getvalue()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out_dir = sys.argv[1]
    scale = int(sys.argv[sys.argv.index("--scale") + 1]) if "--scale" in sys.argv else 1
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(20231113)
    files = {}
    n = 0

    def add(kind, data):
        nonlocal n
        files[f"{n:04d}-{kind}.eml"] = data
        n += 1

    office = [
        ("report.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("budget.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("minutes.odt", "application/vnd.oasis.opendocument.text"),
    ]
    archives = [
        ("plain.zip", "application/zip", read(os.path.join(ARCH, "plain.zip"))),
        ("plain.7z", "application/x-7z-compressed", read(os.path.join(ARCH, "plain.7z"))),
        ("ho-so.tar.gz", "application/gzip", zip_in_tar_gz(rng)),
        ("ho-so.zip", "application/zip", big_zip(rng, 300)),
    ]
    refused_built = [
        ("setup.exe", "application/octet-stream", read(os.path.join(ARCH, "clam.exe"))),
        ("tai-lieu.zip", "application/zip", read(os.path.join(ARCH, "exe-in.zip"))),
        ("tai-lieu.7z", "application/x-7z-compressed", read(os.path.join(ARCH, "exe-in.7z"))),
        ("bao-cao.docx", office[0][1], read(os.path.join(ARCH, "exe-in.docx"))),
        ("nested.tar.gz", "application/gzip", read(os.path.join(ARCH, "nested.tar.gz"))),
    ]
    fail_fixtures = sorted(f for f in os.listdir(MSGS) if f.startswith("fail-"))

    for _ in range(scale):
        for k in range(60):
            add("text", small_text(rng, n))
        for k in range(15):
            name, ctype = office[k % 3]
            size = rng.randint(40_000, 400_000)
            add("office", with_attachments(rng, n, f"Van ban {n}", [(name, ctype, grown_office(rng, name, size))]))
        for k in range(10):
            name, ctype, data = archives[k % len(archives)]
            add("archive", with_attachments(rng, n, f"Ho so {n}", [(name, ctype, data)]))
        for k in range(10):
            if k < 5:
                add("refused", read(os.path.join(MSGS, fail_fixtures[k % len(fail_fixtures)])))
            else:
                name, ctype, data = refused_built[k - 5]
                add("refused", with_attachments(rng, n, f"Tep {n}", [(name, ctype, data)]))
        for mb in (5, 6, 7, 8, 10):
            add("large", with_attachments(rng, n, f"Tai lieu lon {n}",
                                          [(f"tai-lieu-{mb}mb.pdf", "application/pdf", pdf_like(rng, mb * 1_000_000))]))

    total = 0
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"{len(files)} messages, {total / 1e6:.1f} MB in {out_dir}")


if __name__ == "__main__":
    main()
