/*
 * process.c -- processes, run queues, semaphores, delays, external semaphores, the scheduler
 * loop, the worker pool and the heartbeat of one VM (process.h, DESIGN.md sections 3 and 4).
 *
 * The scheduler loop runs on whichever thread owns the VM: it installs the best runnable
 * process and interprets it until the process blocks, yields, ends or must give the VM to a
 * waiting thread. When nothing can run it releases the VM and sleeps until a delay is due, an
 * external semaphore is signalled or the program ends.
 */
#include "process.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "foreign.h"
#include "interp.h"
#include "prims.h"
#include "thread.h"
#include "trace.h"

/* Smalltalk-side layouts (images/core). */
enum { PROC_ID = 0 };                                     /* Process: | id name | */
enum { SEM_SIGNALS = 0, SEM_FIRST = 1, SEM_LAST = 2 };     /* Semaphore: | signals first last | */
enum { DELAY_MS = 0 };                                    /* Delay: | milliseconds | */

#define MAX_EXTERNAL 256
#define DEFAULT_WORKERS 16

struct hyi_sched {
    hyi_process *procs;          /* by id; [0] unused */
    uint32_t nprocs, cap;
    uint32_t free_ids;           /* list of free records through next */
    uint32_t runq_head[HYI_PRIORITIES + 1], runq_tail[HYI_PRIORITIES + 1];
    uint32_t timers;             /* DELAYED processes by wake_ns */
    _Atomic uint64_t next_timer; /* wake_ns of the first timer, 0 = none (read by the heartbeat) */
    _Atomic bool hb_parked;
    _Atomic bool tick;           /* a heartbeat tick since the last poll (time slicing) */
    uint32_t current;            /* installed process */
    uint32_t main;
    _Atomic uint32_t nrunnable;  /* processes in run queues (read by the heartbeat) */
    _Atomic bool done;           /* the program has ended */
    _Atomic bool running;        /* a program runs (the heartbeat may be needed) */
    bool stop_woken;             /* a stop request made the waiting main process runnable */
    bool stop_released;          /* a stop ran the calls at exit for a main process in a blocking call */
    _Atomic bool main_ended;     /* the main process has returned or unwound (any thread) */
    hyi_run main_status;
    hyi_oop fork_tramp;          /* `SEND #value; RETURN_TOP` for a forked block */
    hyi_oop main_tramp;          /* `SEND selector:; RETURN_TOP` for the main process */

    /* External semaphores: any thread may signal without a lock. */
    hyi_oop external[MAX_EXTERNAL];
    _Atomic uint32_t ext_pending[MAX_EXTERNAL];
    uint32_t nexternal;

    /* Sleeping while idle, and the heartbeat. */
    pthread_mutex_t idle_lock;
    pthread_cond_t idle_cond;
    _Atomic uint32_t idle_sleepers; /* changed under idle_lock; read without it by signallers */
    bool wakeup;                  /* under idle_lock: something happened (for idle threads) */
    uint64_t kicks;               /* under idle_lock: wake-ups so far (for the heartbeat) */
    pthread_t heartbeat;
    bool heartbeat_started;
    _Atomic bool stop_heartbeat;
    uint64_t beat_ns;

    /* Workers. */
    pthread_mutex_t worker_lock;  /* starting workers (the heartbeat and callout threads both may) */
    pthread_t workers[64];
    sem_t worker_sem;
    _Atomic uint32_t nworkers, idle_workers;
    uint32_t max_workers;
};

static hyi_sched *S(hy_vm *vm) { return vm->sched; }

/* The installed process, mirrored in hy_vm for the callout fast path. */
static void set_current(hy_vm *vm, uint32_t id) {
    hyi_sched *s = vm->sched;
    s->current = id;
    vm->current_process = id;
    vm->current_priority = id ? (int)s->procs[id].priority : 0;
    if (hyi_tracing(vm)) hyi_trace_process(vm, id, vm->current_priority);
}

hyi_process *hyi_sched_proc(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    return id && id < s->nprocs && s->procs[id].state != HYI_PS_FREE ? &s->procs[id] : NULL;
}



/* ---- Attention -------------------------------------------------------------------------- */

static void attention(hy_vm *vm) { atomic_store_explicit(&vm->attention, 1, memory_order_release); }

static void wake_idle(hyi_sched *s) {
    pthread_mutex_lock(&s->idle_lock);
    s->wakeup = true;
    s->kicks++;
    pthread_cond_broadcast(&s->idle_cond);
    pthread_mutex_unlock(&s->idle_lock);
}

/* ---- Process table and run queues ------------------------------------------------------ */

static uint32_t alloc_id(hyi_sched *s) {
    if (s->free_ids) {
        uint32_t id = s->free_ids;
        s->free_ids = s->procs[id].next;
        memset(&s->procs[id], 0, sizeof s->procs[id]);
        return id;
    }
    if (s->nprocs == s->cap) {
        uint32_t cap = s->cap * 2;
        hyi_process *np = realloc(s->procs, cap * sizeof *np);
        if (!np) return 0;
        memset(np + s->cap, 0, (cap - s->cap) * sizeof *np);
        s->procs = np;
        s->cap = cap;
    }
    return s->nprocs++;
}

static void runq_push(hyi_sched *s, uint32_t id, bool front) {
    hyi_process *p = &s->procs[id];
    uint32_t pr = p->priority;
    p->state = HYI_PS_RUNNABLE;
    p->next = 0;
    if (!s->runq_head[pr]) {
        s->runq_head[pr] = s->runq_tail[pr] = id;
    } else if (front) {
        p->next = s->runq_head[pr];
        s->runq_head[pr] = id;
    } else {
        s->procs[s->runq_tail[pr]].next = id;
        s->runq_tail[pr] = id;
    }
    atomic_fetch_add_explicit(&s->nrunnable, 1, memory_order_relaxed);
}

static bool runq_remove(hyi_sched *s, uint32_t id) {
    uint32_t pr = s->procs[id].priority, prev = 0;
    for (uint32_t q = s->runq_head[pr]; q; prev = q, q = s->procs[q].next) {
        if (q != id) continue;
        if (prev) s->procs[prev].next = s->procs[q].next;
        else s->runq_head[pr] = s->procs[q].next;
        if (s->runq_tail[pr] == id) s->runq_tail[pr] = prev;
        s->procs[id].next = 0;
        atomic_fetch_sub_explicit(&s->nrunnable, 1, memory_order_relaxed);
        return true;
    }
    return false;
}

/* The best runnable process this thread may run (highest priority, FIFO), or 0. */
static uint32_t runq_pick(hyi_sched *s, uint32_t thread, uint32_t min_priority) {
    for (uint32_t pr = HYI_PRIORITIES; pr >= min_priority && pr > 0; pr--)
        for (uint32_t q = s->runq_head[pr]; q; q = s->procs[q].next)
            if (!s->procs[q].bound_thread || s->procs[q].bound_thread == thread) {
                runq_remove(s, q);
                return q;
            }
    return 0;
}

static uint32_t best_runnable_priority(hyi_sched *s) {
    for (uint32_t pr = HYI_PRIORITIES; pr > 0; pr--)
        if (s->runq_head[pr]) return pr;
    return 0;
}

