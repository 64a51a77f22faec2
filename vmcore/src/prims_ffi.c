/*
 * prims_ffi.c -- the foreign function interface on libffi, and ByteArray, the buffers passed to
 * foreign code.
 *
 * The primitives of ExternalLibrary, ExternalFunction, ExternalAddress, ExternalStructureType
 * and ExternalCallback (images/core) sit on foreign.c. The Smalltalk side keeps the objects' fields
 * in the order foreign.h names them and hands classes to the primitives that make instances, so
 * no primitive looks a class up by name.
 *
 * Handles that C trusts (a library's dlopen handle, a function's prepared signature, a
 * callback's closure) live in old, pinned HYI_FMT_EXTERNAL objects that Smalltalk code cannot
 * make or forge; each checks a magic number and its own address before use.
 */
#include <dlfcn.h>
#include <stdlib.h>

#include "bigint.h"
#include "foreign.h"
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


/* ---- Helpers ------------------------------------------------------------------------------ */

static bool is_string_obj(hy_vm *vm, hyi_oop o) {
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_BYTES && hyi_is_kind(vm, o, vm->cls.string);
}

/* A NUL-terminated copy of the String s in buf, or false (not a String, embedded NUL, too long). */
static bool c_string(hy_vm *vm, hyi_oop s, char *buf, size_t n) {
    if (!is_string_obj(vm, s) || hyi_size(s) >= n || memchr(hyi_bytes(s), 0, hyi_size(s))) return false;
    memcpy(buf, hyi_bytes(s), hyi_size(s));
    buf[hyi_size(s)] = 0;
    return true;
}

/* A new old, pinned object of raw bytes (a handle C trusts). 0 when out of memory. */
static hyi_oop new_handle(hy_vm *vm, size_t bytes) {
    if (bytes > UINT32_MAX / 2) return 0;
    hyi_oop h = hyi_heap_alloc_old(vm, vm->cls.object, HYI_FMT_EXTERNAL, (uint32_t)bytes);
    if (!h) return 0;
    HYI_ROOT(vm, &h);
    bool ok = hyi_heap_pin(vm, &h);
    HYI_UNROOT(vm, 1);
    return ok ? h : 0;
}

/* ---- ExternalLibrary ------------------------------------------------------------------------ */

#define LIB_MAGIC 0x48794c6962446c21ull   /* "HyLibDl!" */

typedef struct lib_handle {
    uint64_t magic;
    struct lib_handle *self;
    void *dl;
} lib_handle;

static lib_handle *lib_of(hyi_oop h) {
    if (!hyi_is_ptr(h) || hyi_fmt(h) != HYI_FMT_EXTERNAL || hyi_size(h) < sizeof(lib_handle)) return NULL;
    lib_handle *l = (lib_handle *)hyi_bytes(h);
    return l->magic == LIB_MAGIC && l->self == l ? l : NULL;
}

/* dlopen name as given; a bare name ('m', 'z') is also tried as libNAME.so and libNAME.so.N. */
static void *open_library(const char *name, char *err, size_t n) {
    dlerror();
    void *dl = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (dl) return dl;
    const char *e = dlerror();
    snprintf(err, n, "%s", e ? e : "unknown error");
    if (strchr(name, '/') || strlen(name) > 200) return NULL;
    char alt[256];
    snprintf(alt, sizeof alt, "lib%s.so", name);
    if ((dl = dlopen(alt, RTLD_NOW | RTLD_LOCAL))) return dl;
    for (int v = 0; v < 10; v++) {
        snprintf(alt, sizeof alt, "lib%s.so.%d", name, v);
        if ((dl = dlopen(alt, RTLD_NOW | RTLD_LOCAL))) return dl;
    }
    dlerror();
    return NULL;
}

