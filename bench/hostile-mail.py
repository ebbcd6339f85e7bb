#!/usr/bin/env python3
"""Writes messages shaped to make MIME inspection slow, one file per shape.

    bench/hostile-mail.py OUT_DIR [--size BYTES] [--only SHAPE[,SHAPE...]]

Each message is about BYTES long (default 2,000,000: a little over the 1.9 MB
of the message in issue 13); bench/hostile-cpu.sh runs them through `scan` and
reports CPU seconds per MB. Every shape attacks one place where the work of
the MIME walk could grow faster than the message:

  ew-filename       20 parts, each filename="=?a?B?xx=?a?B?xx..." of ~96 KB:
                    an encoded word that never closes, searched from every "=?"
                    (the message of issue 13)
  ew-filename-16k   the same in parts of 16 KB values (under MAX_PARAM_LEN)
  ew-many-words     filenames made of thousands of small valid encoded words
                    in alternating charsets
  ew-256-words      filenames of 256 such words each (MAX_ENCODED_WORDS)
  repeated-cd       one part with ~40,000 Content-Disposition headers, each
                    naming a different file (names compared pairwise)
  repeated-ct       the same with Content-Type headers and `name=`
  repeated-cd-64    parts of 64 Content-Disposition headers (MAX_MIME_FIELDS)
                    giving 16 different names (MAX_NAMES_PER_PART)
  huge-param        one filename of the whole message size, quoted
  rfc2231-sections  headers of 256 RFC 2231 sections each, under distinct names
  many-params       headers of 256 short parameters each, repeated over parts
  tiny-parts        as many empty parts as the message holds (past
                    max_mime_parts)
  named-tiny-parts  small named attachments, up to max_mime_parts
  deep-multipart    multipart nested 230 deep (as deep as allowed), the bulk at
                    the bottom
  deep-multipart-15 the same 15 deep
  deep-lookalike    multipart nested 230 deep with boundaries b, bb, bbb...,
                    the bottom full of lines that start like every delimiter
  deep-lookalike-15 the same 15 deep
  deep-qp-messages  message/rfc822 parts nested 100 deep, each quoted-printable,
                    whose decoding leaves the text as it is, the bulk at the bottom
  deep-qp-15        the same 15 deep
  deep-named-parts  attached messages with long names nested 100 deep, then
                    many small parts at the bottom
  deep-named-uninspectable  the same after a cab archive (uninspectable), which
                    makes the rules compare every path with the cab's
  long-header-line  one unfolded Content-Type line of the message's size
  folded-header     one Content-Disposition folded over ~100,000 lines
  many-headers      ~50,000 ordinary (non-MIME) header fields
  boundary-lookalike a multipart whose body is full of lines that start like
                    its delimiter
  uuencode-begins   a text full of "begin 644 x" lines, a real block at the end
  qp-blanks         a quoted-printable part full of blank runs and stray "="
  base64-junk       a base64 part with junk in every group (the slow decoder)
  tnef-many         a winmail.dat of thousands of attachments with properties

Only the Python standard library; the same bytes on every run.
"""

import argparse
import base64
import os
import struct
import sys


def head(subject, ctype, extra=""):
    return (
        "From: Nguoi Gui <sender@example.org>\r\n"
        "To: Nhan Vien <nhanvien@bacgiang.gov.vn>\r\n"
        "Date: Mon, 13 Nov 2023 08:00:00 +0700\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <hostile@example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        f"Content-Type: {ctype}\r\n"
        f"{extra}"
        "\r\n"
    )


def multipart(subject, parts, boundary="b0"):
    out = [head(subject, f'multipart/mixed; boundary="{boundary}"'), "preamble\r\n"]
    for p in parts:
        out.append(f"--{boundary}\r\n")
        out.append(p)
        out.append("\r\n")
    out.append(f"--{boundary}--\r\n")
    return "".join(out)