/* ---- Installing processes ----------------------------------------------------------------- */

static void save_current(hy_vm *vm) {
    hyi_sched *s = S(vm);
    if (!s->current) return;
    s->procs[s->current].stack = vm->stack;
    set_current(vm, 0);
}

static void install(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    if (s->current == id) return;
    /* A process still installed while another comes in was left by a thread that went into a
     * foreign call: it stays bound to that call until it returns. */
    if (s->current) s->procs[s->current].state = HYI_PS_CALLOUT;
    save_current(vm);
    vm->stack = s->procs[id].stack;
    s->procs[id].state = HYI_PS_RUNNING;
    set_current(vm, id);
}

/* Push the bottom frame of a new process: `receiver <tramp selector> arg?`. */
static void push_base_frame(hy_vm *vm, hyi_stack *st, hyi_oop tramp, hyi_oop receiver, const hyi_oop *arg) {
    hyi_oop *fp = st->sp + 1;
    fp[0] = vm->nil;
    fp[1] = receiver;
    uint32_t n = 0;
    if (arg) fp[2 + n++] = *arg;
    st->sp = fp + 1 + n;
    hyi_frame *fr = &st->frames[st->nframes++];
    memset(fr, 0, sizeof *fr);
    fr->method = hyi_m(tramp);
    fr->ip = hyi_method_code(fr->method);
    fr->fp = fp;
    fr->sp = st->sp;
    fr->serial = ++vm->next_serial;
    fr->flags = HYI_FRAME_BASE;
}

/* A new suspended process running `block value`; 0 when out of memory. */
static uint32_t new_process(hy_vm *vm, hyi_oop process_obj, hyi_oop block, uint32_t priority) {
    hyi_sched *s = S(vm);
    uint32_t id = alloc_id(s);
    if (!id) return 0;
    hyi_process *p = &s->procs[id];
    size_t slots = vm->config.stack_slots / 4;
    if (!hyi_interp_stack_init(&p->stack, slots)) {
        p->next = s->free_ids;
        s->free_ids = id;
        return 0;
    }
    p->obj = process_obj;
    p->priority = priority;
    p->state = HYI_PS_SUSPENDED;
    push_base_frame(vm, &p->stack, s->fork_tramp, block, NULL);
    return id;
}

static void free_process(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    hyi_process *p = &s->procs[id];
    if (s->current == id) set_current(vm, 0);
    if (!p->main) hyi_interp_stack_fini(&p->stack);
    if (hyi_is_ptr(p->obj) && p->obj != vm->nil) hyi_store(vm, p->obj, PROC_ID, vm->nil);
    memset(p, 0, sizeof *p);
    p->state = HYI_PS_FREE;
    p->next = s->free_ids;
    s->free_ids = id;
}

/* ---- Setup -------------------------------------------------------------------------------- */

static void *heartbeat_main(void *arg);

bool hyi_sched_init(hy_vm *vm) {
    hyi_sched *s = calloc(1, sizeof *s);
    if (!s) return false;
    s->cap = 16;
    s->nprocs = 1;
    s->procs = calloc(s->cap, sizeof *s->procs);
    if (!s->procs) { free(s); return false; }
    pthread_mutex_init(&s->idle_lock, NULL);
    pthread_cond_init(&s->idle_cond, NULL);
    sem_init(&s->worker_sem, 0, 0);
    pthread_mutex_init(&s->worker_lock, NULL);
    s->beat_ns = 1000000000u / (vm->config.heartbeat_hz ? vm->config.heartbeat_hz : 1000);
    s->max_workers = vm->config.max_workers ? vm->config.max_workers : DEFAULT_WORKERS;
    if (s->max_workers > 64) s->max_workers = 64;
    vm->sched = s;
    return true;
}

void hyi_sched_fini(hy_vm *vm) {
    hyi_sched *s = S(vm);
    if (!s) return;
    atomic_store(&s->done, true);
    attention(vm);   /* a process still running elsewhere polls, sees done and ends */
    atomic_store(&s->stop_heartbeat, true);
    wake_idle(s);
    if (s->heartbeat_started) pthread_join(s->heartbeat, NULL);
    pthread_mutex_lock(&s->worker_lock);   /* no worker starts after this */
    uint32_t nw = atomic_load(&s->nworkers);
    pthread_mutex_unlock(&s->worker_lock);
    for (uint32_t i = 0; i < nw; i++) sem_post(&s->worker_sem);
    for (uint32_t i = 0; i < nw; i++) pthread_join(s->workers[i], NULL);
    pthread_mutex_destroy(&s->worker_lock);
    for (uint32_t id = 1; id < s->nprocs; id++)
        if (s->procs[id].state != HYI_PS_FREE && !s->procs[id].main) hyi_interp_stack_fini(&s->procs[id].stack);
    sem_destroy(&s->worker_sem);
    pthread_cond_destroy(&s->idle_cond);
    pthread_mutex_destroy(&s->idle_lock);
    free(s->procs);
    free(s);
    vm->sched = NULL;
}

void hyi_sched_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg) {
    hyi_sched *s = S(vm);
    if (!s) return;
    if (s->fork_tramp) visit(vm, &s->fork_tramp, arg);
    if (s->main_tramp) visit(vm, &s->main_tramp, arg);
    for (uint32_t i = 0; i < s->nexternal; i++) if (s->external[i]) visit(vm, &s->external[i], arg);
    for (uint32_t id = 1; id < s->nprocs; id++) {
        hyi_process *p = &s->procs[id];
        if (p->state == HYI_PS_FREE) continue;
        if (p->obj) visit(vm, &p->obj, arg);
        if (p->sem) visit(vm, &p->sem, arg);
        /* The installed process's stack is vm->stack, visited by the interpreter. */
        if (id != s->current) hyi_interp_visit_stack(vm, &p->stack, visit, arg);
    }
}

/* ---- Semaphores and delays ---------------------------------------------------------------- */

static bool is_semaphore(hy_vm *vm, hyi_oop o) {
    (void)vm;
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_SLOTS && hyi_size(o) >= 3 && hyi_is_smi(hyi_slots(o)[SEM_SIGNALS]);
}

/* Make process id runnable; true when it should preempt the running process. */
static bool make_runnable(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    runq_push(s, id, false);
    uint32_t cur = s->current;
    uint32_t bound = s->procs[id].bound_thread;
    if (bound) hyi_thread_note_bound(vm, bound, (int)s->procs[id].priority);
    if (bound || s->idle_sleepers || atomic_load_explicit(&s->hb_parked, memory_order_relaxed)) wake_idle(s);
    return cur && s->procs[id].priority > s->procs[cur].priority;
}

/* The process a Semaphore's first or last field names, or 0 when it names no process of this
 * VM waiting on sem. (The fields are visible to Smalltalk: a subclass may have written them.) */
static uint32_t sem_waiter(hyi_sched *s, hyi_oop sem, hyi_oop field) {
    if (!hyi_is_smi(field)) return 0;
    intptr_t id = hyi_smi_val(field);
    if (id < 1 || (uint64_t)id >= s->nprocs) return 0;
    hyi_process *p = &s->procs[id];
    return p->state == HYI_PS_WAITING && p->sem == sem ? (uint32_t)id : 0;
}