/* ExternalLibrary>>primOpen: aStringOrNil -- nil opens the process's own symbols. */
static hyi_prim_status el_open(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_LIBRARY, HYI_EL_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalLibrary");
    if (lib_of(hyi_slots(args[0])[HYI_EL_HANDLE])) return hyi_prim_fail(vm, "the library is open already");
    char name[1024], err[512];
    void *dl;
    if (args[1] == vm->nil) {
        dl = dlopen(NULL, RTLD_NOW);
        if (!dl) return hyi_prim_fail(vm, "cannot open the process's own symbols: %s", dlerror());
    } else {
        char d[128];
        if (!c_string(vm, args[1], name, sizeof name))
            return hyi_prim_fail(vm, "a library name must be a String without NUL, got %s",
                                 hyi_ffi_describe(vm, args[1], d, sizeof d));
        dl = open_library(name, err, sizeof err);
        if (!dl) return hyi_prim_fail(vm, "cannot load the library '%s': %s", name, err);
    }
    hyi_oop h = new_handle(vm, sizeof(lib_handle));
    if (!h) { dlclose(dl); return HYI_PRIM_OOM; }
    lib_handle *l = (lib_handle *)hyi_bytes(h);
    l->magic = LIB_MAGIC;
    l->self = l;
    l->dl = dl;
    hyi_store(vm, args[0], HYI_EL_HANDLE, h);
    *result = args[0];
    return HYI_PRIM_OK;
}

/* ExternalLibrary>>primLookup: aString addressClass: ExternalAddress */
static hyi_prim_status el_lookup(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_LIBRARY, HYI_EL_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalLibrary");
    lib_handle *l = lib_of(hyi_slots(args[0])[HYI_EL_HANDLE]);
    if (!l) return hyi_prim_fail(vm, "the library is not open");
    char sym[512], d[128];
    if (!c_string(vm, args[1], sym, sizeof sym))
        return hyi_prim_fail(vm, "a symbol name must be a String without NUL, got %s", hyi_ffi_describe(vm, args[1], d, sizeof d));
    dlerror();
    void *p = dlsym(l->dl, sym);
    const char *e = dlerror();
    if (e) {
        hyi_oop ln = hyi_slots(args[0])[HYI_EL_NAME];
        bool named = is_string_obj(vm, ln);
        return hyi_prim_fail(vm, "symbol '%s' not found in %s%.*s%s: %s", sym, named ? "'" : "the process",
                             named ? (int)(hyi_size(ln) > 200 ? 200 : hyi_size(ln)) : 0,
                             named ? (const char *)hyi_bytes(ln) : "", named ? "'" : "", e);
    }
    hyi_oop cls = hyi_ffi_superclass(vm, args[2], HYI_FC_ADDRESS);
    if (!cls) return hyi_prim_fail(vm, "primLookup:addressClass: needs the class ExternalAddress");
    hyi_oop r = hyi_ffi_new_address(vm, cls, p, SIZE_MAX, vm->nil);
    if (!r) return HYI_PRIM_OOM;
    *result = r;
    return HYI_PRIM_OK;
}

/* ---- ExternalFunction ---------------------------------------------------------------------- */

static const char *ef_name(hy_vm *vm, hyi_oop fn, int *len) {
    hyi_oop n = hyi_slots(fn)[HYI_EF_NAME];
    if (is_string_obj(vm, n)) {
        *len = (int)(hyi_size(n) > 100 ? 100 : hyi_size(n));
        return (const char *)hyi_bytes(n);
    }
    *len = 18;
    return "a foreign function";
}

/* ExternalFunction>>primPrepare -- build the signature (cif) from the fields once. */
static hyi_prim_status ef_prepare(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_FUNCTION, HYI_EF_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalFunction");
    int nlen;
    const char *name = ef_name(vm, args[0], &nlen);
    void *p;
    size_t sz;
    char why[200];
    if (!hyi_ffi_address(vm, hyi_slots(args[0])[HYI_EF_ADDRESS], &p, &sz, why, sizeof why))
        return hyi_prim_fail(vm, "%.*s: its address: %s", nlen, name, why);
    if (!p) return hyi_prim_fail(vm, "%.*s: a NULL function pointer cannot be called", nlen, name);
    hyi_oop *f = hyi_slots(args[0]);
    size_t bytes = hyi_ffi_sig_bytes(vm, f[HYI_EF_RETURN], f[HYI_EF_ARGS], false);
    char msg[sizeof vm->prim_message];
    if (!bytes) {
        snprintf(msg, sizeof msg, "%s", vm->prim_message);
        return hyi_prim_fail(vm, "%.*s: %s", nlen, name, msg);
    }
    hyi_oop h = new_handle(vm, bytes);
    if (!h) return HYI_PRIM_OOM;
    f = hyi_slots(args[0]);
    name = ef_name(vm, args[0], &nlen);
    if (!hyi_ffi_sig_build(vm, hyi_bytes(h), bytes, f[HYI_EF_RETURN], f[HYI_EF_ARGS], false)) {
        snprintf(msg, sizeof msg, "%s", vm->prim_message);
        return hyi_prim_fail(vm, "%.*s: %s", nlen, name, msg);
    }
    hyi_ffi_sig *s = (hyi_ffi_sig *)hyi_bytes(h);
    s->fn = p;
    s->blocking = f[HYI_EF_BLOCKING] == vm->true_;
    hyi_store(vm, args[0], HYI_EF_HANDLE, h);
    *result = args[0];
    return HYI_PRIM_OK;
}

