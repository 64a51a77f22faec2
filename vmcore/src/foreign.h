/*
 * foreign.h -- foreign calls on libffi: C types, prepared signatures, conversions between oops and
 * C values, callouts and callbacks. prims_ffi.c puts the Smalltalk classes on top of it
 * (ExternalLibrary, ExternalFunction, ExternalAddress, ExternalStructureType,
 * ExternalStructure, ExternalCallback in images/core).
 *
 * Invariants:
 *  - A signature is prepared once (ffi_prep_cif) when its function or callback is made, never
 *    per call. A function's signature lives in an old-space, pinned object of format
 *    HYI_FMT_EXTERNAL (it never moves, so libffi's internal pointers into it stay valid, and it
 *    dies with the ExternalFunction that holds it); a callback's lives in malloc'ed memory
 *    that ExternalCallback>>free releases together with the libffi closure.
 *  - A signature holds no oop. What a conversion needs from the heap (the ExternalAddress class,
 *    a structure type) is read from the Smalltalk object that owns the signature, after any
 *    allocation.
 *  - A call marshals every argument before hyi_callout_begin (pinning heap bytes handed to C,
 *    which may move objects: nothing is read from the heap between a pin and the next re-read
 *    of the arguments) and touches the heap again only after hyi_callout_end.
 *  - A callback's closure data holds {vm, registry index}, never an oop: the ExternalCallback
 *    object (and its block) is found through the class-side registry of ExternalCallback,
 *    which the GC sees as an ordinary reachable Array.
 */
#ifndef HYDRA_FOREIGN_H
#define HYDRA_FOREIGN_H

#include <ffi.h>

#include "prims.h"

/* ---- C types ------------------------------------------------------------------------------ */

typedef enum hyi_ffi_kind {
    HYI_K_VOID = 0,
    HYI_K_INT8, HYI_K_UINT8, HYI_K_INT16, HYI_K_UINT16,
    HYI_K_INT32, HYI_K_UINT32, HYI_K_INT64, HYI_K_UINT64,
    HYI_K_FLOAT, HYI_K_DOUBLE,
    HYI_K_POINTER,   /* void *: ExternalAddress, ByteArray/String body, ExternalStructure, nil */
    HYI_K_STRING,    /* char *: a NUL-terminated String in, a String (or nil) out */
    HYI_K_STRUCT,    /* a structure by value (an ExternalStructureType describes it) */
} hyi_ffi_kind;

/* The kind named by a type Symbol ('int32', 'size_t'...), or -1. */
int hyi_ffi_kind_named(const char *name, size_t len);
/* Bytes of a scalar kind (0 for void and structs). */
size_t hyi_ffi_kind_size(hyi_ffi_kind k);

/* ---- Layouts of the Smalltalk objects (images/core): C reads these fields ------------------ */

enum { HYI_EL_NAME = 0, HYI_EL_HANDLE = 1, HYI_EL_FIELDS = 2 };          /* ExternalLibrary */
enum { HYI_EA_ADDRESS = 0, HYI_EA_SIZE = 1, HYI_EA_BASE = 2, HYI_EA_FREED = 3,
       HYI_EA_FIELDS = 4 };                                              /* ExternalAddress */
enum { HYI_CB_BLOCK = 4, HYI_CB_RETURN = 5, HYI_CB_ARGS = 6, HYI_CB_HANDLE = 7, HYI_CB_INDEX = 8,
       HYI_CB_FAILED = 9, HYI_CB_LAST_ERROR = 10, HYI_CB_FIELDS = 11 };  /* ExternalCallback */
enum { HYI_EF_HANDLE = 0, HYI_EF_NAME = 1, HYI_EF_LIBRARY = 2, HYI_EF_RETURN = 3, HYI_EF_ARGS = 4,
       HYI_EF_ADDRESS_CLASS = 5, HYI_EF_BLOCKING = 6, HYI_EF_ADDRESS = 7,
       HYI_EF_FIELDS = 8 };                                              /* ExternalFunction */
