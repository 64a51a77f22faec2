/*
 * foreign.c -- foreign calls on libffi (foreign.h): C types, signatures prepared once, conversions,
 * callouts that disown the VM, and callbacks (libffi closures) that own it.
 *
 * A call never allocates C memory unless its arguments and result need more than
 * HYI_FFI_SCRATCH bytes (large structures by value): values are marshalled into a buffer on
 * the C stack and handed to ffi_call with the cif prepared when the function was made.
 */
#include "foreign.h"

#include <float.h>
#include <limits.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "bigint.h"
#include "interp.h"
#include "thread.h"
#include "trace.h"

#define SIG_MAGIC 0x4879464649536967ull     /* "HyFFISig" */
#define MAX_STRUCT_MEMBERS 1024
#define MAX_STRUCT_DEPTH 16

/* ---- C types ------------------------------------------------------------------------------ */

typedef struct kind_name { const char *name; uint8_t len; int kind; } kind_name;
#define KN(name, kind) { name, sizeof name - 1, kind }

#define INT_KIND(bytes, signed_) \
    ((bytes) == 1 ? ((signed_) ? HYI_K_INT8 : HYI_K_UINT8) \
   : (bytes) == 2 ? ((signed_) ? HYI_K_INT16 : HYI_K_UINT16) \
   : (bytes) == 4 ? ((signed_) ? HYI_K_INT32 : HYI_K_UINT32) \
                  : ((signed_) ? HYI_K_INT64 : HYI_K_UINT64))

static const kind_name kind_names[] = {
    KN("void", HYI_K_VOID),
    KN("int8", HYI_K_INT8), KN("uint8", HYI_K_UINT8), KN("int16", HYI_K_INT16), KN("uint16", HYI_K_UINT16),
    KN("int32", HYI_K_INT32), KN("uint32", HYI_K_UINT32), KN("int64", HYI_K_INT64), KN("uint64", HYI_K_UINT64),
    KN("float", HYI_K_FLOAT), KN("double", HYI_K_DOUBLE), KN("pointer", HYI_K_POINTER), KN("string", HYI_K_STRING),
    /* A pointer to memory C only reads: as an argument, a young ByteArray or String copied for
     * the call is not copied back (sig_layout marks the slot); elsewhere a pointer. */
    KN("constPointer", HYI_K_POINTER),
    /* C names, sized as this platform's compiler sizes them. */
    KN("char", INT_KIND(sizeof(char), CHAR_MIN < 0)), KN("schar", HYI_K_INT8), KN("uchar", HYI_K_UINT8),
    KN("short", INT_KIND(sizeof(short), 1)), KN("ushort", INT_KIND(sizeof(short), 0)),
    KN("int", INT_KIND(sizeof(int), 1)), KN("uint", INT_KIND(sizeof(int), 0)),
    KN("long", INT_KIND(sizeof(long), 1)), KN("ulong", INT_KIND(sizeof(long), 0)),
    KN("longlong", INT_KIND(sizeof(long long), 1)), KN("ulonglong", INT_KIND(sizeof(long long), 0)),
    KN("size_t", INT_KIND(sizeof(size_t), 0)), KN("ssize_t", INT_KIND(sizeof(size_t), 1)),
    KN("intptr_t", INT_KIND(sizeof(intptr_t), 1)), KN("uintptr_t", INT_KIND(sizeof(uintptr_t), 0)),
};

int hyi_ffi_kind_named(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof kind_names / sizeof kind_names[0]; i++)
        if (kind_names[i].len == len && memcmp(kind_names[i].name, name, len) == 0) return kind_names[i].kind;
    return -1;
}

static const char *kind_label(hyi_ffi_kind k) {
    static const char *const labels[] = { "void", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                                          "int64", "uint64", "float", "double", "pointer", "string", "struct" };
    return (unsigned)k < sizeof labels / sizeof labels[0] ? labels[k] : "?";
}

size_t hyi_ffi_kind_size(hyi_ffi_kind k) {
    switch (k) {
    case HYI_K_INT8: case HYI_K_UINT8: return 1;
    case HYI_K_INT16: case HYI_K_UINT16: return 2;
    case HYI_K_INT32: case HYI_K_UINT32: case HYI_K_FLOAT: return 4;
    case HYI_K_INT64: case HYI_K_UINT64: case HYI_K_DOUBLE: return 8;
    case HYI_K_POINTER: case HYI_K_STRING: return sizeof(void *);
    default: return 0;
    }
}

static ffi_type *scalar_type(hyi_ffi_kind k) {
    switch (k) {
    case HYI_K_VOID: return &ffi_type_void;
    case HYI_K_INT8: return &ffi_type_sint8;
    case HYI_K_UINT8: return &ffi_type_uint8;
    case HYI_K_INT16: return &ffi_type_sint16;
    case HYI_K_UINT16: return &ffi_type_uint16;
    case HYI_K_INT32: return &ffi_type_sint32;
    case HYI_K_UINT32: return &ffi_type_uint32;
    case HYI_K_INT64: return &ffi_type_sint64;
    case HYI_K_UINT64: return &ffi_type_uint64;
    case HYI_K_FLOAT: return &ffi_type_float;
    case HYI_K_DOUBLE: return &ffi_type_double;
    case HYI_K_POINTER: case HYI_K_STRING: return &ffi_type_pointer;
    default: return NULL;
    }
}

/* ---- Direct calls -------------------------------------------------------------------------- */

/* A function whose arguments (at most six) and result are all integers or pointers takes each
 * argument in the next integer register and answers in the first, on the ABIs below; there it
 * is called directly, through a pointer of type hyi_direct_fn, with every argument widened to
 * 64 bits as its type asks (sign or zero extension, what both ABIs expect of the caller),
 * unused registers zero. ffi_call classifies the arguments again on every call, which costs
 * more than the rest of a small call; everything else (floating point, structures, callbacks,
 * more arguments, other ABIs, traced calls) goes through it. */
#if (defined(__x86_64__) && !defined(_WIN32)) || (defined(__aarch64__) && !defined(__APPLE__))
#define HYI_FFI_DIRECT true
#else
#define HYI_FFI_DIRECT false
#endif
#define HYI_FFI_DIRECT_MAX 6

static bool integer_class(hyi_ffi_kind k) {
    switch (k) {
    case HYI_K_INT8: case HYI_K_UINT8: case HYI_K_INT16: case HYI_K_UINT16: case HYI_K_INT32:
    case HYI_K_UINT32: case HYI_K_INT64: case HYI_K_UINT64: case HYI_K_POINTER: case HYI_K_STRING:
        return true;
    default:
        return false;
    }
}

static bool direct_signature(hyi_ffi_kind rk, const hyi_ffi_slot *args, uint32_t n) {
    if (!HYI_FFI_DIRECT || n > HYI_FFI_DIRECT_MAX || (rk != HYI_K_VOID && !integer_class(rk))) return false;
    for (uint32_t i = 0; i < n; i++)
        if (!integer_class((hyi_ffi_kind)args[i].kind)) return false;
    return true;
}

/* The register image of an argument marshalled at p. */
static uint64_t direct_word(hyi_ffi_kind k, const void *p) {
    switch (k) {
    case HYI_K_INT8: { int8_t x; memcpy(&x, p, 1); return (uint64_t)(int64_t)x; }
    case HYI_K_UINT8: { uint8_t x; memcpy(&x, p, 1); return x; }
    case HYI_K_INT16: { int16_t x; memcpy(&x, p, 2); return (uint64_t)(int64_t)x; }
    case HYI_K_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case HYI_K_INT32: { int32_t x; memcpy(&x, p, 4); return (uint64_t)(int64_t)x; }
    case HYI_K_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    default: { uint64_t x; memcpy(&x, p, 8); return x; }
    }
}

/* ---- Objects ------------------------------------------------------------------------------ */

static bool is_bytes_obj(hyi_oop o) { return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_BYTES; }

_Static_assert(sizeof ((hy_vm *)0)->ffi_classes / sizeof(hyi_oop) == HYI_FC_COUNT, "hy_vm.ffi_classes has a slot per FFI class");

static const char *const ffi_class_names[HYI_FC_COUNT] = {
    "ExternalAddress", "ExternalCallback", "ExternalFunction", "ExternalLibrary", "ExternalStructure",
    "ExternalStructureType",
};

static bool name_is(hyi_oop cls, const char *name) {
    hyi_oop n = hyi_slots(cls)[HYI_CLASS_NAME];
    size_t len = strlen(name);
    return is_bytes_obj(n) && hyi_size(n) == len && memcmp(hyi_bytes(n), name, len) == 0;
}

static bool is_class_shaped(hy_vm *vm, hyi_oop c) {
    return c && hyi_is_ptr(c) && c != vm->nil && hyi_fmt(c) == HYI_FMT_SLOTS && hyi_size(c) >= HYI_CLASS_FIXED;
}

/* This runs on every foreign call for each argument, so once the class has been found by its
 * name it is recognised by identity: one class object per name (loading a class again reuses
 * its object), kept alive by vm->ffi_classes. */
