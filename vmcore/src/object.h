/*
 * object.h -- the object model of one Hydra VM.
 *
 * Invariants:
 *  - An oop is either a tagged SmallInteger (low bit 1, value in the upper 63 bits) or the
 *    address of a heap object (8-byte aligned, low 3 bits 0). There is no other immediate.
 *  - Every heap object starts with a hyi_obj header: class, size and GC bits. The class of a
 *    SmallInteger is vm->cls.integer.
 *  - Old-space objects never move. Everything the compiler makes (classes, metaclasses,
 *    methods, literals, symbols) is allocated old, so raw pointers to bytecode and to method
 *    objects stay valid across any collection. Young objects move at every scavenge.
 *  - Every store of an oop into a heap object goes through hyi_store() (the write barrier),
 *    except initialising stores into an object that was just allocated young.
 *  - Only the owning thread of a VM touches its heap.
 */
#ifndef HYDRA_OBJECT_H
#define HYDRA_OBJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uintptr_t hyi_oop;
typedef struct hy_vm hy_vm;

/* ---- SmallIntegers ---------------------------------------------------------------------- */

#define HYI_SMI_MAX ((intptr_t)(INTPTR_MAX >> 1))
#define HYI_SMI_MIN ((intptr_t)(INTPTR_MIN >> 1))

static inline bool hyi_is_smi(hyi_oop o) { return (o & 1) != 0; }
static inline bool hyi_is_ptr(hyi_oop o) { return (o & 1) == 0; }
static inline intptr_t hyi_smi_val(hyi_oop o) { return (intptr_t)o >> 1; }
static inline hyi_oop hyi_smi(intptr_t v) { return ((uintptr_t)v << 1) | 1; }
static inline bool hyi_smi_fits(intptr_t v) { return v >= HYI_SMI_MIN && v <= HYI_SMI_MAX; }

/* ---- Heap object header ----------------------------------------------------------------- */

typedef enum hyi_format {
    HYI_FMT_SLOTS = 0,    /* size oops: the named instance variables */
    HYI_FMT_INDEXED = 1,  /* size oops, all indexable (Array) */
    HYI_FMT_BYTES = 2,    /* size bytes + a NUL not counted in size (String, Symbol, ByteArray) */
    HYI_FMT_DOUBLE = 3,   /* 8 bytes: a C double */
    HYI_FMT_LARGEINT = 4, /* size bytes: see bigint.h for the payload layout */
    HYI_FMT_METHOD = 5,   /* a hyi_method: HYI_METHOD_OOPS oops, then raw data; size = bytes */
    HYI_FMT_CONTEXT = 6,  /* like SLOTS: captured variables of one activation, slot 0 = outer */
    HYI_FMT_FREE = 7,     /* a free chunk of old space (never reachable) */
    HYI_FMT_EXTERNAL = 8, /* size bytes of raw data that the GC never scans (handles, etc.) */
} hyi_format;

typedef struct hyi_obj {
    hyi_oop cls;           /* class; a forwarding address while HYI forwarded is set */
    uint32_t size;         /* oops for pointer formats, bytes otherwise (see hyi_obj_bytes) */
    unsigned format : 4;   /* hyi_format */
    unsigned age : 2;      /* scavenges survived */
    unsigned marked : 1;   /* full-GC mark */
    unsigned pinned : 1;   /* must never move (implies old) */
    unsigned remembered : 1; /* old object in the remembered set */
    unsigned forwarded : 1; /* young object copied; cls holds the new address */
    unsigned old : 1;      /* lives in old space */
    unsigned hash : 21;    /* identity hash, assigned at allocation */
} hyi_obj;

_Static_assert(sizeof(hyi_obj) == 16, "object header is two words");

#define HYI_HASH_BITS 21

