/*
 * trace.h -- recording what the threaded VM does into a hy_trace (hy_vm.h, "Tracing"), written
 * out as a Chrome/Perfetto trace.
 *
 * Each VM that traces has a record (vm->trace_vm) owned by its hy_trace, so the events outlive
 * the VM. Hooks in the other modules are one line each, `if (hyi_tracing(vm)) hyi_trace_...`:
 * when the VM does not trace they cost one load and a branch that is predicted not taken.
 *
 * Invariants:
 *  - Appending an event takes no lock: a slot is claimed with one atomic add on the VM's event
 *    counter and published with a release store of its ready flag. Any thread may append.
 *  - Ownership spans are exact: a thread ends its span (hyi_trace_own_end) before the call that
 *    releases the VM and begins one (hyi_trace_own_begin) after the call that gave it the VM,
 *    so the spans of two threads never overlap in time. Every release of a VM that traces has
 *    an own_end before it.
 *  - The functions marked "owner" run only on the thread owning the VM and keep per-VM state
 *    (the thread whose ownership span is open, the process span open on it, the last callout):
 *    ownership hands that state from thread to thread. The others may run on any thread.
 *  - Spans opened on a thread (ownership, process, callout, callback, idle) nest: the process
 *    span closes with the ownership span around it, and a callout or idle span starts after
 *    the ownership span has ended.
 */
#ifndef HYDRA_TRACE_H
#define HYDRA_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm.h"

static inline bool hyi_tracing(const hy_vm *vm) { return __builtin_expect(vm->trace_vm != NULL, 0); }

/* Register vm with the trace its config names (no-op without one). false when out of memory. */
bool hyi_trace_vm_init(hy_vm *vm);
/* The VM goes away; its events stay in the trace. Safe when it never traced. */
void hyi_trace_vm_fini(hy_vm *vm);

/* How a thread came to own the VM (the "how" argument of an ownership span). */
typedef enum hyi_trace_how {
    HYI_TRACE_ATTACH,          /* the host's thread runs or sets up the VM */
    HYI_TRACE_CALLOUT_RETURN,  /* a foreign call returned */
    HYI_TRACE_IDLE_END,        /* the scheduler woke from idle */
    HYI_TRACE_CALLBACK,        /* C called back into the VM */
    HYI_TRACE_TAKEOVER,        /* a worker took the VM left in a callout */
    HYI_TRACE_OWN_AGAIN,       /* a thread that handed the VM back queued for it again */
} hyi_trace_how;

/* What a thread is to a VM (the name of its track). */
typedef enum hyi_trace_role {
    HYI_TRACE_FOREIGN,         /* a thread that called back into the VM from C */
    HYI_TRACE_HEARTBEAT,
    HYI_TRACE_WORKER,
    HYI_TRACE_MAIN,            /* the thread that runs the VM's main process */
} hyi_trace_role;

/* The kinds of foreign call (the "mode" argument of a callout span). */
typedef enum hyi_trace_call {
    HYI_TRACE_THREADED,        /* leaves the VM to others while it runs */
    HYI_TRACE_BLOCKING,        /* hands the VM to a worker at once */
    HYI_TRACE_UNTHREADED,      /* keeps the VM */
} hyi_trace_call;

typedef enum hyi_trace_gc_kind {
    HYI_TRACE_SCAVENGE,
    HYI_TRACE_PIN_SCAVENGE,    /* a scavenge that tenures everything to pin an object */
    HYI_TRACE_FULL_GC,
} hyi_trace_gc_kind;

/* Any thread: name the calling thread's track in this VM. */
void hyi_trace_role_set(hy_vm *vm, hyi_trace_role role);

/* Owner: the calling thread has just been given the VM. resume: its process (still installed)
 * runs on, so a process span opens for it. */
void hyi_trace_own_begin(hy_vm *vm, hyi_trace_how how, bool resume);
/* Owner: the calling thread is about to give the VM up (closes its process span too). */
void hyi_trace_own_end(hy_vm *vm);

/* Owner: a foreign call starts (before hyi_callout_begin): ends the ownership span unless the
 * call keeps the VM, and opens a callout span named after the function (name, len bytes). */
void hyi_trace_callout_begin(hy_vm *vm, const char *name, size_t len, hyi_trace_call mode);
/* Any thread: the foreign function returned (before hyi_callout_end). */
void hyi_trace_callout_end(hy_vm *vm);
/* Owner: the scheduler found nothing to run and is about to sleep without the VM (ends the
 * ownership span). */
void hyi_trace_idle_begin(hy_vm *vm);
/* Any thread: the idle sleep ended (before owning the VM again). */
void hyi_trace_idle_end(hy_vm *vm);
/* Any thread: C calls back into the VM (before hyi_callback_enter). */
void hyi_trace_callback_wait(hy_vm *vm);
/* Owner: a callback from C runs / ends (inside an ownership span). */
void hyi_trace_callback_begin(hy_vm *vm);
void hyi_trace_callback_end(hy_vm *vm);

/* Owner: a worker has just taken the VM over from the callout in flight (an instant naming that
 * callout; also begins the worker's ownership span). */
void hyi_trace_takeover(hy_vm *vm);
/* Any thread (the heartbeat): an instant saying why a worker was woken. */
void hyi_trace_wake_worker(hy_vm *vm, bool delay_due);

/* Owner: process `id` (0 = none) is now the installed one. */
void hyi_trace_process(hy_vm *vm, uint32_t id, int priority);

/* Owner: a collection that began at start_ns and just ended; heap bytes in use before and
 * after it, and bytes it moved from new to old space. */
void hyi_trace_gc(hy_vm *vm, hyi_trace_gc_kind kind, uint64_t start_ns, uint64_t bytes_before,
                  uint64_t bytes_after, uint64_t bytes_promoted);

#endif