hyi_oop hyi_ffi_superclass(hy_vm *vm, hyi_oop cls, hyi_ffi_class k) {
    hyi_oop known = vm->ffi_classes[k];
    if (known) {
        for (hyi_oop c = cls; is_class_shaped(vm, c); c = hyi_slots(c)[HYI_CLASS_SUPERCLASS])
            if (c == known) return c;
        return 0;
    }
    for (hyi_oop c = cls; is_class_shaped(vm, c); c = hyi_slots(c)[HYI_CLASS_SUPERCLASS])
        if (name_is(c, ffi_class_names[k])) {
            vm->ffi_classes[k] = c;
            return c;
        }
    return 0;
}

/* The class k among o's class and its superclasses, or 0. */
static hyi_oop class_in_chain(hy_vm *vm, hyi_oop o, hyi_ffi_class k) {
    return hyi_ffi_superclass(vm, hyi_class_of(vm, o), k);
}

bool hyi_ffi_is_a(hy_vm *vm, hyi_oop o, hyi_ffi_class k, uint32_t nfields) {
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_SLOTS && hyi_size(o) >= nfields && class_in_chain(vm, o, k);
}

static bool is_string(hy_vm *vm, hyi_oop o) {
    return is_bytes_obj(o) && (hyi_o(o)->cls == vm->cls.string || hyi_o(o)->cls == vm->cls.symbol ||
                               hyi_is_kind(vm, o, vm->cls.string));
}

static bool is_bytearray(hy_vm *vm, hyi_oop o) {
    return is_bytes_obj(o) && hyi_is_kind(vm, o, vm->cls.bytearray);
}

const char *hyi_ffi_describe(hy_vm *vm, hyi_oop o, char *buf, size_t n) {
    if (o == vm->nil) snprintf(buf, n, "nil");
    else if (o == vm->true_) snprintf(buf, n, "true");
    else if (o == vm->false_) snprintf(buf, n, "false");
    else if (hyi_is_smi(o)) snprintf(buf, n, "the Integer %ld", (long)hyi_smi_val(o));
    else if (hyi_is_largeint(o)) snprintf(buf, n, "a large Integer");
    else {
        hyi_oop cls = hyi_class_of(vm, o);
        hyi_oop name = hyi_is_ptr(cls) && hyi_fmt(cls) == HYI_FMT_SLOTS && hyi_size(cls) > HYI_CLASS_NAME
                           ? hyi_slots(cls)[HYI_CLASS_NAME] : 0;
        if (!name || !is_bytes_obj(name) || hyi_size(name) == 0) {
            snprintf(buf, n, "an object of unknown class");
        } else {
            const char *s = (const char *)hyi_bytes(name);
            snprintf(buf, n, "%s %.*s", strchr("AEIOU", s[0]) ? "an" : "a",
                     (int)(hyi_size(name) > 100 ? 100 : hyi_size(name)), s);
        }
    }
    return buf;
}

static void fail_msg(hy_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_msg(hy_vm *vm, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->prim_message, sizeof vm->prim_message, fmt, ap);
    va_end(ap);
}

/* ---- Building signatures: one pass counts, the second fills ------------------------------- */

typedef struct builder {
    hy_vm *vm;
    uint8_t *mem;       /* NULL while counting */
    size_t used, cap;
} builder;

static void *b_alloc(builder *b, size_t size, size_t align) {
    size_t off = (b->used + align - 1) & ~(align - 1);
    b->used = off + size;
    if (!b->mem || b->used > b->cap) return NULL;
    return b->mem + off;
}

static bool resolve(builder *b, hyi_oop t, int depth, hyi_ffi_kind *kind, ffi_type **ft);

/* A structure ffi_type whose members are the types in the Array members. */
static bool resolve_struct(builder *b, hyi_oop members, int depth, ffi_type **ft) {
    hy_vm *vm = b->vm;
    if (depth > MAX_STRUCT_DEPTH) {
        fail_msg(vm, "structure types nested more than %d deep (a structure that contains itself?)", MAX_STRUCT_DEPTH);
        return false;
    }
    if (!hyi_is_ptr(members) || hyi_o(members)->cls != vm->cls.array) {
        fail_msg(vm, "the member types of a structure must be an Array");
        return false;
    }
    uint32_t n = hyi_size(members);
    if (n == 0 || n > MAX_STRUCT_MEMBERS) {
        fail_msg(vm, "a structure needs 1 to %d members, not %u", MAX_STRUCT_MEMBERS, n);
        return false;
    }
    ffi_type *s = b_alloc(b, sizeof(ffi_type), alignof(ffi_type));
    ffi_type **el = b_alloc(b, ((size_t)n + 1) * sizeof(ffi_type *), alignof(ffi_type *));
    for (uint32_t i = 0; i < n; i++) {
        hyi_ffi_kind k;
        ffi_type *m;
        if (!resolve(b, hyi_slots(members)[i], depth + 1, &k, &m)) return false;
        if (k == HYI_K_VOID) {
            fail_msg(vm, "member %u of a structure cannot be void", i + 1);
            return false;
        }
        if (el) el[i] = m;
    }
    if (s && el) {
        el[n] = NULL;
        s->size = 0;
        s->alignment = 0;
        s->type = FFI_TYPE_STRUCT;
        s->elements = el;
    }
    *ft = s;
    return true;
}

