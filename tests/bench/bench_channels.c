/*
 * bench_channels -- the raw C nng side of tests/bench/bench_channels.sh, and the referee that
 * interleaves it with the Hydra side.
 *
 *   bench_channels serve URL
 *       answer clients on a pair1 socket until told to quit
 *   bench_channels duel URL CONTROL SIZE N M BLOCKS
 *       measure a C client against the C server at URL (an inproc URL: a server thread of this
 *       process) and, block by block in turn, a Hydra client (ChannelBench) that dials CONTROL
 *
 * The protocol (the Smalltalk ChannelBench speaks it too): the client sends "L n" and then n
 * messages of SIZE bytes, each of which the server echoes (round-trip latency); then "T n" and
 * n messages without waiting, after which the server sends one "done" (one-way throughput);
 * then "Q". Both sides use pair1 with send and receive buffers of BUFFERED messages.
 *
 * A block is WARMUP + N round trips (the latency of the block is the median of the last N) and
 * then M one-way messages. M is tens of thousands, so that the rate is that of a steady stream:
 * the first few hundred messages of a burst only fill the sockets' buffers, a burst of a few
 * thousand lasts a few tens of milliseconds, and the ratio for such bursts depends on their
 * length (README.md gives it for bursts of 300, 3 000 and 30 000).
 * C and Hydra take turns block by block, in alternating order, and the waiting side sits in a
 * blocking receive meanwhile. The machine's speed drifts (on a shared two-core machine raw nng
 * alone moves between about 110 000 and 230 000 messages a second, in spells of a second or
 * so), so each Hydra block is compared with the C block next to it in time: the ratios printed
 * are medians of these per-block ratios; the absolute figures are medians over the blocks of
 * each side. One line:
 *
 *   c_latency_us X hydra_latency_us Y latency_ratio R c_msgs_per_s A hydra_msgs_per_s B throughput_ratio T
 */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_stats.h"

#define BUFFERED 128
#define WARMUP 100

static void die(const char *what, int rv) {
    fprintf(stderr, "bench_channels: %s: %s\n", what, nng_strerror(rv));
    exit(1);
}

static nng_socket open_pair(void) {
    nng_socket s;
    int rv = nng_pair1_open(&s);
    if (rv == 0) rv = nng_socket_set_int(s, NNG_OPT_SENDBUF, BUFFERED);
    if (rv == 0) rv = nng_socket_set_int(s, NNG_OPT_RECVBUF, BUFFERED);
    if (rv == 0) rv = nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 30000);
    if (rv != 0) die("open", rv);
    return s;
}

static double now_us(void) { return bench_now_ns() / 1e3; }

static void serve(nng_socket s) {
    for (;;) {
        char *cmd = NULL;
        size_t n = 0;
        int rv = nng_recv(s, &cmd, &n, NNG_FLAG_ALLOC);
        if (rv != 0) die("serve: receive a command", rv);
        char kind = n > 0 ? cmd[0] : 'Q';
        long count = n > 2 ? strtol(cmd + 2, NULL, 10) : 0;
        nng_free(cmd, n);
        if (kind == 'Q') return;
        for (long i = 0; i < count; i++) {
            nng_msg *m;
            if ((rv = nng_recvmsg(s, &m, 0)) != 0) die("serve: receive", rv);
            if (kind == 'L') {
                if ((rv = nng_sendmsg(s, m, 0)) != 0) die("serve: echo", rv);
            } else {
                nng_msg_free(m);
            }
        }
        if (kind == 'T' && (rv = nng_send(s, "done", 4, 0)) != 0) die("serve: done", rv);
    }
}

static void *serve_thread(void *arg) {
    serve(*(nng_socket *)arg);
    return NULL;
}

static void send_text(nng_socket s, const char *text, const char *what) {
    int rv = nng_send(s, (void *)text, strlen(text), 0);
    if (rv != 0) die(what, rv);
}

static void command(nng_socket s, char kind, long n) {
    char text[32];
    snprintf(text, sizeof text, "%c %ld", kind, n);
    send_text(s, text, "client: command");
}

static void receive_dropped(nng_socket s, const char *what) {
    nng_msg *m;
    int rv = nng_recvmsg(s, &m, 0);
    if (rv != 0) die(what, rv);
    nng_msg_free(m);
}