def filled(size, unit):
    return unit * max(1, size // len(unit))


def named_part(filename):
    return (
        "Content-Type: application/octet-stream\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n\r\nx\r\n'
    )


def ew_filename(size):
    return multipart("ew-filename", [named_part(filled(size // 20 - 200, "=?a?B?xx"))] * 20)


def ew_filename_16k(size):
    part = named_part(filled(16 * 1024 - 100, "=?a?B?xx"))
    return multipart("ew-filename-16k", [part] * max(1, size // (len(part) + 8)))


def ew_256_words(size):
    part = named_part("=?utf-8?Q?a?= =?iso-8859-1?Q?b?= " * 128 + "x.pdf")
    return multipart("ew-256-words", [part] * max(1, size // (len(part) + 8)))


def ew_many_words(size):
    words = filled(size // 20 - 200, "=?utf-8?Q?a?= =?iso-8859-1?Q?b?= ")
    return multipart("ew-many-words", [named_part(words + "x.pdf")] * 20)


def repeated(size, field, param):
    lines = []
    total, i = 0, 0
    while total < size - 300:
        line = f"{field}: attachment; {param}=f{i:07d}.pdf\r\n"
        lines.append(line)
        total += len(line)
        i += 1
    part = "".join(lines) + "\r\nx\r\n"
    return multipart("repeated-" + field, [part])


def repeated_cd(size):
    return repeated(size, "Content-Disposition", "filename")


def repeated_ct(size):
    return repeated(size, "Content-Type", "name")


def repeated_cd_64(size):
    fields = "".join(
        f"Content-Disposition: attachment; filename=f{k % 16:02d}.pdf\r\n" for k in range(64)
    )
    part = fields + "\r\nx\r\n"
    return multipart("repeated-cd-64", [part] * max(1, size // (len(part) + 8)))


def huge_param(size):
    return multipart("huge-param", [named_part("a" * (size - 400) + ".pdf")])


def rfc2231_sections(size):
    # 256 sections of 256 distinct names: every section is looked up by name.
    one = "".join(f";\r\n p{k:03d}*{k % 8}*=utf-8''%41" for k in range(256))
    part = f"Content-Type: application/octet-stream{one}\r\n\r\nx\r\n"
    count = max(1, (size - 300) // (len(part) + 8))
    return multipart("rfc2231-sections", [part] * count)


def many_params(size):
    one = "".join(f"; p{k}=v" for k in range(256))
    part = f"Content-Disposition: attachment{one}\r\n\r\nx\r\n"
    count = max(1, (size - 300) // (len(part) + 8))
    return multipart("many-params", [part] * count)


def tiny_parts(size):
    count = max(1, (size - 300) // 5)
    body = "--b\r\n" * count
    return head("tiny-parts", 'multipart/mixed; boundary="b"') + body + "--b--\r\n"


def named_tiny_parts(size):
    count = 9_900
    pad = max(0, (size - 300) // count - 90)
    parts = [
        f'Content-Disposition: attachment; filename="f{i:05d}.pdf"\r\n\r\n{"x" * pad}'
        for i in range(count)
    ]
    return multipart("named-tiny-parts", parts, boundary="b")


def deep_multipart(size, depth=230):
    top = []
    for d in range(depth):
        top.append(f"--b{d}\r\nContent-Type: multipart/mixed; boundary=\"b{d + 1}\"\r\n\r\n")
    bottom = [f"--b{depth}\r\nContent-Type: text/plain\r\n\r\n"]
    used = sum(map(len, top)) + 600 + 12 * depth
    bottom.append(filled(size - used, "cong van so ve viec trien khai ke hoach nam\r\n"))
    closes = [f"\r\n--b{d}--\r\n" for d in range(depth, -1, -1)]
    return (
        head("deep-multipart", 'multipart/mixed; boundary="b0"')
        + "".join(top)
        + "".join(bottom)
        + "".join(closes)
    )


def deep_multipart_15(size):
    return deep_multipart(size, 15)


def deep_lookalike(size, depth=230):
    # Boundaries b, bb, bbb...: a line of more b's starts like every delimiter.
    top = []
    for d in range(depth):
        top.append(f'--{"b" * (d + 1)}\r\nContent-Type: multipart/mixed; boundary="{"b" * (d + 2)}"\r\n\r\n')
    bottom = f"--{'b' * (depth + 1)}\r\nContent-Type: text/plain\r\n\r\n"
    closes = "".join(f"\r\n--{'b' * (d + 1)}--\r\n" for d in range(depth, -1, -1))
    used = sum(map(len, top)) + len(bottom) + len(closes) + 400
    body = filled(size - used, "--" + "b" * (depth + 10) + "X\r\n")
    return head("deep-lookalike", 'multipart/mixed; boundary="b"') + "".join(top) + bottom + body + closes


def deep_lookalike_15(size):
    return deep_lookalike(size, 15)


def deep_qp_15(size):
    return deep_qp_messages(size, 15)


def deep_qp_messages(size, depth=100):
    wrap = (
        "Content-Type: message/rfc822\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    inner = "Content-Type: text/plain\r\n\r\n"
    used = len(wrap) * depth + 400
    text = filled(size - used, "cong van so ve viec trien khai ke hoach nam\r\n")
    return head("deep-qp-messages", "message/rfc822",
                "Content-Transfer-Encoding: quoted-printable\r\n") + wrap * (depth - 1) + inner + text


def deep_named_parts(size, first=""):
    depth = 100
    name = "n" * 250
    levels = []
    for d in range(depth):
        levels.append(
            "Content-Type: message/rfc822\r\n"
            f'Content-Disposition: attachment; filename="{name}{d:03d}.eml"\r\n\r\n'
        )
    count = 9_000
    used = sum(map(len, levels)) + 400
    pad = max(0, (size - used) // count - 60)
    parts = "".join(
        f'--b\r\nContent-Disposition: attachment; filename="f{i}.txt"\r\n\r\n{"x" * pad}\r\n'
        for i in range(count)
    )
    bottom = 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + "--b--\r\n"
    return (
        head("deep-named-parts", "multipart/mixed; boundary=\"top\"")
        + first
        + "--top\r\n"
        + "".join(levels)
        + bottom
        + "--top--\r\n"
    )


def deep_named_uninspectable(size):
    cab = base64.encodebytes(b"MSCF\x00\x00\x00\x00" + b"\x00" * 56).decode()
    first = (
        "--top\r\nContent-Type: application/octet-stream\r\n"
        'Content-Disposition: attachment; filename="a.cab"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{cab}\r\n"
    )
    return deep_named_parts(size, first)


def long_header_line(size):
    params = filled(size - 400, "; x=yyyyyyyy")
    part = f"Content-Type: application/octet-stream{params}\r\n\r\nx\r\n"
    return multipart("long-header-line", [part])


def folded_header(size):
    fold = filled(size - 400, "\r\n x")
    part = f"Content-Disposition: attachment; filename=\"a{fold}.pdf\"\r\n\r\nx\r\n"
    return multipart("folded-header", [part])


def many_headers(size):
    fields = "".join(f"X-Filler-{i}: v\r\n" for i in range((size - 400) // 20))
    return head("many-headers", "text/plain", fields) + "hello\r\n"


def boundary_lookalike(size):
    body = filled(size - 400, "--boundaryX\r\n")
    part = "Content-Type: text/plain\r\n\r\n" + body
    return multipart("boundary-lookalike", [part], boundary="boundary")


def uuencode_begins(size):
    data = b"MZ\x90\x00" + b"\x00" * 60
    lines = ["begin 644 setup.exe"]
    for k in range(0, len(data), 45):
        chunk = data[k:k + 45]
        lines.append(bytes([32 + len(chunk)]).decode() + _uu(chunk))
    lines += ["`", "end"]
    real = "\r\n".join(lines) + "\r\n"
    junk = filled(size - 400 - len(real), "begin 644 x\r\n")
    return head("uuencode-begins", "text/plain") + junk + real


def _uu(chunk):
    out = []
    chunk = chunk + b"\x00" * (-len(chunk) % 3)
    for k in range(0, len(chunk), 3):
        n = (chunk[k] << 16) | (chunk[k + 1] << 8) | chunk[k + 2]
        for shift in (18, 12, 6, 0):
            v = (n >> shift) & 63
            out.append("`" if v == 0 else chr(v + 32))
    return "".join(out)


def qp_blanks(size):
    body = filled(size - 400, "= =\t=  x" + " " * 40 + "=\r\n")
    part = "Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + body
    return multipart("qp-blanks", [part])


def base64_junk(size):
    body = filled(size - 400, "QU!JD=RE*VG\r\n")
    part = (
        "Content-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=\"x.bin\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + body
    )
    return multipart("base64-junk", [part])


def tnef_many(size):
    def attr(level, ident, data):
        s = sum(data) & 0xFFFF
        return struct.pack("<BII", level, ident, len(data)) + data + struct.pack("<H", s)

    out = [struct.pack("<IH", 0x223E9F78, 1), attr(1, 0x00089006, struct.pack("<I", 0x10000))]
    props = [struct.pack("<I", 64)]
    for _ in range(63):
        props.append(struct.pack("<HHI", 0x0003, 0x3705, 1))
    name = "setup.exe".encode("utf-16-le") + b"\x00\x00"
    props.append(struct.pack("<HHI", 0x001F, 0x3707, 1) + struct.pack("<I", len(name))
                 + name + b"\x00" * (-len(name) % 4))
    props = b"".join(props)
    one = (attr(2, 0x00069002, b"\x00" * 14) + attr(2, 0x00018010, b"A.TXT\x00")
           + attr(2, 0x0006800F, b"hello") + attr(2, 0x00069005, props))
    raw_budget = (size - 600) * 3 // 4
    out.append(one * max(1, raw_budget // len(one)))
    data = b"".join(out)
    enc = base64.encodebytes(data).decode().replace("\n", "\r\n")
    part = (
        "Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\n"
        "Content-Disposition: attachment; filename=\"winmail.dat\"\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n" + enc
    )
    return multipart("tnef-many", [part])


SHAPES = {
    "ew-filename": ew_filename,
    "ew-filename-16k": ew_filename_16k,
    "ew-many-words": ew_many_words,
    "ew-256-words": ew_256_words,
    "repeated-cd": repeated_cd,
    "repeated-ct": repeated_ct,
    "repeated-cd-64": repeated_cd_64,
    "huge-param": huge_param,
    "rfc2231-sections": rfc2231_sections,
    "many-params": many_params,
    "tiny-parts": tiny_parts,
    "named-tiny-parts": named_tiny_parts,
    "deep-multipart": deep_multipart,
    "deep-multipart-15": deep_multipart_15,
    "deep-lookalike": deep_lookalike,
    "deep-lookalike-15": deep_lookalike_15,
    "deep-qp-messages": deep_qp_messages,
    "deep-qp-15": deep_qp_15,
    "deep-named-parts": deep_named_parts,
    "deep-named-uninspectable": deep_named_uninspectable,
    "long-header-line": long_header_line,
    "folded-header": folded_header,
    "many-headers": many_headers,
    "boundary-lookalike": boundary_lookalike,
    "uuencode-begins": uuencode_begins,
    "qp-blanks": qp_blanks,
    "base64-junk": base64_junk,
    "tnef-many": tnef_many,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--size", type=int, default=2_000_000)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    for s in only:
        if s not in SHAPES:
            sys.exit(f"unknown shape {s!r}; shapes: {', '.join(SHAPES)}")
    os.makedirs(args.out_dir, exist_ok=True)
    for name, make in SHAPES.items():
        if only and name not in only:
            continue
        data = make(args.size)
        if isinstance(data, str):
            data = data.encode("latin-1")
        with open(os.path.join(args.out_dir, name + ".eml"), "wb") as f:
            f.write(data)
        print(f"{name}.eml {len(data)}")


if __name__ == "__main__":
    main()
