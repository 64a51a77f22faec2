/*
 * prims.h -- primitives: the C functions behind methods declared `= primitive`.
 *
 * A primitive is named by its class and selector ("Integer", "+"; class side: "Integer class",
 * "fromString:"). Each module keeps one constant table; the compiler binds a primitive method
 * to its table entry by name. The tables are read-only, so they are not VM state.
 *
 * Calling convention: args[0] is the receiver, args[1..nargs] the arguments; they live on the
 * value stack, so they are GC roots and are updated if the primitive allocates. A primitive
 * stores its answer in *result and returns HYI_PRIM_OK; or it returns hyi_prim_fail(...) with a
 * message, and the interpreter signals an Error with that text in the calling method; or it
 * returns HYI_PRIM_OOM after an allocation returned 0 (the interpreter raises OutOfMemory).
 * A primitive never aborts and never trusts its arguments' classes.
 */
#ifndef HYDRA_PRIMS_H
#define HYDRA_PRIMS_H

#include "vm.h"

typedef enum hyi_prim_status { HYI_PRIM_OK = 0, HYI_PRIM_FAIL = 1, HYI_PRIM_OOM = 2 } hyi_prim_status;

typedef hyi_prim_status (*hyi_prim_fn)(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result);

/* Primitives that change the flow of control (block evaluation, perform:, exceptions...) have
 * fn == NULL and a control code that the interpreter implements itself. */
typedef struct hyi_prim_def {
    const char *cls;
    const char *selector;
    hyi_prim_fn fn;
    int control;   /* hyi_control code when fn is NULL */
} hyi_prim_def;

/* The tables, each ended by an entry with cls == NULL. */
extern const hyi_prim_def hyi_prims_number[];   /* prims_number.c: Integer, Double */
extern const hyi_prim_def hyi_prims_string[];   /* prims_string.c: String, Symbol, ByteArray */
extern const hyi_prim_def hyi_prims_object[];   /* prims_object.c: Object, Class, Array, System, Method... */
extern const hyi_prim_def hyi_prims_control[];  /* interp.c: Block value..., perform:..., exceptions */
extern const hyi_prim_def hyi_prims_ffi[];      /* prims_ffi.c: ExternalLibrary, ExternalFunction, ExternalAddress... */
extern const hyi_prim_def hyi_prims_process[];  /* process.c: Process, Processor, Semaphore, Delay, VM counters */
extern const hyi_prim_def hyi_prims_vm[];       /* prims_vm.c: VM (this VM and its siblings) */

/* The primitive number for (class name, selector), or 0 if there is none. */
uint16_t hyi_prim_find(const char *cls, size_t cls_len, const char *selector, size_t sel_len);
/* The tables by number (prims.c), and the definition behind a primitive number: never NULL
 * for a number hyi_prim_find gave, NULL for 0. */
#define HYI_PRIM_NUM_TABLES 7
extern const hyi_prim_def *const hyi_prim_tables[HYI_PRIM_NUM_TABLES];
static inline const hyi_prim_def *hyi_prim_def_of(uint16_t prim) {
    unsigned t = prim >> 10, i = (prim & 1023u) - 1;
    if (prim == 0 || t >= HYI_PRIM_NUM_TABLES) return NULL;
    return &hyi_prim_tables[t][i];
}

/* The name of o's class (len bytes at *name, not NUL-terminated), for failure messages. */
void hyi_prim_class_name(hy_vm *vm, hyi_oop o, int *len, const char **name);

/* Record why the primitive failed (printf-style) and return HYI_PRIM_FAIL. */
hyi_prim_status hyi_prim_fail(hy_vm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