static inline hyi_obj *hyi_o(hyi_oop o) { return (hyi_obj *)o; }
static inline hyi_oop *hyi_slots(hyi_oop o) { return (hyi_oop *)(hyi_o(o) + 1); }
static inline uint8_t *hyi_bytes(hyi_oop o) { return (uint8_t *)(hyi_o(o) + 1); }
static inline uint32_t hyi_size(hyi_oop o) { return hyi_o(o)->size; }
static inline hyi_format hyi_fmt(hyi_oop o) { return (hyi_format)hyi_o(o)->format; }

static inline bool hyi_fmt_has_slots(hyi_format f) {
    return f == HYI_FMT_SLOTS || f == HYI_FMT_INDEXED || f == HYI_FMT_CONTEXT;
}

/* Bytes of payload after the header, rounded up to 8 (byte formats keep room for a NUL). */
static inline size_t hyi_payload_bytes(hyi_format f, uint32_t size) {
    switch (f) {
    case HYI_FMT_SLOTS: case HYI_FMT_INDEXED: case HYI_FMT_CONTEXT:
        return (size_t)size * sizeof(hyi_oop);
    case HYI_FMT_BYTES:
        return ((size_t)size + 1 + 7) & ~(size_t)7;
    default:
        return ((size_t)size + 7) & ~(size_t)7;
    }
}
static inline size_t hyi_obj_bytes(hyi_oop o) {
    return sizeof(hyi_obj) + hyi_payload_bytes(hyi_fmt(o), hyi_size(o));
}

/* ---- Boxed doubles ---------------------------------------------------------------------- */

static inline double hyi_double_val(hyi_oop o) { double d; memcpy(&d, hyi_bytes(o), 8); return d; }

/* ---- Classes ----------------------------------------------------------------------------
 * A class is a SLOTS object whose first HYI_CLASS_FIXED slots are below; class-side fields
 * declared in the class file follow. The class of a class is its metaclass; the class of a
 * metaclass is Metaclass.
 */
enum {
    HYI_CLASS_SUPERCLASS = 0, /* class or nil */
    HYI_CLASS_NAME = 1,       /* Symbol; a metaclass's name is 'X class' */
    HYI_CLASS_FIELDS = 2,     /* Array of Symbols: all instance variable names, inherited first */
    HYI_CLASS_METHODS = 3,    /* Array of Method/Primitive objects defined in this class */
    HYI_CLASS_INSTSPEC = 4,   /* SmallInteger: hyi_format of instances | (number of fields << 4) */
    HYI_CLASS_FIXED = 5
};

static inline hyi_oop hyi_class_instspec(hyi_format f, uint32_t nfields) {
    return hyi_smi((intptr_t)f | ((intptr_t)nfields << 4));
}
static inline hyi_format hyi_instspec_format(hyi_oop spec) { return (hyi_format)(hyi_smi_val(spec) & 15); }
static inline uint32_t hyi_instspec_fields(hyi_oop spec) { return (uint32_t)(hyi_smi_val(spec) >> 4); }

/* ---- Methods ----------------------------------------------------------------------------
 * A compiled method or block body. Allocated old (never moves), so the interpreter keeps
 * raw pointers to code[]. Layout: header, HYI_METHOD_OOPS scanned oops, the raw fields,
 * then code[code_len], then (8-aligned) ics[num_ics]. Primitive methods have prim != 0 and
 * may have no code. A block body has HYI_MF_BLOCK and its holder is the enclosing method's.
 */
enum {
    HYI_MF_BLOCK = 1u << 0,      /* body of a block, not a method */
    HYI_MF_PRIMITIVE = 1u << 1,  /* declared `= primitive`; prim names the C function */
    HYI_MF_HAS_NLR = 1u << 2,    /* a block inside contains ^ (the method owns a context) */
    HYI_MF_ON_DO = 1u << 3,      /* Block>>on:do: -- an exception handler frame */
    HYI_MF_ENSURE = 1u << 4,     /* Block>>ensure: -- unwinding evaluates argument 1 */
    HYI_MF_IFCURTAILED = 1u << 5,/* Block>>ifCurtailed: -- unwinding evaluates argument 1 */
    HYI_MF_GETTER = 1u << 6,     /* body is `^ field`: prim holds the field index (no frame needed) */
    HYI_MF_SETTER = 1u << 7,     /* body is `field := arg` answering self: prim holds the field index */
};

