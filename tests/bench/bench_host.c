/*
 * bench_host.c -- what many VMs in one process cost (issue: the host).
 *
 *   bench_host IMAGE [IDLE_VMS]
 *   bench_host --sources [IDLE_VMS]      every VM parses the core library (for comparison)
 *
 * IMAGE is a built image holding the core library (build/images/core.image); the test
 * classes come from tests/host on the class path. Prints, each a median where it says so:
 *   spawn    hy_host_spawn from the image (the VM made, ready to start), median of 100; and
 *            spawn + start + join of a program that ends at once, median of 100
 *   idle     RSS of the process per idle VM with IDLE_VMS (default 1000) VMs waiting on a
 *            semaphore, against each VM's heap in use (measured when they end)
 *   scaling  k VMs each running the same CPU-bound program (fib 32) at once, k = 1..nproc:
 *            speed-up k * T(1) / T(k) against one VM, median of 9 runs each, with the CPU time
 *            used and, for reference, the same speed-up of k C threads on this machine
 * Targets: spawn <= 1 ms; RSS per idle VM <= its heap in use + 512 KiB; speed-up >= 0.9 k.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>

#include "hydra/hydra.h"
#include "bench_stats.h"

static double now_s(void) { return bench_now_ns() * 1e-9; }

static double median(double *v, int n) { return bench_median(v, n); }

static void discard(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx; (void)stream; (void)bytes; (void)len;
}

static hy_host *new_host(void) {
    hy_host_config hc;
    hy_host_config_init(&hc);
    hc.prefix = HY_PREFIX_NEVER;
    hc.write = discard;
    hy_host *h;
    if (hy_host_new(&hc, &h) != HY_OK) { fputs("bench_host: no host\n", stderr); exit(1); }
    return h;
}

static const char *image, *classpath;

static unsigned spawn(hy_host *h, const char *cls, int argc, const char *const *argv) {
    hy_spawn_config sc;
    hy_spawn_config_init(&sc);
    sc.image = image;
    sc.main_class = cls;
    sc.classpath = classpath;
    sc.argc = argc;
    sc.argv = argv;
    unsigned id;
    char err[512];
    if (hy_host_spawn(h, &sc, &id, err, sizeof err) != HY_OK) {
        fprintf(stderr, "bench_host: spawn %s: %s\n", cls, err);
        exit(1);
    }
    return id;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void bench_spawn(void) {
    enum { N = 100 };
    double made[N], whole[N];
    hy_host *h = new_host();
    for (int i = 0; i < N; i++) {
        double t0 = now_s();
        unsigned id = spawn(h, "HostQuick", 0, NULL);
        double t1 = now_s();
        hy_host_kill(h, id);   /* never started: freed at once */
        made[i] = (t1 - t0) * 1e3;
    }
    for (int i = 0; i < N; i++) {
        int status;
        double t0 = now_s();
        unsigned id = spawn(h, "HostQuick", 0, NULL);
        hy_host_start(h, id);
        hy_host_join(h, id, &status);
        whole[i] = (now_s() - t0) * 1e3;
        if (status != 0) { fprintf(stderr, "bench_host: HostQuick failed\n"); exit(1); }
    }
    hy_host_free(h);
    printf("spawn from %s (made, ready to start)", image ? "image" : "sources"); printf(": median %.3f ms of %d   target <= 1 ms\n", median(made, N), N);
    printf("spawn + start + run + join, empty program: median %.3f ms of %d\n", median(whole, N), N);
}

