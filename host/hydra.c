/*
 * hydra.c -- the `hydra` command-line program.
 *
 *   hydra run --cp PATH[:PATH...] CLASS [ARGS...]
 *   hydra run [options] FILE.image [ARGS...]
 *   hydra build-image --cp PATH[:PATH...] [CLASS] -o FILE.image
 *
 * runs CLASS the way SOM implementations do (System>>initialize:), with the core library
 * found on the class path, or the entry class of an image (an image without entry takes the
 * class to run as its first argument). The exit status is the program's: 0, the value given
 * to `System exit:`, or 1 after an unhandled error.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra/hy_vm.h"

static void usage(FILE *f) {
    fputs("usage: hydra run [options] CLASS [ARGS...]\n"
          "       hydra run [options] FILE.image [ARGS...]\n"
          "       hydra build-image --cp PATH[:PATH...] [CLASS] -o FILE.image\n"
          "\n"
          "Runs the SOM class CLASS: loads CLASS.som from the class path, creates an instance\n"
          "and sends it #run: with the arguments (class name first), or #run. An argument ending\n"
          "in .image is an image file: its entry class runs, or, for an image without entry,\n"
          "the class its first argument names (from the image or the class path).\n"
          "\n"
          "options:\n"
          "  --cp PATH[:PATH...]   folders searched for class files (the core library first)\n"
          "  --heap-limit BYTES    heap limit of the VM (suffixes k, m, g); default none\n"
          "  --stack-slots N       value-stack slots (bounds recursion depth)\n"
          "  --gc-stress           collect garbage at every allocation (slow; for testing)\n"
          "  --heartbeat HZ        heartbeat rate of the threaded VM (default 1000)\n"
          "  --workers N           most worker threads that may take the VM over (default 4)\n"
          "  --timeslice           preempt processes of equal priority on heartbeat ticks\n"
          "  --takeover-stress     force a takeover at every foreign call (for testing)\n"
          "  -h, --help            this text\n", f);
}

static int parse_size(const char *s, size_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end) return -1;
    *out = (size_t)v;
    return 0;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

static int run_image(const hy_config *cfg, const char *path, int argc, char **argv) {
    char why[512];
    hy_image *img;
    if (hy_image_open(path, &img, why, sizeof why) != HY_OK) {
        fprintf(stderr, "hydra: %s\n", why);
        return 1;
    }
    hy_vm *vm;
    hy_err err = hy_vm_new_from_image(cfg, img, &vm);
    hy_image_close(img);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: cannot create the VM from %s: %s\n", path, hy_strerror(err));
        return 1;
    }
    int status = 1;
    err = hy_vm_run_entry(vm, argc, (const char *const *)argv, &status);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: %s\n", *hy_vm_last_error(vm) ? hy_vm_last_error(vm) : hy_strerror(err));
        status = 1;
    }
    fflush(stdout);
    hy_vm_free(vm);
    return status;
}

static void build_usage(FILE *f) {
    fputs("usage: hydra build-image --cp PATH[:PATH...] [CLASS] -o FILE.image\n"
          "\n"
          "Loads every class file of every folder on the class path (the core library first),\n"
          "then writes the VM's heap to FILE.image, with CLASS as its entry class if given.\n"
          "`hydra run FILE.image ARGS` then runs CLASS without reading any source; an image\n"
          "without entry runs the class named by its first argument.\n"
          "\n"
          "options:\n"
          "  --cp PATH[:PATH...]   folders whose class files the image holds\n"
          "  -o FILE               the image file to write (written whole, then renamed)\n"
          "  -h, --help            this text\n", f);
}

static int cmd_build_image(int argc, char **argv) {
    const char *cp = NULL, *out = NULL, *entry = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--cp") || !strcmp(a, "-cp") || !strcmp(a, "-o")) {
            if (++i >= argc) { fprintf(stderr, "hydra: %s needs an argument\n", a); return 2; }
            if (a[1] == 'o') out = argv[i];
            else cp = argv[i];
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            build_usage(stdout);
            return 0;
        } else if (a[0] == '-' || entry) {
            fprintf(stderr, "hydra: build-image: unexpected argument %s\n", a);
            build_usage(stderr);
            return 2;
        } else {
            entry = a;
        }
    }
    if (!cp || !out) { build_usage(stderr); return 2; }
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = cp;
    cfg.gc_stress = false;
    hy_vm *vm;
    hy_err err = hy_vm_new(&cfg, &vm);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: cannot create the VM: %s\n", hy_strerror(err));
        return 1;
    }
    err = hy_vm_load_all_classes(vm);
    if (err == HY_OK) err = hy_vm_save_image(vm, entry, out);
    if (err != HY_OK)
        fprintf(stderr, "hydra: build-image: %s\n", *hy_vm_last_error(vm) ? hy_vm_last_error(vm) : hy_strerror(err));
    hy_vm_free(vm);
    return err == HY_OK ? 0 : 1;
}

static int cmd_run(int argc, char **argv) {
    hy_config cfg;
    hy_config_init(&cfg);
    int i = 0;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--cp") || !strcmp(a, "-cp")) {
            if (++i >= argc) { fputs("hydra: --cp needs a path\n", stderr); return 2; }
            cfg.classpath = argv[i];
        } else if (!strcmp(a, "--heap-limit")) {
            if (++i >= argc || parse_size(argv[i], &cfg.heap_limit)) { fputs("hydra: --heap-limit needs a size\n", stderr); return 2; }
        } else if (!strcmp(a, "--stack-slots")) {
            if (++i >= argc || parse_size(argv[i], &cfg.stack_slots)) { fputs("hydra: --stack-slots needs a number\n", stderr); return 2; }
        } else if (!strcmp(a, "--gc-stress")) {
            cfg.gc_stress = true;
        } else if (!strcmp(a, "--heartbeat") || !strcmp(a, "--workers")) {
            size_t v;
            if (++i >= argc || parse_size(argv[i], &v) || v == 0 || v > 100000) {
                fprintf(stderr, "hydra: %s needs a positive number\n", a);
                return 2;
            }
            if (!strcmp(a, "--heartbeat")) cfg.heartbeat_hz = (unsigned)v;
            else cfg.max_workers = (unsigned)v;
        } else if (!strcmp(a, "--timeslice")) {
            cfg.timeslice = true;
        } else if (!strcmp(a, "--takeover-stress")) {
            cfg.takeover_stress = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "hydra: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (i >= argc) { usage(stderr); return 2; }
    if (!cfg.classpath) cfg.classpath = getenv("HYDRA_CLASSPATH");
    if (has_suffix(argv[i], ".image")) return run_image(&cfg, argv[i], argc - i - 1, argv + i + 1);
    const char *cls = argv[i++];
    /* SOM style: a class may be given as a file path (Foo.som or dir/Foo.som). */
    char name[256];
    const char *slash = strrchr(cls, '/');
    snprintf(name, sizeof name, "%s", slash ? slash + 1 : cls);
    size_t n = strlen(name);
    if (n > 4 && !strcmp(name + n - 4, ".som")) name[n - 4] = 0;
    /* The folder of a class given by path is searched after the class path. */
    char *cp_buf = NULL;
    if (slash) {
        size_t dlen = (size_t)(slash - cls), clen = cfg.classpath ? strlen(cfg.classpath) : 0;
        cp_buf = malloc(clen + dlen + 3);
        if (!cp_buf) { fputs("hydra: out of memory\n", stderr); return 1; }
        snprintf(cp_buf, clen + dlen + 3, "%s%s%.*s", clen ? cfg.classpath : "", clen ? ":" : "",
                 (int)(dlen ? dlen : 1), dlen ? cls : "/");
        cfg.classpath = cp_buf;
    }

    hy_vm *vm;
    hy_err err = hy_vm_new(&cfg, &vm);
    free(cp_buf);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: cannot create the VM: %s\n", hy_strerror(err));
        return 1;
    }
    int status = 1;
    err = hy_vm_run_main(vm, name, argc - i, (const char *const *)(argv + i), &status);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: %s\n", *hy_vm_last_error(vm) ? hy_vm_last_error(vm) : hy_strerror(err));
        status = 1;
    }
    fflush(stdout);
    hy_vm_free(vm);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "build-image")) return cmd_build_image(argc - 2, argv + 2);
    fprintf(stderr, "hydra: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
