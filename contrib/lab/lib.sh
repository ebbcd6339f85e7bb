# shellcheck shell=bash
# Helpers shared by contrib/lab/*.sh and contrib/demo/demo.sh. Source it; it
# defines functions only (no side effects).

# Messages go to stderr, prefixed with the calling script's name.
lab_name=${lab_name:-$(basename "${BASH_SOURCE[1]:-$0}")}
say() { printf '%s: %s\n' "$lab_name" "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

need_root() {
    ((EUID == 0)) || die "run as root ($1)"
}

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 ||
            die "'$c' not found — install the test bed packages: bash tests/testbed/install.sh"
    done
}

# True when something listens on 127.0.0.1:PORT or 0.0.0.0:PORT (TCP), read
# from /proc/net/tcp: no connection is made, so no daemon sees a session.
port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    # local_address is field 2 (IP:PORT in hex), st is field 4 (0A = LISTEN).
    awk -v p=":$hex" 'NR > 1 && $4 == "0A" && ($2 == "0100007F" p || $2 == "00000000" p) { f = 1 }
        END { exit !f }' /proc/net/tcp
}

# True when something accepts connections on the unix socket PATH (a socket file
# left by a killed process does not count, when python3 is there to try).
socket_answers() {
    [[ -S $1 ]] || return 1
    command -v python3 >/dev/null 2>&1 || return 0
    python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(2)
s.connect(sys.argv[1])' "$1" 2>/dev/null
}

# Who holds a TCP port, for error messages ("" when unknown).
port_owner() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(("\([^"]*\)",pid=\([0-9]*\).*/\1 (pid \2)/p' | head -1
    fi
}

require_port_free() { # PORT WHAT
    if port_listening "$1"; then
        local who
        who=$(port_owner "$1")
        die "127.0.0.1:$1 ($2) is already in use${who:+ by $who}; stop that or choose another port"
    fi
}

# Last lines of a file, indented, for failure reports.
show_tail() { # FILE [LINES]
    local f=$1 n=${2:-20}
    if [[ -s $f ]]; then
        printf '  --- last %s lines of %s ---\n' "$n" "$f" >&2
        tail -n "$n" "$f" | sed 's/^/  | /' >&2
    else
        printf '  (%s is empty or missing)\n' "$f" >&2
    fi
}

# Starts a command in the background in its own session (process group =
# its pid), stdout+stderr to OUT, and writes its pid to PIDFILE.
spawn_group() { # PIDFILE OUT CMD...
    local pidfile=$1 out=$2
    shift 2
    # setsid(1) execs the command directly (no fork) because a background
    # job of a non-interactive shell is not a group leader: $! is the pid.
    setsid "$@" </dev/null >"$out" 2>&1 &
    echo "$!" >"$pidfile"
}

# True while PID runs. A zombie counts as gone: an orphan's exit is reaped by
# init, which may take a while (some container inits reap every few seconds).
pid_alive() { # PID
    [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

pidfile_alive() { # PIDFILE
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    pid_alive "$pid"
}

# Stops the process group recorded in PIDFILE: SIGTERM, then SIGKILL after
# GRACE seconds. Removes the pid file. Quiet and successful when nothing runs.
stop_group() { # PIDFILE WHAT [GRACE]
    local pidfile=$1 what=$2 grace=${3:-10} pid i
    [[ -s $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if pid_alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then
            say "$what (pid $pid) still running after ${grace}s: SIGKILL"
        fi
    fi
    # Anything left in the group (daemons that outlived their parent).
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# Polls CMD every 0.1 s for up to SECONDS; fails early when PIDFILE's process
# has exited.
wait_for() { # SECONDS PIDFILE CMD...
    local secs=$1 pidfile=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" && return 0
        pidfile_alive "$pidfile" || return 2
        sleep 0.1
    done
    return 1
}

# Sets a file's mtime a minute into the past. Postfix re-reads a main.cf or
# master.cf younger than ~2 s until it is "stable", which makes startup take 2 s.
backdate() {
    touch -d '1 minute ago' "$@"
}
