/*
 * bench_threaded.c -- the threaded VM measured (a program, not a test):
 *
 *   build/tests/bench_threaded          (everything: about 10 s)
 *   build/tests/bench_threaded calls    (only part 1)
 *
 *  1. ns per call of int add(int,int): a direct C call, a raw ffi_call with a prepared cif, an
 *     unthreaded and a threaded Hydra callout from Smalltalk (each loop's own cost subtracted),
 *     and the median over many rounds of the difference between the last two;
 *  2. takeover latency: from the start of a long threaded callout to another process of the VM
 *     running (median and p99);
 *  3. hand-off latency of a callout declared blocking (median and p99);
 *  4. CPU used by 100 idle VMs in one process over 5 s.
 * Every figure is a median over repeated runs, measured in this run.
 */
#define _GNU_SOURCE
#include <ffi.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hydra/hy_vm.h"
#include "bench_stats.h"

#ifndef HYDRA_SOURCE_DIR
#define HYDRA_SOURCE_DIR "."
#endif

/* The function every variant calls; exported so that Smalltalk finds it in the process. */
__attribute__((visibility("default"), noinline)) int hybench_add(int a, int b) { return a + b; }

static double now_ns(void) { return bench_now_ns(); }

/* The upper middle element for even n, as the figures in README.md were taken. */
static double median(double *v, int n) {
    bench_sort(v, n);
    return v[n / 2];
}

/* ---- 1a. C baselines ---------------------------------------------------------------------- */

static double direct_ns(long n) {
    int (*volatile fn)(int, int) = hybench_add;
    volatile int sink = 0;
    double t = now_ns();
    for (long i = 0; i < n; i++) sink = fn((int)i, 1);
    (void)sink;
    return (now_ns() - t) / (double)n;
}

static double ffi_ns(long n) {
    ffi_cif cif;
    ffi_type *args[2] = { &ffi_type_sint, &ffi_type_sint };
    if (ffi_prep_cif(&cif, FFI_DEFAULT_ABI, 2, &ffi_type_sint, args) != FFI_OK) return -1;
    int a = 1, b = 2;
    void *values[2] = { &a, &b };
    ffi_arg r;
    double t = now_ns();
    for (long i = 0; i < n; i++) {
        a = (int)i;
        ffi_call(&cif, FFI_FN(hybench_add), &r, values);
    }
    return (now_ns() - t) / (double)n;
}

/* ---- Running Smalltalk ---------------------------------------------------------------------- */

typedef struct sink {
    char buf[8192];
    size_t len;
} sink;

static void capture(void *ctx, int stream, const char *bytes, size_t len) {
    sink *s = ctx;
    if (stream == 2) fwrite(bytes, 1, len, stderr);
    if (s->len + len >= sizeof s->buf) len = sizeof s->buf - 1 - s->len;
    memcpy(s->buf + s->len, bytes, len);
    s->len += len;
    s->buf[s->len] = 0;
}

static char dir[64];

static void write_class(const char *name, const char *src) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.som", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { perror(path); exit(1); }
    fputs(src, f);
    fclose(f);
}

/* Run class `name` in a fresh VM; its output lands in out. */
static int run_class(const char *name, sink *out) {
    char cp[512];
    snprintf(cp, sizeof cp, "%s/images/core:%s", HYDRA_SOURCE_DIR, dir);
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = cp;
    cfg.write = capture;
    cfg.write_ctx = out;
    hy_vm *vm;
    if (hy_vm_new(&cfg, &vm) != HY_OK) { fprintf(stderr, "cannot start a VM\n"); exit(1); }
    int status = -1;
    if (hy_vm_run_main(vm, name, 0, NULL, &status) != HY_OK) fprintf(stderr, "%s: %s\n", name, hy_vm_last_error(vm));
    hy_vm_free(vm);
    return status;
}

/* ---- 1b. Hydra callouts --------------------------------------------------------------------- */

