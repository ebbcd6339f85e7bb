#!/usr/bin/env bash
# congvu-milter in five minutes: installs the test bed packages, builds the
# milter, starts a private clamd, the milter with the SHIPPED policy
# (config/congvu-milter.toml, unmodified) and a private Postfix in front of
# it, then sends sample mail through Postfix and shows what each got.
#
#   sudo contrib/demo/demo.sh           run, then stop everything
#   sudo contrib/demo/demo.sh --keep    leave it all running afterwards
#   sudo contrib/demo/demo.sh --stop    stop what a --keep run left running
#
# Uses 127.0.0.1:2525 (Postfix smtpd), 127.0.0.1:2526 (smtp-sink),
# 127.0.0.1:9898 (metrics), the milter socket
# /var/spool/postfix/congvu-milter/milter.sock and the clamd socket
# /run/clamav/clamd.ctl (both the shipped policy's), and /tmp/congvu-demo.
# Never touches /etc/postfix or the system's services' configuration.
# Exit status 0 when every sample got the expected kind of answer.
set -euo pipefail

# shellcheck disable=SC2034 # used by lib.sh
lab_name=demo.sh
HERE=$(dirname "$(readlink -f "$0")")
REPO=$(readlink -f "$HERE/../..")
LAB=$REPO/contrib/lab
# shellcheck source-path=SCRIPTDIR/../lab source=lib.sh
source "$LAB/lib.sh"

WORK=/tmp/congvu-demo
SMTP_PORT=2525
SINK_PORT=2526
MILTER_SOCKET=/var/spool/postfix/congvu-milter/milter.sock # config/congvu-milter.toml [milter] listen
METRICS_PORT=9898 # config/congvu-milter.toml [metrics] listen
CLAMD_SOCKET=/run/clamav/clamd.ctl # config/congvu-milter.toml [clamav] endpoints
POLICY=$REPO/config/congvu-milter.toml
BIN=$REPO/target/release/congvu-milter

keep=0 stop_only=0
for a in "$@"; do
    case $a in
    --keep) keep=1 ;;
    --stop) stop_only=1 ;;
    -h | --help)
        sed -n '2,16s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "usage: demo.sh [--keep | --stop]" >&2
        exit 2
        ;;
    esac
done

T0=$SECONDS
step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n== %d. %s  [%ss]\n' "$step_no" "$*" "$((SECONDS - T0))"
}
info() { printf '   %s\n' "$*"; }

stop_all() {
    stop_group "$WORK/build.pid" "cargo build" 5
    bash "$LAB/postfix.sh" stop "$WORK/postfix" 2>/dev/null || true
    # The milter lets messages in flight finish (shutdown_grace 30 s).
    stop_group "$WORK/milter.pid" congvu-milter 35
    if [[ -f $WORK/made-socket-dir ]]; then
        rmdir "$(dirname "$MILTER_SOCKET")" 2>/dev/null || true
        rm -f "$WORK/made-socket-dir"
    fi
    bash "$LAB/clamd.sh" stop "$WORK/clamd" 2>/dev/null || true
}

if ((stop_only)); then
    need_root "the demo stops processes it started as root"
    stop_all
    echo "demo.sh: stopped (files stay in $WORK)"
    exit 0
fi

# ---------------------------------------------------------------------------
printf 'congvu-milter demo: sample mail through Postfix -> congvu-milter (+ clamd) -> a sink\n'
need_root "the test bed installs packages and runs Postfix's master; try: sudo $0"