/* ExternalFunction>>primBlocking: aBoolean */
static hyi_prim_status ef_blocking(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_FUNCTION, HYI_EF_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalFunction");
    hyi_ffi_sig *s = hyi_ffi_sig_of_handle(hyi_slots(args[0])[HYI_EF_HANDLE]);
    if (!s) return hyi_prim_fail(vm, "the function was not prepared");
    if (args[1] != vm->true_ && args[1] != vm->false_) return hyi_prim_fail(vm, "primBlocking: needs a Boolean");
    s->blocking = args[1] == vm->true_;
    hyi_store(vm, args[0], HYI_EF_BLOCKING, args[1]);
    *result = args[0];
    return HYI_PRIM_OK;
}

/* ExternalFunction>>primUnthreaded: aBoolean -- calls keep the VM (no callout protocol) */
static hyi_prim_status ef_unthreaded(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_FUNCTION, HYI_EF_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalFunction");
    hyi_ffi_sig *s = hyi_ffi_sig_of_handle(hyi_slots(args[0])[HYI_EF_HANDLE]);
    if (!s) return hyi_prim_fail(vm, "the function was not prepared");
    if (args[1] != vm->true_ && args[1] != vm->false_) return hyi_prim_fail(vm, "primUnthreaded: needs a Boolean");
    s->unthreaded = args[1] == vm->true_;
    *result = args[0];
    return HYI_PRIM_OK;
}

/* call, callWith:, callWith:with:, ... : the arguments are args[1..nargs]. */
static hyi_prim_status ef_call(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    return hyi_ffi_call(vm, &args[0], &args[1], nargs, result);
}

/* callWithArguments: anArray */
static hyi_prim_status ef_call_array(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_is_ptr(args[1]) || hyi_o(args[1])->cls != vm->cls.array) {
        char d[128];
        return hyi_prim_fail(vm, "callWithArguments: needs an Array, got %s", hyi_ffi_describe(vm, args[1], d, sizeof d));
    }
    /* The arguments are read from the Array's slots, which must then stay where they are
     * while their byte objects are pinned: pin the Array first when anything will need it. */
    uint32_t n = hyi_size(args[1]);
    bool pins = false;
    for (uint32_t i = 0; i < n && !pins; i++) {
        hyi_oop t = hyi_ffi_pin_target(vm, HYI_K_POINTER, hyi_slots(args[1])[i]);
        pins = t && !hyi_o(t)->pinned;
    }
    if (pins && !hyi_o(args[1])->pinned && !hyi_heap_pin(vm, &args[1]))
        return hyi_prim_fail(vm, "callWithArguments: cannot pin the arguments (the heap is full)");
    return hyi_ffi_call(vm, &args[0], hyi_slots(args[1]), n, result);
}

/* ---- ExternalAddress ------------------------------------------------------------------------ */

/* Where width bytes at byte offset off of target are: target is an ExternalAddress
 * (bounds-checked when its size is known) or a ByteArray (or, to read, a String). */