/* semaphore signal: wake its first waiter or count the signal. */
static bool sem_signal(hy_vm *vm, hyi_oop sem) {
    hyi_sched *s = S(vm);
    uint32_t id = sem_waiter(s, sem, hyi_slots(sem)[SEM_FIRST]);
    if (!id) {
        hyi_oop n = hyi_slots(sem)[SEM_SIGNALS];
        hyi_store(vm, sem, SEM_FIRST, vm->nil);
        hyi_store(vm, sem, SEM_LAST, vm->nil);
        hyi_store(vm, sem, SEM_SIGNALS, hyi_smi((hyi_is_smi(n) && hyi_smi_val(n) > 0 ? hyi_smi_val(n) : 0) + 1));
        return false;
    }
    hyi_process *p = &s->procs[id];
    uint32_t nx = p->next;
    hyi_store(vm, sem, SEM_FIRST, nx ? hyi_smi(nx) : vm->nil);
    if (!nx) hyi_store(vm, sem, SEM_LAST, vm->nil);
    p->sem = 0;
    return make_runnable(vm, id);
}

static void sem_enqueue(hy_vm *vm, hyi_oop sem, uint32_t id) {
    hyi_sched *s = S(vm);
    hyi_process *p = &s->procs[id];
    p->state = HYI_PS_WAITING;
    p->sem = sem;
    p->next = 0;
    uint32_t last = sem_waiter(s, sem, hyi_slots(sem)[SEM_LAST]);
    if (last && last != id) s->procs[last].next = id;
    else hyi_store(vm, sem, SEM_FIRST, hyi_smi(id));
    hyi_store(vm, sem, SEM_LAST, hyi_smi(id));
}

static void proc_sem_unlink(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    hyi_process *p = &s->procs[id];
    hyi_oop sem = p->sem;
    if (!sem) return;
    uint32_t prev = 0;
    hyi_oop f = hyi_slots(sem)[SEM_FIRST];
    for (uint32_t q = sem_waiter(s, sem, f); q && q < s->nprocs; prev = q, q = s->procs[q].next) {
        if (q != id) continue;
        uint32_t nx = s->procs[q].next;
        if (prev) s->procs[prev].next = nx;
        else hyi_store(vm, sem, SEM_FIRST, nx ? hyi_smi(nx) : vm->nil);
        if (hyi_slots(sem)[SEM_LAST] == hyi_smi(id)) hyi_store(vm, sem, SEM_LAST, prev ? hyi_smi(prev) : vm->nil);
        break;
    }
    p->sem = 0;
    p->next = 0;
}

static void timers_changed(hyi_sched *s) {
    atomic_store_explicit(&s->next_timer, s->timers ? s->procs[s->timers].wake_ns : 0, memory_order_release);
}

static void timer_insert(hyi_sched *s, uint32_t id) {
    uint32_t *link = &s->timers;
    while (*link && s->procs[*link].wake_ns <= s->procs[id].wake_ns) link = &s->procs[*link].next;
    s->procs[id].next = *link;
    *link = id;
    timers_changed(s);
}

static void timer_remove(hyi_sched *s, uint32_t id) {
    for (uint32_t *link = &s->timers; *link; link = &s->procs[*link].next)
        if (*link == id) { *link = s->procs[id].next; s->procs[id].next = 0; break; }
    timers_changed(s);
}

/* Wake due delays and signalled external semaphores; true when the running process should
 * give way to a higher-priority one. */
static bool serve_events(hy_vm *vm) {
    hyi_sched *s = S(vm);
    bool preempt = false;
    uint64_t now = hyi_now_ns();
    while (s->timers && s->procs[s->timers].wake_ns <= now) {
        uint32_t id = s->timers;
        s->timers = s->procs[id].next;
        timers_changed(s);
        preempt |= make_runnable(vm, id);
    }
    for (uint32_t i = 0; i < s->nexternal; i++) {
        uint32_t n = atomic_exchange_explicit(&s->ext_pending[i], 0, memory_order_acq_rel);
        while (n-- > 0 && s->external[i]) preempt |= sem_signal(vm, s->external[i]);
    }
    return preempt;
}

/* ---- What the interpreter calls -------------------------------------------------------- */

/* A stop or kill was requested (hy_vm_request_stop): 0 none, 1 stop, 2 kill. The program's
 * exit status becomes the request's (unless it is exiting already). */
static int take_stop_request(hy_vm *vm) {
    int req = atomic_load_explicit(&vm->stop_request, memory_order_acquire);
    if (__builtin_expect(!req, 1)) return 0;
    if (!vm->exiting) vm->exit_code = atomic_load_explicit(&vm->stop_status, memory_order_relaxed);
    if (req == 2) vm->killing = true;
    return req;
}

void hy_vm_request_stop(hy_vm *vm, int exit_status, bool kill) {
    if (!vm || !vm->sched) return;
    hyi_sched *s = S(vm);
    int none = 0;
    atomic_store_explicit(&vm->stop_status, exit_status, memory_order_relaxed);
    if (!atomic_compare_exchange_strong(&vm->stop_request, &none, kill ? 2 : 1) && kill)
        atomic_store(&vm->stop_request, 2);
    attention(vm);
    wake_idle(s);
    /* A VM left unowned inside a long call has nobody to poll: a worker comes to end it. */
    if (atomic_load(&s->running)) hyi_sched_handoff(vm, true);
}

hyi_sched_act hyi_sched_poll(hy_vm *vm) {
    hyi_sched *s = S(vm);
    atomic_store_explicit(&vm->attention, 0, memory_order_relaxed);
    /* A stop unwinds each process once (its ensure: blocks run, and may poll); a kill at once. */
    if (__builtin_expect(take_stop_request(vm) != 0, 0) && s->current &&
        (vm->killing || !s->procs[s->current].stop_sent)) {
        s->procs[s->current].stop_sent = true;
        return HYI_SCHED_TERMINATE;
    }
    /* The program ended while this process was inside a foreign call: it ends too (the main
     * process included, which the program's thread waits for: hyi_sched_run_main). */
    if (__builtin_expect(atomic_load_explicit(&s->done, memory_order_relaxed), 0) && s->current)
        return HYI_SCHED_TERMINATE;
    bool preempt = serve_events(vm);
    uint32_t cur = s->current;
    if (!cur) return HYI_SCHED_CONTINUE;
    hyi_process *p = &s->procs[cur];
    if (hyi_thread_waiting_priority(vm) >= (int)p->priority) return HYI_SCHED_HANDBACK;
    if (preempt) return HYI_SCHED_SWITCH;
    if (atomic_exchange_explicit(&s->tick, false, memory_order_relaxed) && vm->config.timeslice &&
        best_runnable_priority(s) >= p->priority)
        return HYI_SCHED_SWITCH;
    return HYI_SCHED_CONTINUE;
}