static bool resolve(builder *b, hyi_oop t, int depth, hyi_ffi_kind *kind, ffi_type **ft) {
    hy_vm *vm = b->vm;
    if (is_string(vm, t)) {
        int k = hyi_ffi_kind_named((const char *)hyi_bytes(t), hyi_size(t));
        if (k < 0) {
            fail_msg(vm, "unknown C type #%.*s", (int)(hyi_size(t) > 60 ? 60 : hyi_size(t)), (const char *)hyi_bytes(t));
            return false;
        }
        *kind = (hyi_ffi_kind)k;
        *ft = scalar_type(*kind);
        return true;
    }
    if (hyi_ffi_is_a(vm, t, HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS)) {
        *kind = HYI_K_STRUCT;
        return resolve_struct(b, hyi_slots(t)[HYI_ST_TYPES], depth, ft);
    }
    char d[128];
    fail_msg(vm, "a C type must be a Symbol such as #int32 or an ExternalStructureType, not %s",
             hyi_ffi_describe(vm, t, d, sizeof d));
    return false;
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

static bool sig_layout(builder *b, hyi_oop ret, hyi_oop arg_types, bool callback, hyi_ffi_sig **out) {
    hy_vm *vm = b->vm;
    uint32_t n = 0;
    if (arg_types != vm->nil) {
        if (!hyi_is_ptr(arg_types) || hyi_o(arg_types)->cls != vm->cls.array) {
            fail_msg(vm, "the argument types must be an Array");
            return false;
        }
        n = hyi_size(arg_types);
    }
    if (n > HYI_FFI_MAX_ARGS) {
        fail_msg(vm, "at most %d arguments are supported, not %u", HYI_FFI_MAX_ARGS, n);
        return false;
    }
    hyi_ffi_sig *s = b_alloc(b, sizeof *s, alignof(hyi_ffi_sig));
    hyi_ffi_slot *slots = b_alloc(b, (n ? n : 1) * sizeof *slots, alignof(hyi_ffi_slot));
    ffi_type **ats = b_alloc(b, (n ? n : 1) * sizeof *ats, alignof(ffi_type *));
    hyi_ffi_kind rk;
    ffi_type *rt;
    if (!resolve(b, ret, 0, &rk, &rt)) return false;
    for (uint32_t i = 0; i < n; i++) {
        hyi_ffi_kind k;
        ffi_type *t;
        if (!resolve(b, hyi_slots(arg_types)[i], 0, &k, &t)) return false;
        if (k == HYI_K_VOID) {
            fail_msg(vm, "argument %u cannot be void", i + 1);
            return false;
        }
        if (slots && ats) {
            hyi_oop name = hyi_slots(arg_types)[i];
            slots[i].kind = (uint8_t)k;
            slots[i].read_only = is_string(vm, name) && hyi_size(name) == 12 && memcmp(hyi_bytes(name), "constPointer", 12) == 0;
            ats[i] = t;
        }
    }
    (void)callback;
    if (s && slots && ats) {
        s->nargs = n;
        s->args = slots;
        s->arg_types = ats;
        s->ret.kind = (uint8_t)rk;
        ffi_status st = ffi_prep_cif(&s->cif, FFI_DEFAULT_ABI, n, rt, ats);
        if (st != FFI_OK) {
            fail_msg(vm, "libffi cannot prepare this signature (status %d)", (int)st);
            return false;
        }
        /* Sizes are known now (ffi_prep_cif lays out structures): place the values. */
        size_t off = 0;
        for (uint32_t i = 0; i < n; i++) {
            slots[i].size = (uint32_t)ats[i]->size;
            slots[i].off = (uint32_t)off;
            off += round_up(ats[i]->size > 8 ? ats[i]->size : 8, 16);
        }
        size_t rsize = rk == HYI_K_VOID ? 0 : rt->size;
        s->ret.size = (uint32_t)rsize;
        s->ret.off = (uint32_t)off;
        size_t rroom = rsize > sizeof(ffi_arg) ? rsize : sizeof(ffi_arg);
        off += round_up(rroom > 8 ? rroom : 8, 16);
        s->scratch = (uint32_t)off;
        s->direct = !callback && direct_signature(rk, slots, n);
        s->magic = SIG_MAGIC;
        s->self = s;
    }
    if (out) *out = s;
    return true;
}

size_t hyi_ffi_sig_bytes(hy_vm *vm, hyi_oop ret, hyi_oop arg_types, bool callback) {
    builder b = { vm, NULL, 0, 0 };
    if (!sig_layout(&b, ret, arg_types, callback, NULL)) return 0;
    return b.used;
}

bool hyi_ffi_sig_build(hy_vm *vm, void *mem, size_t bytes, hyi_oop ret, hyi_oop arg_types, bool callback) {
    memset(mem, 0, bytes);
    builder b = { vm, mem, 0, bytes };
    hyi_ffi_sig *s = NULL;
    if (!sig_layout(&b, ret, arg_types, callback, &s)) return false;
    if (!s || b.used > bytes) {
        fail_msg(vm, "the signature changed while it was prepared");
        return false;
    }
    return true;
}

hyi_ffi_sig *hyi_ffi_sig_of_handle(hyi_oop h) {
    if (!hyi_is_ptr(h) || hyi_fmt(h) != HYI_FMT_EXTERNAL || hyi_size(h) < sizeof(hyi_ffi_sig)) return NULL;
    hyi_ffi_sig *s = (hyi_ffi_sig *)hyi_bytes(h);
    return s->magic == SIG_MAGIC && s->self == s ? s : NULL;
}

bool hyi_ffi_struct_layout(hy_vm *vm, hyi_oop members, size_t *size, size_t *align, size_t *offsets) {
    builder b = { vm, NULL, 0, 0 };
    ffi_type *t;
    if (!resolve_struct(&b, members, 0, &t)) return false;
    size_t bytes = b.used;
    void *mem = calloc(1, bytes);
    if (!mem) {
        fail_msg(vm, "out of C memory");
        return false;
    }
    b = (builder){ vm, mem, 0, bytes };
    bool ok = resolve_struct(&b, members, 0, &t) && t;
    if (ok) {
        ffi_status st = ffi_get_struct_offsets(FFI_DEFAULT_ABI, t, offsets);
        if (st != FFI_OK) {
            fail_msg(vm, "libffi cannot lay out this structure (status %d)", (int)st);
            ok = false;
        } else {
            *size = t->size;
            *align = t->alignment;
        }
    }
    free(mem);
    return ok;
}

/* ---- Conversions: oop to C ----------------------------------------------------------------- */

static bool why_msg(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool why_msg(char *why, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, n, fmt, ap);
    va_end(ap);
    return false;
}

static bool expected(hy_vm *vm, char *why, size_t n, const char *want, hyi_oop v) {
    char d[128];
    return why_msg(why, n, "expected %s, got %s", want, hyi_ffi_describe(vm, v, d, sizeof d));
}

/* The values of each integer kind. */
static const struct { int64_t lo; uint64_t hi; } int_range[] = {
    [HYI_K_INT8] = { INT8_MIN, INT8_MAX }, [HYI_K_UINT8] = { 0, UINT8_MAX },
    [HYI_K_INT16] = { INT16_MIN, INT16_MAX }, [HYI_K_UINT16] = { 0, UINT16_MAX },
    [HYI_K_INT32] = { INT32_MIN, INT32_MAX }, [HYI_K_UINT32] = { 0, UINT32_MAX },
    [HYI_K_INT64] = { INT64_MIN, INT64_MAX }, [HYI_K_UINT64] = { 0, UINT64_MAX },
};

static bool in_range(hyi_ffi_kind k, int64_t x) { return x >= int_range[k].lo && (x <= 0 || (uint64_t)x <= int_range[k].hi); }

/* An integer argument as a 64-bit pattern, range-checked for kind k. */
static bool int_to_c(hy_vm *vm, hyi_ffi_kind k, hyi_oop v, uint64_t *out, char *why, size_t n) {
    bool is_unsigned = k == HYI_K_UINT8 || k == HYI_K_UINT16 || k == HYI_K_UINT32 || k == HYI_K_UINT64;
    if (hyi_is_smi(v)) {
        int64_t x = hyi_smi_val(v);
        if (!in_range(k, x))
            return why_msg(why, n, "%lld is out of range for %s", (long long)x, kind_label(k));
        *out = (uint64_t)x;
        return true;
    }
    if (hyi_is_largeint(v)) {
        if (is_unsigned) {
            if (hyi_largeint_neg(v) || hyi_mag_bits(hyi_largeint_mag(v), hyi_largeint_limbs(v)) > 64 ||
                hyi_bigint_low64(v) > int_range[k].hi)
                return why_msg(why, n, "a large Integer out of range for %s", kind_label(k));
            *out = hyi_bigint_low64(v);
            return true;
        }
        int64_t x;
        if (!hyi_bigint_to_int64(v, &x) || !in_range(k, x))
            return why_msg(why, n, "a large Integer out of range for %s", kind_label(k));
        *out = (uint64_t)x;
        return true;
    }
    return expected(vm, why, n, "an Integer", v);
}

static bool float_to_c(hy_vm *vm, hyi_oop v, double *out, char *why, size_t n) {
    if (hyi_is_smi(v)) { *out = (double)hyi_smi_val(v); return true; }
    if (hyi_is_ptr(v) && hyi_fmt(v) == HYI_FMT_DOUBLE) { *out = hyi_double_val(v); return true; }
    if (hyi_is_largeint(v)) {
        if (hyi_bigint_to_double(v, out)) return true;
        return why_msg(why, n, "a large Integer too large for a double");
    }
    return expected(vm, why, n, "a Double or an Integer", v);
}

bool hyi_ffi_address(hy_vm *vm, hyi_oop ea, void **p, size_t *size, char *why, size_t n) {
    if (!hyi_ffi_is_a(vm, ea, HYI_FC_ADDRESS, HYI_EA_FIELDS)) return expected(vm, why, n, "an ExternalAddress", ea);
    return hyi_ffi_address_of(vm, ea, p, size, why, n);
}

bool hyi_ffi_address_of(hy_vm *vm, hyi_oop ea, void **p, size_t *size, char *why, size_t n) {
    hyi_oop *f = hyi_slots(ea);
    if (f[HYI_EA_FREED] == vm->true_) return why_msg(why, n, "the ExternalAddress was freed");
    hyi_oop base = f[HYI_EA_BASE];
    /* (An address allocate: answered is its own base: its freed flag was just read.) */
    if (base != vm->nil && base != ea && hyi_ffi_is_a(vm, base, HYI_FC_ADDRESS, HYI_EA_FIELDS) &&
        hyi_slots(base)[HYI_EA_FREED] == vm->true_)
        return why_msg(why, n, "the memory this ExternalAddress points into was freed");
    hyi_oop a = f[HYI_EA_ADDRESS];
    uint64_t x;
    if (hyi_is_smi(a) && hyi_smi_val(a) >= 0) x = (uint64_t)hyi_smi_val(a);
    else if (hyi_is_largeint(a) && !hyi_largeint_neg(a) && hyi_mag_bits(hyi_largeint_mag(a), hyi_largeint_limbs(a)) <= 64)
        x = hyi_bigint_low64(a);
    else return why_msg(why, n, "a malformed ExternalAddress (its address is not an Integer)");
    if (x > UINTPTR_MAX) return why_msg(why, n, "an address beyond this machine's pointers");
    hyi_oop s = f[HYI_EA_SIZE];
    if (s == vm->nil) *size = SIZE_MAX;
    else if (hyi_is_smi(s) && hyi_smi_val(s) >= 0) *size = (size_t)hyi_smi_val(s);
    else return why_msg(why, n, "a malformed ExternalAddress (its size is not an Integer)");
    *p = (void *)(uintptr_t)x;
    return true;
}

hyi_oop hyi_ffi_pin_target(hy_vm *vm, hyi_ffi_kind k, hyi_oop v) {
    if (k != HYI_K_POINTER && k != HYI_K_STRING) return 0;
    if (is_bytes_obj(v) && (is_bytearray(vm, v) || is_string(vm, v))) return v;
    /* An ExternalAddress (the common case, recognised at once) points outside the heap. */
    if (k == HYI_K_POINTER && !hyi_ffi_is_a(vm, v, HYI_FC_ADDRESS, HYI_EA_FIELDS) &&
        hyi_ffi_is_a(vm, v, HYI_FC_STRUCTURE, HYI_ES_FIELDS)) {
        hyi_oop d = hyi_slots(v)[HYI_ES_DATA];
        if (is_bytearray(vm, d)) return d;
    }
    return 0;
}

/* The body of a heap byte object passed by address: it must be pinned. */
static bool heap_body(hyi_oop o, void **p, char *why, size_t n) {
    if (!hyi_o(o)->pinned) return why_msg(why, n, "internal error: the bytes were not pinned");
    *p = hyi_bytes(o);
    return true;
}

/* Same layout: the same type object, or member type Arrays that are element-wise the same. */
static bool same_struct_type(hy_vm *vm, hyi_oop a, hyi_oop b, int depth) {
    if (a == b) return true;
    if (depth > MAX_STRUCT_DEPTH || !hyi_ffi_is_a(vm, a, HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS) ||
        !hyi_ffi_is_a(vm, b, HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS))
        return false;
    hyi_oop ta = hyi_slots(a)[HYI_ST_TYPES], tb = hyi_slots(b)[HYI_ST_TYPES];
    if (!hyi_is_ptr(ta) || !hyi_is_ptr(tb) || hyi_o(ta)->cls != vm->cls.array || hyi_o(tb)->cls != vm->cls.array ||
        hyi_size(ta) != hyi_size(tb))
        return false;
    for (uint32_t i = 0; i < hyi_size(ta); i++) {
        hyi_oop x = hyi_slots(ta)[i], y = hyi_slots(tb)[i];
        if (x == y) continue;
        if (is_string(vm, x) && is_string(vm, y) &&
            hyi_ffi_kind_named((const char *)hyi_bytes(x), hyi_size(x)) ==
                hyi_ffi_kind_named((const char *)hyi_bytes(y), hyi_size(y)))
            continue;
        if (!same_struct_type(vm, x, y, depth + 1)) return false;
    }
    return true;
}

bool hyi_ffi_to_c(hy_vm *vm, hyi_ffi_kind k, uint32_t size, hyi_oop decl, hyi_oop v, void *dst,
                  bool heap_bytes, char *why, size_t n) {
    switch (k) {
    case HYI_K_INT8: case HYI_K_UINT8: case HYI_K_INT16: case HYI_K_UINT16:
    case HYI_K_INT32: case HYI_K_UINT32: case HYI_K_INT64: case HYI_K_UINT64: {
        uint64_t x = 0;
        if (!int_to_c(vm, k, v, &x, why, n)) return false;
        switch (hyi_ffi_kind_size(k)) {
        case 1: { uint8_t b = (uint8_t)x; memcpy(dst, &b, 1); break; }
        case 2: { uint16_t h = (uint16_t)x; memcpy(dst, &h, 2); break; }
        case 4: { uint32_t w = (uint32_t)x; memcpy(dst, &w, 4); break; }
        default: memcpy(dst, &x, 8); break;
        }
        return true;
    }
    case HYI_K_FLOAT: case HYI_K_DOUBLE: {
        double d;
        if (!float_to_c(vm, v, &d, why, n)) return false;
        if (k == HYI_K_DOUBLE) { memcpy(dst, &d, 8); return true; }
        if (d == d && (d > FLT_MAX || d < -FLT_MAX) && d - d == 0)
            return why_msg(why, n, "%g is out of range for float", d);
        float f = (float)d;
        memcpy(dst, &f, 4);
        return true;
    }
    case HYI_K_POINTER: case HYI_K_STRING: {
        void *p = NULL;
        size_t sz;
        if (v == vm->nil) {
            p = NULL;
        } else if (hyi_ffi_is_a(vm, v, HYI_FC_ADDRESS, HYI_EA_FIELDS)) {
            if (!hyi_ffi_address(vm, v, &p, &sz, why, n)) return false;
        } else if (k == HYI_K_STRING && is_string(vm, v)) {
            if (!heap_bytes) return why_msg(why, n, "a String cannot be handed to C here (it would not outlive this call): use an ExternalAddress");
            const void *nul = memchr(hyi_bytes(v), 0, hyi_size(v));
            if (nul)
                return why_msg(why, n, "the String has an embedded NUL at index %ld",
                               (long)((const uint8_t *)nul - hyi_bytes(v)) + 1);
            if (!heap_body(v, &p, why, n)) return false;
        } else if (is_bytearray(vm, v) || (k == HYI_K_POINTER && is_string(vm, v))) {
            if (!heap_bytes) return why_msg(why, n, "a %s cannot be handed to C here (it would not outlive this call): use an ExternalAddress",
                                            is_string(vm, v) ? "String" : "ByteArray");
            if (!heap_body(v, &p, why, n)) return false;
        } else if (k == HYI_K_POINTER && hyi_ffi_is_a(vm, v, HYI_FC_STRUCTURE, HYI_ES_FIELDS)) {
            hyi_oop d = hyi_slots(v)[HYI_ES_DATA];
            if (hyi_ffi_is_a(vm, d, HYI_FC_ADDRESS, HYI_EA_FIELDS)) {
                if (!hyi_ffi_address(vm, d, &p, &sz, why, n)) return false;
            } else if (is_bytearray(vm, d)) {
                if (!heap_bytes) return why_msg(why, n, "an ExternalStructure on a ByteArray cannot be handed to C here: use one on an ExternalAddress");
                if (!heap_body(d, &p, why, n)) return false;
            } else {
                return why_msg(why, n, "a malformed ExternalStructure (no data)");
            }
        } else {
            return expected(vm, why, n, k == HYI_K_STRING
                ? "a String, an ExternalAddress or nil"
                : "an ExternalAddress, a ByteArray, a String, an ExternalStructure or nil", v);
        }
        memcpy(dst, &p, sizeof p);
        return true;
    }
    case HYI_K_STRUCT: {
        if (!hyi_ffi_is_a(vm, v, HYI_FC_STRUCTURE, HYI_ES_FIELDS)) return expected(vm, why, n, "an ExternalStructure", v);
        if (!same_struct_type(vm, hyi_slots(v)[HYI_ES_TYPE], decl, 0))
            return why_msg(why, n, "expected an ExternalStructure of the declared structure type, got one of another type");
        hyi_oop d = hyi_slots(v)[HYI_ES_DATA];
        if (is_bytearray(vm, d)) {
            if (hyi_size(d) < size) return why_msg(why, n, "the structure's ByteArray holds %u bytes, the type needs %u", hyi_size(d), size);
            memcpy(dst, hyi_bytes(d), size);
            return true;
        }
        void *p;
        size_t sz;
        if (!hyi_ffi_address(vm, d, &p, &sz, why, n)) return false;
        if (!p) return why_msg(why, n, "the structure is at a NULL address");
        if (sz != SIZE_MAX && sz < size) return why_msg(why, n, "the structure's memory holds %zu bytes, the type needs %u", sz, size);
        memcpy(dst, p, size);
        return true;
    }
    case HYI_K_VOID:
        return true;
    }
    return why_msg(why, n, "unknown C type");
}

/* ---- Conversions: C to oop ----------------------------------------------------------------- */

hyi_oop hyi_ffi_new_address(hy_vm *vm, hyi_oop addr_cls, void *p, size_t size, hyi_oop base) {
    if (!addr_cls || !hyi_is_ptr(addr_cls) || hyi_fmt(addr_cls) != HYI_FMT_SLOTS || hyi_size(addr_cls) < HYI_CLASS_FIXED ||
        !hyi_is_smi(hyi_slots(addr_cls)[HYI_CLASS_INSTSPEC]))
        return 0;
    uint32_t roots = vm->num_temp_roots;
    hyi_oop a = 0, s = vm->nil, o = 0;
    HYI_ROOT(vm, &addr_cls);
    HYI_ROOT(vm, &base);
    HYI_ROOT(vm, &a);
    HYI_ROOT(vm, &s);
    a = hyi_bigint_from_uint64(vm, (uint64_t)(uintptr_t)p);
    if (a && size != SIZE_MAX) s = hyi_bigint_from_uint64(vm, size);
    if (a && s) o = hyi_instantiate(vm, addr_cls, 0);
    vm->num_temp_roots = roots;
    if (!o) return 0;
    if (!hyi_ffi_is_a(vm, o, HYI_FC_ADDRESS, HYI_EA_FIELDS)) return 0;
    hyi_store(vm, o, HYI_EA_ADDRESS, a);
    hyi_store(vm, o, HYI_EA_SIZE, s);
    hyi_store(vm, o, HYI_EA_BASE, base == o ? o : base);
    hyi_store(vm, o, HYI_EA_FREED, vm->false_);
    return o;
}

static hyi_oop new_struct(hy_vm *vm, const void *src, hyi_oop decl) {
    if (!hyi_ffi_is_a(vm, decl, HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS)) return 0;
    hyi_oop sz = hyi_slots(decl)[HYI_ST_SIZE];
    if (!hyi_is_smi(sz) || hyi_smi_val(sz) <= 0 || hyi_smi_val(sz) > INT32_MAX) return 0;
    uint32_t size = (uint32_t)hyi_smi_val(sz);
    uint32_t roots = vm->num_temp_roots;
    hyi_oop data = 0, o = 0;
    HYI_ROOT(vm, &decl);
    HYI_ROOT(vm, &data);
    data = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.bytearray, size, size);
    if (data) {
        memcpy(hyi_bytes(data), src, size);
        hyi_oop cls = hyi_slots(decl)[HYI_ST_CLASS];
        if (hyi_is_ptr(cls) && hyi_fmt(cls) == HYI_FMT_SLOTS && hyi_size(cls) >= HYI_CLASS_FIXED)
            o = hyi_instantiate(vm, cls, 0);
    }
    vm->num_temp_roots = roots;
    if (!o || !hyi_ffi_is_a(vm, o, HYI_FC_STRUCTURE, HYI_ES_FIELDS)) return 0;
    hyi_store(vm, o, HYI_ES_TYPE, decl);
    hyi_store(vm, o, HYI_ES_DATA, data);
    return o;
}