static bool locate(hy_vm *vm, hyi_oop target, hyi_oop off, size_t width, bool write, uint8_t **p,
                   char *why, size_t n) {
    char d[128];
    if (!hyi_is_smi(off) || hyi_smi_val(off) < 0) {
        snprintf(why, n, "the offset must be a non-negative Integer, got %s", hyi_ffi_describe(vm, off, d, sizeof d));
        return false;
    }
    size_t o = (size_t)hyi_smi_val(off), size;
    uint8_t *base;
    /* A byte object cannot be an ExternalAddress (a pointer object): telling it apart first
     * spares the walk up its class chain. */
    bool bytes = hyi_is_ptr(target) && hyi_fmt(target) == HYI_FMT_BYTES;
    if (bytes && (is_bytearray(vm, target) || (!write && is_string_obj(vm, target)))) {
        base = hyi_bytes(target);
        size = hyi_size(target);
    } else if (hyi_is_smi(target) && hyi_smi_val(target) > 0) {
        /* A bare address, as ExternalAddress fromInteger: would hold it (no size known): what a
         * foreign function declared to answer #uintptr_t gives, without an object per call. */
        base = (uint8_t *)(uintptr_t)hyi_smi_val(target);
        size = SIZE_MAX;
    } else if (!bytes && hyi_ffi_is_a(vm, target, HYI_FC_ADDRESS, HYI_EA_FIELDS)) {
        void *a;
        if (!hyi_ffi_address_of(vm, target, &a, &size, why, n)) return false;
        if (!a) { snprintf(why, n, "the ExternalAddress is NULL"); return false; }
        base = a;
    } else {
        snprintf(why, n, "expected an ExternalAddress, a ByteArray or an address (a positive Integer), got %s",
                 hyi_ffi_describe(vm, target, d, sizeof d));
        return false;
    }
    if (size != SIZE_MAX && (o > size || width > size - o)) {
        snprintf(why, n, "%zu byte%s at offset %zu %s past the end (the size is %zu)", width, width == 1 ? "" : "s", o,
                 width == 1 ? "is" : "are", size);
        return false;
    }
    *p = base + o;
    return true;
}

/* Read a C string at offset off of target as a new String (nil for... never: reading needs a
 * valid address). With a known size the NUL must come before the end. */
static hyi_prim_status read_string(hy_vm *vm, hyi_oop *target, hyi_oop off, hyi_oop *result) {
    uint8_t *p;
    char why[200];
    if (!locate(vm, *target, off, 0, false, &p, why, sizeof why)) return hyi_prim_fail(vm, "stringAt: %s", why);
    /* The bytes available: the known size from the offset on, or unbounded. */
    size_t avail = SIZE_MAX, size;
    void *a;
    if (hyi_ffi_is_a(vm, *target, HYI_FC_ADDRESS, HYI_EA_FIELDS)) {
        hyi_ffi_address(vm, *target, &a, &size, why, sizeof why);
        if (size != SIZE_MAX) avail = size - (size_t)hyi_smi_val(off);
    } else if (hyi_is_ptr(*target)) {
        avail = hyi_size(*target) - (size_t)hyi_smi_val(off);
    }
    size_t len = avail == SIZE_MAX ? strlen((const char *)p) : strnlen((const char *)p, avail);
    if (len == avail && avail != SIZE_MAX && hyi_fmt(*target) != HYI_FMT_BYTES)
        return hyi_prim_fail(vm, "stringAt: no NUL before the end of the known size");
    if (len > UINT32_MAX / 2) return hyi_prim_fail(vm, "stringAt: the string is too long");
    hyi_oop s = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.string, (uint32_t)len, (uint32_t)len);
    if (!s) return HYI_PRIM_OOM;
    /* The allocation may have moved a ByteArray target: locate the bytes again. */
    if (!locate(vm, *target, off, len, false, &p, why, sizeof why)) return hyi_prim_fail(vm, "stringAt: %s", why);
    memcpy(hyi_bytes(s), p, len);
    *result = s;
    return HYI_PRIM_OK;
}

