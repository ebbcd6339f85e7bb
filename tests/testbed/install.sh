#!/usr/bin/env bash
# Installs everything the test suite needs to talk to a real Postfix and a real
# clamd on loopback (Debian 12). Idempotent: when every package is already
# installed it does not touch apt at all (fast path).
#
# The Debian services these packages ship (postfix, clamav-daemon,
# clamav-freshclam, clamav-milter, prometheus) are never left running: the
# tests start their own private instances under /tmp, and freshclam must not
# run at all (no network).
set -euo pipefail

PACKAGES=(
    postfix           # master, smtpd, cleanup, qmgr, smtp, postmap, smtp-sink
    clamav-daemon     # clamd, clamdscan
    clamav            # sigtool (pulled in anyway; listed for the fast-path check)
    clamav-testfiles  # /usr/share/clamav-testfiles/clam.exe and its containers
    clamav-milter     # the peer milter, for benchmarks
    miltertest        # drives a milter without an MTA (Lua)
    swaks             # SMTP client
    zip unzip p7zip-full tar gzip bzip2 xz-utils
    python3
    gcc libc6-dev     # cargo links with cc; zstd-sys compiles C
    ca-certificates
    prometheus        # only for promtool (checks /metrics output)
    procps            # pgrep/ps for diagnostics
    systemd           # systemd-analyze verify (the shipped unit)
    adduser init-system-helpers util-linux  # the .deb's maintainer scripts; setpriv
)
# Binaries the tests call; checked after installing so a broken test bed fails here.
BINARIES=(
    /usr/sbin/postconf /usr/sbin/postmap /usr/sbin/smtp-sink
    /usr/sbin/clamd /usr/bin/clamdscan /usr/bin/sigtool /usr/sbin/clamav-milter
    /usr/bin/miltertest /usr/bin/swaks /usr/bin/zip /usr/bin/unzip /usr/bin/7z
    /usr/bin/tar /usr/bin/gzip /usr/bin/bzip2 /usr/bin/xz /usr/bin/python3
    /usr/bin/promtool
    /usr/share/clamav-testfiles/clam.exe
)
# System services shipped by the packages above.
SERVICES=(clamav-freshclam clamav-daemon clamav-milter postfix prometheus)

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

bad=0
for b in "${BINARIES[@]}"; do
    if [[ ! -e $b ]]; then
        log "MISSING after install: $b"
        bad=1
    fi
done
if ((bad)); then
    exit 1
fi
log "test bed ready (postfix $(postconf -dh mail_version 2>/dev/null), $(clamd --version 2>/dev/null))"
