#!/bin/sh
# congvu-milter: create the outbound-hop Postfix instance "postfix-out" with postmulti.
#
# Why: Postfix expands virtual aliases (Zimbra account forwarding) in cleanup(8),
# after the milter saw RCPT, and re-injects .forward copies from local(8) with
# milters switched off. The milter on the receiving instance therefore never sees
# those copies. Routing everything that leaves the system through a second instance
# whose smtpd calls the milter makes each copy a new SMTP transaction there.
#
# What it does (each step is also a command you can run by hand):
#   1. postmulti -e init                       enable multi-instance support
#   2. postmulti -I postfix-out -G mta -e create
#                                              /etc/postfix-out, /var/spool/postfix-out,
#      install -d ... /var/spool/postfix-out/congvu-milter   the milter's socket dir
#   3. postconf -c /etc/postfix-out -e ...     main.cf.postfix-out, line by line
#   4. postconf -c /etc/postfix-out -M# smtp/inet, append master.cf.postfix-out
#   5. postconf -e relayhost=[127.0.0.1]:10026 main.cf.first-instance (first instance)
#   6. postmulti -i postfix-out -e enable; postfix check; start/reload
#
# The milter must also listen below postfix-out's spool (its smtpd is chrooted in
# /var/spool/postfix-out): this script makes /var/spool/postfix-out/congvu-milter;
# add "unix:/var/spool/postfix-out/congvu-milter/milter.sock" to [milter] listen in
# /etc/congvu-milter/congvu-milter.toml and `systemctl restart congvu-milter`.
#
# It changes the mail system, so it does nothing unless called as
#     setup-outbound.sh --apply
# and it refuses to run twice (an existing /etc/postfix-out stops it).
# `setup-outbound.sh --dry-run` prints the commands without running them.
#
# Debian: postfix-instance-generator turns every directory of
# multi_instance_directories into a unit postfix@postfix-out.service that
# postfix.service pulls in; `systemctl restart postfix` starts it.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
INSTANCE=postfix-out
CONF=/etc/$INSTANCE

case "${1:-}" in
    --apply) RUN= ;;
    --dry-run) RUN=echo ;;
    *)
        sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'
        echo "refusing to change anything without --apply (or --dry-run)" >&2
        exit 2
        ;;
esac

if [ "$(id -u)" != 0 ] && [ -z "$RUN" ]; then
    echo "run as root" >&2
    exit 1
fi
command -v postmulti >/dev/null || { echo "postmulti not found: install postfix" >&2; exit 1; }
if [ -e "$CONF" ] && [ -z "$RUN" ]; then
    echo "$CONF exists already: nothing done (remove it with postmulti -i $INSTANCE -e destroy first)" >&2
    exit 1
fi

# 1-2. multi-instance support and the new instance
$RUN postmulti -e init
$RUN postmulti -I "$INSTANCE" -G mta -e create
# ... and the milter's socket directory below its spool, as the package makes it
# for the first instance (owner congvu-milter, group postfix, 0750).
$RUN install -d -m 0750 -o congvu-milter -g postfix "/var/spool/$INSTANCE/congvu-milter"

# 3. its main.cf: every "name = value" line of main.cf.postfix-out
grep -E '^[a-z_0-9]+[[:space:]]*=' "$HERE/main.cf.postfix-out" | while IFS= read -r line; do
    $RUN postconf -c "$CONF" -e "$line"
done

# 4. its master.cf: no port 25, smtpd on 127.0.0.1:10026
$RUN postconf -c "$CONF" -M# smtp/inet
if [ -z "$RUN" ]; then
    grep -v '^#' "$HERE/master.cf.postfix-out" >> "$CONF/master.cf"
else
    echo "append $HERE/master.cf.postfix-out to $CONF/master.cf"
fi

# 5. the first instance sends everything non-local through postfix-out
grep -E '^[a-z_0-9]+[[:space:]]*=' "$HERE/main.cf.first-instance" | while IFS= read -r line; do
    $RUN postconf -e "$line"
done

# 6. enable, check, start
$RUN postmulti -i "$INSTANCE" -e enable
$RUN postfix check
$RUN postmulti -i "$INSTANCE" -p check
if [ -d /run/systemd/system ]; then
    $RUN systemctl daemon-reload
    $RUN systemctl restart postfix
else
    $RUN postmulti -i "$INSTANCE" -p start
    $RUN postfix reload
fi
echo "done: test with  swaks --server 127.0.0.1:10026 --to someone@example.org" >&2