static hyi_prim_status mem_read(hy_vm *vm, hyi_oop *target, hyi_oop off, hyi_ffi_kind k, hyi_oop addr_cls,
                                hyi_oop *result) {
    if (k == HYI_K_STRING) return read_string(vm, target, off, result);
    uint8_t *p;
    char why[200];
    if (!locate(vm, *target, off, hyi_ffi_kind_size(k), false, &p, why, sizeof why))
        return hyi_prim_fail(vm, "reading %s: %s", k == HYI_K_POINTER ? "a pointer" : "a number", why);
    uint8_t copy[8];
    memcpy(copy, p, hyi_ffi_kind_size(k));   /* before any allocation can move a ByteArray */
    hyi_oop r = hyi_ffi_from_c(vm, k, copy, addr_cls, vm->nil);
    if (!r) return HYI_PRIM_OOM;
    *result = r;
    return HYI_PRIM_OK;
}

static hyi_prim_status mem_write(hy_vm *vm, hyi_oop target, hyi_oop off, hyi_ffi_kind k, hyi_oop value,
                                 hyi_oop *result) {
    uint8_t *p;
    char why[200];
    if (!locate(vm, target, off, hyi_ffi_kind_size(k), true, &p, why, sizeof why))
        return hyi_prim_fail(vm, "writing: %s", why);
    uint8_t tmp[8];
    if (!hyi_ffi_to_c(vm, k, (uint32_t)hyi_ffi_kind_size(k), vm->nil, value, tmp, false, why, sizeof why))
        return hyi_prim_fail(vm, "writing: %s", why);
    memcpy(p, tmp, hyi_ffi_kind_size(k));
    *result = value;
    return HYI_PRIM_OK;
}

#define EA_ACCESSORS(X) \
    X(int8, HYI_K_INT8) X(uint8, HYI_K_UINT8) X(int16, HYI_K_INT16) X(uint16, HYI_K_UINT16) \
    X(int32, HYI_K_INT32) X(uint32, HYI_K_UINT32) X(int64, HYI_K_INT64) X(uint64, HYI_K_UINT64) \
    X(float, HYI_K_FLOAT) X(double, HYI_K_DOUBLE) X(pointer, HYI_K_POINTER)

#define EA_READER(name, kind) \
    static hyi_prim_status ea_read_##name(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) { \
        (void)nargs; \
        return mem_read(vm, &args[0], args[1], kind, hyi_ffi_superclass(vm, hyi_class_of(vm, args[0]), HYI_FC_ADDRESS), result); \
    } \
    static hyi_prim_status ea_write_##name(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) { \
        (void)nargs; \
        return mem_write(vm, args[0], args[1], kind, args[2], result); \
    }
EA_ACCESSORS(EA_READER)

static hyi_prim_status ea_read_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return read_string(vm, &args[0], args[1], result);
}

/* ExternalAddress>>stringAt: offset put: aString -- copies the bytes and a NUL. */
static hyi_prim_status ea_write_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    char why[200], d[128];
    if (!is_string_obj(vm, args[2]))
        return hyi_prim_fail(vm, "stringAt:put: needs a String, got %s", hyi_ffi_describe(vm, args[2], d, sizeof d));
    uint8_t *p;
    size_t len = hyi_size(args[2]);
    if (!locate(vm, args[0], args[1], len + 1, true, &p, why, sizeof why)) return hyi_prim_fail(vm, "stringAt:put: %s", why);
    memcpy(p, hyi_bytes(args[2]), len);
    p[len] = 0;
    *result = args[2];
    return HYI_PRIM_OK;
}

/* The kind named by a type Symbol for the generic accessors, or -1 with a message. Symbols
 * are interned and live as long as the VM: the last few are remembered by identity. */
static int accessor_kind(hy_vm *vm, hyi_oop type) {
    uint32_t slot = (uint32_t)(type >> 4) % HYI_FFI_KIND_CACHE;
    if (vm->ffi_kind_syms[slot] == type && type) return vm->ffi_kind_of[slot];
    char d[128];
    if (!is_string_obj(vm, type)) {
        hyi_prim_fail(vm, "a member type must be a Symbol such as #int32, got %s", hyi_ffi_describe(vm, type, d, sizeof d));
        return -1;
    }
    int k = hyi_ffi_kind_named((const char *)hyi_bytes(type), hyi_size(type));
    if (k <= HYI_K_VOID) {
        hyi_prim_fail(vm, "unknown C type #%.*s", (int)(hyi_size(type) > 60 ? 60 : hyi_size(type)), (const char *)hyi_bytes(type));
        return -1;
    }
    if (hyi_o(type)->cls == vm->cls.symbol) {
        vm->ffi_kind_syms[slot] = type;
        vm->ffi_kind_of[slot] = (uint8_t)k;
    }
    return k;
}