hyi_sched_act hyi_sched_control(hy_vm *vm, int op, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    hyi_sched *s = S(vm);
    uint32_t cur = s->current;
    *result = args[0];
    switch (op) {
    case HYI_SCHED_OP_YIELD: {
        if (!cur || !best_runnable_priority(s) || best_runnable_priority(s) < s->procs[cur].priority)
            return HYI_SCHED_CONTINUE;
        return HYI_SCHED_SWITCH;
    }
    case HYI_SCHED_OP_WAIT: {
        hyi_oop sem = args[0];
        if (!is_semaphore(vm, sem)) { hyi_prim_fail(vm, "wait: the receiver is not a Semaphore"); return HYI_SCHED_FAIL; }
        hyi_oop signals = hyi_slots(sem)[SEM_SIGNALS];
        intptr_t n = hyi_is_smi(signals) ? hyi_smi_val(signals) : 0;
        if (n > 0) { hyi_store(vm, sem, SEM_SIGNALS, hyi_smi(n - 1)); return HYI_SCHED_CONTINUE; }
        if (!cur) { hyi_prim_fail(vm, "wait: no process is running"); return HYI_SCHED_FAIL; }
        sem_enqueue(vm, sem, cur);
        return HYI_SCHED_BLOCK;
    }
    case HYI_SCHED_OP_SIGNAL: {
        hyi_oop sem = args[0];
        if (!is_semaphore(vm, sem)) { hyi_prim_fail(vm, "signal: the receiver is not a Semaphore"); return HYI_SCHED_FAIL; }
        return sem_signal(vm, sem) ? HYI_SCHED_SWITCH : HYI_SCHED_CONTINUE;
    }
    case HYI_SCHED_OP_DELAY: {
        hyi_oop d = args[0];
        if (!hyi_is_ptr(d) || hyi_fmt(d) != HYI_FMT_SLOTS || hyi_size(d) < 1 || !hyi_is_smi(hyi_slots(d)[DELAY_MS]) ||
            hyi_smi_val(hyi_slots(d)[DELAY_MS]) < 0) {
            hyi_prim_fail(vm, "wait: the Delay needs a non-negative number of milliseconds");
            return HYI_SCHED_FAIL;
        }
        if (!cur) { hyi_prim_fail(vm, "wait: no process is running"); return HYI_SCHED_FAIL; }
        hyi_process *p = &s->procs[cur];
        p->wake_ns = hyi_now_ns() + (uint64_t)hyi_smi_val(hyi_slots(d)[DELAY_MS]) * 1000000u;
        p->state = HYI_PS_DELAYED;
        timer_insert(s, cur);
        hyi_heartbeat_kick(vm);
        return HYI_SCHED_BLOCK;
    }
    case HYI_SCHED_OP_RESUME: case HYI_SCHED_OP_SUSPEND: case HYI_SCHED_OP_TERMINATE: {
        hyi_oop po = args[0];
        if (!hyi_is_ptr(po) || hyi_fmt(po) != HYI_FMT_SLOTS || hyi_size(po) < 1) {
            hyi_prim_fail(vm, "the receiver is not a Process");
            return HYI_SCHED_FAIL;
        }
        hyi_oop idv = hyi_slots(po)[PROC_ID];
        hyi_process *p = hyi_is_smi(idv) ? hyi_sched_proc(vm, (uint32_t)hyi_smi_val(idv)) : NULL;
        if (!p) {
            if (op == HYI_SCHED_OP_RESUME) { hyi_prim_fail(vm, "resume: the process has ended"); return HYI_SCHED_FAIL; }
            return HYI_SCHED_CONTINUE; /* suspending or terminating an ended process does nothing */
        }
        uint32_t id = (uint32_t)hyi_smi_val(idv);
        if (op == HYI_SCHED_OP_RESUME) {
            if (p->state != HYI_PS_SUSPENDED) return HYI_SCHED_CONTINUE;
            return make_runnable(vm, id) ? HYI_SCHED_SWITCH : HYI_SCHED_CONTINUE;
        }
        if (id == cur) {
            if (op == HYI_SCHED_OP_SUSPEND) { p->state = HYI_PS_SUSPENDED; return HYI_SCHED_BLOCK; }
            return HYI_SCHED_TERMINATE;
        }
        if (p->state == HYI_PS_CALLOUT || p->nested) {
            hyi_prim_fail(vm, "the process is inside a foreign call or callback and cannot be stopped now");
            return HYI_SCHED_FAIL;
        }
        if (p->state == HYI_PS_RUNNABLE) runq_remove(s, id);
        else if (p->state == HYI_PS_WAITING) proc_sem_unlink(vm, id);
        else if (p->state == HYI_PS_DELAYED) timer_remove(s, id);
        if (op == HYI_SCHED_OP_SUSPEND) { p->state = HYI_PS_SUSPENDED; return HYI_SCHED_CONTINUE; }
        if (p->main) { hyi_prim_fail(vm, "terminate: the main process ends with System exit:"); return HYI_SCHED_FAIL; }
        free_process(vm, id);
        return HYI_SCHED_CONTINUE;
    }
    default:
        (void)nargs;
        hyi_prim_fail(vm, "unknown process operation");
        return HYI_SCHED_FAIL;
    }
}

/* ---- Primitives that do not switch processes ---------------------------------------------- */

static hyi_prim_status proc_new(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* Process class>>newFor: aBlock priority: p -- a suspended process. */
    (void)nargs;
    hyi_oop blk = args[1], prio = args[2];
    if (!hyi_is_ptr(blk) || !hyi_is_kind(vm, blk, vm->cls.block)) return hyi_prim_fail(vm, "newFor:priority: needs a Block");
    if (!hyi_is_smi(prio) || hyi_smi_val(prio) < 1 || hyi_smi_val(prio) > HYI_PRIORITIES)
        return hyi_prim_fail(vm, "newFor:priority: the priority must be an Integer 1..%d", HYI_PRIORITIES);
    hyi_oop po = hyi_instantiate(vm, args[0], 0);
    if (!po) return HYI_PRIM_OOM;
    if (hyi_size(po) < 1) return hyi_prim_fail(vm, "newFor:priority: a Process needs its id field");
    HYI_ROOT(vm, &po);
    uint32_t id = new_process(vm, po, args[1], (uint32_t)hyi_smi_val(args[2]));
    HYI_UNROOT(vm, 1);
    if (!id) return HYI_PRIM_OOM;
    hyi_store(vm, po, PROC_ID, hyi_smi(id));
    *result = po;
    return HYI_PRIM_OK;
}

static hyi_process *proc_of(hy_vm *vm, hyi_oop po) {
    if (!hyi_is_ptr(po) || hyi_fmt(po) != HYI_FMT_SLOTS || hyi_size(po) < 1) return NULL;
    hyi_oop idv = hyi_slots(po)[PROC_ID];
    return hyi_is_smi(idv) ? hyi_sched_proc(vm, (uint32_t)hyi_smi_val(idv)) : NULL;
}

static hyi_prim_status proc_priority(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_process *p = proc_of(vm, args[0]);
    *result = p ? hyi_smi(p->priority) : vm->nil;
    return HYI_PRIM_OK;
}