/* One inline cache per send site. selector/nargs are set by the compiler; cls/target are
 * filled by the interpreter and cleared by a full GC (they are weak). */
typedef struct hyi_ic {
    hyi_oop selector;
    hyi_oop cls;      /* receiver class of the cached lookup, 0 when empty */
    hyi_oop target;   /* method found for cls, or 0 */
    uint32_t nargs;
    uint32_t misses;  /* lookups done at this site (megamorphic sites just use the global cache) */
} hyi_ic;

#define HYI_METHOD_OOPS 4
typedef struct hyi_method {
    hyi_obj hdr;
    hyi_oop signature;  /* Symbol: the selector (for a block: the enclosing method's) */
    hyi_oop holder;     /* the class the method is defined in */
    hyi_oop literals;   /* Array of literals (old) or nil */
    hyi_oop debug;      /* Array: { file name String, line table ByteArray } or nil */
    /* ---- raw (not scanned by the GC) ---- */
    uint16_t num_args;  /* arguments, receiver not counted */
    uint16_t num_temps; /* frame temporaries after the arguments (incl. inlined-block temps) */
    uint16_t max_stack; /* deepest operand stack the code reaches */
    uint16_t num_ics;
    uint16_t flags;     /* HYI_MF_* */
    uint16_t prim;      /* primitive number, 0 = none */
    uint32_t code_len;
    uint32_t ic_offset; /* byte offset of ics[] from the start of the object */
    uint32_t line;      /* line of the method's first token */
    /* uint8_t code[code_len]; then hyi_ic ics[num_ics] at ic_offset */
} hyi_method;

static inline hyi_method *hyi_m(hyi_oop o) { return (hyi_method *)o; }
static inline uint8_t *hyi_method_code(hyi_method *m) { return (uint8_t *)(m + 1); }
static inline hyi_ic *hyi_method_ics(hyi_method *m) { return (hyi_ic *)((uint8_t *)m + m->ic_offset); }

/* The line table in debug[1] is a ByteArray of little-endian uint32 pairs (pc, line), sorted
 * by pc: the code from pc on (up to the next pair) comes from that source line. */

/* ---- Block closures ---------------------------------------------------------------------
 * Instances of Block1/Block2/Block3 (by number of arguments + 1; more arguments use Block).
 */
enum {
    HYI_BLOCK_METHOD = 0,   /* the hyi_method of the body (HYI_MF_BLOCK) */
    HYI_BLOCK_RECEIVER = 1, /* self of the home method */
    HYI_BLOCK_OUTER = 2,    /* enclosing context chain, or nil */
    HYI_BLOCK_SLOTS = 3
};

/* ---- Contexts ---------------------------------------------------------------------------
 * A heap context holds the variables of one activation that inner blocks capture.
 * slot 0 = the outer context (nil for a method's own context), slots 1.. = captured variables.
 * A method whose blocks contain ^ always owns a context, so that the context identifies the
 * home activation for non-local return.
 */
enum { HYI_CTX_OUTER = 0, HYI_CTX_FIRST_VAR = 1 };

/* ---- Global cells -----------------------------------------------------------------------
 * Globals live in cells (SLOTS objects of class nil-class-less "GlobalCell": {key, value}).
 * A compiled PUSH_GLOBAL refers to the cell, so a global read is one load. value is
 * vm->undefined until the global is defined.
 */
enum { HYI_CELL_KEY = 0, HYI_CELL_VALUE = 1, HYI_CELL_SLOTS = 2 };

#endif
