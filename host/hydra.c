/*
 * hydra.c -- the `hydra` program: runs one or many VMs in one process (libhydra-host).
 *
 *   hydra run [options] TARGET [ARGS...] [+ [options] TARGET [ARGS...]]...
 *   hydra build-image --cp PATH[:PATH...] [CLASS] -o FILE.image
 *
 * A TARGET is an image file (NAME.image) or a SOM class (a name found on the class path, or
 * a path to NAME.som). The process ends when every VM has; its exit status is the first
 * non-zero exit status of a VM (by order on the command line), or 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra/hydra.h"

static void usage(FILE *f) {
    fputs("usage: hydra run [options] TARGET [ARGS...] [+ [options] TARGET [ARGS...]]...\n"
          "       hydra build-image --cp PATH[:PATH...] [CLASS] -o FILE.image\n"
          "       hydra --help | hydra run --help | hydra build-image --help\n"
          "\n"
          "commands:\n"
          "  run           run VMs in this process (hydra run --help)\n"
          "  build-image   write a snapshot image of a VM that loaded a class path\n", f);
}

static void run_usage(FILE *f) {
    fputs("usage: hydra run [options] TARGET [ARGS...] [+ [options] TARGET [ARGS...]]...\n"
          "\n"
          "Runs each TARGET in a VM of its own, all in this process, and ends when all have\n"
          "ended. A lone + starts the next VM. A TARGET is an image file (NAME.image) or a SOM\n"
          "class: a name found on the class path, or a path to NAME.som (its folder is searched\n"
          "after the class path). The program gets ARGS (System>>initialize: semantics: an\n"
          "instance of the class gets #run: with the class name and ARGS, or #run).\n"
          "With more than one VM every output line starts with its VM's name.\n"
          "The exit status is the first non-zero exit status of a VM, in command-line order\n"
          "(1 after an unhandled error, 137 killed, 143 stopped), or 0.\n"
          "\n"
          "options of one VM (before its TARGET):\n"
          "  --name NAME           its name in output and in `VM current name` (default: the\n"
          "                        image or class name, made unique)\n"
          "  --cp PATH[:PATH...]   folders searched for class files (the core library first\n"
          "                        when TARGET is a class); -cp is the same. Default: the\n"
          "                        previous VM's, else $HYDRA_CLASSPATH\n"
          "  --heap-limit BYTES    heap limit (suffixes k, m, g); default none\n"
          "  --stack-slots N       value-stack slots (bounds recursion depth)\n"
          "  --gc-stress           collect garbage at every allocation (slow; for testing)\n"
          "  --heartbeat HZ        heartbeat rate of the threaded VM (default 1000)\n"
          "  --workers N           most worker threads that may take the VM over (default 16,\n"
          "                        started when needed)\n"
          "  --timeslice           preempt processes of equal priority on heartbeat ticks\n"
          "  --takeover-stress     force a takeover at every foreign call (for testing)\n"
          "\n"
          "options of the whole run (anywhere before a TARGET):\n"
          "  --prefix              prefix output lines with the VM name even for one VM\n"
          "  --no-prefix           never prefix output lines\n"
          "  --colour WHEN         colour the prefixes: auto (on a terminal), always, never\n"
          "  --trace FILE.json     when the run ends, write a trace of every VM's threads,\n"
          "                        calls, takeovers, GC and processes (open it in\n"
          "                        ui.perfetto.dev or chrome://tracing)\n"
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

/* One VM of the command line. */
typedef struct vm_arg {
    hy_spawn_config sc;
    char *cp_buf;            /* class path with the folder of a NAME.som target added */
    char class_name[256];
} vm_arg;

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && !strcmp(s + n - k, suffix);
}

/* Parse one segment argv[*i..] up to a lone "+" or the end into *v (whole-run options into *hc
 * and *trace_path). Returns 0, 1 (help shown), or 2 (usage error, reported). */