/* Rounds of (empty loop, unthreaded calls, threaded calls) after one round that warms up (method
 * caches, the heartbeat thread that the first threaded call starts). Many short rounds rather
 * than a few long ones, so that a burst of other load on the machine spoils few of them; the
 * order of the two kinds of call alternates from round to round, so that neither always runs
 * right after the other. Each part is timed by the wall clock and by the calling thread's CPU
 * time: on a machine busy with other work the first also counts the time the thread waited for
 * a core, the second does not (and as nothing else wants this VM, the threaded calls never
 * wait for it: the run prints the takeovers and ownership waits to show it). One line
 * "wall: empty unthreaded threaded (us)  cpu: empty unthreaded threaded (ns)  n" per round,
 * then "takeovers waits" counted during the rounds. */
#define CALL_ROUNDS 31
#define CALLS_PER_ROUND 300000

/* The calling thread's CPU time in ns, for BenchCalls. */
__attribute__((visibility("default"), noinline)) int64_t hybench_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *calls_src =
    "BenchCalls = (\n"
    "  | clock wall cpu |\n"
    "  time: add threaded: aBoolean n: n = ( | w c |\n"
    "    aBoolean ifTrue: [ add beThreaded ] ifFalse: [ add beUnthreaded ].\n"
    "    w := system ticks. c := clock call.\n"
    "    1 to: n do: [ :i | add callWith: i with: 1 ].\n"
    "    cpu := clock call - c. wall := system ticks - w )\n"
    "  empty: n = ( | w c |\n"
    "    w := system ticks. c := clock call.\n"
    "    1 to: n do: [ :i | i + 1 ].\n"
    "    cpu := clock call - c. wall := system ticks - w )\n"
    "  run = ( | add n stats0 stats1 |\n"
    "    clock := ExternalLibrary default lookup: 'hybench_cpu_ns' returns: #int64 arguments: #().\n"
    "    clock beUnthreaded.\n"
    "    add := ExternalLibrary default lookup: 'hybench_add' returns: #int arguments: #( #int #int ).\n"
    "    n := %d.\n"
    "    self time: add threaded: false n: n. self time: add threaded: true n: n.\n"
    "    stats0 := system threadStats.\n"
    "    1 to: %d do: [ :round | | ew ec uw uc tw tc |\n"
    "      self empty: n. ew := wall. ec := cpu.\n"
    "      round odd\n"
    "        ifTrue: [ self time: add threaded: false n: n. uw := wall. uc := cpu.\n"
    "                  self time: add threaded: true n: n. tw := wall. tc := cpu ]\n"
    "        ifFalse: [ self time: add threaded: true n: n. tw := wall. tc := cpu.\n"
    "                   self time: add threaded: false n: n. uw := wall. uc := cpu ].\n"
    "      (ew asString + ' ' + uw asString + ' ' + tw asString + ' ' + ec asString + ' ' + uc asString\n"
    "        + ' ' + tc asString + ' ' + n asString) println ].\n"
    "    stats1 := system threadStats.\n"
    "    (((stats1 at: 2) - (stats0 at: 2)) asString + ' ' + ((stats1 at: 4) - (stats0 at: 4)) asString) println )\n"
    ")\n";

/* ---- 2, 3. Takeover and hand-off latency ---------------------------------------------------- */