enum { HYI_ST_TYPES = 0, HYI_ST_NAMES = 1, HYI_ST_OFFSETS = 2, HYI_ST_SIZE = 3, HYI_ST_ALIGN = 4,
       HYI_ST_CLASS = 5, HYI_ST_FIELDS = 6 };                            /* ExternalStructureType */
enum { HYI_ES_TYPE = 0, HYI_ES_DATA = 1, HYI_ES_FIELDS = 2 };            /* ExternalStructure */

/* The FFI's classes, which the primitives recognise (by name the first time, then by identity:
 * a class that is loaded again keeps its object). The order is that of hyi_ffi_class_names. */
typedef enum hyi_ffi_class {
    HYI_FC_ADDRESS, HYI_FC_CALLBACK, HYI_FC_FUNCTION, HYI_FC_LIBRARY, HYI_FC_STRUCTURE, HYI_FC_STRUCTURE_TYPE,
    HYI_FC_COUNT
} hyi_ffi_class;

/* The class k among cls and its superclasses, or 0. */
hyi_oop hyi_ffi_superclass(hy_vm *vm, hyi_oop cls, hyi_ffi_class k);
/* o is an instance of the class k or of a subclass, with at least nfields slots. */
bool hyi_ffi_is_a(hy_vm *vm, hyi_oop o, hyi_ffi_class k, uint32_t nfields);
/* "nil", "true", "the Integer 300", "a String", "an ExternalAddress": for error messages.
 * Writes into buf (n bytes) and returns it. */
const char *hyi_ffi_describe(hy_vm *vm, hyi_oop o, char *buf, size_t n);

/* ---- Signatures --------------------------------------------------------------------------- */

#define HYI_FFI_MAX_ARGS 32
#define HYI_FFI_SCRATCH 512   /* bytes of arguments and result a call keeps on the C stack */
#define HYI_FFI_COPY_MAX 65536 /* a young byte object passed by address up to this size is copied
                                  (every young one: bigger objects are allocated old) */
#define HYI_FFI_COPY_STACK 8192 /* bytes of such copies a call keeps on the C stack (a message of
                                  4 KiB sent through nng is copied there, not into malloc'd memory) */

typedef struct hyi_ffi_slot {
    uint8_t kind;      /* hyi_ffi_kind */
    bool read_only;    /* declared #constPointer: a copy made for the call is not copied back */
    uint32_t size;     /* bytes of the C value */
    uint32_t off;      /* offset of the value in a call's scratch area */
} hyi_ffi_slot;

typedef struct hyi_ffi_sig {
    uint64_t magic;
    struct hyi_ffi_sig *self;  /* its own address: a byte copy of a signature is refused */
    void *fn;                  /* the C function (callouts) */
    bool blocking;             /* calls hand the VM off at once */
    bool unthreaded;           /* calls keep the VM (no disown/own): tiny functions, baselines */
    bool direct;               /* integers and pointers only: called without ffi_call (see foreign.c) */
    uint32_t nargs;
    uint32_t scratch;          /* bytes of scratch area a call needs */
    hyi_ffi_slot ret;
    hyi_ffi_slot *args;        /* nargs */
    ffi_type **arg_types;      /* nargs */
    ffi_cif cif;
} hyi_ffi_sig;

/* Bytes needed for the signature of (ret, arg_types Array), or 0 with a reason in
 * vm->prim_message. */
size_t hyi_ffi_sig_bytes(hy_vm *vm, hyi_oop ret, hyi_oop arg_types, bool callback);
/* Build the signature into mem (hyi_ffi_sig_bytes bytes, 16-byte aligned, not moving) and
 * prepare its cif. false with a reason in vm->prim_message. Allocates nothing in the heap. */
