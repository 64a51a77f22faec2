/*
 * prims_ffi.c -- the foreign function interface on libffi, and ByteArray, the buffers passed to
 * foreign code.
 */
#include "prims.h"

static bool is_bytearray(hy_vm *vm, hyi_oop o) {
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_BYTES && hyi_is_kind(vm, o, vm->cls.bytearray);
}

/* The 0-based index of a 1-based SmallInteger index argument, or fail. */
static hyi_prim_status byte_index(hy_vm *vm, hyi_oop ba, hyi_oop index, uint32_t *out) {
    if (!hyi_is_smi(index)) return hyi_prim_fail(vm, "ByteArray index must be an Integer");
    intptr_t i = hyi_smi_val(index);
    if (i < 1 || (uintptr_t)i > hyi_size(ba))
        return hyi_prim_fail(vm, "index %ld out of bounds 1..%u", (long)i, hyi_size(ba));
    *out = (uint32_t)(i - 1);
    return HYI_PRIM_OK;
}

static hyi_prim_status ba_new(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_is_smi(args[1]) || hyi_smi_val(args[1]) < 0 || hyi_smi_val(args[1]) > (intptr_t)UINT32_MAX / 2)
        return hyi_prim_fail(vm, "ByteArray new: needs a non-negative Integer size");
    hyi_oop o = hyi_instantiate(vm, args[0], (uint32_t)hyi_smi_val(args[1]));
    if (!o) return HYI_PRIM_OOM;
    *result = o;
    return HYI_PRIM_OK;
}

static hyi_prim_status ba_at(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_bytearray(vm, args[0])) return hyi_prim_fail(vm, "ByteArray>>at: receiver is not a ByteArray");
    uint32_t i;
    hyi_prim_status st = byte_index(vm, args[0], args[1], &i);
    if (st != HYI_PRIM_OK) return st;
    *result = hyi_smi(hyi_bytes(args[0])[i]);
    return HYI_PRIM_OK;
}

static hyi_prim_status ba_at_put(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_bytearray(vm, args[0])) return hyi_prim_fail(vm, "ByteArray>>at:put: receiver is not a ByteArray");
    uint32_t i;
    hyi_prim_status st = byte_index(vm, args[0], args[1], &i);
    if (st != HYI_PRIM_OK) return st;
    if (!hyi_is_smi(args[2]) || hyi_smi_val(args[2]) < 0 || hyi_smi_val(args[2]) > 255)
        return hyi_prim_fail(vm, "ByteArray>>at:put: the value must be an Integer 0..255");
    hyi_bytes(args[0])[i] = (uint8_t)hyi_smi_val(args[2]);
    *result = args[2];
    return HYI_PRIM_OK;
}

static hyi_prim_status ba_length(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_bytearray(vm, args[0])) return hyi_prim_fail(vm, "ByteArray>>length receiver is not a ByteArray");
    *result = hyi_smi(hyi_size(args[0]));
    return HYI_PRIM_OK;
}

const hyi_prim_def hyi_prims_ffi[] = {
    { "ByteArray class", "new:", ba_new, 0 },
    { "ByteArray", "at:", ba_at, 0 },
    { "ByteArray", "at:put:", ba_at_put, 0 },
    { "ByteArray", "length", ba_length, 0 },
    { NULL, NULL, NULL, 0 },
};