static const char *latency_src =
    "BenchLatency = (\n"
    "  | started |\n"
    "  measure: fn arg: usecs = ( | samples other go |\n"
    "    samples := Array new: 200.\n"
    "    1 to: samples length do: [ :k |\n"
    "      go := Semaphore new.\n"
    "      started := nil.\n"
    "      other := [ go wait. started := system ticks ] fork.\n"
    "      Processor yield.\n"
    "      go signal.\n"
    "      \"The other process is runnable now; it can only run once this one's call lets it.\"\n"
    "      samples at: k put: (self call: fn arg: usecs).\n"
    "      Processor yield ].\n"
    "    ^ samples )\n"
    "  call: fn arg: usecs = ( | t0 |\n"
    "    t0 := system ticks.\n"
    "    fn callWith: usecs.\n"
    "    ^ started isNil ifTrue: [ -1 ] ifFalse: [ started - t0 ] )\n"
    "  run = ( | usleep a b |\n"
    "    usleep := (ExternalLibrary named: 'libc.so.6') lookup: 'usleep' returns: #int arguments: #( #uint32 ).\n"
    "    a := self measure: usleep arg: 5000.\n"
    "    usleep beBlocking.\n"
    "    b := self measure: usleep arg: 5000.\n"
    "    a do: [ :x | system printString: x asString + ' ' ]. '' println.\n"
    "    b do: [ :x | system printString: x asString + ' ' ]. '' println )\n"
    ")\n";

static int parse_doubles(const char *s, double *out, int max) {
    int n = 0;
    char *end;
    while (n < max) {
        double v = strtod(s, &end);
        if (end == s) break;
        out[n++] = v;
        s = end;
    }
    return n;
}

static void report_latency(const char *what, double *v, int n) {
    int ok = 0;
    for (int i = 0; i < n; i++) if (v[i] >= 0) v[ok++] = v[i];
    if (ok == 0) { printf("%-34s no samples\n", what); return; }
    bench_sort(v, ok);
    printf("%-34s median %8.1f us   p99 %8.1f us   (%d samples)\n", what, v[ok / 2], v[(ok * 99) / 100], ok);
}

/* ---- 4. Idle VMs --------------------------------------------------------------------------- */

static const char *idle_src =
    "BenchIdle = (\n"
    "  run = ( | s | s := Semaphore new. s registerExternal. s wait ) )\n";

typedef struct idle_vm {
    pthread_t tid;
    hy_vm *vm;
    pthread_mutex_t *lock;
    pthread_cond_t *cond;
    int *ready;
} idle_vm;