step "Checking that the demo's ports and clamd socket are free"
preflight() {
    local port what state
    for port in $SMTP_PORT $SINK_PORT $METRICS_PORT; do
        case $port in
        "$SMTP_PORT") what="Postfix smtpd of the demo" ;;
        "$SINK_PORT") what="smtp-sink of the demo" ;;
        *) what="congvu-milter metrics, [metrics] listen of the shipped policy" ;;
        esac
        if port_listening "$port"; then
            local who
            who=$(port_owner "$port")
            printf '\ndemo.sh: 127.0.0.1:%s (%s) is already in use%s.\n' "$port" "$what" "${who:+ by $who}" >&2
            if pidfile_alive "$WORK/milter.pid" || pidfile_alive "$WORK/postfix/master.pid"; then
                echo "demo.sh: a previous 'demo.sh --keep' is still running: sudo $0 --stop" >&2
            else
                echo "demo.sh: stop that program (e.g. an installed congvu-milter: systemctl stop congvu-milter) and run the demo again." >&2
            fi
            exit 1
        fi
    done
    if socket_answers "$MILTER_SOCKET"; then
        printf '\ndemo.sh: %s ([milter] listen of the shipped policy) is in use.\n' "$MILTER_SOCKET" >&2
        if pidfile_alive "$WORK/milter.pid"; then
            echo "demo.sh: a previous 'demo.sh --keep' is still running: sudo $0 --stop" >&2
        else
            echo "demo.sh: stop that program (e.g. an installed congvu-milter: systemctl stop congvu-milter) and run the demo again." >&2
        fi
        exit 1
    fi
    if command -v python3 >/dev/null 2>&1; then
        state=$(bash "$LAB/clamd.sh" ping --socket "$CLAMD_SOCKET" 2>/dev/null) || true
    else
        state=absent # no python3 yet: the socket is checked again after the install
        [[ -S $CLAMD_SOCKET ]] && state="a socket file exists"
    fi
    if [[ $state != absent ]]; then
        [[ $state == pong ]] && state="a clamd answers PING there"
        printf '\ndemo.sh: %s is already in use (%s).\n' "$CLAMD_SOCKET" "$state" >&2
        echo "demo.sh: the shipped policy scans with the clamd on that socket, and this demo" >&2
        echo "demo.sh: starts its own there (with a tiny test signature database). It will not" >&2
        echo "demo.sh: stop yours: stop it yourself (systemctl stop clamav-daemon.socket clamav-daemon) and run the demo again." >&2
        exit 1
    fi
}
preflight
info "127.0.0.1:$SMTP_PORT $SINK_PORT $METRICS_PORT, $MILTER_SOCKET and $CLAMD_SOCKET: free"

# From here on, whatever we started is stopped on exit (error, Ctrl-C, end)
# unless --keep and the demo ran to its end.
leave_running=0
on_exit() {
    local rc=$?
    if ((leave_running == 0)); then
        stop_all
        if ((step_no >= 3)); then
            printf '\nStopped everything the demo started. Files stay in %s.\n' "$WORK"
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'echo; echo "demo.sh: interrupted" >&2; exit 130' INT TERM HUP

rm -rf "$WORK"
mkdir -p "$WORK"
chmod 755 "$WORK"

# ---------------------------------------------------------------------------
step "Installing the test bed packages (tests/testbed/install.sh)"
info "Postfix, clamd, clamav-testfiles, python3, ... Already installed: a few seconds."
info "Output: $WORK/install.log"
if ! bash "$REPO/tests/testbed/install.sh" >"$WORK/install.log" 2>&1; then
    echo "demo.sh: installing the packages failed:" >&2
    show_tail "$WORK/install.log" 30
    exit 1
fi
info "$(grep -o 'test bed ready.*' "$WORK/install.log" | tail -1)"

# ---------------------------------------------------------------------------
step "Building congvu-milter (cargo build --release)"
# Under sudo, PATH and HOME are root's. When the invoking user owns the
# checkout and has cargo (rustup), build as that user, so that target/ and
# ~/.cargo stay theirs; otherwise build as root.
build_as=() cargo=${CARGO:-}
if [[ -z $cargo && -n ${SUDO_USER:-} && $SUDO_USER != root && $(stat -c %U "$REPO") == "$SUDO_USER" ]]; then
    user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    if [[ -x $user_home/.cargo/bin/cargo ]]; then
        cargo=$user_home/.cargo/bin/cargo
        build_as=(runuser -u "$SUDO_USER" -- env "HOME=$user_home" "PATH=$user_home/.cargo/bin:$PATH")
    fi
fi
if [[ -z $cargo ]]; then
    cargo=$(command -v cargo || true)
    [[ -n $cargo ]] || { [[ -x /root/.cargo/bin/cargo ]] && cargo=/root/.cargo/bin/cargo; } || true
fi
if [[ -z $cargo ]]; then
    echo "demo.sh: cargo not found (looked in root's PATH, /root/.cargo/bin${SUDO_USER:+ and ~$SUDO_USER/.cargo/bin})." >&2
    echo "demo.sh: Install Rust 1.95 (https://rustup.rs), then run the demo again" >&2
    echo "demo.sh: (or point to it: sudo CARGO=/path/to/cargo $0)." >&2
    exit 1
fi
# Rust links with the system's C compiler (and zstd-sys compiles C): a fresh
# Debian has none, and tests/testbed/install.sh does not install one.
if ! command -v cc >/dev/null 2>&1; then
    info "No C compiler (cc): installing gcc and libc6-dev, which Rust needs to link."
    if ! { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev ||
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends gcc libc6-dev; }; } >>"$WORK/install.log" 2>&1; then
        echo "demo.sh: installing gcc failed:" >&2
        show_tail "$WORK/install.log" 20
        exit 1
    fi
