/*
 * bench_image.c -- how fast and how small a VM made from a snapshot image is.
 *
 *   bench_image [FILE.image]
 *
 * Without an argument the image is built first from the core library (HYDRA_CORE, else the
 * source tree's images/core) into a temporary file. Prints:
 *  - the image's file size and heap bytes;
 *  - hy_image_open: median of 20;
 *  - hy_vm_new_from_image + hy_vm_free: median of 100, against hy_vm_new from sources (the
 *    baseline, median of 10) measured in the same run;
 *  - resident memory per idle VM: RSS growth over 200 VMs made from the image and kept alive,
 *    divided by 200, against the heap each uses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hydra/hy_vm.h"
#include "bench_stats.h"

#ifndef HYDRA_SOURCE_DIR
#define HYDRA_SOURCE_DIR "."
#endif

#define SPAWNS 100
#define BASELINE 10
#define OPENS 20
#define IDLE_VMS 200

static double now_us(void) { return bench_now_ns() / 1e3; }

static double median(double *v, int n) { return bench_median(v, n); }

static long rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void quiet(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx; (void)stream; (void)bytes; (void)len;
}

int main(int argc, char **argv) {
    const char *core = getenv("HYDRA_CORE");
    if (!core || !*core) core = HYDRA_SOURCE_DIR "/images/core";
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = core;
    cfg.write = quiet;

    char tmp[] = "/tmp/bench_image_XXXXXX";
    const char *path = argc > 1 ? argv[1] : NULL;
    if (!path) {
        int fd = mkstemp(tmp);
        if (fd < 0) { perror("mkstemp"); return 1; }
        close(fd);
        hy_vm *vm;
        if (hy_vm_new(&cfg, &vm) != HY_OK) { fprintf(stderr, "cannot create a VM from %s\n", core); return 1; }
        if (hy_vm_load_all_classes(vm) != HY_OK || hy_vm_save_image(vm, NULL, tmp) != HY_OK) {
            fprintf(stderr, "cannot build the image: %s\n", hy_vm_last_error(vm));
            return 1;
        }
        hy_vm_free(vm);
        path = tmp;
    }

    double t[SPAWNS];
    char why[512];
    hy_image *img = NULL;
    for (int i = 0; i < OPENS; i++) {
        double t0 = now_us();
        if (hy_image_open(path, &img, why, sizeof why) != HY_OK) { fprintf(stderr, "%s\n", why); return 1; }
        t[i] = now_us() - t0;
        if (i + 1 < OPENS) hy_image_close(img);
    }
    double open_us = median(t, OPENS);
    FILE *f = fopen(path, "rb");
    long file_bytes = 0;
    if (f) { fseek(f, 0, SEEK_END); file_bytes = ftell(f); fclose(f); }

    for (int i = 0; i < SPAWNS; i++) {
        hy_vm *vm;
        double t0 = now_us();
        if (hy_vm_new_from_image(&cfg, img, &vm) != HY_OK) { fprintf(stderr, "spawn failed\n"); return 1; }
        hy_vm_free(vm);
        t[i] = now_us() - t0;
    }
    double spawn_us = median(t, SPAWNS);

    for (int i = 0; i < BASELINE; i++) {
        hy_vm *vm;
        double t0 = now_us();
        if (hy_vm_new(&cfg, &vm) != HY_OK) { fprintf(stderr, "hy_vm_new failed\n"); return 1; }
        hy_vm_free(vm);
        t[i] = now_us() - t0;
    }
    double source_us = median(t, BASELINE);

    static hy_vm *vms[IDLE_VMS];
    long rss0 = rss_kib();
    for (int i = 0; i < IDLE_VMS; i++)
        if (hy_vm_new_from_image(&cfg, img, &vms[i]) != HY_OK) { fprintf(stderr, "spawn failed\n"); return 1; }
    long rss1 = rss_kib();
    hy_gc_stats gs;
    hy_vm_gc_stats(vms[0], &gs);
    for (int i = 0; i < IDLE_VMS; i++) hy_vm_free(vms[i]);

    printf("image: %s\n", argc > 1 ? path : "core library (built for this run)");
    printf("image file                   %8.1f KiB (heap %.1f KiB)\n", file_bytes / 1024.0,
           hy_image_heap_bytes(img) / 1024.0);
    printf("hy_image_open                %8.1f us (median of %d)\n", open_us, OPENS);
    printf("new_from_image + free        %8.1f us (median of %d)\n", spawn_us, SPAWNS);
    printf("hy_vm_new from sources + free%8.1f us (median of %d, baseline)\n", source_us, BASELINE);
    printf("ratio source / image         %8.1fx\n", source_us / spawn_us);
    printf("RSS per idle VM              %8.1f KiB (heap in use %.1f KiB, +%.1f KiB; %d VMs)\n",
           (double)(rss1 - rss0) / IDLE_VMS, gs.heap_in_use / 1024.0,
           (double)(rss1 - rss0) / IDLE_VMS - gs.heap_in_use / 1024.0, IDLE_VMS);
    hy_image_close(img);
    if (path == tmp) unlink(tmp);
    return 0;
}