static void *idle_main(void *arg) {
    idle_vm *iv = arg;
    int status;
    pthread_mutex_lock(iv->lock);
    (*iv->ready)++;
    pthread_cond_broadcast(iv->cond);
    pthread_mutex_unlock(iv->lock);
    hy_vm_run_main(iv->vm, "BenchIdle", 0, NULL, &status);
    return NULL;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void idle_vms(int count, double seconds) {
    char cp[512];
    snprintf(cp, sizeof cp, "%s/images/core:%s", HYDRA_SOURCE_DIR, dir);
    idle_vm *vms = calloc((size_t)count, sizeof *vms);
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int ready = 0;
    for (int i = 0; i < count; i++) {
        hy_config cfg;
        hy_config_init(&cfg);
        cfg.classpath = cp;
        cfg.eden_size = 256 * 1024;
        if (hy_vm_new(&cfg, &vms[i].vm) != HY_OK) { fprintf(stderr, "cannot start VM %d\n", i); exit(1); }
        vms[i].lock = &lock;
        vms[i].cond = &cond;
        vms[i].ready = &ready;
        pthread_create(&vms[i].tid, NULL, idle_main, &vms[i]);
    }
    pthread_mutex_lock(&lock);
    while (ready < count) pthread_cond_wait(&cond, &lock);
    pthread_mutex_unlock(&lock);
    usleep(500000);   /* let every VM reach its wait */
    double c0 = cpu_seconds(), t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    double cpu = cpu_seconds() - c0, wall = (now_ns() - t0) / 1e9;
    for (int i = 0; i < count; i++) hy_vm_signal_semaphore(vms[i].vm, 1);
    for (int i = 0; i < count; i++) {
        pthread_join(vms[i].tid, NULL);
        hy_vm_free(vms[i].vm);
    }
    free(vms);
    printf("%d idle VMs over %.1f s: %.1f ms of CPU = %.3f%% of one core\n", count, wall, cpu * 1e3,
           100.0 * cpu / wall);
}

int main(int argc, char **argv) {
    bool calls_only = argc > 1 && strcmp(argv[1], "calls") == 0;
    if (argc > 1 && !calls_only) {
        fprintf(stderr, "usage: %s [calls]   (calls: only the ns per call)\n", argv[0]);
        return 2;
    }
    snprintf(dir, sizeof dir, "/tmp/hydra-bench-XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char calls_class[4096];
    snprintf(calls_class, sizeof calls_class, calls_src, CALLS_PER_ROUND, CALL_ROUNDS);
    write_class("BenchCalls", calls_class);
    write_class("BenchLatency", latency_src);
    write_class("BenchIdle", idle_src);

    printf("== ns per call of int add(int,int) ==\n");
    double d[5], f[5];
    for (int r = 0; r < 5; r++) {
        d[r] = direct_ns(20000000);
        f[r] = ffi_ns(5000000);
    }
    double md = median(d, 5), mf = median(f, 5);
    sink calls = { .len = 0 };
    run_class("BenchCalls", &calls);
    double un[CALL_ROUNDS], th[CALL_ROUNDS], diff[CALL_ROUNDS], cpu_diff[CALL_ROUNDS];
    double takeovers = -1, waits = -1;
    int rounds = 0;
    for (char *line = calls.buf; line && *line; ) {
        double v[7];
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        int got = parse_doubles(line, v, 7);
        if (got == 7 && rounds < CALL_ROUNDS && v[6] > 0) {
            un[rounds] = (v[1] - v[0]) * 1000.0 / v[6];
            th[rounds] = (v[2] - v[0]) * 1000.0 / v[6];
            diff[rounds] = (v[2] - v[1]) * 1000.0 / v[6];
            cpu_diff[rounds] = (v[5] - v[4]) / v[6];
            rounds++;
        } else if (got == 2) {
            takeovers = v[0];
            waits = v[1];
        }
        line = next;
    }
    if (rounds == 0) { fprintf(stderr, "BenchCalls printed: %s\n", calls.buf); return 1; }
    double mu = median(un, rounds), mt = median(th, rounds), mdiff = median(diff, rounds);
    double mcpu = median(cpu_diff, rounds);
    printf("direct C call (median of 5)        %8.1f ns\n", md);
    printf("raw ffi_call, prepared cif (of 5)  %8.1f ns   (%.2fx direct)\n", mf, mf / md);
    printf("Hydra callout, unthreaded (of %2d) %8.1f ns   (%.2fx raw ffi_call)\n", rounds, mu, mu / mf);
    printf("Hydra callout, threaded (of %2d)   %8.1f ns   (%.2fx raw ffi_call)\n", rounds, mt, mt / mf);
    printf("threaded minus unthreaded          %8.1f ns   (median of the %d rounds' differences; target <= 10)\n", mdiff, rounds);
    printf("  the same in the thread's CPU time %7.1f ns   (%.0f takeovers, %.0f ownership waits meanwhile)\n", mcpu,
           takeovers, waits);
    if (calls_only) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : 1;
    }

    printf("\n== latency (200 calls of usleep(5000) each) ==\n");
    sink out = { .len = 0 };
    run_class("BenchLatency", &out);
    char *nl = strchr(out.buf, '\n');
    if (!nl) { fprintf(stderr, "BenchLatency printed: %s\n", out.buf); return 1; }
    *nl = 0;
    double a[256], b[256];
    int na = parse_doubles(out.buf, a, 256), nb = parse_doubles(nl + 1, b, 256);
    report_latency("takeover (1 kHz heartbeat)", a, na);
    printf("%-34s target median <= 1200 us\n", "");
    report_latency("hand-off of a blocking callout", b, nb);
    printf("%-34s target median <= 50 us\n", "");

    printf("\n== idle VMs ==\n");
    idle_vms(100, 5.0);
    printf("%-34s target < 1%% of one core\n", "");

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}
