# shellcheck shell=bash
# Helpers for bench/postfix/*.sh and bench/soak/*.sh: install what the benchmarks
# need, start/stop congvu-milter, clamav-milter and rspamd next to the lab's private
# Postfix and clamd (contrib/lab/). Source it after setting REPO; defines functions
# only. Everything listens on 127.0.0.1 only; rspamd gets a resolver on 127.0.0.1:53
# (where nothing answers) and its network modules switched off, so nothing leaves
# the machine.

LAB=$REPO/contrib/lab
# shellcheck source=../../contrib/lab/lib.sh
source "$LAB/lib.sh"

BIN=${CONGVU_BIN:-$REPO/target/release/congvu-milter}

# The test bed packages (rspamd among them) and the benchmarks' own (perf, curl):
# tests/testbed/install.sh --bench, which also keeps the system rspamd stopped.
bench_install() {
    local log=${BENCH_WORK:-/tmp}/install.log
    say "installing the test bed and benchmark packages (tests/testbed/install.sh --bench; log $log)"
    if ! bash "$REPO/tests/testbed/install.sh" --bench >"$log" 2>&1; then
        show_tail "$log" 30
        die "tests/testbed/install.sh --bench failed"
    fi
}

# CPU seconds (user+sys, clock ticks -> s) of a process group, from /proc
# (0 for group 0: no process to measure).
group_cpu() { # PGID
    python3 - "$1" <<'PY'
import os, sys
pg, tck, tot = int(sys.argv[1]), os.sysconf("SC_CLK_TCK"), 0
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(f[2]) == pg:
            tot += int(f[11]) + int(f[12])
print(f"{tot / tck:.2f}" if pg else "0")
PY
}

# Builds the release binary when it is missing or older than the sources.
bench_build() {
    if [[ -n ${CONGVU_BIN:-} ]]; then
        [[ -x $BIN ]] || die "CONGVU_BIN=$BIN is not an executable"
        return 0
    fi
    if [[ -x $BIN ]] && [[ -z $(find "$REPO/src" "$REPO/Cargo.toml" "$REPO/Cargo.lock" -newer "$BIN" -print -quit) ]]; then
        return 0
    fi
    local cargo
    cargo=$(command -v cargo || echo /root/.cargo/bin/cargo)
    [[ -x $cargo ]] || die "cargo not found; build target/release/congvu-milter first"
    say "building $BIN (cargo build --release; the first build takes ~10 min)"
    (cd "$REPO" && "$cargo" build --release --bin congvu-milter) >"${BENCH_WORK:-/tmp}/build.log" 2>&1 ||
        { show_tail "${BENCH_WORK:-/tmp}/build.log" 30; die "cargo build --release failed"; }
}

# Writes a policy: the shipped config/congvu-milter.toml with listen, metrics,
# clamd endpoint and [clamav] enabled changed, plus optional "section.key=value"
# edits (the value is TOML, e.g. 'limits.max_buffered_bytes="512 MiB"').
congvu_policy() { # OUT MILTER_PORT METRICS_PORT CLAMD_SOCKET CLAMAV(true|false) [EDIT]...
    python3 - "$REPO/config/congvu-milter.toml" "$@" <<'PY'
import re, sys
src, out, mport, xport, sock, clam, *edits = sys.argv[1:]
text = open(src).read()
edits = [f'milter.listen=["inet:127.0.0.1:{mport}"]', f'metrics.listen="127.0.0.1:{xport}"',
         f'clamav.endpoints=["unix:{sock}"]', f"clamav.enabled={clam}"] + edits
for e in edits:
    key, val = e.split("=", 1)
    section, name = key.rsplit(".", 1)
    # the [section] block: from its header to the next header
    m = re.search(r"(?ms)^\[" + re.escape(section) + r"\]\n(.*?)(?=^\[|\Z)", text)
    if not m:
        sys.exit(f"congvu_policy: no [{section}] in {src}")
    block = m.group(1)
    pat = re.compile(r"(?m)^" + re.escape(name) + r"\s*=.*$")
    if pat.search(block):
        block = pat.sub(lambda _: f"{name} = {val}", block, count=1)
    else:
        block = f"{name} = {val}\n" + block
    text = text[:m.start(1)] + block + text[m.end(1):]
open(out, "w").write(text)
PY
    "$BIN" check-config --config "$1" >/dev/null || die "the generated policy $1 does not load"
}

