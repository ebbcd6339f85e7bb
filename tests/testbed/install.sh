#!/usr/bin/env bash
# Installs everything the test suite, the demo (contrib/demo), the lab scripts
# (contrib/lab) and, with --bench, the benchmarks (bench/) need to talk to a real
# Postfix and a real clamd on loopback (Debian 12). Idempotent: when every package
# is already installed it does not touch apt at all (fast path).
#
#   bash tests/testbed/install.sh            what tests/run.sh and the demo need
#   bash tests/testbed/install.sh --bench    also perf, valgrind, curl and libmilter-dev (bench/)
#
# Every binary those scripts call is listed below beside the package that ships
# it, and after installing, dpkg is asked who owns each file: a binary that is
# present only because some other package happened to pull it in (as clamdscan
# was by clamav-daemon's Recommends before ClamAV 1.4) fails here, on every
# machine, instead of on the next fresh one.
#
# The Debian services these packages ship (postfix, clamav-daemon,
# clamav-freshclam, clamav-milter, prometheus, rspamd) are never left running:
# the tests start their own private instances under /tmp, and freshclam must not
# run at all (no network).
set -euo pipefail

bench=0
for a in "$@"; do
    case $a in
    --bench) bench=1 ;;
    *)
        echo "usage: install.sh [--bench]" >&2
        exit 2
        ;;
    esac
done

# One row per package: the package, then the files of it that the scripts and
# tests call (paths as dpkg records them; /bin and /usr/bin are the same
# directory on Debian 12, so either spelling works for the existence check). A
# row with no file is a package needed for what it brings as a whole.
PACKAGES_AND_FILES=(
    "postfix /usr/sbin/postconf /usr/sbin/postmap /usr/sbin/postmulti /usr/sbin/smtp-sink /usr/lib/postfix/sbin/master"
    "clamav-daemon /usr/sbin/clamd"
    "clamdscan /usr/bin/clamdscan" # its own package since ClamAV 1.4; clamav-daemon only recommends it
    "clamav /usr/bin/sigtool"
    "clamav-testfiles /usr/share/clamav-testfiles/clam.exe" # real test executables in many containers
    "clamav-milter /usr/sbin/clamav-milter"                 # the peer milter, for benchmarks
    "miltertest /usr/bin/miltertest"                        # drives a milter without an MTA (Lua)
    "swaks /usr/bin/swaks"                                  # SMTP client
    "zip /usr/bin/zip"
    "unzip /usr/bin/unzip"
    "p7zip-full /usr/bin/7z"
    "tar /bin/tar"
    "gzip /bin/gzip"
    "bzip2 /bin/bzip2"
    "xz-utils /usr/bin/xz"
    "python3-minimal /usr/bin/python3"
    "python3" # the standard library (email, smtplib) beside the interpreter
    "qpdf /usr/bin/qpdf"       # PDF attachments (fixtures/carriers/make-carriers.sh)
    "macutils /usr/bin/binhex" # BinHex 4.0 (fixtures/carriers/make-carriers.sh)
    "openssl /usr/bin/openssl" # S/MIME fixtures (fixtures/messages/make-sealed.sh)
    "gpg /usr/bin/gpg"         # PGP/MIME fixture (fixtures/messages/make-sealed.sh)
    "libreoffice-common /usr/bin/soffice"                           # the regulation as docx and PDF (tests/inspect_classified.rs)
    "libreoffice-writer-nogui /usr/lib/libreoffice/program/libswlo.so" # ... its Writer: docx import and export, PDF export
    "gcc /usr/bin/gcc"
    "libc6-dev" # cargo links with cc; zstd-sys compiles C
    "libarchive-dev /usr/include/archive.h" # the program links libarchive (cab, iso, rar, ...)
    "gcab /usr/bin/gcab"                   # fixtures/archives/make-archives.sh: cab
    "genisoimage /usr/bin/genisoimage"     # ... ISO 9660
    "jlha-utils /usr/bin/jlha"             # ... LHA
    "cpio /usr/bin/cpio"                   # ... cpio
    "binutils /usr/bin/ar"                 # ... ar
    "libarchive-tools /usr/bin/bsdtar"     # ... xar
    "ca-certificates"
    "prometheus /usr/bin/promtool" # checks /metrics output and the alert rules
    "rspamd /usr/bin/rspamd /usr/bin/rspamadm /etc/rspamd/rspamd.conf" # the spam filter chained after the milter (contrib/rspamd)
    "procps /bin/ps /usr/bin/pgrep /usr/bin/pkill"
    "iproute2 /bin/ss"                                # who holds a port, in error messages
    "coreutils /usr/bin/timeout /usr/bin/nproc"
    "util-linux /usr/bin/setpriv /sbin/runuser"     # drop privileges (tests, demo)
    "systemd /usr/bin/systemd-analyze"                # checks the shipped unit
    "logrotate /usr/sbin/logrotate"                   # runs contrib/logrotate (audit records)
    "dpkg /usr/bin/dpkg-deb"                          # the .deb's contents
    "adduser /usr/sbin/adduser"                       # the .deb's maintainer scripts
    "binutils /usr/bin/strip /usr/bin/objcopy /usr/bin/readelf" # cargo-deb strips, splits debug info
    "init-system-helpers /usr/sbin/update-rc.d"
)
BENCH_PACKAGES_AND_FILES=(
    "linux-perf"             # bench/milter-alone.sh PROFILE=perf (/usr/bin/perf is a dpkg diversion)
    "valgrind /usr/bin/valgrind /usr/bin/callgrind_annotate" # bench/milter-alone.sh PROFILE=callgrind
    "curl /usr/bin/curl"     # reads /metrics during the soak
    "libmilter-dev /usr/include/libmilter/mfapi.h" # bench/postfix/null-libmilter.c (gcc ... -lmilter)
)
# System services shipped by the packages above.
SERVICES=(clamav-freshclam clamav-daemon clamav-milter postfix prometheus rspamd)
if ((bench)); then
    PACKAGES_AND_FILES+=("${BENCH_PACKAGES_AND_FILES[@]}")
