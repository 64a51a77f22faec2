/*
 * interp.h -- the bytecode interpreter: frames, sends, blocks, non-local return, exceptions
 * and unwinding.
 *
 * Invariants:
 *  - The interpreter never recurses in C for a Smalltalk send: a send pushes a frame on the
 *    process's frame stack. C re-enters it only for calls from C (hyi_interp_send), such as
 *    running ensure: blocks during an unwind; each such entry runs until its own base frame
 *    returns or an unwind reaches below it, which it reports to its caller.
 *  - The value stack holds only oops, so the GC scans [base, sp] as roots; frame records
 *    hold their context and closure (roots) and their method (old, never moves).
 */
#ifndef HYDRA_INTERP_H
#define HYDRA_INTERP_H

#include "vm.h"

/* How a run of the interpreter ended. */
typedef enum hyi_run {
    HYI_RUN_OK = 0,     /* the call returned; result delivered */
    HYI_RUN_UNWIND = 1, /* a non-local return or exception return targets a frame below the call */
    HYI_RUN_EXIT = 2,   /* the process ends (System exit:, unhandled error) */
    HYI_RUN_SWITCH = 3, /* the process was switched out (saved); run another */
    HYI_RUN_HANDBACK = 4, /* a waiting thread must get the VM: the process stays runnable */
} hyi_run;

bool hyi_interp_init(hy_vm *vm);
/* A process stack of about `slots` value slots (reserved lazily) / its release. */
bool hyi_interp_stack_init(hyi_stack *s, size_t slots);
void hyi_interp_stack_fini(hyi_stack *s);
void hyi_interp_visit_stack(hy_vm *vm, hyi_stack *s, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg);
/* A method `SEND selector (nargs arguments); RETURN_TOP` for entering Smalltalk from C; the
 * receiver sits in fp[1]. selector nil: set per call in the inline cache. Old; 0 when out of
 * memory. */
hyi_oop hyi_interp_trampoline_new(hy_vm *vm, hyi_oop selector, uint32_t nargs);
/* Continue the installed process at top level until it ends (OK/EXIT) or is switched out. */
hyi_run hyi_interp_resume(hy_vm *vm, hyi_oop *result);
void hyi_interp_fini(hy_vm *vm);
void hyi_interp_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg);

/* Send selector to receiver with nargs arguments from C and run until it returns. */
hyi_run hyi_interp_send(hy_vm *vm, hyi_oop receiver, hyi_oop selector, uint32_t nargs,
                        const hyi_oop *args, hyi_oop *result);

/* Run a program: `system initialize: args`. *exit_status as hy_vm_run_main documents. */
hy_err hyi_interp_run_main(hy_vm *vm, hyi_oop cls, hyi_oop args, int *exit_status);

#endif