static void bench_idle(int n) {
    hy_host *h = new_host();
    long before = rss_bytes();
    unsigned *ids = calloc((size_t)n, sizeof *ids);
    for (int i = 0; i < n; i++) {
        ids[i] = spawn(h, "HostIdle", 0, NULL);
        hy_host_start(h, ids[i]);
    }
    /* Every VM has said it is idle when its state counters show its wait; give them a moment. */
    sleep(2);
    long after = rss_bytes();
    double heap = 0;
    for (int i = 0; i < n; i++) hy_host_stop(h, ids[i]);
    int worst;
    hy_host_join_all(h, &worst);
    for (int i = 0; i < n; i++) {
        hy_vm_info info;
        hy_host_info(h, ids[i], &info);
        heap += (double)info.gc.heap_in_use;
    }
    hy_host_free(h);
    free(ids);
    double per_vm = (double)(after - before) / n, heap_per_vm = heap / n;
    printf("idle VMs: %d; RSS per VM %.0f KiB, heap in use per VM %.0f KiB, overhead %.0f KiB   target <= 512 KiB\n",
           n, per_vm / 1024, heap_per_vm / 1024, (per_vm - heap_per_vm) / 1024);
}

/* CPU seconds this process has used (all threads). */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) * 1e-6;
}

/* k VMs running fib 32 at once: wall seconds, and CPU seconds in *cpu. */
static double run_k(int k, double *cpu) {
    hy_host *h = new_host();
    unsigned ids[64];
    const char *argv[] = { "32", "0" };
    for (int i = 0; i < k; i++) ids[i] = spawn(h, "HostFib", 2, argv);
    double c0 = cpu_s(), t0 = now_s();
    for (int i = 0; i < k; i++) hy_host_start(h, ids[i]);
    int worst;
    hy_host_join_all(h, &worst);
    double t = now_s() - t0;
    *cpu = cpu_s() - c0;
    hy_host_free(h);
    return t;
}

/* The machine's own scaling, for reference: k C threads computing the same kind of work. */
static long cfib(long n) { return n < 2 ? n : cfib(n - 1) + cfib(n - 2); }
static void *cfib_thread(void *arg) {
    volatile long r = cfib((long)(intptr_t)arg);
    (void)r;
    return NULL;
}
static double run_c(int k) {
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < k; i++) pthread_create(&t[i], NULL, cfib_thread, (void *)(intptr_t)36);
    for (int i = 0; i < k; i++) pthread_join(t[i], NULL);
    return now_s() - t0;
}

static void bench_scaling(void) {
    enum { RUNS = 9 };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    if (cores > 64) cores = 64;
    double t1 = 0, c1 = 0, cpu1 = 0;
    for (int k = 1; k <= cores; k++) {
        double t[RUNS], c[RUNS], cpu[RUNS];
        for (int r = 0; r < RUNS; r++) {   /* interleaved, so both see the same machine */
            t[r] = run_k(k, &cpu[r]);
            c[r] = run_c(k);
        }
        double tk = median(t, RUNS), ck = median(c, RUNS), cpuk = median(cpu, RUNS);
        if (k == 1) { t1 = tk; c1 = ck; cpu1 = cpuk; }
        double speedup = k * t1 / tk, cspeed = k * c1 / ck;
        printf("scaling: %d VM(s), %ld cores: %.3f s, speed-up %.2f = %.2f k (CPU %.3f s = %.2f x one VM's; "
               "C threads on this machine: %.2f k)   target >= 0.9 k\n",
               k, cores, tk, speedup, speedup / k, cpuk, cpuk / cpu1, cspeed / k);
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs("usage: bench_host IMAGE|--sources [IDLE_VMS]\n", stderr);
        return 2;
    }
    /* --sources: every VM parses the core library instead (for comparison). */
    image = strcmp(argv[1], "--sources") ? argv[1] : NULL;
    static char cp[4096];
    if (image) snprintf(cp, sizeof cp, "%s/tests/host", HYDRA_SOURCE_DIR);
    else snprintf(cp, sizeof cp, "%s/images/core:%s/tests/host", HYDRA_SOURCE_DIR, HYDRA_SOURCE_DIR);
    classpath = cp;
    int idle = argc > 2 ? atoi(argv[2]) : 1000;
    bench_spawn();
    bench_idle(idle > 0 ? idle : 1000);
    bench_scaling();
    return 0;
}
