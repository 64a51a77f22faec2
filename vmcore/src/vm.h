/*
 * vm.h -- the state of one VM. Everything a VM needs lives in its hy_vm; vmcore has no global
 * mutable state, so any number of VMs can run in one process on different threads.
 *
 * Invariants:
 *  - Only the thread that owns the VM reads or writes any field below except where a field
 *    says otherwise.
 *  - Every oop field of hy_vm is a GC root and is reported by hyi_vm_visit_roots.
 */
#ifndef HYDRA_VM_H
#define HYDRA_VM_H

#include <stdatomic.h>
#include <stdio.h>

#include "hydra/hy_vm.h"
#include "heap.h"
#include "object.h"

/* ---- Execution stack --------------------------------------------------------------------
 * A process runs on a value stack (oops only, scanned by the GC from base to sp) and a frame
 * stack of hyi_frame records. A frame's receiver and arguments sit at fp[0..num_args], then
 * its temporaries, then its operand stack.
 */
typedef struct hyi_frame {
    hyi_method *method;    /* old, never moves */
    const uint8_t *ip;     /* next instruction (saved when the frame is not on top) */
    hyi_oop *fp;           /* receiver slot on the value stack */
    hyi_oop *sp;           /* saved operand stack top (last pushed) when not on top */
    hyi_oop ctx;           /* this activation's heap context, or 0 */
    hyi_oop closure;       /* the block closure for a block activation, else 0 */
    uint64_t serial;       /* unique per activation in this VM (exception/unwind markers) */
    uint32_t flags;        /* HYI_FRAME_* */
    uint32_t handler_for;  /* for HYI_FRAME_HANDLER: index of the on:do: frame it serves */
} hyi_frame;

enum {
    HYI_FRAME_BASE = 1u << 0,       /* entered from C: returning from it leaves the interpreter */
    HYI_FRAME_HANDLING = 1u << 1,   /* on:do: frame whose handler is running (skip in searches) */
    HYI_FRAME_HANDLER = 1u << 2,    /* handler block frame: its return value leaves the on:do: */
    HYI_FRAME_UNWOUND = 1u << 3,    /* ensure:/ifCurtailed: frame whose block already ran */
};

typedef struct hyi_stack {
    hyi_oop *base, *limit;  /* value stack [base, limit) */
    hyi_oop *sp;            /* last pushed value (base - 1 when empty) */
    hyi_frame *frames;      /* frames[0 .. nframes) */
    uint32_t nframes, max_frames;
    size_t reserved_bytes;  /* for munmap */
} hyi_stack;

/* ---- Symbols and globals (open addressing, C-side; entries are roots) ------------------- */
typedef struct hyi_table {
    hyi_oop *keys;          /* symbols: the symbol; globals: the cell */
    uint32_t cap, count;
} hyi_table;

/* ---- Global method cache: (class, selector) -> method ---------------------------------- */
#define HYI_MCACHE_SIZE 4096
typedef struct hyi_mcache_entry {
    hyi_oop cls, selector, method;
} hyi_mcache_entry;

/* Roots held by C code across allocations: HYI_ROOT(vm, &local) ... HYI_UNROOT(vm, n). */
#define HYI_MAX_TEMP_ROOTS 256

typedef struct hyi_classes {
    hyi_oop object, klass, metaclass, nil, boolean, true_, false_, integer, double_, string,
        symbol, array, method, primitive, block, block1, block2, block3, system, vector,
        context, cell, bytearray, exception, error, dnu_error, oom_error;
} hyi_classes;
#define HYI_NUM_CLASSES (sizeof(hyi_classes) / sizeof(hyi_oop))

typedef struct hyi_symbols {
    hyi_oop dnu, escaped_block, unknown_global, run, run_, initialize_, value, value_,
        value_value_, must_be_boolean, signal, unhandled, error_, call_stack;
} hyi_symbols;
#define HYI_NUM_SYMBOLS (sizeof(hyi_symbols) / sizeof(hyi_oop))

struct hy_vm {
    hy_config config;
    hyi_heap heap;