# Starts congvu-milter in its own process group; waits for /readyz. MILTER is the
# loopback port of its milter socket, or the path of its unix socket (the policy
# says which it listens on).
congvu_start() { # DIR POLICY MILTER METRICS_PORT
    local dir=$1 policy=$2 mport=$3 xport=$4
    mkdir -p "$dir"
    [[ $mport == /* ]] || require_port_free "$mport" "congvu-milter"
    require_port_free "$xport" "congvu-milter metrics"
    spawn_group "$dir/milter.pid" "$dir/milter.log" "$BIN" serve --config "$policy"
    local rc=0
    wait_for 30 "$dir/milter.pid" congvu_ready "$mport" "$xport" || rc=$?
    if ((rc != 0)); then
        show_tail "$dir/milter.log" 30
        die "congvu-milter did not become ready on $mport"
    fi
    say "congvu-milter on $mport (metrics $xport, pid $(<"$dir/milter.pid"))"
}
congvu_ready() { # MILTER METRICS_PORT
    if [[ $1 == /* ]]; then
        [[ -S $1 ]] || return 1
    else
        port_listening "$1" || return 1
    fi
    python3 -c 'import sys, urllib.request
sys.exit(0 if urllib.request.urlopen("http://127.0.0.1:'"$2"'/readyz", timeout=2).status == 200 else 1)' 2>/dev/null
}
congvu_stop() { stop_group "$1/milter.pid" congvu-milter 35; }

# bench/tools/null-milter.rs: congvu-milter's protocol layer alone, accepting every
# message unread; what feeding any milter costs Postfix (configuration n).
NULL_MILTER=$REPO/target/release/examples/null-milter
null_milter_start() { # DIR PORT
    local dir=$1 port=$2
    mkdir -p "$dir"
    require_port_free "$port" "null-milter"
    if [[ ! -x $NULL_MILTER ]] || [[ -n $(find "$REPO/src" "$REPO/bench/tools" -newer "$NULL_MILTER" -print -quit) ]]; then
        say "building $NULL_MILTER (cargo build --release --example null-milter)"
        (cd "$REPO" && cargo build --release --example null-milter) >"$dir/build.log" 2>&1 ||
            { show_tail "$dir/build.log" 30; die "cargo build --example null-milter failed"; }
    fi
    spawn_group "$dir/milter.pid" "$dir/milter.log" "$NULL_MILTER" "127.0.0.1:$port"
    wait_for 30 "$dir/milter.pid" port_listening "$port" || die "null-milter did not listen on 127.0.0.1:$port"
    say "null-milter on 127.0.0.1:$port (pid $(<"$dir/milter.pid"))"
}
null_milter_stop() { stop_group "$1/milter.pid" null-milter 10; }

# bench/postfix/null-libmilter.c: a do-nothing milter on Sendmail's libmilter
# (libmilter-dev), built with gcc into DIR; SPEC is libmilter's "inet:PORT@127.0.0.1"
# or "unix:/PATH".
null_libmilter_start() { # DIR SPEC
    local dir=$1 spec=$2 exe
    mkdir -p "$dir"
    exe=$dir/null-libmilter
    gcc -O2 -Wall -o "$exe" "$REPO/bench/postfix/null-libmilter.c" -lmilter -pthread 2>"$dir/build.log" ||
        { show_tail "$dir/build.log" 20; die "gcc could not build null-libmilter (apt-get install libmilter-dev)"; }
    local rc=0 port=${spec#inet:}
    port=${port%@*}
    [[ $spec != inet:* ]] || require_port_free "$port" null-libmilter
    spawn_group "$dir/milter.pid" "$dir/milter.log" "$exe" "$spec"
    case $spec in
    unix:*) wait_for 30 "$dir/milter.pid" test -S "${spec#unix:}" || rc=$? ;;
    *) wait_for 30 "$dir/milter.pid" port_listening "$port" || rc=$? ;;
    esac
    ((rc == 0)) || { show_tail "$dir/milter.log" 20; die "null-libmilter did not listen on $spec"; }
    say "null-libmilter on $spec (pid $(<"$dir/milter.pid"))"
}
null_libmilter_stop() { stop_group "$1/milter.pid" null-libmilter 10; }

# Debian's clamav-milter with its own config file: OnInfected Reject, OnFail Defer.
clamav_milter_start() { # DIR PORT CLAMD_SOCKET
    local dir=$1 port=$2 sock=$3
    mkdir -p "$dir/tmp"
    chmod 755 "$dir" "$dir/tmp"
    require_port_free "$port" "clamav-milter"
    cat >"$dir/clamav-milter.conf" <<EOF
# Private clamav-milter for the benchmark (bench/postfix/peers.sh)
MilterSocket inet:$port@127.0.0.1
ClamdSocket unix:$sock
OnClean Accept
OnInfected Reject
OnFail Defer
AddHeader Replace
Foreground yes
LogSyslog no
LogFile $dir/clamav-milter.log
LogInfected Basic
PidFile $dir/clamav-milter.pidfile
TemporaryDirectory $dir/tmp
MaxFileSize 25M
ReadTimeout 300
EOF
    spawn_group "$dir/clamav-milter.pid" "$dir/clamav-milter.out" clamav-milter -c "$dir/clamav-milter.conf"
    local rc=0
    wait_for 30 "$dir/clamav-milter.pid" port_listening "$port" || rc=$?
    if ((rc != 0)); then
        show_tail "$dir/clamav-milter.out" 20
        show_tail "$dir/clamav-milter.log" 20
        die "clamav-milter did not listen on 127.0.0.1:$port"
    fi
    say "clamav-milter on 127.0.0.1:$port -> clamd unix:$sock (pid $(<"$dir/clamav-milter.pid"))"
}
clamav_milter_stop() { stop_group "$1/clamav-milter.pid" clamav-milter 10; }

# Debian's rspamd, private instance: stock /etc/rspamd/rspamd.conf with
# LOCAL_CONFDIR, DBDIR, RUNDIR, LOGDIR redirected into DIR (--var), proxy worker in
# milter mode with self_scan on 127.0.0.1:PORT, antivirus on the same clamd with
# action reject, mime_types bad extensions forced to reject; redis-backed and
# network (DNS/HTTP) modules off, resolver 127.0.0.1:53. With UNIX_SOCKET, the
# same proxy worker also listens on that unix socket (mode 0666).
rspamd_start() { # DIR PORT CLAMD_SOCKET NORMAL_PORT CONTROLLER_PORT [UNIX_SOCKET]
    local dir=$1 port=$2 sock=$3 nport=$4 cport=$5 usock=${6:-} d
    dir=$(mkdir -p "$dir" && readlink -f "$dir")
    chmod 755 "$dir"
    for d in etc/local.d etc/override.d db run log; do mkdir -p "$dir/$d"; done
    chown _rspamd:_rspamd "$dir/db" "$dir/run" "$dir/log"
    require_port_free "$port" "rspamd proxy (milter)"
    require_port_free "$nport" "rspamd normal worker"
    require_port_free "$cport" "rspamd controller"
    local l=$dir/etc/local.d o=$dir/etc/override.d unix_bind=''
    [[ -z $usock ]] || unix_bind="bind_socket = \"$usock mode=0666 owner=_rspamd\";"
    cat >"$l/worker-proxy.inc" <<EOF
milter = yes;
bind_socket = "127.0.0.1:$port";
$unix_bind
timeout = 120s;
upstream "local" {
  default = yes;
  self_scan = yes;
}
EOF
    # The stock rspamd.conf binds these to localhost:11333/11334: move them
    # (override.d wins over the stock bind_socket).
    printf 'bind_socket = "127.0.0.1:%s";\n' "$nport" >"$o/worker-normal.inc"
    printf 'bind_socket = "127.0.0.1:%s";\n' "$cport" >"$o/worker-controller.inc"
    cat >"$l/options.inc" <<'EOF'
# No network: names resolve against 127.0.0.1:53, where nothing answers.
dns {
  nameserver = ["127.0.0.1:53"];
  timeout = 0.2s;
  retransmits = 1;
}
EOF
    cat >"$l/logging.inc" <<'EOF'
level = "warning";
EOF
    cat >"$l/antivirus.conf" <<EOF
clamav {
  type = "clamav";
  servers = "$sock";
  action = "reject";
  message = '\${SCANNER}: virus found: "\${VIRUS}"';
  symbol = "CLAM_VIRUS";
  scan_mime_parts = true;
  scan_text_mime = false;
  scan_image_mime = false;
  max_size = 26214400;
  log_clean = false;
  retransmits = 2;
  timeout = 30.0;
}
EOF
    # mime_types: the shipped map only (no https://maps.rspamd.com), bad
    # extensions (exe, com, ... as congvu-milter's list) forced to reject below.
    cat >"$o/mime_types.conf" <<'EOF'
file = ["fallback+file://${CONFDIR}/maps.d/mime_types.inc"];
EOF
    cat >"$l/mime_types.conf" <<'EOF'
bad_extensions = {
  exe = 4; com = 4; scr = 4; pif = 4; bat = 4; cmd = 4; vbs = 4; vbe = 4; js = 4;
  jse = 4; wsf = 4; wsh = 4; hta = 4; cpl = 4; msi = 4; msp = 4; jar = 4; ps1 = 4;
  lnk = 4; reg = 4;
}
EOF
    cat >"$l/force_actions.conf" <<'EOF'
rules {
  BAD_EXTENSION_REJECT {
    action = "reject";
    expression = "MIME_BAD_EXTENSION | MIME_DOUBLE_BAD_EXTENSION | MIME_BAD_UNICODE | MIME_ARCHIVE_IN_ARCHIVE";
    message = "Executable attachment not allowed";
    require_action = ["no action", "add header", "rewrite subject", "soft reject", "greylist"];
  }
}
EOF
    # Off: modules that need redis (absent) or the network (DNS/HTTP), and
    # anything fetching remote maps.
    local m
    for m in rbl surbl spf dkim dmarc arc dkim_signing asn fuzzy_check phishing \
        url_redirector reputation neural ratelimit greylist replies history_redis \
        bimi dcc external_services p0f mx_check clickhouse elastic metadata_exporter \
        rspamd_update whitelist multimap emails hfilter trie spamtrap aws_s3; do
        printf 'enabled = false;\n' >"$o/$m.conf"
    done
    # Bayes needs redis: no classifier.
    printf '# no classifier: bayes needs redis\n' >"$o/classifier-bayes.conf"
    spawn_group "$dir/rspamd.pid" "$dir/rspamd.out" rspamd -f -c /etc/rspamd/rspamd.conf \
        -u _rspamd -g _rspamd \
        --var="LOCAL_CONFDIR=$dir/etc" --var="DBDIR=$dir/db" --var="RUNDIR=$dir/run" \
        --var="LOGDIR=$dir/log"
    local rc=0
    wait_for 120 "$dir/rspamd.pid" port_listening "$port" || rc=$?
    if ((rc == 0)) && [[ -n $usock ]]; then
        wait_for 30 "$dir/rspamd.pid" test -S "$usock" || rc=$?
    fi
    if ((rc != 0)); then
        show_tail "$dir/rspamd.out" 30
        show_tail "$dir/log/rspamd.log" 30
        die "rspamd did not listen on 127.0.0.1:$port${usock:+ and $usock}"
    fi
    say "rspamd proxy (milter) on 127.0.0.1:$port${usock:+ and $usock} -> clamd $sock (pid $(<"$dir/rspamd.pid"))"
}
rspamd_stop() { stop_group "$1/rspamd.pid" rspamd 15; }

# Restarts a clamd started by contrib/lab/clamd.sh with "DisableCache yes" added to
# its clamd.conf (no clean-file cache: every scan does the full work, so a corpus
# sent several times costs the same every time), in the same process-group and
# pid-file layout, so that "clamd.sh stop DIR" still stops it.
clamd_disable_cache() { # DIR
    local dir=$1 sock
    sock=$(<"$dir/socket")
    bash "$LAB/clamd.sh" stop "$dir"
    grep -q '^DisableCache yes' "$dir/clamd.conf" || printf 'DisableCache yes\n' >>"$dir/clamd.conf"
    spawn_group "$dir/clamd.pid" "$dir/clamd.out" clamd -c "$dir/clamd.conf"
    local rc=0
    wait_for 60 "$dir/clamd.pid" bash "$LAB/clamd.sh" ping --socket "$sock" >/dev/null || rc=$?
    ((rc == 0)) || { show_tail "$dir/clamd.log" 20; die "clamd did not come back with DisableCache yes"; }
    say "clamd restarted with DisableCache yes (pid $(<"$dir/clamd.pid"))"
}

# VmRSS / VmHWM of a pid in KiB.
proc_kib() { # PID FIELD
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}
