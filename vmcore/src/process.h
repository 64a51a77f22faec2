/*
 * process.h -- Smalltalk processes (green threads) of one VM: the process table, run queues by
 * priority, semaphores, delays, external semaphores, and the scheduler loop that every thread
 * owning the VM runs.
 *
 * Invariants:
 *  - A process is identified by its id (index in the table, >= 1); the Smalltalk Process object
 *    holds the id in its first field. Records never move while a thread uses them by pointer
 *    only within one owned stretch (the table may grow between).
 *  - Exactly one process is installed (its stack is vm->stack) while a thread runs Smalltalk;
 *    every other process's stack is saved in its record and scanned by the GC from there.
 *  - A process runs at "top level" when its only C-level interpreter entry is the scheduler's:
 *    only such a process can be switched out and later resumed by any thread. A process that
 *    is inside a nested C-level run (an ensure: block, a callback) or inside a callout is bound
 *    to its thread until that returns.
 *  - Run queues and process states change only on the owning thread. Other threads only set
 *    atomic flags (external semaphore signals, attention) and post semaphores.
 */
#ifndef HYDRA_PROCESS_H
#define HYDRA_PROCESS_H

#include "interp.h"
#include "vm.h"

#define HYI_PRIORITIES 100          /* priorities 1 .. 100 */
#define HYI_DEFAULT_PRIORITY 40

typedef enum hyi_pstate {
    HYI_PS_FREE = 0,     /* record unused */
    HYI_PS_RUNNABLE,     /* in a run queue */
    HYI_PS_RUNNING,      /* installed on a thread */
    HYI_PS_WAITING,      /* in a semaphore's queue */
    HYI_PS_DELAYED,      /* in the timer list */
    HYI_PS_SUSPENDED,    /* not runnable until resumed */
    HYI_PS_CALLOUT,      /* running on its bound thread inside a foreign call */
    HYI_PS_TERMINATED,
} hyi_pstate;

typedef struct hyi_process {
    hyi_stack stack;         /* saved registers and stacks while not installed */
    hyi_oop obj;             /* the Smalltalk Process (a root) */
    hyi_oop sem;             /* the Semaphore it waits on, or 0 */
    uint64_t wake_ns;        /* DELAYED: when to become runnable */
    uint32_t priority;
    hyi_pstate state;
    uint32_t next;           /* run queue / semaphore / timer list link (0 = none) */
    uint32_t bound_thread;   /* thread index it must run on, 0 = any */
    uint32_t nested;         /* nested C-level runs in flight (ensure blocks, callbacks) */
    bool main;               /* the program's main process */
    bool stop_sent;          /* a stop request has unwound it (hy_vm_request_stop) */
} hyi_process;

typedef struct hyi_sched hyi_sched;

bool hyi_sched_init(hy_vm *vm);
void hyi_sched_fini(hy_vm *vm);
void hyi_sched_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg);

/* The installed process (0 if none) and a record by id (NULL if none). */
static inline uint32_t hyi_sched_current(hy_vm *vm) { return vm->current_process; }
hyi_process *hyi_sched_proc(hy_vm *vm, uint32_t id);

/* Control primitives of processes (handled by the interpreter, which switches processes);
 * numbered apart from interp.c's own control codes. */
enum {
    HYI_CTL_YIELD = 100, HYI_CTL_SEM_WAIT, HYI_CTL_SEM_SIGNAL, HYI_CTL_DELAY_WAIT,
    HYI_CTL_PROCESS_RESUME, HYI_CTL_PROCESS_SUSPEND, HYI_CTL_PROCESS_TERMINATE,
};
enum {
    HYI_SCHED_OP_YIELD, HYI_SCHED_OP_WAIT, HYI_SCHED_OP_SIGNAL, HYI_SCHED_OP_DELAY,
    HYI_SCHED_OP_RESUME, HYI_SCHED_OP_SUSPEND, HYI_SCHED_OP_TERMINATE,
};

/* What the running process must do after a scheduler operation or an attention poll. */
typedef enum hyi_sched_act {
    HYI_SCHED_CONTINUE,   /* go on */
    HYI_SCHED_SWITCH,     /* stay runnable, but let a higher-priority process run */
    HYI_SCHED_BLOCK,      /* it waits (semaphore, delay, suspended): switch to another */
    HYI_SCHED_TERMINATE,  /* it terminates itself */
    HYI_SCHED_HANDBACK,   /* a waiting thread gets the VM: requeue and leave */
    HYI_SCHED_FAIL,       /* the primitive failed (vm->prim_message) */
} hyi_sched_act;

/* The attention word was set: serve delays, external signals and waiting threads. */
hyi_sched_act hyi_sched_poll(hy_vm *vm);
/* Process control primitive op on args[0..nargs] (receiver first); *result is its answer. */
hyi_sched_act hyi_sched_control(hy_vm *vm, int op, hyi_oop *args, uint32_t nargs, hyi_oop *result);
/* The installed process leaves the CPU: saved, and requeued when requeue (it stays runnable). */
void hyi_sched_switch_out(hy_vm *vm, bool requeue);
/* The installed process blocks inside a nested C-level run: run other processes on this thread
 * until it is runnable, then reinstall it. */
hyi_run hyi_sched_block_nested(hy_vm *vm);
/* Make process id the installed one again (a callout returned after a takeover). */
void hyi_sched_reinstall(hy_vm *vm, uint32_t id);
/* Any thread: signal external semaphore index (1-based, from Semaphore>>registerExternal). */
void hyi_sched_signal_external(hy_vm *vm, uint32_t index);
/* A callback from C begins on the owning thread: make `own` (the process of this thread's
 * callout in flight) current, or, when 0, a fresh process bound to this thread; answers that
 * fresh process (to end with hyi_sched_callback_leave), or 0. */
uint32_t hyi_sched_callback_enter(hy_vm *vm, uint32_t own);
void hyi_sched_callback_leave(hy_vm *vm, uint32_t temp);

/* Start the heartbeat if needed, or wake it to look again. */
void hyi_heartbeat_kick(hy_vm *vm);
/* A callout declared blocking started (any thread may call): wake a worker when a process can
 * run (always when force). */
void hyi_sched_handoff(hy_vm *vm, bool force);
/* Whether a worker would find something to do: a runnable process or a pending external signal. */
bool hyi_sched_work_pending(hy_vm *vm);

/* Run the program's main process (`receiver selector arg`) and every other process until the
 * main process ends or the program exits; on the calling thread plus workers. */
hyi_run hyi_sched_run_main(hy_vm *vm, hyi_oop receiver, hyi_oop selector, hyi_oop arg);

#endif
