/*
 * bench_channels -- the raw C nng side of tests/bench/bench_channels.sh.
 *
 *   bench_channels serve URL                 answer clients on a pair1 socket until told to quit
 *   bench_channels client URL SIZE N         measure against a server at URL, print one line
 *   bench_channels both URL SIZE N           a server thread and a client in this process
 *
 * The protocol (the Smalltalk ChannelBench speaks it too): the client sends "L n" and then n
 * messages of SIZE bytes, each of which the server echoes (round-trip latency); then "T n" and
 * n messages without waiting, after which the server sends one "done" (one-way throughput);
 * then "Q". Both sides use pair1 with send and receive buffers of BUFFERED messages. The client
 * prints "latency_median_us X throughput_msgs_per_s Y" (X: median of the round trips after
 * WARMUP; Y: n over the time from the first send to the "done").
 */
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#include <nng/supplemental/util/platform.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static void command(nng_socket s, char kind, long n) {
    char text[32];
    int len = snprintf(text, sizeof text, "%c %ld", kind, n);
    int rv = nng_send(s, text, (size_t)len, 0);
    if (rv != 0) die("client: command", rv);
}

static void client(nng_socket s, size_t size, long n) {
    char *buf = calloc(1, size);
    double *rtt = calloc((size_t)n, sizeof *rtt);
    if (!buf || !rtt) die("client", NNG_ENOMEM);
    int rv;
    command(s, 'L', n + WARMUP);
    for (long i = 0; i < n + WARMUP; i++) {
        double t0 = now_us();
        if ((rv = nng_send(s, buf, size, 0)) != 0) die("client: send", rv);
        char *reply = NULL;
        size_t len = 0;
        if ((rv = nng_recv(s, &reply, &len, NNG_FLAG_ALLOC)) != 0) die("client: receive", rv);
        nng_free(reply, len);
        if (i >= WARMUP) rtt[i - WARMUP] = now_us() - t0;
    }
    bench_sort(rtt, (int)n);
    long messages = n * 10;
    command(s, 'T', messages);
    double t0 = now_us();
    for (long i = 0; i < messages; i++)
        if ((rv = nng_send(s, buf, size, 0)) != 0) die("client: send", rv);
    char *done = NULL;
    size_t len = 0;
    if ((rv = nng_recv(s, &done, &len, NNG_FLAG_ALLOC)) != 0) die("client: done", rv);
    nng_free(done, len);
    double elapsed = now_us() - t0;
    command(s, 'Q', 0);
    printf("latency_median_us %.1f throughput_msgs_per_s %.0f\n", rtt[n / 2], messages / (elapsed / 1e6));
    fflush(stdout);
    free(buf);
    free(rtt);
}

static void *serve_thread(void *arg) {
    serve(*(nng_socket *)arg);
    return NULL;
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
    if (argc == 5 && (strcmp(argv[1], "client") == 0 || strcmp(argv[1], "both") == 0)) {
        size_t size = strtoul(argv[3], NULL, 10);
        long n = strtol(argv[4], NULL, 10);
        nng_socket server;
        pthread_t thread;
        bool both = strcmp(argv[1], "both") == 0;
        if (both) {
            server = open_pair();
            int rv = nng_listen(server, argv[2], NULL, 0);
            if (rv != 0) die(argv[2], rv);
            pthread_create(&thread, NULL, serve_thread, &server);
        }
        nng_socket s = open_pair();
        int rv;
        /* The server may still be starting: retry the dial for a few seconds. */
        for (int i = 0; (rv = nng_dial(s, argv[2], NULL, 0)) != 0 && i < 100; i++) nng_msleep(50);
        if (rv != 0) die(argv[2], rv);
        client(s, size, n);
        if (both) pthread_join(thread, NULL);
        nng_close(s);
        return 0;
    }
    fprintf(stderr, "usage: bench_channels serve URL | client URL SIZE N | both URL SIZE N\n");
    return 2;
}