/* One block of the C client: the median round trip in µs and the one-way messages a second. */
static void c_block(nng_socket s, char *buf, size_t size, long n, long messages, double *rtt,
                    double *latency, double *throughput) {
    int rv;
    command(s, 'L', n + WARMUP);
    for (long i = 0; i < n + WARMUP; i++) {
        double t0 = now_us();
        if ((rv = nng_send(s, buf, size, 0)) != 0) die("client: send", rv);
        receive_dropped(s, "client: receive");
        if (i >= WARMUP) rtt[i - WARMUP] = now_us() - t0;
    }
    *latency = bench_median(rtt, (int)n);
    command(s, 'T', messages);
    double t0 = now_us();
    for (long i = 0; i < messages; i++)
        if ((rv = nng_send(s, buf, size, 0)) != 0) die("client: send", rv);
    receive_dropped(s, "client: done");
    *throughput = messages / ((now_us() - t0) / 1e6);
}

/* One block of the Hydra client, asked for on the control socket. */
static void hydra_block(nng_socket control, double *latency, double *throughput) {
    send_text(control, "B", "control: ask for a block");
    char *reply = NULL;
    size_t len = 0;
    int rv = nng_recv(control, &reply, &len, NNG_FLAG_ALLOC);
    if (rv != 0) die("control: the Hydra client's block", rv);
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, reply);
    nng_free(reply, len);
    if (sscanf(text, "%lf %lf", latency, throughput) != 2) {
        fprintf(stderr, "bench_channels: control: not \"LATENCY THROUGHPUT\": %s\n", text);
        exit(1);
    }
}

static void duel(const char *url, const char *control_url, size_t size, long n, long m, int blocks) {
    nng_socket server, s = open_pair(), control = open_pair();
    pthread_t thread;
    bool local = strncmp(url, "inproc://", 9) == 0;
    int rv;
    if (local) {
        server = open_pair();
        if ((rv = nng_listen(server, url, NULL, 0)) != 0) die(url, rv);
        pthread_create(&thread, NULL, serve_thread, &server);
    }
    /* The servers may still be starting: retry the dial for a few seconds. */
    for (int i = 0; (rv = nng_dial(s, url, NULL, 0)) != 0 && i < 100; i++) nng_msleep(50);
    if (rv != 0) die(url, rv);
    if ((rv = nng_listen(control, control_url, NULL, 0)) != 0) die(control_url, rv);
    receive_dropped(control, "control: the Hydra client's hello");

    char *buf = calloc(1, size);
    double *rtt = calloc((size_t)n, sizeof *rtt);
    double *v = calloc((size_t)blocks * 6, sizeof *v);
    if (!buf || !rtt || !v) die("duel", NNG_ENOMEM);
    double *cl = v, *ct = v + blocks, *hl = v + 2 * blocks, *ht = v + 3 * blocks;
    double *lr = v + 4 * blocks, *tr = v + 5 * blocks;
    for (int b = 0; b < blocks; b++) {
        if (b % 2 == 0) {
            c_block(s, buf, size, n, m, rtt, &cl[b], &ct[b]);
            hydra_block(control, &hl[b], &ht[b]);
        } else {
            hydra_block(control, &hl[b], &ht[b]);
            c_block(s, buf, size, n, m, rtt, &cl[b], &ct[b]);
        }
        lr[b] = hl[b] / cl[b];
        tr[b] = ht[b] / ct[b];
    }
    send_text(control, "Q", "control: quit");
    command(s, 'Q', 0);
    printf("c_latency_us %.1f hydra_latency_us %.1f latency_ratio %.3f "
           "c_msgs_per_s %.0f hydra_msgs_per_s %.0f throughput_ratio %.3f\n",
           bench_median(cl, blocks), bench_median(hl, blocks), bench_median(lr, blocks),
           bench_median(ct, blocks), bench_median(ht, blocks), bench_median(tr, blocks));
    fflush(stdout);
    if (local) pthread_join(thread, NULL);
    nng_msleep(100);   /* let the last messages leave before the sockets close */
    nng_close(control);
    nng_close(s);
    free(buf);
    free(rtt);
    free(v);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        nng_socket s = open_pair();
        nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, NNG_DURATION_INFINITE);
        int rv = nng_listen(s, argv[2], NULL, 0);
        if (rv != 0) die(argv[2], rv);
        serve(s);
        nng_msleep(100);   /* let the last message leave before the socket closes */
        nng_close(s);
        return 0;
    }
    if (argc == 8 && strcmp(argv[1], "duel") == 0) {
        size_t size = strtoul(argv[4], NULL, 10);
        long n = strtol(argv[5], NULL, 10);
        long m = strtol(argv[6], NULL, 10);
        int blocks = atoi(argv[7]);
        if (size == 0 || n <= 0 || m <= 0 || blocks <= 0) {
            fprintf(stderr, "bench_channels: SIZE, N, M and BLOCKS must be positive\n");
            return 2;
        }
        duel(argv[2], argv[3], size, n, m, blocks);
        return 0;
    }
    fprintf(stderr, "usage: bench_channels serve URL | duel URL CONTROL SIZE N M BLOCKS\n");
    return 2;
}
