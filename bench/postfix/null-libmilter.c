/*
 * A do-nothing milter on Sendmail's libmilter (Debian's libmilter-dev): it takes
 * every step of every message and accepts it without looking at it. The
 * benchmarks run Postfix with it to measure what talking to a milter costs,
 * with the reference C implementation of the protocol, on loopback TCP and on a
 * unix socket (bench/postfix/latency.sh); it is not part of the product.
 *
 * It negotiates what congvu-milter negotiates (src/milter/session.rs): the MTA
 * skips DATA and unknown commands, no reply to CONNECT, HELO, RCPT, each header,
 * end of headers and body chunks; MAIL and end of message are answered. Headers
 * and body are sent by the MTA and read by libmilter, then dropped.
 *
 *   gcc -O2 -Wall -o null-libmilter bench/postfix/null-libmilter.c -lmilter -pthread
 *   ./null-libmilter inet:8899@127.0.0.1      (or unix:/PATH; the socket is made 0666)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>

/* Steps after which congvu-milter sends no reply, and steps it has skipped. */
#define NO_REPLY                                                                \
    (SMFIP_NR_HELO | SMFIP_NR_BODY | SMFIP_NR_DATA | SMFIP_NR_UNKN |            \
     SMFIP_NR_EOH | SMFIP_NR_HDR | SMFIP_NR_CONN | SMFIP_NR_RCPT)
#define SKIPPED (SMFIP_NOUNKNOWN | SMFIP_NODATA)
#define ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE)

/* The protocol flags agreed for this connection are kept as its private data
 * (with bit 63 set, so that "nothing agreed" is not a null pointer). */
static unsigned long agreed(SMFICTX *ctx) {
    return (unsigned long)(uintptr_t)smfi_getpriv(ctx);
}

/* Continue, without a reply when the MTA agreed to expect none for this step. */
static sfsistat go_on(SMFICTX *ctx, unsigned long no_reply_bit) {
    return (agreed(ctx) & no_reply_bit) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
                          unsigned long f2, unsigned long f3, unsigned long *pf0,
                          unsigned long *pf1, unsigned long *pf2,
                          unsigned long *pf3) {
    (void)f2;
    (void)f3;
    *pf0 = f0 & ACTIONS;
    *pf1 = f1 & (NO_REPLY | SKIPPED);
    *pf2 = 0;
    *pf3 = 0;
    smfi_setpriv(ctx, (void *)(uintptr_t)(*pf1 | (1UL << 63)));
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
    (void)host;
    (void)addr;
    return go_on(ctx, SMFIP_NR_CONN);
}
static sfsistat on_helo(SMFICTX *ctx, char *name) {
    (void)name;
    return go_on(ctx, SMFIP_NR_HELO);
}
static sfsistat on_mail(SMFICTX *ctx, char **argv) {
    (void)argv;
    return go_on(ctx, SMFIP_NR_MAIL);
}
static sfsistat on_rcpt(SMFICTX *ctx, char **argv) {
    (void)argv;
    return go_on(ctx, SMFIP_NR_RCPT);
}
static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
    (void)name;
    (void)value;
    return go_on(ctx, SMFIP_NR_HDR);
}
static sfsistat on_eoh(SMFICTX *ctx) { return go_on(ctx, SMFIP_NR_EOH); }
static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t len) {
    (void)chunk;
    (void)len;
    return go_on(ctx, SMFIP_NR_BODY);
}
static sfsistat on_eom(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_ACCEPT;
}
static sfsistat on_abort(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}
static sfsistat on_close(SMFICTX *ctx) {
    smfi_setpriv(ctx, NULL);
    return SMFIS_CONTINUE;
}

static struct smfiDesc desc = {
    .xxfi_name = "null-libmilter",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = ACTIONS,
    .xxfi_connect = on_connect,
    .xxfi_helo = on_helo,
    .xxfi_envfrom = on_mail,
    .xxfi_envrcpt = on_rcpt,
    .xxfi_header = on_header,
    .xxfi_eoh = on_eoh,
    .xxfi_body = on_body,
    .xxfi_eom = on_eom,
    .xxfi_abort = on_abort,
    .xxfi_close = on_close,
    .xxfi_negotiate = negotiate,
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s inet:PORT@127.0.0.1 | unix:/PATH\n", argv[0]);
        return 2;
    }
    char *conn = argv[1];
    if (smfi_setconn(conn) == MI_FAILURE || smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "null-libmilter: cannot set up %s\n", conn);
        return 1;
    }
    if (smfi_opensocket(1) == MI_FAILURE) {
        fprintf(stderr, "null-libmilter: cannot open %s\n", conn);
        return 1;
    }
    if (strncmp(conn, "unix:", 5) == 0 && chmod(conn + 5, 0666) != 0) {
        fprintf(stderr, "null-libmilter: chmod %s: %s\n", conn + 5, strerror(errno));
        return 1;
    }
    fprintf(stderr, "null-libmilter listening on %s\n", conn);
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