hyi_oop hyi_ffi_from_c(hy_vm *vm, hyi_ffi_kind k, const void *src, hyi_oop addr_cls, hyi_oop decl) {
    switch (k) {
    case HYI_K_VOID: return vm->nil;
    case HYI_K_INT8: { int8_t x; memcpy(&x, src, 1); return hyi_smi(x); }
    case HYI_K_UINT8: { uint8_t x; memcpy(&x, src, 1); return hyi_smi(x); }
    case HYI_K_INT16: { int16_t x; memcpy(&x, src, 2); return hyi_smi(x); }
    case HYI_K_UINT16: { uint16_t x; memcpy(&x, src, 2); return hyi_smi(x); }
    case HYI_K_INT32: { int32_t x; memcpy(&x, src, 4); return hyi_smi(x); }
    case HYI_K_UINT32: { uint32_t x; memcpy(&x, src, 4); return hyi_smi(x); }
    case HYI_K_INT64: { int64_t x; memcpy(&x, src, 8); return hyi_bigint_from_int64(vm, x); }
    case HYI_K_UINT64: { uint64_t x; memcpy(&x, src, 8); return hyi_bigint_from_uint64(vm, x); }
    case HYI_K_FLOAT: { float x; memcpy(&x, src, 4); return hyi_double_new(vm, x); }
    case HYI_K_DOUBLE: { double x; memcpy(&x, src, 8); return hyi_double_new(vm, x); }
    case HYI_K_POINTER: {
        void *p;
        memcpy(&p, src, sizeof p);
        return hyi_ffi_new_address(vm, addr_cls, p, SIZE_MAX, vm->nil);
    }
    case HYI_K_STRING: {
        const char *p;
        memcpy(&p, src, sizeof p);
        if (!p) return vm->nil;
        size_t len = strlen(p);
        if (len > UINT32_MAX / 2) return 0;
        return hyi_string_new(vm, p, len);
    }
    case HYI_K_STRUCT:
        return new_struct(vm, src, decl);
    }
    return 0;
}

