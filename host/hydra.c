/*
 * hydra.c -- the `hydra` command-line program.
 *
 *   hydra run --cp PATH[:PATH...] CLASS [ARGS...]
 *
 * runs CLASS the way SOM implementations do (System>>initialize:), with the core library
 * found on the class path. The exit status is the program's: 0, the value given to
 * `System exit:`, or 1 after an unhandled error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra/hy_vm.h"

static void usage(FILE *f) {
    fputs("usage: hydra run [options] CLASS [ARGS...]\n"
          "\n"
          "Runs the SOM class CLASS: loads CLASS.som from the class path, creates an instance\n"
          "and sends it #run: with the arguments (class name first), or #run.\n"
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
          "  --trace FILE.json     write a trace of threads, calls, GC and processes (for\n"
          "                        ui.perfetto.dev or chrome://tracing) when the VM ends\n"
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

static int cmd_run(int argc, char **argv) {
    hy_config cfg;
    hy_config_init(&cfg);
    const char *trace_path = NULL;
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
        } else if (!strcmp(a, "--trace")) {
            if (++i >= argc) { fputs("hydra: --trace needs a file name\n", stderr); return 2; }
            trace_path = argv[i];
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
    hy_err err = trace_path ? hy_trace_new(&cfg.trace) : HY_OK;
    if (err == HY_OK) err = hy_vm_new(&cfg, &vm);
    free(cp_buf);
    if (err != HY_OK) {
        fprintf(stderr, "hydra: cannot create the VM: %s\n", hy_strerror(err));
        hy_trace_free(cfg.trace);
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
    if (trace_path) {
        err = hy_trace_write_json(cfg.trace, trace_path);
        if (err != HY_OK) {
            fprintf(stderr, "hydra: cannot write the trace to %s: %s\n", trace_path, hy_strerror(err));
            if (!status) status = 1;
        }
        hy_trace_free(cfg.trace);
    }
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    fprintf(stderr, "hydra: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
