/*
 * fuzz_compiler.c -- libFuzzer target for the lexer, parser and compiler.
 *
 * Each input is compiled twice: as a class file (hyi_compile_class) and as one method
 * definition for a class of the harness (hyi_compile_method). Nothing is run. The only
 * property checked is the compiler's contract: whatever the input, it returns (true or false
 * with a diagnostic) without crashing, reading out of bounds, leaking or tripping a sanitizer.
 *
 * One VM serves many inputs, since creating one loads the whole core library. Classes an
 * input defines stay in that VM (an input may even redefine a core class), so the VM is
 * replaced every HYDRA_FUZZ_RECREATE inputs (default 256) and whenever its heap grows past
 * 128 MiB: memory stays bounded, and a crash can be replayed with HYDRA_FUZZ_RECREATE=1 (a
 * fresh VM per input) when it depends on earlier inputs.
 *
 * The core library is found through the HYDRA_CORE environment variable, else at the path the
 * build compiled in (HYDRA_CORE_DIR).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra/hy_vm.h"
#include "compiler.h"
#include "vm.h"

#ifndef HYDRA_CORE_DIR
#define HYDRA_CORE_DIR "images/core"
#endif

enum { MAX_HEAP_IN_USE = 128u << 20 };

/* A class with instance and class-side fields, so that method bodies can refer to fields. */
static const char harness_class[] =
    "FuzzTarget = Object (\n"
    "    | a b c |\n"
    "    a = ( ^ a )\n"
    "    ----\n"
    "    | x y |\n"
    "    new = ( ^ super new )\n"
    ")\n";

typedef struct fuzz_state {
    hy_vm *vm;
    hyi_oop target;        /* FuzzTarget, a root of the VM for its whole life */
    unsigned inputs;       /* inputs compiled by this VM */
    unsigned recreate_every;
} fuzz_state;

static fuzz_state state;

static void discard_output(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx; (void)stream; (void)bytes; (void)len;
}

static void fail_setup(const char *what, const char *detail) {
    fprintf(stderr, "fuzz_compiler: %s%s%s\n", what, *detail ? ": " : "", detail);
    fprintf(stderr, "fuzz_compiler: set HYDRA_CORE to the images/core folder\n");
    exit(1);
}

static void vm_start(void) {
    hy_config cfg;
    hy_config_init(&cfg);
    const char *core = getenv("HYDRA_CORE");
    cfg.classpath = core && *core ? core : HYDRA_CORE_DIR;
    cfg.heap_limit = 512u << 20;
    cfg.write = discard_output;
    hy_err err = hy_vm_new(&cfg, &state.vm);
    if (err != HY_OK) fail_setup("cannot create a VM", hy_strerror(err));

    hyi_diag diag;
    memset(&diag, 0, sizeof diag);
    if (!hyi_compile_class(state.vm, harness_class, sizeof harness_class - 1, "FuzzTarget.som",
                           &state.target, &diag))
        fail_setup("cannot compile the harness class", diag.message);
    HYI_ROOT(state.vm, &state.target);
    state.inputs = 0;
}

static void vm_stop(void) {
    hy_vm_free(state.vm);
    state.vm = NULL;
    state.target = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *every = getenv("HYDRA_FUZZ_RECREATE");
    state.recreate_every = every && atoi(every) > 0 ? (unsigned)atoi(every) : 256;
    vm_start();
    return 0;
}

/* The file name a class loader would use: the first identifier of the input (after
 * whitespace and "comments"), so that a compiler checking the name against the file sees
 * agreement for well-formed inputs. */
static void file_name_for(const uint8_t *data, size_t size, char *out, size_t cap) {
    size_t i = 0;
    for (;;) {
        while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r'))
            i++;
        if (i < size && data[i] == '"') {
            for (i++; i < size && data[i] != '"'; i++) {}
            i++;
            continue;
        }
        break;
    }
    size_t n = 0;
    while (i < size && n + 5 < cap &&
           ((data[i] >= 'a' && data[i] <= 'z') || (data[i] >= 'A' && data[i] <= 'Z') ||
            (data[i] >= '0' && data[i] <= '9') || data[i] == '_'))
        out[n++] = (char)data[i++];
    if (n == 0) {
        snprintf(out, cap, "Input.som");
        return;
    }
    memcpy(out + n, ".som", 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (state.inputs >= state.recreate_every) {
        vm_stop();
        vm_start();
    } else {
        hy_gc_stats stats;
        if (hy_vm_gc_stats(state.vm, &stats) == HY_OK && stats.heap_in_use > MAX_HEAP_IN_USE) {
            vm_stop();
            vm_start();
        }
    }
    state.inputs++;

    char file[128];
    file_name_for(data, size, file, sizeof file);
    const char *src = (const char *)data;   /* not NUL-terminated: the compiler must not care */

    hyi_oop out = 0;
    hyi_diag diag;
    memset(&diag, 0, sizeof diag);
    (void)hyi_compile_class(state.vm, src, size, file, &out, &diag);

    out = 0;
    memset(&diag, 0, sizeof diag);
    (void)hyi_compile_method(state.vm, state.target, src, size, "FuzzTarget.som", &out, &diag);
    return 0;
}