    /* Well-known objects. */
    hyi_oop nil, true_, false_, system, undefined;
    hyi_classes cls;
    hyi_symbols sym;
    hyi_oop special;          /* Array reserved for later modules (processes, FFI) */
    hyi_oop ffi_classes[6];   /* the FFI's classes once found (foreign.c, hyi_ffi_class), else 0 */
#define HYI_FFI_KIND_CACHE 8
    hyi_oop ffi_kind_syms[HYI_FFI_KIND_CACHE]; /* type Symbols lately read by the FFI accessors */
    uint8_t ffi_kind_of[HYI_FFI_KIND_CACHE];   /* and their kinds (prims_ffi.c) */
    struct hyi_threads *threads; /* ownership, callouts (thread.c) */
    struct hyi_sched *sched;  /* processes, scheduler, workers, heartbeat (process.c) */
    uint32_t current_process; /* the installed process (process.c keeps it), 0 = none */
    _Atomic bool heartbeat_parked; /* the heartbeat sleeps until kicked (process.c) */
    int current_priority;     /* its priority */

    hyi_table symbols;        /* interned Symbols (old space) */
    hyi_table globals;        /* global cells keyed by their key symbol */
    hyi_mcache_entry mcache[HYI_MCACHE_SIZE];
    bool mcache_filled;       /* an entry was filled since the last flush */

    hyi_oop *temp_roots[HYI_MAX_TEMP_ROOTS];
    uint32_t num_temp_roots;

    /* Execution. */
    hyi_stack stack;          /* the running process's stacks */
    uint64_t next_serial;
    _Atomic int attention;    /* set to ask the interpreter to poll (other threads may write) */
    int exit_code;            /* value given to System exit:, or 1 after an unhandled error */
    bool exiting;             /* System exit: was called: unwind everything and stop */
    _Atomic int stop_request; /* hy_vm_request_stop (any thread): 0 none, 1 stop, 2 kill */
    _Atomic int stop_status;  /* its exit status */
    bool killing;             /* a kill is unwinding: ensure blocks are skipped */
    hyi_oop program_args;     /* the arguments of the running program (VM current arguments) */
    bool overflow_active;     /* a stack overflow error is being handled (reserve in use) */
    hyi_oop trampolines[8];   /* per argument count: a method `SEND 0; RETURN_TOP` for C calls */
    /* A pending unwind reported by HYI_RUN_UNWIND: */
    uint32_t unwind_target;   /* frame index */
    int unwind_kind;
    hyi_oop unwind_value;
    char prim_message[512];   /* why the last primitive failed */

    /* Loading. */
    char **classpath;         /* NULL-terminated list of folders */
    char *error_buf;          /* last error message (hy_vm_last_error) */
    bool load_failed;         /* the last class load found a file that did not compile */
    char *image_entry;        /* entry class of the image the VM was made from ("" = none), or NULL */

    uint64_t start_ns;        /* for System ticks */
    struct hyi_trace_vm *trace_vm; /* this VM's record in config.trace, or NULL (trace.h) */
};

/* ---- Roots -------------------------------------------------------------------------------- */
static inline void hyi_root(hy_vm *vm, hyi_oop *slot) { vm->temp_roots[vm->num_temp_roots++] = slot; }
static inline void hyi_unroot(hy_vm *vm, uint32_t n) { vm->num_temp_roots -= n; }
#define HYI_ROOT(vm, p) hyi_root((vm), (p))
#define HYI_UNROOT(vm, n) hyi_unroot((vm), (n))

/* Report every root slot (the GC may overwrite *slot with the object's new address). */
void hyi_vm_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg);

/* ---- Write barrier ------------------------------------------------------------------------ */
static inline void hyi_store(hy_vm *vm, hyi_oop obj, uint32_t index, hyi_oop value) {
    hyi_slots(obj)[index] = value;
    if (hyi_heap_is_young(&vm->heap, value) && hyi_o(obj)->old && !hyi_o(obj)->remembered)
        hyi_heap_remember(vm, obj);
}

/* ---- Allocation fast path ------------------------------------------------------------------ */
/* hyi_heap_alloc for the interpreter's hot small objects (closures, contexts, doubles): a bump
 * in eden when there is room, else the general path. Same result as hyi_heap_alloc. */
static inline hyi_oop hyi_alloc_small(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size) {
    hyi_heap *h = &vm->heap;
    size_t bytes = sizeof(hyi_obj) + hyi_payload_bytes(fmt, size);
    if (__builtin_expect(h->stress || (size_t)(h->eden_hi - h->eden_top) < bytes, 0))
        return hyi_heap_alloc(vm, cls, fmt, size);
    uint8_t *p = h->eden_top;
    h->eden_top += bytes;
    h->stats.young_bytes += bytes;
    h->stats.bytes_allocated += bytes;
    hyi_obj hd = { .cls = cls, .size = size, .format = fmt, .hash = hyi_heap_next_hash(h) };
    *(hyi_obj *)p = hd;
    hyi_oop o = (hyi_oop)p;
    if (hyi_fmt_has_slots(fmt)) for (uint32_t i = 0; i < size; i++) hyi_slots(o)[i] = vm->nil;
    else memset(p + sizeof(hyi_obj), 0, bytes - sizeof(hyi_obj));
    return o;
}

