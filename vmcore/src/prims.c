/*
 * prims.c -- binding primitive methods to the C functions of the primitive tables.
 *
 * A primitive number is (table << 10) | (index + 1) into the constant tables of prims.h, so it
 * identifies a function without any per-VM or global mutable registry.
 */
#include "prims.h"

#include <stdarg.h>
#include <stdio.h>

const hyi_prim_def *const hyi_prim_tables[HYI_PRIM_NUM_TABLES] = {
    hyi_prims_control, hyi_prims_object, hyi_prims_number, hyi_prims_string, hyi_prims_ffi,
    hyi_prims_process, hyi_prims_vm,
};
#define tables hyi_prim_tables
#define NUM_TABLES HYI_PRIM_NUM_TABLES

static bool name_eq(const char *c, const char *s, size_t len) {
    return strncmp(c, s, len) == 0 && c[len] == 0;
}

uint16_t hyi_prim_find(const char *cls, size_t cls_len, const char *selector, size_t sel_len) {
    for (size_t t = 0; t < NUM_TABLES; t++)
        for (size_t i = 0; tables[t][i].cls && i < 1022; i++)
            if (name_eq(tables[t][i].cls, cls, cls_len) && name_eq(tables[t][i].selector, selector, sel_len))
                return (uint16_t)((t << 10) | (i + 1));
    return 0;
}

hyi_prim_status hyi_prim_fail(hy_vm *vm, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->prim_message, sizeof vm->prim_message, fmt, ap);
    va_end(ap);
    return HYI_PRIM_FAIL;
}

void hyi_prim_class_name(hy_vm *vm, hyi_oop o, int *len, const char **name) {
    hyi_oop cls = hyi_class_of(vm, o);
    hyi_oop sym = cls && hyi_is_ptr(cls) && hyi_fmt_has_slots(hyi_fmt(cls)) && hyi_size(cls) > HYI_CLASS_NAME
                      ? hyi_slots(cls)[HYI_CLASS_NAME] : 0;
    if (sym && hyi_is_ptr(sym) && hyi_fmt(sym) == HYI_FMT_BYTES) {
        *len = (int)hyi_size(sym);
        *name = (const char *)hyi_bytes(sym);
    } else {
        *len = 7;
        *name = "unknown";
    }
}