/* ExternalAddress class>>read: type from: target at: offset */
static hyi_prim_status ea_class_read(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    int k = accessor_kind(vm, args[1]);
    if (k < 0) return HYI_PRIM_FAIL;
    /* The common case at once: an integer in a ByteArray (such as the box a foreign call wrote
     * an out-parameter into). Anything else takes the general way. */
    hyi_oop t = args[2], off = args[3];
    if (k >= HYI_K_INT8 && k <= HYI_K_UINT64 && hyi_is_ptr(t) && hyi_o(t)->cls == vm->cls.bytearray &&
        hyi_is_smi(off) && hyi_smi_val(off) >= 0) {
        size_t o = (size_t)hyi_smi_val(off), w = hyi_ffi_kind_size((hyi_ffi_kind)k), size = hyi_size(t);
        if (o <= size && w <= size - o) {
            /* (hyi_ffi_from_c reads the bytes before it allocates a large Integer, if any.) */
            hyi_oop r = hyi_ffi_from_c(vm, (hyi_ffi_kind)k, hyi_bytes(t) + o, vm->nil, vm->nil);
            if (!r) return HYI_PRIM_OOM;
            *result = r;
            return HYI_PRIM_OK;
        }
    }
    /* The receiver is the class of the address a #pointer read answers; other reads ignore it
     * (and spare looking for it up the class chain). */
    hyi_oop cls = k == HYI_K_POINTER ? hyi_ffi_superclass(vm, args[0], HYI_FC_ADDRESS) : vm->nil;
    if (!cls) return hyi_prim_fail(vm, "read:from:at: must be sent to ExternalAddress");
    return mem_read(vm, &args[2], args[3], (hyi_ffi_kind)k, cls, result);
}

/* ExternalAddress class>>write: type into: target at: offset value: v */
static hyi_prim_status ea_class_write(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    int k = accessor_kind(vm, args[1]);
    if (k < 0) return HYI_PRIM_FAIL;
    if (k == HYI_K_STRING)
        return hyi_prim_fail(vm, "a char * cannot be written from a String (it would not outlive the call): write an ExternalAddress as #pointer");
    return mem_write(vm, args[2], args[3], (hyi_ffi_kind)k, args[4], result);
}

/* ExternalAddress class>>copy: count from: src at: srcOffset to: dst at: dstOffset */
static hyi_prim_status ea_class_copy(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    char why[200], d[128];
    if (!hyi_is_smi(args[1]) || hyi_smi_val(args[1]) < 0)
        return hyi_prim_fail(vm, "copy: needs a non-negative Integer count, got %s", hyi_ffi_describe(vm, args[1], d, sizeof d));
    size_t n = (size_t)hyi_smi_val(args[1]);
    uint8_t *src, *dst;
    if (!locate(vm, args[2], args[3], n, false, &src, why, sizeof why)) return hyi_prim_fail(vm, "copy: the source: %s", why);
    if (!locate(vm, args[4], args[5], n, true, &dst, why, sizeof why)) return hyi_prim_fail(vm, "copy: the destination: %s", why);
    memmove(dst, src, n);
    *result = args[4];
    return HYI_PRIM_OK;
}

/* ExternalAddress class>>bytes: count from: source at: offset [spare: extra] -- a new ByteArray
 * of count + extra bytes: a copy of count bytes of source from offset, then extra zero bytes
 * (room a reader may use, as a NUL after a string): ByteArray new: and copy:from:at:to:at: in
 * one step. */