/* ---- Classes and objects ------------------------------------------------------------------ */
static inline hyi_oop hyi_class_of(hy_vm *vm, hyi_oop o) {
    return hyi_is_smi(o) ? vm->cls.integer : hyi_o(o)->cls;
}
static inline bool hyi_is_kind(hy_vm *vm, hyi_oop o, hyi_oop cls) {
    for (hyi_oop c = hyi_class_of(vm, o); c != vm->nil; c = hyi_slots(c)[HYI_CLASS_SUPERCLASS])
        if (c == cls) return true;
    return false;
}

/* Intern a symbol (old space). Returns 0 only when out of memory. */
hyi_oop hyi_symbol(hy_vm *vm, const char *chars, size_t len);
static inline hyi_oop hyi_symbol_c(hy_vm *vm, const char *s) { return hyi_symbol(vm, s, strlen(s)); }
/* A new young String (young unless huge). 0 when out of memory. */
hyi_oop hyi_string_new(hy_vm *vm, const char *chars, size_t len);
hyi_oop hyi_string_new_old(hy_vm *vm, const char *chars, size_t len);
/* Boxed double (young). */
hyi_oop hyi_double_new(hy_vm *vm, double d);
/* The global cell for key (created undefined if absent). 0 when out of memory. */
hyi_oop hyi_global_cell(hy_vm *vm, hyi_oop key);
hyi_oop hyi_global_get(hy_vm *vm, hyi_oop key);   /* 0 when undefined */
bool hyi_global_set(hy_vm *vm, hyi_oop key, hyi_oop value);
/* Enter an existing global cell into the globals table (loading an image). false when out of
 * memory. */
bool hyi_global_adopt(hy_vm *vm, hyi_oop cell);

/* Method lookup: the method for selector in cls or its superclasses, or 0. Uses the global
 * method cache. */
hyi_oop hyi_lookup(hy_vm *vm, hyi_oop cls, hyi_oop selector);
void hyi_flush_method_cache(hy_vm *vm);   /* methods changed (nothing to do if it is empty) */
void hyi_clear_method_cache(hy_vm *vm);   /* always: a full GC drops its weak class references */

/* Create a class (and its metaclass) named name under superclass (nil for a root class).
 * inst_fields/class_fields are Arrays of the Symbols this class declares (inherited ones are
 * added here). If a class of that name exists already (a bootstrap class), it is filled in
 * and returned instead of a new one. Defines the global. 0 when out of memory. */
hyi_oop hyi_class_define(hy_vm *vm, hyi_oop name, hyi_oop superclass, hyi_oop inst_fields,
                         hyi_oop class_fields);
/* Add (or replace, by selector) a method in cls and set its holder. */
bool hyi_class_add_method(hy_vm *vm, hyi_oop cls, hyi_oop method);

/* A VM with an empty heap (no bootstrap): config and class path copied, threads, heap,
 * interpreter and scheduler set up, the calling thread attached. NULL when out of memory.
 * hy_vm_new bootstraps it from sources, image.c fills it from an image. */
hy_vm *hyi_vm_alloc(const hy_config *cfg);

/* Find a class by name: the global, or load NAME.som from the class path. 0 if neither. */
hyi_oop hyi_vm_load_class(hy_vm *vm, hyi_oop name);

/* A new Array of n nils (young unless huge). 0 when out of memory. */
hyi_oop hyi_array_new(hy_vm *vm, uint32_t n);
/* Instantiate cls according to its instance spec (fields set to nil, or n indexed slots/bytes
 * for indexable formats). 0 when out of memory. */
hyi_oop hyi_instantiate(hy_vm *vm, hyi_oop cls, uint32_t n);

/* Write bytes to the VM's standard output (stream 1) or error (stream 2) through its sink. */
void hyi_vm_write(hy_vm *vm, int stream, const char *bytes, size_t len);
void hyi_vm_printf(hy_vm *vm, int stream, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Print the Smalltalk backtrace of the running process, innermost first, one line a frame:
 * "  Class>>selector (file:line)" (interp.c). */
void hyi_interp_print_backtrace(hy_vm *vm, int stream);

/* Record an error message for hy_vm_last_error (printf-style). */
void hyi_vm_set_error(hy_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Monotonic clock in nanoseconds. */
uint64_t hyi_now_ns(void);

#endif
