/*
 * fuzz_image.c -- libFuzzer target for the image loader (image.c).
 *
 * Each input is tried twice: as it is, and with its header's length and checksum fields fixed
 * up to match the input, so that mutations reach the structural checks behind the checksum
 * instead of all failing there. Whatever hy_image_open_bytes accepts must make a VM that
 * survives a full garbage collection (which follows every reference of the loaded heap), a
 * symbol lookup and a global lookup, and then be freed. The property checked: no input crashes,
 * reads out of bounds, leaks or trips a sanitizer; refusals carry a message.
 *
 * Seeds: a real image (scripts/fuzz.sh copies build-fuzz/images/core.image).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra/hy_vm.h"
#include "image.h"
#include "thread.h"
#include "vm.h"

static void discard_output(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx; (void)stream; (void)bytes; (void)len;
}

static void try_image(const uint8_t *data, size_t size) {
    hy_image *img = NULL;
    char why[256];
    why[0] = 0;
    hy_err err = hy_image_open_bytes(data, size, &img, why, sizeof why);
    if (err != HY_OK) {
        if (err == HY_EIMAGE && strncmp(why, "image: ", 7) != 0) {
            fprintf(stderr, "fuzz_image: refusal without a message: '%s'\n", why);
            abort();
        }
        return;
    }
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.write = discard_output;
    cfg.gc_stress = false;
    hy_vm *vm = NULL;
    if (hy_vm_new_from_image(&cfg, img, &vm) == HY_OK) {
        if (hyi_thread_attach(vm)) {
            hyi_gc_full(vm);
            hyi_oop sym = hyi_symbol_c(vm, "Object");
            if (sym) (void)hyi_global_get(vm, sym);
            hyi_thread_detach(vm);
        }
        hy_vm_free(vm);
    }
    hy_image_close(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    try_image(data, size);
    if (size < sizeof(hyi_image_header)) return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed) return 0;
    memcpy(fixed, data, size);
    uint64_t n = size;
    memcpy(fixed + offsetof(hyi_image_header, file_bytes), &n, 8);
    uint64_t sum = hyi_image_checksum(fixed, size);
    memcpy(fixed + offsetof(hyi_image_header, checksum), &sum, 8);
    try_image(fixed, size);
    free(fixed);
    return 0;
}