static hyi_prim_status ea_class_bytes(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    char why[200], d[128];
    intptr_t limit = (intptr_t)UINT32_MAX / 2;
    if (!hyi_is_smi(args[1]) || hyi_smi_val(args[1]) < 0 || hyi_smi_val(args[1]) > limit)
        return hyi_prim_fail(vm, "bytes: needs a non-negative Integer count, got %s", hyi_ffi_describe(vm, args[1], d, sizeof d));
    intptr_t extra = 0;
    if (nargs == 4) {
        if (!hyi_is_smi(args[4]) || hyi_smi_val(args[4]) < 0 || hyi_smi_val(args[4]) > limit - hyi_smi_val(args[1]))
            return hyi_prim_fail(vm, "bytes: spare: needs a non-negative Integer, got %s", hyi_ffi_describe(vm, args[4], d, sizeof d));
        extra = hyi_smi_val(args[4]);
    }
    size_t n = (size_t)hyi_smi_val(args[1]);
    uint8_t *src;
    /* Checked before allocating, and located again after: the allocation may move a young
     * ByteArray source (args are roots). A count of 0 reads nothing and does not look at the
     * source, whose address may be 0 (as the body of an empty nng message may be). */
    if (n > 0 && !locate(vm, args[2], args[3], n, false, &src, why, sizeof why))
        return hyi_prim_fail(vm, "bytes: the source: %s", why);
    hyi_oop b = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.bytearray, (uint32_t)(n + (size_t)extra), (uint32_t)n);
    if (!b) return HYI_PRIM_OOM;
    if (n > 0) {
        if (!locate(vm, args[2], args[3], n, false, &src, why, sizeof why)) return hyi_prim_fail(vm, "bytes: the source: %s", why);
        memcpy(hyi_bytes(b), src, n);
    }
    *result = b;
    return HYI_PRIM_OK;
}

/* ExternalAddress class>>allocate: size -- zeroed C memory, freed by free. */
static hyi_prim_status ea_allocate(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    char d[128];
    if (!hyi_is_smi(args[1]) || hyi_smi_val(args[1]) <= 0 || hyi_smi_val(args[1]) > ((intptr_t)1 << 40))
        return hyi_prim_fail(vm, "allocate: needs a positive Integer size, got %s", hyi_ffi_describe(vm, args[1], d, sizeof d));
    hyi_oop cls = hyi_ffi_superclass(vm, args[0], HYI_FC_ADDRESS);
    if (!cls) return hyi_prim_fail(vm, "allocate: must be sent to ExternalAddress");
    size_t size = (size_t)hyi_smi_val(args[1]);
    void *p = calloc(1, size);
    if (!p) return hyi_prim_fail(vm, "cannot allocate %zu bytes of C memory", size);
    hyi_oop r = hyi_ffi_new_address(vm, cls, p, size, vm->nil);
    if (!r) { free(p); return HYI_PRIM_OOM; }
    hyi_store(vm, r, HYI_EA_BASE, r);   /* it is its own allocation: free accepts it */
    *result = r;
    return HYI_PRIM_OK;
}

/* ExternalAddress>>free -- only the address allocate: answered, once. */
static hyi_prim_status ea_free(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop ea = args[0];
    if (!hyi_ffi_is_a(vm, ea, HYI_FC_ADDRESS, HYI_EA_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalAddress");
    if (hyi_slots(ea)[HYI_EA_FREED] == vm->true_) return hyi_prim_fail(vm, "free: the memory was freed already");
    if (hyi_slots(ea)[HYI_EA_BASE] != ea)
        return hyi_prim_fail(vm, "free: only the ExternalAddress that allocate: answered can be freed");
    void *p;
    size_t size;
    char why[200];
    if (!hyi_ffi_address(vm, ea, &p, &size, why, sizeof why)) return hyi_prim_fail(vm, "free: %s", why);
    free(p);
    hyi_store(vm, ea, HYI_EA_FREED, vm->true_);
    *result = ea;
    return HYI_PRIM_OK;
}

/* ---- ExternalStructureType ------------------------------------------------------------------ */

/* ExternalStructureType>>primLayout -- { size. alignment. offsets (an Array, 0-based bytes) } */
static hyi_prim_status st_layout(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS))
        return hyi_prim_fail(vm, "the receiver is not an ExternalStructureType");
    hyi_oop members = hyi_slots(args[0])[HYI_ST_TYPES];
    if (!hyi_is_ptr(members) || hyi_o(members)->cls != vm->cls.array || hyi_size(members) == 0)
        return hyi_prim_fail(vm, "a structure needs a non-empty Array of member types");
    uint32_t n = hyi_size(members);
    size_t *offs = calloc(n, sizeof *offs);
    if (!offs) return hyi_prim_fail(vm, "out of C memory");
    size_t size, align;
    if (!hyi_ffi_struct_layout(vm, members, &size, &align, offs)) { free(offs); return HYI_PRIM_FAIL; }
    hyi_oop arr = hyi_array_new(vm, n);
    if (!arr) { free(offs); return HYI_PRIM_OOM; }
    for (uint32_t i = 0; i < n; i++) hyi_slots(arr)[i] = hyi_smi((intptr_t)offs[i]);
    free(offs);
    HYI_ROOT(vm, &arr);
    hyi_oop r = hyi_array_new(vm, 3);
    HYI_UNROOT(vm, 1);
    if (!r) return HYI_PRIM_OOM;
    hyi_slots(r)[0] = hyi_smi((intptr_t)size);
    hyi_slots(r)[1] = hyi_smi((intptr_t)align);
    hyi_store(vm, r, 2, arr);
    *result = r;
    return HYI_PRIM_OK;
}

