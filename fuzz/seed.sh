#!/usr/bin/env bash
# Seeds fuzz/corpus/TARGET from the fixtures (idempotent: files are named by
# content, existing corpus entries are kept). The corpus is not tracked in git:
# this script makes it from scratch in a fresh clone (every target fuzz/run.sh
# runs gets a directory), and fuzz/run.sh calls it first. Usage: fuzz/seed.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
C=fuzz/corpus
MAX=$((1024 * 1024))   # no seed over 1 MiB in the repo

add() { # add TARGET FILE...
    local t=$1; shift
    mkdir -p "$C/$t"
    for f in "$@"; do
        [ -f "$f" ] || continue
        [ "$(stat -c %s "$f")" -le "$MAX" ] || continue
        cp "$f" "$C/$t/$(sha1sum "$f" | cut -c1-40)"
    done
}
addtext() { # addtext TARGET TEXT
    local tmp; tmp=$(mktemp); printf '%s' "$2" > "$tmp"; add "$1" "$tmp"; rm -f "$tmp"
}

A=fixtures/archives
add mime_walk fixtures/messages/*.eml fixtures/forwarding/*.eml
add archive_zip $A/*.zip $A/*.docx $A/*.xlsx $A/*.odt $A/*.jar
add archive_7z $A/*.7z
add archive_rar $A/*.rar
add archive_libarchive $A/*.cab $A/*.iso $A/*.lzh $A/*.ar $A/*.cpio
add archive_compress $A/*.gz $A/*.bz2 $A/*.xz
add inspect_file $A/*
add archive_tar $A/*.tar
add archive_ole $A/*.doc $A/*.ppt $A/*.msg
add audit_log fixtures/audit/mail.audit.jsonl fixtures/audit/relay.audit.jsonl.1
tmp=$(mktemp -d)
for f in $A/*.tar.gz; do gzip -dc "$f" > "$tmp/$(basename "$f" .gz)" 2>/dev/null || true; done
for f in $A/*.tar.bz2; do bzip2 -dc "$f" > "$tmp/$(basename "$f" .bz2)" 2>/dev/null || true; done
for f in $A/*.tar.xz; do xz -dc "$f" > "$tmp/$(basename "$f" .xz)" 2>/dev/null || true; done
add archive_tar "$tmp"/*.tar
add inspect_file "$tmp"/*.tar

# TNEF and uuencoded data out of the fixture messages (base64 parts decoded).
python3 - "$tmp" <<'PY'
import email, sys, os
out = sys.argv[1]
for path in ["fixtures/messages/fail-tnef-winmail.eml"]:
    msg = email.message_from_binary_file(open(path, "rb"))
    for i, part in enumerate(msg.walk()):
        data = part.get_payload(decode=True)
        if data and data[:4] == b"\x78\x9f\x3e\x22":
            open(os.path.join(out, f"tnef{i}.dat"), "wb").write(data)
PY
add tnef "$tmp"/tnef*.dat

# CMS bodies out of the S/MIME fixture messages (base64 decoded).
python3 - "$tmp" <<'PY'
import email, glob, sys, os
out = sys.argv[1]
for path in glob.glob("fixtures/messages/*smime*.eml"):
    for i, part in enumerate(email.message_from_binary_file(open(path, "rb")).walk()):
        data = part.get_payload(decode=True)
        if data and data[:1] == b"\x30":
            open(os.path.join(out, f"cms-{os.path.basename(path)}-{i}.der"), "wb").write(data)
PY
add cms "$tmp"/cms-*.der
add inspect_file "$tmp"/tnef*.dat
add uuencode fixtures/messages/fail-uuencoded-exe.eml
K=fixtures/carriers
add carrier_pdf $K/*.pdf
add carrier_rtf $K/*.rtf
add carrier_html $K/*.html
add carrier_binhex $K/*.hqx
CL=fixtures/classified
add text_office $CL/*.docx $CL/*.xlsx $CL/*.pptx $CL/*.odt $CL/*.ods $CL/*.odp
add text_pdf $CL/*.pdf
add text_rtf $CL/*.rtf $CL/*.txt
add inspect_file $K/*
addtext uuencode $'begin 644 a.exe\nM35J0\n`\nend\n'
# Signed documents and documents with macros.
D=fixtures/documents
add inspect_file $D/*.pdf $D/*.doc* $D/*.xls* $D/*.odt $D/*.zip
add archive_zip $D/*.docx $D/*.docm $D/*.xlsx $D/*.xlsm $D/*.odt $D/*.zip
add archive_ole $D/*.doc $D/*.xls
add carrier_pdf $D/*.pdf

# Names: the Content-Type / Content-Disposition values of the fixtures, and a few
# hand-written RFC 2231 / 2047 forms.
grep -hiE -A2 '^content-(type|disposition):' fixtures/messages/*.eml fixtures/forwarding/*.eml \
    | grep -v '^--$' | split -l 3 - "$tmp/names-" || true
add names "$tmp"/names-*
addtext names 'attachment; filename*0*=utf-8'"''"'b%C3%A1o; filename*1="c%C3%A1o.exe"'
addtext names 'application/octet-stream; name="=?utf-8?B?YsOhbyBjw6FvLmV4ZQ==?="'
addtext names 'attachment; filename="=?windows-1258?Q?b=E1o_c=E1o?=.pdf.exe"; size=12'
addtext names $'inline; filename="a\u202Egpj.exe"'

add policy_toml config/congvu-milter.toml
addtext policy_toml $'[forwarding]\nscope = "public"\n[limits]\nmax_unpacked_size = "8 MiB"\n'
addtext policy_toml $'mode = "monitor"\n[domains]\nlocal = ["bacgiang.gov.vn"]\n'

# Forwarding: the first byte picks envelope and connection (see the harness).
for f in fixtures/forwarding/*.eml fixtures/messages/pass-plain-text.eml; do
    for sel in 00 07 1b 2c 3f; do
        { printf "\\x$sel"; cat "$f"; } > "$tmp/fwd-$sel-$(basename "$f")"
    done
done
add forwarding "$tmp"/fwd-*

# Milter streams: one Postfix conversation per fixture message.
FUZZ_SEED_DIR="$tmp/milter" cargo test -q --test tests fuzz_regressions::write_milter_seeds -- --ignored >/dev/null
add milter_session "$tmp"/milter/*
add milter_codec "$tmp"/milter/*
rm -rf "$tmp"
for d in "$C"/*; do printf '%-18s %4d files\n' "$(basename "$d")" "$(ls "$d" | wc -l)"; done