static hyi_prim_status proc_set_priority(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_sched *s = S(vm);
    hyi_process *p = proc_of(vm, args[0]);
    if (!hyi_is_smi(args[1]) || hyi_smi_val(args[1]) < 1 || hyi_smi_val(args[1]) > HYI_PRIORITIES)
        return hyi_prim_fail(vm, "priority: must be an Integer 1..%d", HYI_PRIORITIES);
    if (p) {
        uint32_t id = (uint32_t)(p - s->procs);
        bool queued = p->state == HYI_PS_RUNNABLE && runq_remove(s, id);
        p->priority = (uint32_t)hyi_smi_val(args[1]);
        if (queued) runq_push(s, id, false);
        if (id == s->current) vm->current_priority = (int)p->priority;
    }
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status proc_state(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    static const char *const names[] = { "terminated", "runnable", "running", "waiting", "delayed",
                                         "suspended", "inCallout", "terminated" };
    hyi_process *p = proc_of(vm, args[0]);
    *result = hyi_symbol_c(vm, names[p ? p->state : HYI_PS_TERMINATED]);
    return *result ? HYI_PRIM_OK : HYI_PRIM_OOM;
}

/* Process>>bindToCurrentThread / unbind: run only on the OS thread running now (a library's
 * "UI thread"), or anywhere again. */
static hyi_prim_status proc_bind(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_process *p = proc_of(vm, args[0]);
    if (!p) return hyi_prim_fail(vm, "bindToCurrentThread: the process has ended");
    p->bound_thread = hyi_thread_self(vm);
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status proc_unbind(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_process *p = proc_of(vm, args[0]);
    if (p) p->bound_thread = 0;
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status proc_bound_thread(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_process *p = proc_of(vm, args[0]);
    *result = p && p->bound_thread ? hyi_smi(p->bound_thread) : vm->nil;
    return HYI_PRIM_OK;
}

static hyi_prim_status current_thread(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    *result = hyi_smi(hyi_thread_self(vm));
    return HYI_PRIM_OK;
}

static hyi_prim_status has_ready_process(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    *result = hyi_sched_work_pending(vm) ? vm->true_ : vm->false_;
    return HYI_PRIM_OK;
}

static hyi_prim_status active_process(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    hyi_sched *s = S(vm);
    *result = s->current ? s->procs[s->current].obj : vm->nil;
    return HYI_PRIM_OK;
}

static hyi_prim_status sem_external(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* Semaphore>>registerExternal -- its index for hy_vm_signal_semaphore. */
    (void)nargs;
    hyi_sched *s = S(vm);
    if (!is_semaphore(vm, args[0])) return hyi_prim_fail(vm, "registerExternal: the receiver is not a Semaphore");
    for (uint32_t i = 0; i < s->nexternal; i++)
        if (s->external[i] == args[0]) { *result = hyi_smi(i + 1); return HYI_PRIM_OK; }
    if (s->nexternal == MAX_EXTERNAL) return hyi_prim_fail(vm, "registerExternal: all %d external semaphores are in use", MAX_EXTERNAL);
    s->external[s->nexternal++] = args[0];
    *result = hyi_smi(s->nexternal);
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_counters(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* System threadStats: callouts takeovers handbacks waits waitNs heartbeats workers. */
    (void)args; (void)nargs;
    hyi_thread_stats st;
    hyi_thread_stats_get(vm, &st);
    uint64_t v[7] = { st.callouts, st.takeovers, st.handbacks, st.waits, st.wait_ns, st.heartbeats, st.workers };
    hyi_oop a = hyi_array_new(vm, 7);
    if (!a) return HYI_PRIM_OOM;
    for (int i = 0; i < 7; i++) hyi_slots(a)[i] = hyi_smi((intptr_t)(v[i] & ((1ull << 60) - 1)));
    *result = a;
    return HYI_PRIM_OK;
}

const hyi_prim_def hyi_prims_process[] = {
    { "Process class", "newFor:priority:", proc_new, 0 },
    { "Process", "priority", proc_priority, 0 },
    { "Process", "priority:", proc_set_priority, 0 },
    { "Process", "state", proc_state, 0 },
    { "Process", "resume", NULL, HYI_CTL_PROCESS_RESUME },
    { "Process", "suspend", NULL, HYI_CTL_PROCESS_SUSPEND },
    { "Process", "terminate", NULL, HYI_CTL_PROCESS_TERMINATE },
    { "Process", "bindToCurrentThread", proc_bind, 0 },
    { "Process", "unbind", proc_unbind, 0 },
    { "Process", "boundThread", proc_bound_thread, 0 },
    { "ProcessorScheduler", "activeProcess", active_process, 0 },
    { "ProcessorScheduler", "currentThread", current_thread, 0 },
    { "ProcessorScheduler", "hasReadyProcess", has_ready_process, 0 },
    { "ProcessorScheduler", "yield", NULL, HYI_CTL_YIELD },
    { "Semaphore", "wait", NULL, HYI_CTL_SEM_WAIT },
    { "Semaphore", "signal", NULL, HYI_CTL_SEM_SIGNAL },
    { "Semaphore", "registerExternal", sem_external, 0 },
    { "Delay", "wait", NULL, HYI_CTL_DELAY_WAIT },
    { "System", "threadStats", vm_counters, 0 },
    { NULL, NULL, NULL, 0 },
};

/* ---- External signals --------------------------------------------------------------------- */

static bool external_pending(hyi_sched *s) {
    for (uint32_t i = 0; i < MAX_EXTERNAL; i++)
        if (atomic_load_explicit(&s->ext_pending[i], memory_order_seq_cst)) return true;
    return false;
}

void hyi_sched_signal_external(hy_vm *vm, uint32_t index) {
    hyi_sched *s = S(vm);
    if (index < 1 || index > MAX_EXTERNAL) return;
    atomic_fetch_add_explicit(&s->ext_pending[index - 1], 1, memory_order_seq_cst);
    attention(vm);
    /* Lock-free unless a thread of this VM sleeps idle and must be woken, or the VM sits
     * unowned in a call and a worker must come to serve the signal. */
    if (atomic_load_explicit(&s->idle_sleepers, memory_order_seq_cst)) {
        wake_idle(s);
        return;
    }
    uint64_t seq;
    bool blocking;
    /* Against a blocking call that starts now (it stores in_callout, then looks at ext_pending;
     * all four accesses seq_cst): one of the two sees the other. */
    if (hyi_thread_in_callout(vm, &seq, &blocking)) hyi_sched_handoff(vm, true);
}

/* ---- Heartbeat ---------------------------------------------------------------------------- */

void hyi_heartbeat_kick(hy_vm *vm) {
    hyi_sched *s = S(vm);
    if (!s->heartbeat_started) {
        if (pthread_create(&s->heartbeat, NULL, heartbeat_main, vm) == 0) s->heartbeat_started = true;
        return;
    }
    wake_idle(s);
}

static bool start_worker(hy_vm *vm);

/* Get a worker to try to take the VM over: an idle one, else a new one while the pool may
 * grow. With the pool full and every worker busy (inside calls, or on its way back to idle),
 * the post stays pending and the next worker to come back takes it: a wake-up is never lost.
 * One pending post is enough, so a stuck VM does not pile them up. */
static void wake_worker(hy_vm *vm) {
    hyi_sched *s = S(vm);
    if (atomic_load(&s->idle_workers) > 0) {
        sem_post(&s->worker_sem);
        return;
    }
    if (start_worker(vm)) return;
    int pending = 0;
    sem_getvalue(&s->worker_sem, &pending);
    if (pending <= 0) sem_post(&s->worker_sem);
    /* No worker to spare: a thread of this VM that sleeps idle (its own thread, or a worker
     * waiting for a delay) can take the VM as well. */
    if (atomic_load_explicit(&s->idle_sleepers, memory_order_seq_cst)) wake_idle(s);
}

/* Called by the owner, which alone registers external semaphores: only the registered ones
 * are looked at (serve_events ignores the others), usually none. */
bool hyi_sched_work_pending(hy_vm *vm) {
    hyi_sched *s = S(vm);
    if (atomic_load_explicit(&s->nrunnable, memory_order_relaxed) > 0) return true;
    for (uint32_t i = 0; i < s->nexternal; i++)
        if (atomic_load_explicit(&s->ext_pending[i], memory_order_seq_cst)) return true;
    return false;
}

void hyi_sched_handoff(hy_vm *vm, bool force) {
    hyi_sched *s = S(vm);
    if (force || atomic_load_explicit(&s->nrunnable, memory_order_relaxed) > 0) wake_worker(vm);
}

/* Each beat: make due delays known (attention), and when the VM has sat in the same callout for
 * a whole beat while processes could run, wake (or start) a worker to take it over. The
 * heartbeat parks (no timer, no CPU) while nothing can need it: no process runnable, no delay
 * pending, and the VM idle or only inside callouts declared blocking. */
static bool heartbeat_needed_when(hy_vm *vm, bool idle) {
    hyi_sched *s = S(vm);
    /* A due delay wakes an idle thread by itself; a busy VM needs the beat to notice it. */
    if (!idle && atomic_load_explicit(&s->next_timer, memory_order_acquire)) return true;
    uint64_t seq;
    bool blocking;
    bool in_callout = hyi_thread_in_callout(vm, &seq, &blocking);
    bool runnable = atomic_load_explicit(&s->nrunnable, memory_order_relaxed) > 0;
    /* A callout that may run long is watched; one declared blocking has handed the VM off,
     * but is watched too while a process waits to run (the hand-off found every worker busy). */
    if (in_callout) return !blocking || runnable;
    /* Running: time slicing needs the ticks; a callout that starts kicks the heartbeat awake
     * (hyi_callout_begin). */
    return !idle && vm->config.timeslice && atomic_load_explicit(&s->running, memory_order_relaxed);
}

/* Called with idle_lock held. */
static bool heartbeat_needed_locked(hy_vm *vm) { return heartbeat_needed_when(vm, S(vm)->idle_sleepers > 0); }

static bool heartbeat_needed(hy_vm *vm) {
    hyi_sched *s = S(vm);
    pthread_mutex_lock(&s->idle_lock);
    bool r = heartbeat_needed_locked(vm);
    pthread_mutex_unlock(&s->idle_lock);
    return r;
}

static void *heartbeat_main(void *arg) {
    hy_vm *vm = arg;
    hyi_sched *s = S(vm);
    uint64_t last_seq = 0;
    bool half_beat = false;
    uint32_t quiet = 0;   /* consecutive looks that found nothing to watch */
    if (hyi_tracing(vm)) hyi_trace_role_set(vm, HYI_TRACE_HEARTBEAT);
    while (!atomic_load(&s->stop_heartbeat)) {
        /* Park only after a while with nothing to watch, so that a VM alternating quickly
         * between calls and other work does not make it park and wake at every beat. */
        bool needed = heartbeat_needed(vm);
        quiet = needed ? 0 : quiet + 1;
        if (!needed && quiet >= 16) {
            pthread_mutex_lock(&s->idle_lock);
            atomic_store(&s->hb_parked, true);
            atomic_store_explicit(&vm->heartbeat_parked, true, memory_order_seq_cst);
            /* Against a callout that starts now: it stores in_callout and then reads
             * heartbeat_parked with no fence; this barrier orders our side of that pair. */
            hyi_thread_heavy_barrier(vm);
            /* Re-check under the lock: a kick between the check and the wait is not lost. */
            uint64_t seen = s->kicks;
            while (s->kicks == seen && !atomic_load(&s->stop_heartbeat) && !heartbeat_needed_locked(vm))
                pthread_cond_wait(&s->idle_cond, &s->idle_lock);
            atomic_store(&s->hb_parked, false);
            atomic_store_explicit(&vm->heartbeat_parked, false, memory_order_relaxed);
            pthread_mutex_unlock(&s->idle_lock);
            last_seq = 0;
            quiet = 0;
            continue;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        /* Half a beat after first seeing a callout, look again: a call that has lasted that
         * long is taken over (shorter calls never cause a thread switch). */
        uint64_t ns = (uint64_t)ts.tv_nsec + (half_beat ? s->beat_ns / 2 : s->beat_ns);
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_mutex_lock(&s->idle_lock);
        pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &ts);
        pthread_mutex_unlock(&s->idle_lock);
        if (atomic_load(&s->stop_heartbeat)) break;
        hyi_thread_count_heartbeat(vm);
        atomic_store_explicit(&s->tick, true, memory_order_relaxed);
        uint64_t due = atomic_load_explicit(&s->next_timer, memory_order_acquire);
        uint64_t seq;
        bool blocking;
        bool in_callout = hyi_thread_in_callout(vm, &seq, &blocking);
        if (due && hyi_now_ns() >= due) {
            attention(vm);
            wake_idle(s);
            /* Nobody runs the VM (it sits in a call): a worker serves the delay. */
            if (in_callout) {
                if (hyi_tracing(vm)) hyi_trace_wake_worker(vm, true);
                wake_worker(vm);
            }
        } else if (vm->config.timeslice) {
            attention(vm);
        }
        half_beat = false;
        if (in_callout && (!blocking || atomic_load_explicit(&s->nrunnable, memory_order_relaxed) > 0)) {
            /* The same callout seen twice, and work to do: take the VM over. */
            if (seq == last_seq) {
                if (atomic_load_explicit(&s->nrunnable, memory_order_relaxed) > 0) {
                    if (hyi_tracing(vm)) hyi_trace_wake_worker(vm, false);
                    wake_worker(vm);
                }
            } else {
                half_beat = true;
            }
            last_seq = seq;
        } else {
            last_seq = 0;
        }
    }
    return NULL;
}

/* ---- The scheduler loop -------------------------------------------------------------------- */

/* Sleep without the VM until something may have become runnable. */
static void idle_wait(hy_vm *vm, uint32_t self) {
    hyi_sched *s = S(vm);
    (void)self;
    uint64_t deadline = s->timers ? s->procs[s->timers].wake_ns : 0;
    hyi_callout c;
    if (hyi_tracing(vm)) hyi_trace_idle_begin(vm);
    /* Counted as a sleeper before the VM is let go: whoever takes it next and makes a process
     * runnable (make_runnable) then wakes this thread, which otherwise could fall asleep just
     * after that, with the process left to a worker pool that may have none to spare. (seq_cst
     * with the signaller's increment and read: a signal either sees this sleeper or is seen
     * here.) */
    pthread_mutex_lock(&s->idle_lock);
    atomic_fetch_add_explicit(&s->idle_sleepers, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&s->idle_lock);
    hyi_thread_idle_begin(vm, &c);
    pthread_mutex_lock(&s->idle_lock);
    while (!s->wakeup && !atomic_load(&s->done) && !external_pending(s)) {
        if (deadline) {
            uint64_t now = hyi_now_ns();
            if (now >= deadline) break;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t ns = (uint64_t)ts.tv_nsec + (deadline - now);
            ts.tv_sec += (time_t)(ns / 1000000000u);
            ts.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&s->idle_cond, &s->idle_lock, &ts);
        } else {
            pthread_cond_wait(&s->idle_cond, &s->idle_lock);
        }
    }
    s->wakeup = false;
    atomic_fetch_sub_explicit(&s->idle_sleepers, 1, memory_order_seq_cst);
    s->kicks++;
    pthread_cond_broadcast(&s->idle_cond);   /* the heartbeat may be needed again */
    pthread_mutex_unlock(&s->idle_lock);
    c.priority = hyi_thread_take_bound_priority(vm);   /* a process bound here may be waiting */
    if (hyi_tracing(vm)) hyi_trace_idle_end(vm);
    hyi_callout_end(vm, &c);
    if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_IDLE_END, false);
}

/* Run processes on this thread until the program ends, or (until != 0) until process `until`
 * is runnable again; or (worker) until the VM must be handed back. */
/* A stop was requested while the main process waits (semaphore, delay, suspended): make it
 * runnable, once, so that its first poll unwinds it and its ensure: blocks run. False when
 * there is nothing left to wait for: the program may end now. */
static bool wake_main_to_stop(hy_vm *vm) {
    hyi_sched *s = S(vm);
    hyi_process *p = s->main ? &s->procs[s->main] : NULL;
    if (!p || p->state == HYI_PS_FREE || p->state == HYI_PS_TERMINATED) return false;
    if (!s->stop_woken) {
        s->stop_woken = true;
        if (p->state == HYI_PS_WAITING) proc_sem_unlink(vm, s->main);
        else if (p->state == HYI_PS_DELAYED) timer_remove(s, s->main);
        if (p->state == HYI_PS_WAITING || p->state == HYI_PS_DELAYED || p->state == HYI_PS_SUSPENDED) {
            runq_push(s, s->main, true);
            attention(vm);
        }
    }
    /* Until it has unwound: it is runnable here, or inside a call that polls when it returns. */
    return p->state == HYI_PS_RUNNABLE || p->state == HYI_PS_RUNNING || p->state == HYI_PS_CALLOUT;
}

/* The program has ended (this thread owns the VM): processes still running elsewhere poll,
 * see done and end, and the program's foreign resources go now, before anything waits for a
 * foreign call to return (closing a socket brings back the calls waiting on it, on whichever
 * thread they are, the program's own included). */
static void program_ends(hy_vm *vm) {
    atomic_store(&S(vm)->done, true);
    attention(vm);
    hyi_ffi_run_exit_calls(vm);
}

static hyi_run run_loop(hy_vm *vm, uint32_t until, bool worker) {
    hyi_sched *s = S(vm);
    uint32_t self = hyi_thread_self(vm);
    for (;;) {
        if (atomic_load(&s->done)) return s->main_status;
        if (__builtin_expect(take_stop_request(vm) != 0, 0)) {
            if (vm->killing || !wake_main_to_stop(vm)) {
                /* Killed, or nothing left to unwind: the program ends here. */
                vm->exiting = true;
                s->main_status = HYI_RUN_EXIT;
                program_ends(vm);
                wake_idle(s);
                for (uint32_t i = 0; i < atomic_load(&s->nworkers); i++) sem_post(&s->worker_sem);
                if (s->current) {
                    s->procs[s->current].state = HYI_PS_CALLOUT;
                    save_current(vm);
                }
                return s->main_status;
            }
            if (!s->stop_released && hyi_thread_process_waits(vm, s->main)) {
                /* The main process waits inside a blocking call (a receive without a timeout,
                 * say): it unwinds when the call returns, so the program's foreign resources go
                 * now, to bring back the calls waiting on them (closing a socket ends its
                 * receives). */
                s->stop_released = true;
                hyi_ffi_run_exit_calls(vm);
            }
        }
        /* A process still installed here belongs to a thread inside a foreign call (this thread
         * got the VM from that call's release): keep it out of the way until the call returns. */
        if (s->current) {
            s->procs[s->current].state = HYI_PS_CALLOUT;
            save_current(vm);
        }
        serve_events(vm);
        if (until) {
            hyi_process *u = &s->procs[until];
            if (u->state == HYI_PS_RUNNABLE) { runq_remove(s, until); install(vm, until); return HYI_RUN_OK; }
        }
        uint32_t id = runq_pick(s, self, 1);
        if (!id) {
            if (worker && !s->timers) return HYI_RUN_SWITCH;
            idle_wait(vm, self);
            continue;
        }
        install(vm, id);
        hyi_oop result;
        hyi_run st = hyi_interp_resume(vm, &result);
            hyi_process *p = &s->procs[id];
        switch (st) {
        case HYI_RUN_SWITCH:
            break; /* saved and queued (or blocked) by the interpreter */
        case HYI_RUN_HANDBACK:
            /* A waiting thread gets the VM; this one parks (a worker) or queues for it again. */
            save_current(vm);
            runq_push(s, id, true);
            if (hyi_tracing(vm)) hyi_trace_own_end(vm);
            hyi_thread_handback(vm);
            if (worker) return HYI_RUN_HANDBACK;   /* the VM belongs to the waiter now */
            hyi_thread_own_again(vm);
            if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_OWN_AGAIN, false);
            break;
        default: {
            bool main = p->main;
            if (main || vm->exiting) {
                if (main) atomic_store(&s->main_ended, true);
                s->main_status = st == HYI_RUN_OK ? HYI_RUN_OK : HYI_RUN_EXIT;
                program_ends(vm);
                save_current(vm);
                wake_idle(s);
                for (uint32_t i = 0; i < atomic_load(&s->nworkers); i++) sem_post(&s->worker_sem);
                return s->main_status;
            }
            save_current(vm);
            free_process(vm, id);
        }
        }
    }
}

hyi_run hyi_sched_block_nested(hy_vm *vm) {
    hyi_sched *s = S(vm);
    uint32_t me = s->current;
    save_current(vm);
    s->procs[me].bound_thread = hyi_thread_self(vm);
    hyi_run st = run_loop(vm, me, false);
    s->procs[me].bound_thread = 0;
    if (s->current != me) install(vm, me);
    return st;
}

void hyi_sched_switch_out(hy_vm *vm, bool requeue) {
    hyi_sched *s = S(vm);
    uint32_t me = s->current;
    save_current(vm);
    if (requeue) runq_push(s, me, false);
}

uint32_t hyi_sched_callback_enter(hy_vm *vm, uint32_t own) {
    hyi_sched *s = S(vm);
    if (own && hyi_sched_proc(vm, own)) {
        if (s->current != own) install(vm, own);
        return 0;
    }
    uint32_t id = alloc_id(s);
    if (!id) return 0;
    hyi_process *p = &s->procs[id];
    if (!hyi_interp_stack_init(&p->stack, vm->config.stack_slots / 4)) {
        p->next = s->free_ids;
        s->free_ids = id;
        return 0;
    }
    p->priority = HYI_DEFAULT_PRIORITY;
    p->state = HYI_PS_RUNNABLE;   /* (not queued) */
    p->bound_thread = hyi_thread_self(vm);
    p->obj = vm->nil;
    install(vm, id);
    hyi_oop pname = hyi_symbol_c(vm, "Process");
    hyi_oop pcls = pname ? hyi_global_get(vm, pname) : 0;
    hyi_oop po = pcls ? hyi_instantiate(vm, pcls, 0) : 0;
    if (po && hyi_size(po) >= 1) {
        hyi_store(vm, po, PROC_ID, hyi_smi(id));
        s->procs[id].obj = po;
    }
    return id;
}

void hyi_sched_callback_leave(hy_vm *vm, uint32_t temp) {
    hyi_sched *s = S(vm);
    if (!temp || !hyi_sched_proc(vm, temp)) return;
    if (s->current == temp) {
        s->procs[temp].stack = vm->stack;
        set_current(vm, 0);
    }
    free_process(vm, temp);
}

/* A callout returned on thread `self`: make `id` the installed process again. */
void hyi_sched_reinstall(hy_vm *vm, uint32_t id) {
    hyi_sched *s = S(vm);
    if (atomic_load_explicit(&s->done, memory_order_relaxed)) attention(vm);
    if (!id || s->current == id || !hyi_sched_proc(vm, id)) return;
    install(vm, id);
}

static void *worker_main(void *arg) {
    hy_vm *vm = arg;
    hyi_sched *s = S(vm);
    if (hyi_tracing(vm)) hyi_trace_role_set(vm, HYI_TRACE_WORKER);
    for (;;) {
        atomic_fetch_add(&s->idle_workers, 1);
        while (sem_wait(&s->worker_sem) != 0 && errno == EINTR) {}
        atomic_fetch_sub(&s->idle_workers, 1);
        if (atomic_load(&s->done)) return NULL;
        if (!hyi_thread_try_takeover(vm)) continue;
        if (hyi_tracing(vm)) hyi_trace_takeover(vm);
        /* The VM was idle inside a callout: run other processes until handed back. */
        if (s->current) {
            hyi_process *p = &s->procs[s->current];
            p->state = HYI_PS_CALLOUT;
            save_current(vm);
        }
        if (run_loop(vm, 0, true) != HYI_RUN_HANDBACK) {
            if (hyi_tracing(vm)) hyi_trace_own_end(vm);
            hyi_thread_release_worker(vm);
        }
        if (atomic_load(&s->done)) return NULL;
    }
}

static bool start_worker(hy_vm *vm) {
    hyi_sched *s = S(vm);
    pthread_mutex_lock(&s->worker_lock);
    uint32_t n = atomic_load(&s->nworkers);
    bool started = n < s->max_workers && !atomic_load(&s->stop_heartbeat) &&
                   pthread_create(&s->workers[n], NULL, worker_main, vm) == 0;
    if (started) {
        atomic_store(&s->nworkers, n + 1);
        hyi_thread_count_worker(vm);
        sem_post(&s->worker_sem);
    }
    pthread_mutex_unlock(&s->worker_lock);
    return started;
}

hyi_run hyi_sched_run_main(hy_vm *vm, hyi_oop receiver, hyi_oop selector, hyi_oop arg) {
    hyi_sched *s = S(vm);
    HYI_ROOT(vm, &receiver);
    HYI_ROOT(vm, &arg);
    if (!s->fork_tramp) s->fork_tramp = hyi_interp_trampoline_new(vm, vm->sym.value, 0);
    s->main_tramp = hyi_interp_trampoline_new(vm, selector, 1);
    hyi_oop pname = hyi_symbol_c(vm, "Process");
    hyi_oop pcls = pname ? hyi_vm_load_class(vm, pname) : 0;
    hyi_oop po = pcls ? hyi_instantiate(vm, pcls, 0) : vm->nil;
    HYI_UNROOT(vm, 2);
    if (!s->fork_tramp || !s->main_tramp || !po) return HYI_RUN_EXIT;
    uint32_t id = alloc_id(s);
    if (!id) return HYI_RUN_EXIT;
    hyi_process *p = &s->procs[id];
    /* The main process runs on the VM's own stack. */
    p->stack = vm->stack;
    p->main = true;
    p->obj = po;
    p->priority = HYI_DEFAULT_PRIORITY;
    if (po != vm->nil && hyi_size(po) >= 1) hyi_store(vm, po, PROC_ID, hyi_smi(id));
    push_base_frame(vm, &p->stack, s->main_tramp, receiver, &arg);
    s->main = id;
    s->stop_woken = false;
    s->stop_released = false;
    atomic_store(&s->main_ended, false);
    atomic_store(&s->done, false);
    s->main_status = HYI_RUN_OK;
    runq_push(s, id, false);
    atomic_store(&s->running, true);
    hyi_heartbeat_kick(vm);
    hyi_run st = run_loop(vm, 0, false);
    /* The program ended (an exit or a kill elsewhere) while the main process was inside a
     * foreign call on another thread: that thread unwinds it when the call returns (it polls
     * and sees done). Wait for that, without the VM, before taking its stack back. */
    if (!atomic_load(&s->main_ended) && s->procs[id].state == HYI_PS_CALLOUT && s->current != id) {
        hyi_callout c;
        hyi_thread_idle_begin(vm, &c);
        pthread_mutex_lock(&s->idle_lock);
        while (!atomic_load(&s->main_ended)) pthread_cond_wait(&s->idle_cond, &s->idle_lock);
        pthread_mutex_unlock(&s->idle_lock);
        hyi_callout_end(vm, &c);
    }
    atomic_store(&s->running, false);
    /* Leave the VM's stack empty and no process behind for the next run. */
    save_current(vm);
    vm->stack = s->procs[id].stack;
    vm->stack.nframes = 0;
    vm->stack.sp = vm->stack.base - 1;
    /* Processes still inside foreign calls on other threads stay until their calls return and
     * they end (hyi_sched_poll); hyi_sched_fini waits for those threads. */
    for (uint32_t q = 1; q < s->nprocs; q++)
        if (s->procs[q].state != HYI_PS_FREE && s->procs[q].state != HYI_PS_CALLOUT && q != s->current)
            free_process(vm, q);
    memset(s->runq_head, 0, sizeof s->runq_head);
    memset(s->runq_tail, 0, sizeof s->runq_tail);
    s->timers = 0;
    s->main = 0;
    atomic_store(&s->nrunnable, 0);
    return st;
}