/* ---- ExternalCallback ----------------------------------------------------------------------- */

static hyi_prim_status cb_prepare(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = hyi_ffi_callback_new(vm, &args[0]);
    if (st == HYI_PRIM_OK) *result = args[0];
    return st;
}

static hyi_prim_status cb_free(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!hyi_ffi_is_a(vm, args[0], HYI_FC_CALLBACK, HYI_CB_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalCallback");
    hyi_ffi_callback_free(vm, args[0]);
    *result = args[0];
    return HYI_PRIM_OK;
}

#define EA_TABLE(name, kind) \
    { "ExternalAddress", #name "At:", ea_read_##name, 0 }, \
    { "ExternalAddress", #name "At:put:", ea_write_##name, 0 },

const hyi_prim_def hyi_prims_ffi[] = {
    { "ByteArray class", "new:", ba_new, 0 },
    { "ByteArray", "at:", ba_at, 0 },
    { "ByteArray", "at:put:", ba_at_put, 0 },
    { "ByteArray", "length", ba_length, 0 },

    { "ExternalLibrary", "primOpen:", el_open, 0 },
    { "ExternalLibrary", "primLookup:addressClass:", el_lookup, 0 },

    { "ExternalFunction", "primPrepare", ef_prepare, 0 },
    { "ExternalFunction", "primBlocking:", ef_blocking, 0 },
    { "ExternalFunction", "primUnthreaded:", ef_unthreaded, 0 },
    { "ExternalFunction", "call", ef_call, 0 },
    { "ExternalFunction", "callWith:", ef_call, 0 },
    { "ExternalFunction", "callWith:with:", ef_call, 0 },
    { "ExternalFunction", "callWith:with:with:", ef_call, 0 },
    { "ExternalFunction", "callWith:with:with:with:", ef_call, 0 },
    { "ExternalFunction", "callWith:with:with:with:with:", ef_call, 0 },
    { "ExternalFunction", "callWith:with:with:with:with:with:", ef_call, 0 },
    { "ExternalFunction", "callWithArguments:", ef_call_array, 0 },

    EA_ACCESSORS(EA_TABLE)
    { "ExternalAddress", "stringAt:", ea_read_string, 0 },
    { "ExternalAddress", "stringAt:put:", ea_write_string, 0 },
    { "ExternalAddress", "free", ea_free, 0 },
    { "ExternalAddress class", "allocate:", ea_allocate, 0 },
    { "ExternalAddress class", "read:from:at:", ea_class_read, 0 },
    { "ExternalAddress class", "write:into:at:value:", ea_class_write, 0 },
    { "ExternalAddress class", "copy:from:at:to:at:", ea_class_copy, 0 },
    { "ExternalAddress class", "bytes:from:at:", ea_class_bytes, 0 },
    { "ExternalAddress class", "bytes:from:at:spare:", ea_class_bytes, 0 },

    { "ExternalStructureType", "primLayout", st_layout, 0 },

    { "ExternalCallback", "primPrepare", cb_prepare, 0 },
    { "ExternalCallback", "primFree", cb_free, 0 },
    { NULL, NULL, NULL, 0 },
};