/* The value of a small integer result that libffi widened to an ffi_arg, at its own width. */
static void narrow_result(hyi_ffi_kind k, void *rv) {
    ffi_arg w;
    memcpy(&w, rv, sizeof w);
    switch (k) {
    case HYI_K_INT8: case HYI_K_UINT8: { uint8_t x = (uint8_t)w; memcpy(rv, &x, 1); break; }
    case HYI_K_INT16: case HYI_K_UINT16: { uint16_t x = (uint16_t)w; memcpy(rv, &x, 2); break; }
    case HYI_K_INT32: case HYI_K_UINT32: { uint32_t x = (uint32_t)w; memcpy(rv, &x, 4); break; }
    default: break;
    }
}

/* The reverse, for a callback's result: widen to an ffi_arg with the kind's extension. */
static void widen_result(hyi_ffi_kind k, void *rv) {
    switch (k) {
    case HYI_K_INT8: { int8_t x; memcpy(&x, rv, 1); ffi_sarg w = x; memcpy(rv, &w, sizeof w); break; }
    case HYI_K_UINT8: { uint8_t x; memcpy(&x, rv, 1); ffi_arg w = x; memcpy(rv, &w, sizeof w); break; }
    case HYI_K_INT16: { int16_t x; memcpy(&x, rv, 2); ffi_sarg w = x; memcpy(rv, &w, sizeof w); break; }
    case HYI_K_UINT16: { uint16_t x; memcpy(&x, rv, 2); ffi_arg w = x; memcpy(rv, &w, sizeof w); break; }
    case HYI_K_INT32: { int32_t x; memcpy(&x, rv, 4); ffi_sarg w = x; memcpy(rv, &w, sizeof w); break; }
    case HYI_K_UINT32: { uint32_t x; memcpy(&x, rv, 4); ffi_arg w = x; memcpy(rv, &w, sizeof w); break; }
    default: break;
    }
}

/* ---- Calls --------------------------------------------------------------------------------- */

static const char *fn_name(hy_vm *vm, hyi_oop fn, int *len) {
    hyi_oop n = hyi_slots(fn)[HYI_EF_NAME];
    if (is_bytes_obj(n)) {
        *len = (int)(hyi_size(n) > 100 ? 100 : hyi_size(n));
        return (const char *)hyi_bytes(n);
    }
    (void)vm;
    *len = 18;
    return "a foreign function";
}

/* The call of hyi_ffi_call when the VM traces: the same, inside a callout span named after fn
 * (out of line, so that the untraced call pays one test). */
static __attribute__((noinline)) void call_traced(hy_vm *vm, hyi_oop fn, hyi_ffi_sig *s, void *rv, void **values) {
    int len;
    const char *name = fn_name(vm, fn, &len);   /* copied: the heap may change during the call */
    hyi_trace_call mode = s->unthreaded ? HYI_TRACE_UNTHREADED : s->blocking ? HYI_TRACE_BLOCKING : HYI_TRACE_THREADED;
    hyi_trace_callout_begin(vm, name, (size_t)len, mode);
    if (s->unthreaded) {
        ffi_call(&s->cif, FFI_FN(s->fn), rv, values);
        hyi_trace_callout_end(vm);
        return;
    }
    hyi_callout c;
    hyi_callout_begin(vm, &c, s->blocking);
    ffi_call(&s->cif, FFI_FN(s->fn), rv, values);
    hyi_trace_callout_end(vm);
    hyi_callout_end(vm, &c);
    hyi_trace_own_begin(vm, HYI_TRACE_CALLOUT_RETURN, true);
}

/* Argument v (a young ByteArray or String, at most HYI_FFI_COPY_MAX bytes) passed by address
 * as a copy in buf (its size + 1 bytes): the checks of hyi_ffi_to_c for such an object. */
static bool copy_in(hy_vm *vm, hyi_ffi_kind k, hyi_oop v, uint8_t *buf, void *dst, char *why, size_t n) {
    uint32_t size = hyi_size(v);
    if (k == HYI_K_STRING && is_string(vm, v)) {
        const void *nul = memchr(hyi_bytes(v), 0, size);
        if (nul)
            return why_msg(why, n, "the String has an embedded NUL at index %ld",
                           (long)((const uint8_t *)nul - hyi_bytes(v)) + 1);
    }
    memcpy(buf, hyi_bytes(v), size);
    buf[size] = 0;   /* as after the bytes of every byte object */
    void *p = buf;
    memcpy(dst, &p, sizeof p);
    return true;
}

/* After a call (the VM is ours again, the objects may have moved: av are roots), what C wrote
 * into the copies goes back into the objects, but for #constPointer arguments. copied: bit i,
 * argument i was passed as the copy copy_of[i]. */
static void copy_back(const hyi_ffi_sig *s, hyi_oop *av, uint32_t copied, uint8_t *const *copy_of) {
    for (uint32_t m = copied; m; m &= m - 1) {
        uint32_t i = (uint32_t)__builtin_ctz(m);
        if (!s->args[i].read_only) memcpy(hyi_bytes(av[i]), copy_of[i], hyi_size(av[i]));
    }
}

/* The common case of a direct call, without the general path's passes: every argument is a
 * SmallInteger in range for an integer type, or for a pointer nil, an ExternalAddress, a
 * pinned ByteArray or String, or a young one that fits the copies kept on the stack. Answers
 * false, having done nothing, when an argument is anything else: the general path then
 * handles it (pinning, C memory for big copies) or says what is wrong with it. (Out of line: its
 * stack copies and the general path's are never both on the stack.) */
