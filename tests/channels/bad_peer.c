/*
 * bad_peer -- a raw nng client that sends malformed MessagePack to a Hydra channel.
 *
 *   bad_peer URL
 *
 * Dials a pair1 socket at URL and, for each malformed message in the table below, sends it and
 * waits for the answer, which must start with "error" (the Hydra side could not decode it and
 * went on). Then it sends one well-formed message, [1, "ok"], whose answer must be "ok".
 * Exits 0 when every answer was as expected, 1 otherwise, naming the message that went wrong.
 */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sample {
    const char *what;
    const unsigned char *bytes;
    size_t len;
};

#define SAMPLE(what, ...) { what, (const unsigned char[]){ __VA_ARGS__ }, sizeof((const unsigned char[]){ __VA_ARGS__ }) }

static const struct sample bad[] = {
    SAMPLE("the unused byte 0xc1", 0xc1),
    SAMPLE("a truncated uint 16", 0xcd, 0x01),
    SAMPLE("an array of 2^32-1 elements in 5 bytes", 0xdd, 0xff, 0xff, 0xff, 0xff),
    SAMPLE("a string of 2 GiB in 6 bytes", 0xdb, 0x7f, 0xff, 0xff, 0xff, 'a'),
    SAMPLE("a map of a million entries", 0xdf, 0x00, 0x10, 0x00, 0x00, 0x01, 0x02),
    SAMPLE("an unknown extension type", 0xd4, 0x05, 0x00),
    SAMPLE("a large integer with sign byte 7", 0xc7, 0x02, 0x01, 0x07, 0x01),
    SAMPLE("trailing bytes", 0xc0, 0xc0),
    SAMPLE("a bin 32 longer than the message", 0xc6, 0x00, 0x00, 0x01, 0x00, 0x01),
};

static int exchange(nng_socket s, const char *what, const void *msg, size_t len, const char *expect) {
    int rv = nng_send(s, (void *)msg, len, 0);
    if (rv != 0) {
        fprintf(stderr, "bad_peer: sending %s: %s\n", what, nng_strerror(rv));
        return 1;
    }
    char *answer = NULL;
    size_t n = 0;
    rv = nng_recv(s, &answer, &n, NNG_FLAG_ALLOC);
    if (rv != 0) {
        fprintf(stderr, "bad_peer: no answer to %s: %s\n", what, nng_strerror(rv));
        return 1;
    }
    int ok = n >= strlen(expect) && memcmp(answer, expect, strlen(expect)) == 0;
    if (!ok) fprintf(stderr, "bad_peer: the answer to %s is '%.*s', not '%s...'\n", what, (int)n, answer, expect);
    nng_free(answer, n);
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bad_peer URL\n");
        return 2;
    }
    nng_socket s;
    int rv = nng_pair1_open(&s);
    if (rv == 0) rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 20000);
    if (rv == 0) rv = nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 20000);
    if (rv == 0) rv = nng_dial(s, argv[1], NULL, 0);
    if (rv != 0) {
        fprintf(stderr, "bad_peer: %s: %s\n", argv[1], nng_strerror(rv));
        return 1;
    }
    int failures = 0;
    /* An empty message too: not a value at all. */
    failures += exchange(s, "an empty message", "", 0, "error");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        failures += exchange(s, bad[i].what, bad[i].bytes, bad[i].len, "error");
    /* Nesting far deeper than any decoder should follow. */
    size_t depth = 100000;
    unsigned char *deep = malloc(depth + 1);
    if (!deep) return 1;
    memset(deep, 0x91, depth);
    deep[depth] = 0xc0;
    failures += exchange(s, "100000 nested arrays", deep, depth + 1, "error");
    free(deep);
    static const unsigned char good[] = { 0x92, 0x01, 0xa2, 'o', 'k' };
    failures += exchange(s, "the well-formed [1, \"ok\"]", good, sizeof good, "ok");
    nng_close(s);
    if (failures) fprintf(stderr, "bad_peer: %d answers were wrong\n", failures);
    return failures ? 1 : 0;
}
