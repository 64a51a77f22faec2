/*
 * thread.h -- the threaded VM: which OS thread owns a VM (vmOwner), foreign calls that disown
 * it (callouts), C code that calls back into it (callbacks), the worker pool and the heartbeat.
 * DESIGN.md section 4 is the protocol; tests/model holds its Promela model.
 *
 * Invariants:
 *  - At most one thread owns a VM; only the owner touches the heap, the interpreter state and
 *    any field of hy_vm not marked otherwise.
 *  - Between hyi_callout_begin and hyi_callout_end the calling thread does not own the VM: it
 *    must not touch any heap object except pinned bytes it was given, and every oop it needs
 *    afterwards must be re-read from a GC root (the value stack, HYI_ROOT) after the end,
 *    because the VM may collect garbage meanwhile.
 *  - The disown/own fast path (nobody else wanted the VM during the call) takes no syscall
 *    and no locked instruction.
 */
#ifndef HYDRA_THREAD_H
#define HYDRA_THREAD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct hy_vm hy_vm;

/* One callout in flight, on the stack of the calling thread. */
typedef struct hyi_callout {
    uint64_t seq;        /* the VM's callout counter when the call started */
    uint32_t thread;     /* index of the calling thread */
    uint32_t process;    /* the process making the call (reinstalled when it returns) */
    int priority;        /* its priority (0 for an idle scheduler thread) */
} hyi_callout;

/* Start a foreign call on the owning thread: the VM is released (vmOwner := 0). blocking: the
 * call is known to block (a channel receive...): hand the VM to a worker at once when another
 * process can run, instead of waiting for the heartbeat. */
void hyi_callout_begin(hy_vm *vm, hyi_callout *c, bool blocking);
/* The foreign call returned: own the VM again, waiting if another thread owns it. */
void hyi_callout_end(hy_vm *vm, hyi_callout *c);
/* hyi_callout_begin, ffi_call(cif, fn, rv, values), hyi_callout_end: a whole foreign call as a
 * callout, in one function so that the fast path stays in registers. cif is a prepared libffi
 * ffi_cif (void * here: no libffi types in this header). */
void hyi_callout_ffi(hy_vm *vm, bool blocking, void *cif, void (*fn)(void), void *rv, void **values);
/* The same for a function called directly (foreign.c: integer and pointer arguments only),
 * with its six integer argument registers w; answers its integer result register. */
typedef uint64_t (*hyi_direct_fn)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
uint64_t hyi_callout_direct(hy_vm *vm, bool blocking, hyi_direct_fn fn, const uint64_t *w);

/* A callback from C, on any thread (the thread of a callout in flight, or a foreign thread):
 * own the VM, waiting as long as needed. The state lives on the caller's C stack. */
typedef struct hyi_callback_state {
    uint32_t thread;
    uint32_t temp_process; /* a process made for a callback from a foreign thread, or 0 */
    bool already_owned;   /* the thread owned the VM already (a call that kept it) */
} hyi_callback_state;
void hyi_callback_enter(hy_vm *vm, hyi_callback_state *st);
void hyi_callback_leave(hy_vm *vm, hyi_callback_state *st);

/* Per-VM thread state (vm->threads): created with the VM, freed with it. */
bool hyi_threads_init(hy_vm *vm);
void hyi_threads_fini(hy_vm *vm);
/* The calling thread owns the VM from now on (waiting if needed) / gives it up. */
bool hyi_thread_attach(hy_vm *vm);
void hyi_thread_detach(hy_vm *vm);

/* For the scheduler (process.c). */
void hyi_thread_idle_begin(hy_vm *vm, hyi_callout *c);  /* hyi_callout_begin, not counted */
uint32_t hyi_thread_self(hy_vm *vm);                 /* index of the calling thread */
/* Whether process is inside a foreign call declared blocking, on some thread (owner only). */
bool hyi_thread_process_waits(hy_vm *vm, uint32_t process);
int hyi_thread_waiting_priority(hy_vm *vm);          /* priority of the first waiter, -1 if none */
bool hyi_thread_in_callout(hy_vm *vm, uint64_t *seq, bool *blocking); /* unowned inside callout *seq */
bool hyi_thread_try_takeover(hy_vm *vm);             /* a worker owns the VM left in a callout */
void hyi_thread_handback(hy_vm *vm);                 /* give the VM to the first waiter */
void hyi_thread_own_again(hy_vm *vm);                /* own the VM (queue at the lowest priority) */
void hyi_thread_release_worker(hy_vm *vm);           /* a worker leaves the VM */
void hyi_thread_count_heartbeat(hy_vm *vm);
/* A full barrier on every thread of the process (membarrier), for the slow side of a fence-free
 * fast path. */
void hyi_thread_heavy_barrier(hy_vm *vm);
/* A process bound to `thread` became runnable (the owner says so); that thread, when it next
 * asks for the VM, asks with that priority. */
void hyi_thread_note_bound(hy_vm *vm, uint32_t thread, int priority);
int hyi_thread_take_bound_priority(hy_vm *vm);
void hyi_thread_count_worker(hy_vm *vm);

/* Counters of the threaded VM (readable from Smalltalk and C). */
typedef struct hyi_thread_stats {
    uint64_t callouts, takeovers, handbacks, waits, wait_ns, heartbeats, workers;
} hyi_thread_stats;
void hyi_thread_stats_get(hy_vm *vm, hyi_thread_stats *out);

#endif