static __attribute__((noinline)) bool call_direct(hy_vm *vm, const hyi_ffi_sig *s, hyi_oop *fnp, hyi_oop *av,
                                                  uint32_t n, hyi_oop *result, hyi_prim_status *st) {
    uint64_t w[6] = {0};
    alignas(16) uint8_t copies[HYI_FFI_COPY_STACK];
    uint8_t *copy_of[6];
    uint32_t copied = 0;   /* bit i: argument i is passed as a copy that C may write to */
    size_t at = 0;
    for (uint32_t i = 0; i < n; i++) {
        hyi_ffi_kind k = (hyi_ffi_kind)s->args[i].kind;
        hyi_oop v = av[i];
        if (k != HYI_K_POINTER && k != HYI_K_STRING) {
            if (!hyi_is_smi(v)) return false;
            int64_t x = hyi_smi_val(v);
            if (!in_range(k, x)) return false;
            w[i] = (uint64_t)x;   /* sign-extended for a signed type, zero-extended otherwise */
        } else if (v == vm->nil) {
            w[i] = 0;
        } else if (is_bytes_obj(v)) {
            /* Strings for char * need the general path's check for an embedded NUL. */
            if (k != HYI_K_POINTER || !(is_bytearray(vm, v) || is_string(vm, v))) return false;
            size_t size = hyi_size(v);
            if (hyi_o(v)->pinned) {
                w[i] = (uint64_t)(uintptr_t)hyi_bytes(v);
            } else {
                if (hyi_o(v)->old || size + 1 > sizeof copies - at) return false;
                char why[8];   /* copy_in checks nothing for a pointer */
                copy_in(vm, k, v, copy_of[i] = copies + at, &w[i], why, sizeof why);
                if (!s->args[i].read_only) copied |= 1u << i;
                at += round_up(size + 1, 16);
            }
        } else {
            void *p;
            size_t size;
            char why[200];
            if (!hyi_ffi_is_a(vm, v, HYI_FC_ADDRESS, HYI_EA_FIELDS) || !hyi_ffi_address_of(vm, v, &p, &size, why, sizeof why))
                return false;
            w[i] = (uint64_t)(uintptr_t)p;
        }
    }
    hyi_direct_fn f = (hyi_direct_fn)s->fn;
    uint64_t r = __builtin_expect(s->unthreaded, 0) ? f(w[0], w[1], w[2], w[3], w[4], w[5])
                                                     : hyi_callout_direct(vm, s->blocking, f, w);
    if (copied) copy_back(s, av, copied, copy_of);
    /* Integers at their own width (the upper bits of the register are undefined for a narrow
     * result) and SmallIntegers at once; the rest as the general path makes them. */
    hyi_ffi_kind rk = (hyi_ffi_kind)s->ret.kind;
    hyi_oop o;
    switch (rk) {
    case HYI_K_VOID: o = vm->nil; break;
    case HYI_K_INT8: o = hyi_smi((int8_t)r); break;
    case HYI_K_UINT8: o = hyi_smi((uint8_t)r); break;
    case HYI_K_INT16: o = hyi_smi((int16_t)r); break;
    case HYI_K_UINT16: o = hyi_smi((uint16_t)r); break;
    case HYI_K_INT32: o = hyi_smi((int32_t)r); break;
    case HYI_K_UINT32: o = hyi_smi((uint32_t)r); break;
    default:
        if (rk == HYI_K_UINT64 && r <= (uint64_t)HYI_SMI_MAX) { o = hyi_smi((intptr_t)r); break; }
        if (rk == HYI_K_INT64 && hyi_smi_fits((intptr_t)r)) { o = hyi_smi((intptr_t)r); break; }
        o = hyi_ffi_from_c(vm, rk, &r, hyi_slots(*fnp)[HYI_EF_ADDRESS_CLASS], vm->nil);
        break;
    }
    *st = o ? HYI_PRIM_OK : HYI_PRIM_OOM;
    if (o) *result = o;
    return true;
}

static hyi_prim_status call_general(hy_vm *vm, hyi_ffi_sig *s, hyi_oop *fnp, hyi_oop *av, uint32_t n, hyi_oop *result);

hyi_prim_status hyi_ffi_call(hy_vm *vm, hyi_oop *fnp, hyi_oop *av, uint32_t n, hyi_oop *result) {
    /* The primitive runs only for ExternalFunctions (its method's class): checking the shape
     * is enough to read the fields, and the handle checks itself. */
    if (!hyi_is_ptr(*fnp) || hyi_fmt(*fnp) != HYI_FMT_SLOTS || hyi_size(*fnp) < HYI_EF_FIELDS)
        return hyi_prim_fail(vm, "the receiver is not an ExternalFunction");
    int nlen;
    const char *name;
    hyi_ffi_sig *s = hyi_ffi_sig_of_handle(hyi_slots(*fnp)[HYI_EF_HANDLE]);
    if (__builtin_expect(!s || !s->fn || n != s->nargs, 0)) {
        name = fn_name(vm, *fnp, &nlen);
        if (!s) return hyi_prim_fail(vm, "%.*s was not prepared: make functions with ExternalLibrary>>lookup:returns:arguments:", nlen, name);
        if (!s->fn) return hyi_prim_fail(vm, "%.*s is a NULL function pointer", nlen, name);
        return hyi_prim_fail(vm, "%.*s takes %u argument%s, got %u", nlen, name, s->nargs, s->nargs == 1 ? "" : "s", n);
    }
    hyi_prim_status st;
    if (s->direct && !hyi_tracing(vm) && call_direct(vm, s, fnp, av, n, result, &st)) return st;
    return call_general(vm, s, fnp, av, n, result);
}

/* Every call call_direct does not make. (Out of line, so that its frame of copies and scratch
 * is set up only for these calls.) */
static __attribute__((noinline)) hyi_prim_status call_general(hy_vm *vm, hyi_ffi_sig *s, hyi_oop *fnp, hyi_oop *av,
                                                              uint32_t n, hyi_oop *result) {
    int nlen;
    const char *name;

    /* The heap bytes handed to C must not move during the call. A young ByteArray or String of
     * at most HYI_FFI_COPY_MAX bytes passed itself is copied into C memory for the call and
     * back after it (pinning a young object costs a scavenge that tenures everything alive);
     * others are pinned. The first pin of a young object moves objects (av and *fnp are roots,
     * so they follow), so targets are looked up again after each pin. */
    uint32_t copied = 0;       /* bit i: argument i is passed as a copy */
    size_t copy_bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        hyi_oop t = hyi_ffi_pin_target(vm, (hyi_ffi_kind)s->args[i].kind, av[i]);
        if (!t || hyi_o(t)->pinned) continue;
        if (t == av[i] && !hyi_o(t)->old && hyi_size(t) <= HYI_FFI_COPY_MAX) {
            copied |= 1u << i;
            copy_bytes += round_up((size_t)hyi_size(t) + 1, 16);
            continue;
        }
        HYI_ROOT(vm, &t);
        bool ok = hyi_heap_pin(vm, &t);
        HYI_UNROOT(vm, 1);
        if (!ok) {
            name = fn_name(vm, *fnp, &nlen);
            return hyi_prim_fail(vm, "argument %u of %.*s: cannot pin its bytes (the heap is full)", i + 1, nlen, name);
        }
    }

    /* Marshal. Nothing below allocates in the heap until the call has returned. */
    alignas(16) uint8_t stack_scratch[HYI_FFI_SCRATCH];
    uint8_t *scratch = stack_scratch;
    if (s->scratch > sizeof stack_scratch) {
        scratch = aligned_alloc(16, round_up(s->scratch, 16));
        if (!scratch) {
            name = fn_name(vm, *fnp, &nlen);
            return hyi_prim_fail(vm, "%.*s: out of C memory for the arguments", nlen, name);
        }
    }
    alignas(16) uint8_t stack_copies[HYI_FFI_COPY_STACK];
    uint8_t *copies = stack_copies;
    if (copy_bytes > sizeof stack_copies && !(copies = aligned_alloc(16, copy_bytes))) {
        if (scratch != stack_scratch) free(scratch);
        name = fn_name(vm, *fnp, &nlen);
        return hyi_prim_fail(vm, "%.*s: out of C memory for the arguments", nlen, name);
    }
    void *values[HYI_FFI_MAX_ARGS];
    uint8_t *copy_of[HYI_FFI_MAX_ARGS];
    hyi_oop decls = hyi_slots(*fnp)[HYI_EF_ARGS];
    for (uint32_t i = 0, at = 0; i < n; i++) {
        hyi_ffi_kind k = (hyi_ffi_kind)s->args[i].kind;
        void *dst = scratch + s->args[i].off;
        char why[200];
        hyi_oop decl = k == HYI_K_STRUCT && hyi_is_ptr(decls) && hyi_o(decls)->cls == vm->cls.array && i < hyi_size(decls)
                           ? hyi_slots(decls)[i] : vm->nil;
        bool ok = copied >> i & 1 ? copy_in(vm, k, av[i], copy_of[i] = copies + at, dst, why, sizeof why)
                                  : hyi_ffi_to_c(vm, k, s->args[i].size, decl, av[i], dst, true, why, sizeof why);
        if (copied >> i & 1) at += round_up((size_t)hyi_size(av[i]) + 1, 16);
        if (!ok) {
            if (scratch != stack_scratch) free(scratch);
            if (copies != stack_copies) free(copies);
            name = fn_name(vm, *fnp, &nlen);
            return hyi_prim_fail(vm, "argument %u of %.*s: %s", i + 1, nlen, name, why);
        }
        values[i] = dst;
    }
    void *rv = scratch + s->ret.off;
    hyi_ffi_kind rk = (hyi_ffi_kind)s->ret.kind;

    if (__builtin_expect(hyi_tracing(vm), 0)) {
        call_traced(vm, *fnp, s, rv, values);
    } else if (s->direct) {
        uint64_t w[6] = {0};
        for (uint32_t i = 0; i < n; i++) w[i] = direct_word((hyi_ffi_kind)s->args[i].kind, values[i]);
        hyi_direct_fn f = (hyi_direct_fn)s->fn;
        uint64_t r = __builtin_expect(s->unthreaded, 0) ? f(w[0], w[1], w[2], w[3], w[4], w[5])
                                                         : hyi_callout_direct(vm, s->blocking, f, w);
        if (rk != HYI_K_VOID) memcpy(rv, &r, sizeof r);
    } else if (__builtin_expect(s->unthreaded, 0)) {
        ffi_call(&s->cif, FFI_FN(s->fn), rv, values);
    } else {
        hyi_callout_ffi(vm, s->blocking, &s->cif, FFI_FN(s->fn), rv, values);
    }

    /* The VM is ours again: anything may have moved, so fields are read from the root. What C
     * wrote into the copies goes back into the objects, wherever they are now. */
    copy_back(s, av, copied, copy_of);
    if (copies != stack_copies) free(copies);
    narrow_result(rk, rv);
    hyi_oop fn = *fnp;
    hyi_oop r = hyi_ffi_from_c(vm, rk, rv, hyi_slots(fn)[HYI_EF_ADDRESS_CLASS], hyi_slots(fn)[HYI_EF_RETURN]);
    if (scratch != stack_scratch) free(scratch);
    if (!r) {
        if (rk == HYI_K_STRUCT || rk == HYI_K_POINTER) {
            /* A malformed return type or address class, or no memory: say which. */
            hyi_oop t = hyi_slots(*fnp)[HYI_EF_RETURN];
            name = fn_name(vm, *fnp, &nlen);
            if (rk == HYI_K_STRUCT && !hyi_ffi_is_a(vm, t, HYI_FC_STRUCTURE_TYPE, HYI_ST_FIELDS))
                return hyi_prim_fail(vm, "%.*s: the return type is not an ExternalStructureType", nlen, name);
        }
        return HYI_PRIM_OOM;
    }
    *result = r;
    return HYI_PRIM_OK;
}