static int parse_vm(int argc, char **argv, int *i, vm_arg *v, hy_host_config *hc, const char **trace_path,
                    const char *prev_cp) {
    hy_spawn_config *sc = &v->sc;
    hy_spawn_config_init(sc);
    sc->classpath = prev_cp;
    for (; *i < argc && argv[*i][0] == '-' && strcmp(argv[*i], "+") != 0; (*i)++) {
        const char *a = argv[*i];
        const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
        size_t n;
        if (!strcmp(a, "--cp") || !strcmp(a, "-cp")) {
            if (!val) { fputs("hydra: --cp needs a path\n", stderr); return 2; }
            sc->classpath = val; (*i)++;
        } else if (!strcmp(a, "--name")) {
            if (!val || !*val) { fputs("hydra: --name needs a name\n", stderr); return 2; }
            sc->name = val; (*i)++;
        } else if (!strcmp(a, "--heap-limit")) {
            if (!val || parse_size(val, &sc->heap_limit)) { fputs("hydra: --heap-limit needs a size\n", stderr); return 2; }
            (*i)++;
        } else if (!strcmp(a, "--stack-slots")) {
            if (!val || parse_size(val, &sc->stack_slots)) { fputs("hydra: --stack-slots needs a number\n", stderr); return 2; }
            (*i)++;
        } else if (!strcmp(a, "--gc-stress")) {
            sc->gc_stress = true;
        } else if (!strcmp(a, "--heartbeat") || !strcmp(a, "--workers")) {
            if (!val || parse_size(val, &n) || n == 0 || n > 100000) {
                fprintf(stderr, "hydra: %s needs a positive number\n", a);
                return 2;
            }
            if (!strcmp(a, "--heartbeat")) sc->heartbeat_hz = (unsigned)n;
            else sc->max_workers = (unsigned)n;
            (*i)++;
        } else if (!strcmp(a, "--timeslice")) {
            sc->timeslice = true;
        } else if (!strcmp(a, "--takeover-stress")) {
            sc->takeover_stress = true;
        } else if (!strcmp(a, "--prefix")) {
            hc->prefix = HY_PREFIX_ALWAYS;
        } else if (!strcmp(a, "--no-prefix")) {
            hc->prefix = HY_PREFIX_NEVER;
        } else if (!strcmp(a, "--colour") || !strcmp(a, "--color")) {
            if (val && !strcmp(val, "auto")) hc->colour = -1;
            else if (val && !strcmp(val, "always")) hc->colour = 1;
            else if (val && !strcmp(val, "never")) hc->colour = 0;
            else { fputs("hydra: --colour needs auto, always or never\n", stderr); return 2; }
            (*i)++;
        } else if (!strcmp(a, "--trace")) {
            if (!val || !*val) { fputs("hydra: --trace needs a file name\n", stderr); return 2; }
            *trace_path = val; (*i)++;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "hydra: unknown option %s (hydra run --help)\n", a);
            return 2;
        }
    }
    if (*i >= argc || !strcmp(argv[*i], "+")) {
        fputs("hydra: a VM needs a TARGET (an image file or a class) (hydra run --help)\n", stderr);
        return 2;
    }
    const char *target = argv[(*i)++];
    if (ends_with(target, ".image")) {
        sc->image = target;
    } else {
        /* SOM style: a class may be given as a file path (Foo.som or dir/Foo.som). */
        const char *slash = strrchr(target, '/');
        snprintf(v->class_name, sizeof v->class_name, "%s", slash ? slash + 1 : target);
        size_t len = strlen(v->class_name);
        if (len > 4 && !strcmp(v->class_name + len - 4, ".som")) v->class_name[len - 4] = 0;
        sc->main_class = v->class_name;
        if (slash) {
            size_t dlen = (size_t)(slash - target), clen = sc->classpath ? strlen(sc->classpath) : 0;
            v->cp_buf = malloc(clen + dlen + 3);
            if (!v->cp_buf) { fputs("hydra: out of memory\n", stderr); return 2; }
            snprintf(v->cp_buf, clen + dlen + 3, "%s%s%.*s", clen ? sc->classpath : "", clen ? ":" : "",
                     (int)(dlen ? dlen : 1), dlen ? target : "/");
            sc->classpath = v->cp_buf;
        }
    }
    int first = *i;
    while (*i < argc && strcmp(argv[*i], "+") != 0) (*i)++;
    sc->argc = *i - first;
    sc->argv = (const char *const *)(argv + first);
    if (*i < argc) (*i)++;   /* the "+" */
    return 0;
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
    hy_host_config hc;
    hy_host_config_init(&hc);
    vm_arg *vms = calloc((size_t)argc + 1, sizeof *vms);
    if (!vms) { fputs("hydra: out of memory\n", stderr); return 1; }
    int nvms = 0, i = 0, status = 0;
    const char *cp = getenv("HYDRA_CLASSPATH"), *trace_path = NULL;
    if (argc == 0) { run_usage(stderr); status = 2; goto out; }
    while (i < argc) {
        int r = parse_vm(argc, argv, &i, &vms[nvms], &hc, &trace_path, cp);
        if (r) { status = r == 1 ? 0 : 2; nvms++; goto out; }
        cp = vms[nvms].sc.classpath;
        nvms++;
    }

    hy_host *host;
    if ((trace_path && hy_trace_new(&hc.trace) != HY_OK) || hy_host_new(&hc, &host) != HY_OK) {
        fputs("hydra: out of memory\n", stderr);
        status = 1;
        goto out;
    }
    /* Make every VM before starting any, so a bad target stops the run before it begins. */
    unsigned *ids = calloc((size_t)nvms, sizeof *ids);
    for (int k = 0; ids && k < nvms; k++) {
        char err[1024];
        if (hy_host_spawn(host, &vms[k].sc, &ids[k], err, sizeof err) != HY_OK) {
            fprintf(stderr, "hydra: %s\n", err);
            status = 1;
            break;
        }
    }
    if (!ids) status = 1;
    for (int k = 0; status == 0 && k < nvms; k++) {
        if (hy_host_start(host, ids[k]) != HY_OK) {
            fputs("hydra: cannot start a thread for a VM\n", stderr);
            status = 1;
        }
    }
    if (status == 0) hy_host_join_all(host, &status);
    fflush(stdout);
    hy_host_free(host);
    free(ids);
    if (trace_path) {
        hy_err err = hy_trace_write_json(hc.trace, trace_path);
        if (err != HY_OK) {
            fprintf(stderr, "hydra: cannot write the trace to %s: %s\n", trace_path, hy_strerror(err));
            if (!status) status = 1;
        }
    }
out:
    hy_trace_free(hc.trace);
    for (int k = 0; k < nvms; k++) free(vms[k].cp_buf);
    free(vms);
    return status;
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        fputc('\n', stdout);
        run_usage(stdout);
        fputc('\n', stdout);
        build_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "run")) return cmd_run(argc - 2, argv + 2);
    if (!strcmp(argv[1], "build-image")) return cmd_build_image(argc - 2, argv + 2);
    fprintf(stderr, "hydra: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