fi
info "$cargo build --release${build_as:+ (as $SUDO_USER)}; the first build takes several minutes."
info "Output: $WORK/build.log"
# In the background (its own process group, stopped on exit), so that a long
# first build shows signs of life.
cd "$REPO"
spawn_group "$WORK/build.pid" "$WORK/build.log" "${build_as[@]}" "$cargo" build --release
build_pid=$(<"$WORK/build.pid")
waited=0
while pid_alive "$build_pid"; do
    sleep 1
    waited=$((waited + 1))
    if ((waited % 30 == 0)); then
        info "... still building, ${waited}s so far ($(grep -c "^ *Compiling " "$WORK/build.log" || true) crate(s) compiled)"
    fi
done
build_rc=0
wait "$build_pid" 2>/dev/null || build_rc=$?
rm -f "$WORK/build.pid"
if ((build_rc != 0)) || ! grep -qE '^ *Finished' "$WORK/build.log"; then
    echo "demo.sh: the build failed:" >&2
    show_tail "$WORK/build.log" 30
    exit 1
fi
info "$(grep -E '^ *Finished' "$WORK/build.log" | tail -1 | sed 's/^ *//')"
[[ -x $BIN ]] || die "$BIN missing after the build"

# ---------------------------------------------------------------------------
step "Starting clamd on $CLAMD_SOCKET (tiny test database: clam.exe + EICAR)"
mkdir -p "$(dirname "$CLAMD_SOCKET")"
preflight # again: the packages are in place now, and time has passed
if ! bash "$LAB/clamd.sh" start "$WORK/clamd" --socket "$CLAMD_SOCKET" --stream-max 30M 2>"$WORK/clamd-start.err"; then
    cat "$WORK/clamd-start.err" >&2
    exit 1
fi
info "clamd pid $(<"$WORK/clamd/clamd.pid"), log $WORK/clamd/clamd.log"

# ---------------------------------------------------------------------------
step "Starting congvu-milter with the shipped policy (config/congvu-milter.toml)"
# The socket directory the Debian package makes; made here (and removed at the
# end) when the package is not installed.
SOCKET_DIR=$(dirname "$MILTER_SOCKET")
if [[ ! -d $SOCKET_DIR ]]; then
    install -d -m 0750 -g postfix "$SOCKET_DIR"
    touch "$WORK/made-socket-dir"
fi
info "$BIN serve --config $POLICY"
spawn_group "$WORK/milter.pid" "$WORK/milter.log" "$BIN" serve --config "$POLICY"
readyz() {
    python3 -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:'"$METRICS_PORT"'/readyz", timeout=2).status == 200 else 1)' 2>/dev/null
}
milter_ready() { [[ -S $MILTER_SOCKET ]] && readyz; }
rc=0
wait_for 30 "$WORK/milter.pid" milter_ready || rc=$?
if ((rc != 0)); then
    if ((rc == 2)); then
        echo "demo.sh: congvu-milter exited during startup:" >&2
    else
        echo "demo.sh: congvu-milter is not ready (milter on $MILTER_SOCKET, /readyz on 127.0.0.1:$METRICS_PORT) after 30 s:" >&2
    fi
    show_tail "$WORK/milter.log" 30
    exit 1
fi
info "milter on unix:$MILTER_SOCKET, /metrics on http://127.0.0.1:$METRICS_PORT/metrics (pid $(<"$WORK/milter.pid"))"
info "log $WORK/milter.log"

# ---------------------------------------------------------------------------
step "Starting a private Postfix on 127.0.0.1:$SMTP_PORT (smtpd_milters = unix:$MILTER_SOCKET) relaying to smtp-sink on $SINK_PORT"
if ! bash "$LAB/postfix.sh" sink "$WORK/postfix" --port "$SINK_PORT" 2>"$WORK/postfix-start.err" ||
    ! bash "$LAB/postfix.sh" start "$WORK/postfix" --port "$SMTP_PORT" --sink-port "$SINK_PORT" \
        --milter "unix:$MILTER_SOCKET" 2>>"$WORK/postfix-start.err"; then
    cat "$WORK/postfix-start.err" >&2
    exit 1