/* ---- Callbacks ----------------------------------------------------------------------------- */

#define CB_MAGIC 0x4879434c4f535552ull     /* "HyCLOSUR" */

typedef struct cb_data {
    uint64_t magic;
    hy_vm *vm;
    uint32_t index;          /* 1-based index in ExternalCallback's registry */
    uint32_t registry_slot;  /* slot of `registry` in the class ExternalCallback */
    ffi_closure *closure;
    void *code;
    hyi_ffi_sig *sig;        /* follows this struct in the same allocation */
} cb_data;

/* The handle object of a callback: an old, pinned EXTERNAL object holding the cb_data pointer
 * (an object Smalltalk code cannot forge). */
typedef struct cb_handle {
    uint64_t magic;
    struct cb_handle *self;
    cb_data *data;
} cb_handle;

static cb_handle *cb_handle_of(hyi_oop h) {
    if (!hyi_is_ptr(h) || hyi_fmt(h) != HYI_FMT_EXTERNAL || hyi_size(h) < sizeof(cb_handle)) return NULL;
    cb_handle *ch = (cb_handle *)hyi_bytes(h);
    return ch->magic == CB_MAGIC && ch->self == ch ? ch : NULL;
}

/* The ExternalCallback registered at d->index, or 0. */
static hyi_oop cb_lookup(hy_vm *vm, cb_data *d) {
    hyi_oop sym = hyi_symbol_c(vm, "ExternalCallback");
    hyi_oop cls = sym ? hyi_global_get(vm, sym) : 0;
    if (!cls || !hyi_is_ptr(cls) || hyi_fmt(cls) != HYI_FMT_SLOTS || hyi_size(cls) <= d->registry_slot) return 0;
    hyi_oop reg = hyi_slots(cls)[d->registry_slot];
    if (!hyi_is_ptr(reg) || hyi_o(reg)->cls != vm->cls.array || d->index < 1 || d->index > hyi_size(reg)) return 0;
    hyi_oop cb = hyi_slots(reg)[d->index - 1];
    return hyi_ffi_is_a(vm, cb, HYI_FC_CALLBACK, HYI_CB_FIELDS) ? cb : 0;
}

static void cb_record_error(hy_vm *vm, hyi_oop *cb, const char *msg) {
    hyi_oop s = hyi_string_new(vm, msg, strlen(msg));
    if (!s) return;
    hyi_store(vm, *cb, HYI_CB_FAILED, vm->true_);
    hyi_store(vm, *cb, HYI_CB_LAST_ERROR, s);
}

/* Runs on whatever thread called the closure: own the VM, run the block, disown. */
static void cb_handler(ffi_cif *cif, void *ret, void **cargs, void *user) {
    (void)cif;
    cb_data *d = user;
    hy_vm *vm = d->vm;
    hyi_ffi_sig *s = d->sig;
    hyi_ffi_kind rk = (hyi_ffi_kind)s->ret.kind;
    size_t rroom = s->ret.size > sizeof(ffi_arg) ? s->ret.size : sizeof(ffi_arg);
    memset(ret, 0, rroom);

    hyi_callback_state st;
    if (hyi_tracing(vm)) hyi_trace_callback_wait(vm);
    hyi_callback_enter(vm, &st);
    if (hyi_tracing(vm)) hyi_trace_callback_begin(vm);
    uint32_t roots = vm->num_temp_roots;
    hyi_oop cb = cb_lookup(vm, d), arr = 0, v = 0, r = 0;
    HYI_ROOT(vm, &cb);
    HYI_ROOT(vm, &arr);
    HYI_ROOT(vm, &v);
    HYI_ROOT(vm, &r);
    if (!cb) goto out;
    arr = hyi_array_new(vm, s->nargs);
    if (!arr) { cb_record_error(vm, &cb, "out of memory converting the arguments"); goto out; }
    for (uint32_t i = 0; i < s->nargs; i++) {
        hyi_ffi_kind k = (hyi_ffi_kind)s->args[i].kind;
        hyi_oop decls = hyi_slots(cb)[HYI_CB_ARGS];
        hyi_oop decl = k == HYI_K_STRUCT && hyi_is_ptr(decls) && hyi_o(decls)->cls == vm->cls.array && i < hyi_size(decls)
                           ? hyi_slots(decls)[i] : vm->nil;
        v = hyi_ffi_from_c(vm, k, cargs[i], class_in_chain(vm, cb, HYI_FC_ADDRESS), decl);
        if (!v) { cb_record_error(vm, &cb, "out of memory converting the arguments"); goto out; }
        hyi_store(vm, arr, i, v);
    }
    hyi_oop sel = hyi_symbol_c(vm, "invokeWith:");
    if (!sel) goto out;
    hyi_run run = hyi_interp_send(vm, cb, sel, 1, &arr, &r);
    if (run == HYI_RUN_UNWIND) {
        /* A non-local return out of the block: C frames cannot be unwound, so the unwind ends
         * here and C gets a zero result. */
        vm->unwind_value = 0;
        cb_record_error(vm, &cb, "a non-local return cannot leave a callback; C got 0");
        goto out;
    }
    if (run != HYI_RUN_OK) goto out;
    if (hyi_slots(cb)[HYI_CB_FAILED] == vm->true_ || rk == HYI_K_VOID) goto out;
    {
        alignas(16) uint8_t tmp[HYI_FFI_SCRATCH];
        char why[200];
        hyi_oop decl = hyi_slots(cb)[HYI_CB_RETURN];
        if (s->ret.size > sizeof tmp) {
            cb_record_error(vm, &cb, "the structure returned is too large");
        } else if (hyi_ffi_to_c(vm, rk, s->ret.size, decl, r, tmp, false, why, sizeof why)) {
            memcpy(ret, tmp, s->ret.size);
            widen_result(rk, ret);
        } else {
            char msg[260];
            snprintf(msg, sizeof msg, "the callback's answer: %s", why);
            cb_record_error(vm, &cb, msg);
        }
    }
out:
    vm->num_temp_roots = roots;
    if (hyi_tracing(vm)) {
        hyi_trace_callback_end(vm);
        if (!st.already_owned) hyi_trace_own_end(vm);
    }
    hyi_callback_leave(vm, &st);
}