fi

PACKAGES=()
FILES=()  # "package path" pairs
for row in "${PACKAGES_AND_FILES[@]}"; do
    read -r -a words <<<"$row"
    PACKAGES+=("${words[0]}")
    for path in "${words[@]:1}"; do
        FILES+=("${words[0]} $path")
    done
done

log() { printf 'install.sh: %s\n' "$*" >&2; }

missing_packages() {
    local p status
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [[ "$status" == installed ]] || printf '%s\n' "$p"
    done
}

# Stop and disable one Debian service if it exists. Works with and without
# systemd (containers usually have none).
quiesce_service() {
    local svc=$1
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
        if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
            systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
        fi
        return 0
    fi
    [[ -x /etc/init.d/$svc ]] || return 0
    # Don't start at boot (sysvinit); harmless if already disabled.
    update-rc.d "$svc" disable >/dev/null 2>&1 || true
    # Stop it only if it is actually running (keeps the fast path quiet).
    # Debian's postfix init script says "running" (exit 0) when there is no
    # main.cf at all, so look at the master's pid file instead.
    local running=0
    if [[ $svc == postfix ]]; then
        local pid
        pid=$(cat /var/spool/postfix/pid/master.pid 2>/dev/null || true)
        [[ -n ${pid// /} ]] && kill -0 $pid 2>/dev/null && running=1
    elif /etc/init.d/"$svc" status >/dev/null 2>&1; then
        running=1
    fi
    if ((running)); then
        log "stopping system service $svc"
        /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
    fi
}

mapfile -t MISSING < <(missing_packages)
# TESTBED_FORCE_APT=1 takes the slow path even when everything is installed.
if [[ ${TESTBED_FORCE_APT:-} == 1 && ${#MISSING[@]} == 0 ]]; then
    MISSING=("(forced)")
fi

if ((${#MISSING[@]} > 0)); then
    if ((EUID != 0)); then
        log "missing packages: ${MISSING[*]}"
        log "run as root (CI does) or install them by hand"
        exit 1
    fi
    log "installing: ${MISSING[*]}"
    start=$SECONDS
    # Postfix asks what kind of mail server this is; answer "none" so the
    # package installs without touching /etc/postfix/main.cf. freshclam must
    # never run: there is no network, and the tests build their own signatures.
    debconf-set-selections <<'SEL'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string testbed.invalid
clamav-freshclam clamav-freshclam/autoupdate_freshclam select manual
clamav-daemon clamav-daemon/debconf boolean true
SEL
    # Keep maintainer scripts from starting services while installing
    # (Docker images usually ship such a policy already; keep theirs if so).
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${PACKAGES[@]}"
    log "apt done in $((SECONDS - start)) s"
fi

for svc in "${SERVICES[@]}"; do
    quiesce_service "$svc"
done

# The other spelling of a path under Debian 12's merged /usr (/bin = /usr/bin).
merged_alias() {
    case $1 in
    /usr/bin/* | /usr/sbin/* | /usr/lib/*) printf '%s\n' "${1#/usr}" ;;
    /bin/* | /sbin/* | /lib/*) printf '/usr%s\n' "$1" ;;
    *) printf '%s\n' "$1" ;;
    esac
}

# Which package owns each listed file, in one dpkg call: "path package" lines.
file_owners() {
    local pair paths=()
    for pair in "${FILES[@]}"; do
        paths+=("${pair#* }" "$(merged_alias "${pair#* }")")
    done
    # dpkg-query exits 1 when some spelling is unknown, and prints the rest.
    # Multi-Arch: same packages come as "libmilter-dev:amd64: PATH": drop the arch.
    dpkg-query -S "${paths[@]}" 2>/dev/null | grep -v '^diversion by ' |
        sed -e 's/:[a-z0-9_]*\([,:] \)/\1/g' |
        sed -n 's/^\([^:]*\): \(.*\)$/\2 \1/p' || true
}

bad=0
declare -A OWNER=()
while read -r path owner; do
    OWNER[$path]=$owner
done < <(file_owners)
for pair in "${FILES[@]}"; do
    package=${pair%% *} path=${pair#* }
    if [[ ! -e $path ]]; then
        log "MISSING after install: $path (package $package)"
        bad=1
        continue
    fi
    owner=${OWNER[$path]:-${OWNER[$(merged_alias "$path")]:-}}
    # Shared files are listed as "pkg1, pkg2: path".
    if [[ ", $owner, " != *", $package, "* ]]; then
        log "WRONG PACKAGE: $path is shipped by '${owner:-no package}', not by '$package'; list the package that ships it"
        bad=1
        continue
    fi
    log "$package provides $path"
done
if ((bad)); then
    exit 1
fi
log "test bed ready (postfix $(postconf -dh mail_version 2>/dev/null), $(clamd --version 2>/dev/null))"