fi
info "config and queue in $WORK/postfix, log $WORK/postfix/postfix.log (no /etc/postfix involved)"

# ---------------------------------------------------------------------------
step "Sending sample mail: MAIL FROM:<sender@example.org> RCPT TO:<nguoidung@bacgiang.gov.vn>"
info "Each line: the message, then the reply Postfix gave the SMTP client."
sent_ok=0
python3 "$HERE/send-samples.py" "$REPO" --port "$SMTP_PORT" --results "$WORK/results.jsonl" || sent_ok=$?

total=$(wc -l <"$WORK/results.jsonl")
accepted=$(grep -c '"kind": "accept"' "$WORK/results.jsonl" || true)
mismatched=$(grep -c '"ok": false' "$WORK/results.jsonl" || true)

# ---------------------------------------------------------------------------
step "What congvu-milter logged: one line per message, starting with the Postfix queue id"
info "Abridged (without timestamp, client, recipients, rules, reply; cut at 200 characters)."
info "Full lines: $WORK/milter.log"
# The verdict of the last message is logged right after Postfix got its reply.
for _ in $(seq 50); do
    (($(grep -c 'message decided' "$WORK/milter.log" || true) >= total)) && break
    sleep 0.1
done
python3 - "$WORK/milter.log" <<'PY' || true
import re, sys
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    # "<time> 7AE989B817B: reject queue_id=... client=... reply=\"...\" ... conn=.. mta=.. client=.."
    m = re.match(r"\S+ ([0-9A-Za-z]+: (?:accept|reject|tempfail|quarantine|discard|tag)\b.*)", line)
    if not m:
        continue
    text = m.group(1)
    text = re.sub(r' (queue_id|client|recipients|action|rules|stage|conn|mta)=\S*', "", text)
    text = re.sub(r' reply="(?:\\.|[^"\\])*"', "", text)
    if len(text) > 200:
        text = text[:199] + "…"
    print("   " + text)
PY

step "A few lines of http://127.0.0.1:$METRICS_PORT/metrics"
info "messages_total counts messages; verdicts_total counts findings (one message can have several)."
python3 - "$METRICS_PORT" <<'PY' || true
import sys, urllib.request
body = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode()
for line in body.splitlines():
    if line.startswith(("congvu_milter_messages_total", "congvu_milter_verdicts_total",
                        "congvu_milter_clamd_scans_total", "congvu_milter_forwarding_blocks_total")):
        print("   " + line)
PY

step "What reached the sink (smtp-sink on 127.0.0.1:$SINK_PORT)"
delivered() { find "$WORK/postfix/sink" -type f | wc -l; }
for _ in $(seq 100); do
    (($(delivered) >= accepted)) && break
    sleep 0.1
done
info "$(delivered) message(s) in $WORK/postfix/sink/: the $accepted that Postfix accepted; the other $((total - accepted)) were refused."

# ---------------------------------------------------------------------------
printf '\n== Where to look\n'
info "Postfix log        $WORK/postfix/postfix.log"
info "congvu-milter log  $WORK/milter.log"
info "clamd log          $WORK/clamd/clamd.log"
info "delivered mail     $WORK/postfix/sink/"
info "replies (JSON)     $WORK/results.jsonl"
info "the policy         $POLICY (comments explain every key)"
info "try one file       $BIN scan --config $POLICY $REPO/fixtures/messages/fail-double-extension.eml"
info "lab scripts        contrib/lab/README.md (private Postfix and clamd for your own runs)"

printf '\n'
if ((sent_ok == 0)); then
    printf 'RESULT: all %d messages got the expected answer (%d accepted, %d refused) in %ss.\n' \
        "$total" "$accepted" "$((total - accepted))" "$((SECONDS - T0))"
else
    printf 'RESULT: %d of %d messages did NOT get the expected answer (lines marked FAIL above).\n' \
        "$mismatched" "$total"
fi

if ((keep)); then
    leave_running=1
    printf '\nStill running (--keep): Postfix on 127.0.0.1:%s, congvu-milter on %s, clamd on %s.\n' \
        "$SMTP_PORT" "$MILTER_SOCKET" "$CLAMD_SOCKET"
    printf 'Send your own: swaks -s 127.0.0.1:%s -f sender@example.org -t nguoidung@bacgiang.gov.vn --attach @FILE -n\n' "$SMTP_PORT"
    printf 'Stop it all:   sudo %s --stop\n' "$0"
fi
((sent_ok == 0))