hyi_prim_status hyi_ffi_callback_new(hy_vm *vm, hyi_oop *cbp) {
    hyi_oop cb = *cbp;
    if (!hyi_ffi_is_a(vm, cb, HYI_FC_CALLBACK, HYI_CB_FIELDS)) return hyi_prim_fail(vm, "the receiver is not an ExternalCallback");
    if (cb_handle_of(hyi_slots(cb)[HYI_CB_HANDLE])) return hyi_prim_fail(vm, "the callback already has a closure");
    hyi_oop blk = hyi_slots(cb)[HYI_CB_BLOCK];
    if (!hyi_is_ptr(blk) || !hyi_is_kind(vm, blk, vm->cls.block) || hyi_fmt(blk) != HYI_FMT_SLOTS ||
        hyi_size(blk) < HYI_BLOCK_SLOTS)
        return hyi_prim_fail(vm, "a callback needs a Block");
    hyi_oop idx = hyi_slots(cb)[HYI_CB_INDEX];
    if (!hyi_is_smi(idx) || hyi_smi_val(idx) < 1 || hyi_smi_val(idx) > INT32_MAX)
        return hyi_prim_fail(vm, "the callback is not registered");
    /* Where the registry lives: the class-side field `registry` of ExternalCallback. */
    hyi_oop cls = class_in_chain(vm, cb, HYI_FC_CALLBACK);
    hyi_oop meta = cls ? hyi_o(cls)->cls : 0;
    hyi_oop names = meta && hyi_size(meta) > HYI_CLASS_FIELDS ? hyi_slots(meta)[HYI_CLASS_FIELDS] : 0;
    uint32_t slot = 0;
    if (names && hyi_is_ptr(names) && hyi_o(names)->cls == vm->cls.array)
        for (uint32_t i = 0; i < hyi_size(names); i++) {
            hyi_oop nm = hyi_slots(names)[i];
            if (is_bytes_obj(nm) && hyi_size(nm) == 8 && memcmp(hyi_bytes(nm), "registry", 8) == 0) { slot = i; break; }
        }
    if (!slot) return hyi_prim_fail(vm, "ExternalCallback has no class-side field named registry");

    hyi_oop ret = hyi_slots(cb)[HYI_CB_RETURN], args = hyi_slots(cb)[HYI_CB_ARGS];
    size_t bytes = hyi_ffi_sig_bytes(vm, ret, args, true);
    if (!bytes) return HYI_PRIM_FAIL;
    hyi_method *bm = hyi_m(hyi_slots(blk)[HYI_BLOCK_METHOD]);
    uint32_t nargs = args == vm->nil ? 0 : hyi_size(args);
    if (bm->num_args != nargs)
        return hyi_prim_fail(vm, "the block takes %u argument%s but the signature has %u",
                             bm->num_args, bm->num_args == 1 ? "" : "s", nargs);

    /* The handle first (it may collect garbage); then C memory, which nothing can interrupt. */
    hyi_oop h = hyi_heap_alloc_old(vm, vm->cls.object, HYI_FMT_EXTERNAL, sizeof(cb_handle));
    if (!h) return HYI_PRIM_OOM;
    HYI_ROOT(vm, &h);
    bool pinned = hyi_heap_pin(vm, &h);
    HYI_UNROOT(vm, 1);
    if (!pinned) return HYI_PRIM_OOM;
    cb = *cbp;
    ret = hyi_slots(cb)[HYI_CB_RETURN];
    args = hyi_slots(cb)[HYI_CB_ARGS];

    size_t head = round_up(sizeof(cb_data), 16);
    cb_data *d = calloc(1, head + bytes);
    if (!d) return hyi_prim_fail(vm, "out of C memory for a callback");
    d->sig = (hyi_ffi_sig *)((uint8_t *)d + head);
    if (!hyi_ffi_sig_build(vm, d->sig, bytes, ret, args, true)) { free(d); return HYI_PRIM_FAIL; }
    d->magic = CB_MAGIC;
    d->vm = vm;
    d->index = (uint32_t)hyi_smi_val(idx);
    d->registry_slot = slot;
    d->closure = ffi_closure_alloc(sizeof(ffi_closure), &d->code);
    if (!d->closure) { free(d); return hyi_prim_fail(vm, "libffi could not allocate a closure"); }
    if (ffi_prep_closure_loc(d->closure, &d->sig->cif, cb_handler, d, d->code) != FFI_OK) {
        ffi_closure_free(d->closure);
        free(d);
        return hyi_prim_fail(vm, "libffi could not prepare the closure");
    }
    cb_handle *ch = (cb_handle *)hyi_bytes(h);
    ch->magic = CB_MAGIC;
    ch->self = ch;
    ch->data = d;
    /* The code address (a SmallInteger on every supported platform; else a large Integer). */
    hyi_oop a = hyi_bigint_from_uint64(vm, (uint64_t)(uintptr_t)d->code);
    if (!a) {
        ffi_closure_free(d->closure);
        free(d);
        ch->magic = 0;
        return HYI_PRIM_OOM;
    }
    cb = *cbp;
    hyi_store(vm, cb, HYI_CB_HANDLE, h);
    hyi_store(vm, cb, HYI_EA_ADDRESS, a);
    hyi_store(vm, cb, HYI_EA_SIZE, vm->nil);
    hyi_store(vm, cb, HYI_EA_BASE, vm->nil);
    hyi_store(vm, cb, HYI_EA_FREED, vm->false_);
    return HYI_PRIM_OK;
}

void hyi_ffi_callback_free(hy_vm *vm, hyi_oop cb) {
    if (!cb || !hyi_ffi_is_a(vm, cb, HYI_FC_CALLBACK, HYI_CB_FIELDS)) return;
    cb_handle *ch = cb_handle_of(hyi_slots(cb)[HYI_CB_HANDLE]);
    if (ch && ch->data) {
        ffi_closure_free(ch->data->closure);
        ch->data->magic = 0;
        free(ch->data);
        ch->data = NULL;
        ch->magic = 0;
    }
    hyi_store(vm, cb, HYI_CB_HANDLE, vm->nil);
    hyi_store(vm, cb, HYI_EA_FREED, vm->true_);
}

/* The class-side variable var of the global class cls_name, or NULL. */
static hyi_oop *class_side_var(hy_vm *vm, const char *cls_name, const char *var) {
    hyi_oop sym = hyi_symbol_c(vm, cls_name);
    hyi_oop cls = sym ? hyi_global_get(vm, sym) : 0;
    if (!cls || !hyi_is_ptr(cls) || hyi_fmt(cls) != HYI_FMT_SLOTS) return NULL;
    hyi_oop meta = hyi_o(cls)->cls;
    hyi_oop names = hyi_size(meta) > HYI_CLASS_FIELDS ? hyi_slots(meta)[HYI_CLASS_FIELDS] : 0;
    if (!names || !hyi_is_ptr(names) || hyi_o(names)->cls != vm->cls.array) return NULL;
    size_t len = strlen(var);
    for (uint32_t i = 0; i < hyi_size(names) && i < hyi_size(cls); i++) {
        hyi_oop nm = hyi_slots(names)[i];
        if (is_bytes_obj(nm) && hyi_size(nm) == len && memcmp(hyi_bytes(nm), var, len) == 0) return &hyi_slots(cls)[i];
    }
    return NULL;
}

void hyi_ffi_release_all(hy_vm *vm) {
    hyi_oop *reg = class_side_var(vm, "ExternalCallback", "registry");
    if (!reg || !hyi_is_ptr(*reg) || hyi_o(*reg)->cls != vm->cls.array) return;
    for (uint32_t k = 0; k < hyi_size(*reg); k++) {
        hyi_ffi_callback_free(vm, hyi_slots(*reg)[k]);
        hyi_slots(*reg)[k] = vm->nil;
    }
}

/* One entry of the exit calls, #(anExternalFunction argumentsArray): called directly (the
 * caller owns the VM), with arguments that need no heap bytes. A malformed entry, or one whose
 * function is no longer prepared (an image loaded after it was saved), is skipped. */
static void exit_call(hy_vm *vm, hyi_oop e) {
    if (!hyi_is_ptr(e) || hyi_o(e)->cls != vm->cls.array || hyi_size(e) != 2) return;
    hyi_oop fn = hyi_slots(e)[0], args = hyi_slots(e)[1];
    if (!hyi_ffi_is_a(vm, fn, HYI_FC_FUNCTION, HYI_EF_FIELDS) || !hyi_is_ptr(args) || hyi_o(args)->cls != vm->cls.array)
        return;
    hyi_ffi_sig *s = hyi_ffi_sig_of_handle(hyi_slots(fn)[HYI_EF_HANDLE]);
    if (!s || !s->fn || s->nargs != hyi_size(args) || s->scratch > HYI_FFI_SCRATCH) return;
    alignas(16) uint8_t scratch[HYI_FFI_SCRATCH];
    void *values[HYI_FFI_MAX_ARGS];
    for (uint32_t i = 0; i < s->nargs; i++) {
        char why[200];
        values[i] = scratch + s->args[i].off;
        if (s->args[i].kind == HYI_K_STRUCT ||
            !hyi_ffi_to_c(vm, (hyi_ffi_kind)s->args[i].kind, s->args[i].size, vm->nil, hyi_slots(args)[i], values[i],
                          false, why, sizeof why))
            return;
    }
    ffi_call(&s->cif, FFI_FN(s->fn), scratch + s->ret.off, values);
}

void hyi_ffi_run_exit_calls(hy_vm *vm) {
    hyi_oop *reg = class_side_var(vm, "ExternalFunction", "atExit");
    if (!reg || !hyi_is_ptr(*reg) || hyi_o(*reg)->cls != vm->cls.array) return;
    hyi_oop r = *reg;
    for (uint32_t k = hyi_size(r); k-- > 0;) {
        hyi_oop e = hyi_slots(r)[k];
        if (e == vm->nil) continue;
        hyi_slots(r)[k] = vm->nil;   /* nil is old: no barrier needed */
        exit_call(vm, e);
    }
}