bool hyi_ffi_sig_build(hy_vm *vm, void *mem, size_t bytes, hyi_oop ret, hyi_oop arg_types, bool callback);
/* The signature in a handle object (an ExternalFunction's), or NULL when h is not one. */
hyi_ffi_sig *hyi_ffi_sig_of_handle(hyi_oop h);

/* The layout of a structure type made of member types (an Array): size, alignment and member
 * offsets (offsets needs one entry per member), computed by libffi like the C compiler does.
 * false with a reason in vm->prim_message. */
bool hyi_ffi_struct_layout(hy_vm *vm, hyi_oop member_types, size_t *size, size_t *align, size_t *offsets);

/* ---- Conversions -------------------------------------------------------------------------- */

/* Store the C value of v, as kind k (decl: the declared structure type for HYI_K_STRUCT, size
 * its bytes), at dst. heap_bytes: ByteArrays and Strings may be passed by address (their body;
 * the caller pinned them). false with a reason (for "expected ..., got ...") in why. */
bool hyi_ffi_to_c(hy_vm *vm, hyi_ffi_kind k, uint32_t size, hyi_oop decl, hyi_oop v, void *dst,
                  bool heap_bytes, char *why, size_t why_len);
/* The object for the C value of kind k at src. addr_cls: the class of the ExternalAddress to
 * make for a pointer; decl: the structure type for HYI_K_STRUCT. May allocate; 0 when out of
 * memory. */
hyi_oop hyi_ffi_from_c(hy_vm *vm, hyi_ffi_kind k, const void *src, hyi_oop addr_cls, hyi_oop decl);

/* The raw address held by an ExternalAddress (a live one: NULL is allowed). size: its known
 * size, or SIZE_MAX. false with a reason in why (freed, malformed). */
bool hyi_ffi_address(hy_vm *vm, hyi_oop ea, void **p, size_t *size, char *why, size_t why_len);
/* The same for ea already known to be an ExternalAddress (hyi_ffi_is_a). */
bool hyi_ffi_address_of(hy_vm *vm, hyi_oop ea, void **p, size_t *size, char *why, size_t why_len);
/* A new instance of addr_cls (ExternalAddress or a subclass) for p, with a known size (or
 * SIZE_MAX) and base (the allocation it belongs to, or nil). 0 when out of memory. */
hyi_oop hyi_ffi_new_address(hy_vm *vm, hyi_oop addr_cls, void *p, size_t size, hyi_oop base);

/* The heap object whose body a pointer or string argument v passes to C (a ByteArray, a
 * String, or the ByteArray of an ExternalStructure), or 0 when v needs no pinning. */
hyi_oop hyi_ffi_pin_target(hy_vm *vm, hyi_ffi_kind k, hyi_oop v);

/* ---- Calls and callbacks ------------------------------------------------------------------ */

/* Call the ExternalFunction fn with the n arguments av (fn and av must be GC roots: they are
 * updated when pinning moves objects). The answer goes to *result. */
hyi_prim_status hyi_ffi_call(hy_vm *vm, hyi_oop *fn, hyi_oop *av, uint32_t n, hyi_oop *result);

/* Make the closure of the ExternalCallback cb (fields block, returnType, argumentTypes and
 * index set): stores its handle and code address in cb. */
hyi_prim_status hyi_ffi_callback_new(hy_vm *vm, hyi_oop *cb);
/* Release the closure of cb (idempotent). */
void hyi_ffi_callback_free(hy_vm *vm, hyi_oop cb);
/* Release the closures of every callback still registered (for the VM's teardown, while its
 * heap is still there; the owning thread calls it). Safe when ExternalCallback was never
 * loaded. */
void hyi_ffi_release_all(hy_vm *vm);
/* Make the calls the program registered with ExternalFunction>>callAtExitWith: (the class-side
 * registry atExit), latest slots first, emptying the registry. The caller owns the VM; the calls
 * keep it (a process waiting in a foreign call on the resource gets its call back, and waits
 * for the VM to be free again). */
void hyi_ffi_run_exit_calls(hy_vm *vm);

#endif
