/*
 * thread.c -- ownership of a VM by one OS thread at a time (thread.h).
 *
 * vmOwner is an atomic word: 0 (unowned), a thread index (that thread owns the VM),
 * RESERVED | i (unowned, left by thread i's callout, which may take it back without a
 * read-modify-write) or CLAIMING | j (thread j, holding the low-level lock, is taking a
 * reserved VM). Invariants:
 *  - Without the lock vmOwner changes only by two plain stores: the owner i disowns
 *    (i -> RESERVED | i), and thread i, back from its call, having read RESERVED | i, stores i.
 *    Every other change is made under the lock. (Without membarrier, or under
 *    ThreadSanitizer, the returning thread uses a compare-and-swap instead.)
 *  - A thread that takes a reserved VM (take_reserved) marks it CLAIMING, makes every thread
 *    of the process execute a barrier (membarrier), then reads the reserving thread's
 *    `returning` flag, which that thread sets before it reads vmOwner: either the claimer sees
 *    the flag and backs off, or the returning thread sees the mark and takes the lock (held by
 *    the claimer): never neither (an asymmetric Dekker pair). A returning thread that read
 *    RESERVED | i just before the mark overwrites it; the claimer's final compare-and-swap
 *    then fails. tests/model checks the protocol.
 *  - Owning otherwise takes the lock; while the VM is owned the thread appends itself to the
 *    wanting queue and waits on its own semaphore until an owner hands the VM over (release).
 */
#include "thread.h"

#include <errno.h>
#include <ffi.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "process.h"
#include "vm.h"

#define MAX_THREADS 256

/* ThreadSanitizer does not see membarrier's ordering: under it both sides use seq_cst atomics. */
#if defined(__SANITIZE_THREAD__)
#define HYI_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HYI_TSAN 1
#endif
#endif
#ifndef HYI_TSAN
#define HYI_TSAN 0
#endif

typedef struct tinfo {
    pthread_t tid;
    bool used;
    int want_priority;     /* priority of the process it brings when waiting */
    _Atomic uint32_t returning; /* back from the callout that reserved the VM (see above) */
    uint32_t callout_process; /* the process of its callout in flight (owner-written), 0 = none */
    bool callout_blocking;    /* that callout was declared blocking (owner-written) */
    _Atomic int bound_priority; /* highest priority of a process bound here that became runnable */
    sem_t sem;
} tinfo;

struct hyi_threads {
    _Atomic uint32_t owner;          /* vmOwner */
    pthread_mutex_t lock;            /* unowned -> owned, the wanting queue, the table */
    uint32_t queue[MAX_THREADS];     /* wanting threads, FIFO */
    uint32_t qhead, qlen;
    _Atomic uint32_t nwaiting;       /* qlen, readable without the lock */
    tinfo t[MAX_THREADS + 1];        /* by index; 0 unused */
    _Atomic uint64_t callout_seq;
    bool asymmetric;                 /* membarrier available: the fast path needs no fence */
    _Atomic uint32_t fence;          /* target of heavy_barrier's read-modify-write */
    _Atomic uint64_t in_callout;     /* seq of the callout that left the VM unowned, 0 = none */
    _Atomic uint64_t idle_callouts;  /* callout_seq counts these too: callouts = the difference */
    _Atomic uint64_t takeovers, handbacks, waits, wait_ns, heartbeats, workers;
};

#define RESERVED 0x10000u
#define CLAIMING 0x20000u
#define THREAD_BITS 0xffffu

static inline uint32_t reserved(uint32_t i) { return RESERVED | i; }

bool hyi_threads_init(hy_vm *vm) {
    struct hyi_threads *th = calloc(1, sizeof *th);
    if (!th) return false;
    pthread_mutex_init(&th->lock, NULL);
    atomic_init(&th->owner, 0);
    atomic_init(&th->callout_seq, 0);
    /* An asymmetric Dekker: the callout fast path (store vmOwner := 0, then read the waiter
     * count) runs without a fence; a thread that queues makes every other thread of the
     * process execute one (membarrier) between publishing itself and trying vmOwner. Where
     * the kernel lacks membarrier both sides use sequentially consistent operations. */
    th->asymmetric = !HYI_TSAN && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    vm->threads = th;
    return true;
}

/* Order this thread's earlier stores before later loads on every thread of the process. (A
 * sequentially consistent read-modify-write rather than a fence: ThreadSanitizer models it.) */
static void heavy_barrier(struct hyi_threads *th) {
    if (th->asymmetric && syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0) return;
    atomic_fetch_add_explicit(&th->fence, 0, memory_order_seq_cst);
}

void hyi_threads_fini(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    if (!th) return;
    for (uint32_t i = 1; i <= MAX_THREADS; i++)
        if (th->t[i].used) sem_destroy(&th->t[i].sem);
    pthread_mutex_destroy(&th->lock);
    free(th);
    vm->threads = NULL;
}

/* The index of the calling thread in this VM, registering it on first use (lock held). */
static uint32_t self_index_locked(struct hyi_threads *th) {
    pthread_t me = pthread_self();
    uint32_t free_slot = 0;
    for (uint32_t i = 1; i <= MAX_THREADS; i++) {
        if (th->t[i].used && pthread_equal(th->t[i].tid, me)) return i;
        if (!th->t[i].used && !free_slot) free_slot = i;
    }
    if (!free_slot) return 0;
    tinfo *t = &th->t[free_slot];
    memset(t, 0, sizeof *t);
    t->tid = me;
    t->used = true;
    sem_init(&t->sem, 0, 0);
    return free_slot;
}

static uint32_t self_index(struct hyi_threads *th) {
    pthread_mutex_lock(&th->lock);
    uint32_t i = self_index_locked(th);
    pthread_mutex_unlock(&th->lock);
    return i;
}

/* Take the VM reserved by thread k's callout for thread i (lock held): unless k is already back
 * from its call, in which case it is k's again. */
static bool take_reserved(struct hyi_threads *th, uint32_t k, uint32_t i) {
    uint32_t expected = reserved(k);
    if (!atomic_compare_exchange_strong_explicit(&th->owner, &expected, CLAIMING | i, memory_order_seq_cst,
                                                 memory_order_seq_cst))
        return false;
    /* Now k, if it returns, sees CLAIMING and takes the lock (held here); if it returned
     * already, its flag is visible after this barrier. */
    heavy_barrier(th);
    bool back = atomic_load_explicit(&th->t[k <= MAX_THREADS ? k : 0].returning, memory_order_seq_cst);
    /* Finish the claim, or back off, unless k has overwritten the mark meanwhile: having read
     * RESERVED | k before the claim, it took the VM back (and may even have reserved it
     * again for a newer call, whose flag the load above may have read as 0). */
    expected = CLAIMING | i;
    return atomic_compare_exchange_strong_explicit(&th->owner, &expected, back ? reserved(k) : i,
                                                   memory_order_seq_cst, memory_order_relaxed) && !back;
}

/* Own the VM as thread i if nobody owns it (lock held). */
static bool take_free(struct hyi_threads *th, uint32_t i) {
    uint32_t o = atomic_load_explicit(&th->owner, memory_order_seq_cst);
    /* Unowned, or reserved by i's own callout (a callback on its thread): with the lock held
     * nobody else can change it. */
    if (o == 0 || o == reserved(i))
        return atomic_compare_exchange_strong_explicit(&th->owner, &o, i, memory_order_seq_cst,
                                                       memory_order_relaxed);
    if (o & RESERVED) return take_reserved(th, o & THREAD_BITS, i);
    return false;
}

/* Own the VM as thread i: at once when it is free, else queue and wait to be handed it. The
 * owner notices the queue at its next attention poll. */
static __attribute__((noinline)) void own(hy_vm *vm, struct hyi_threads *th, uint32_t i, int priority) {
    pthread_mutex_lock(&th->lock);
    if (take_free(th, i)) {
        pthread_mutex_unlock(&th->lock);
        return;
    }
    /* Owned: publish the wish and try again (seq_cst, with the store of RESERVED | k and the
     * re-load of nwaiting in hyi_callout_begin: either this try sees the VM free, or that
     * re-load sees this waiter and serves it). Without the second try a waiter could sleep
     * while the VM stays unowned (tests/model, LATE_PUBLISH). */
    th->queue[(th->qhead + th->qlen++) % MAX_THREADS] = i;
    atomic_store_explicit(&th->nwaiting, th->qlen, memory_order_seq_cst);
    heavy_barrier(th);
    if (take_free(th, i)) {
        /* Got it: leave the queue again (still its tail, the lock was held throughout). */
        th->qlen--;
        atomic_store_explicit(&th->nwaiting, th->qlen, memory_order_seq_cst);
        pthread_mutex_unlock(&th->lock);
        return;
    }
    th->t[i].want_priority = priority;
    atomic_fetch_add_explicit(&th->waits, 1, memory_order_relaxed);
    pthread_mutex_unlock(&th->lock);
    atomic_store_explicit(&vm->attention, 1, memory_order_release);
    uint64_t t0 = hyi_now_ns();
    while (sem_wait(&th->t[i].sem) != 0 && errno == EINTR) {}
    /* The releasing thread stored our index in vmOwner before posting. */
    atomic_fetch_add_explicit(&th->wait_ns, hyi_now_ns() - t0, memory_order_relaxed);
}

/* The queue index (0 = head) of the waiter that gets the VM next: the highest priority, the
 * earliest among equals. Lock held, queue not empty. */
static uint32_t best_waiter(struct hyi_threads *th) {
    uint32_t best = 0;
    int best_pr = th->t[th->queue[th->qhead]].want_priority;
    for (uint32_t k = 1; k < th->qlen; k++) {
        int pr = th->t[th->queue[(th->qhead + k) % MAX_THREADS]].want_priority;
        if (pr > best_pr) { best = k; best_pr = pr; }
    }
    return best;
}

/* Release the VM: hand it to the waiter of highest priority, if any. */
static void release(struct hyi_threads *th) {
    pthread_mutex_lock(&th->lock);
    if (th->qlen) {
        uint32_t k = best_waiter(th);
        uint32_t next = th->queue[(th->qhead + k) % MAX_THREADS];
        /* Close the gap: the waiters after it move up one place. */
        for (uint32_t j = k; j + 1 < th->qlen; j++)
            th->queue[(th->qhead + j) % MAX_THREADS] = th->queue[(th->qhead + j + 1) % MAX_THREADS];
        th->qlen--;
        atomic_store_explicit(&th->nwaiting, th->qlen, memory_order_seq_cst);
        atomic_store_explicit(&th->owner, next, memory_order_release);
        atomic_fetch_add_explicit(&th->handbacks, 1, memory_order_relaxed);
        pthread_mutex_unlock(&th->lock);
        sem_post(&th->t[next].sem);
        return;
    }
    atomic_store_explicit(&th->owner, 0, memory_order_release);
    pthread_mutex_unlock(&th->lock);
}

bool hyi_thread_attach(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    uint32_t i = self_index(th);
    if (!i) return false;
    if (atomic_load_explicit(&th->owner, memory_order_acquire) != i) own(vm, th, i, 1000);
    return true;
}

void hyi_thread_detach(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    uint32_t i = self_index(th);
    if (i && atomic_load_explicit(&th->owner, memory_order_acquire) == i) release(th);
}

/* The locked ends of a callout's start, out of the way of the fast path. A call known to block
 * (or takeover stress): release under the lock (to the first waiter, if any), then let a worker
 * take the VM at once. Disowning first and releasing afterwards could hand away a VM another
 * thread had meanwhile taken (tests/model, UNOWNED_RELEASE). */
static __attribute__((noinline)) void begin_handoff(hy_vm *vm, struct hyi_threads *th) {
    release(th);
    hyi_sched_handoff(vm, vm->config.takeover_stress);
}

/* A waiter arrived between the check of nwaiting and the disowning store: make sure it is
 * served. (It may have taken the VM meanwhile; else the reservation is still thread i's.) */
static __attribute__((noinline)) void begin_serve_waiter(struct hyi_threads *th, uint32_t i) {
    pthread_mutex_lock(&th->lock);
    uint32_t expected = reserved(i);
    if (th->qlen && atomic_compare_exchange_strong_explicit(&th->owner, &expected, i, memory_order_acquire,
                                                             memory_order_relaxed)) {
        pthread_mutex_unlock(&th->lock);
        release(th);
        return;
    }
    pthread_mutex_unlock(&th->lock);
}

static inline __attribute__((always_inline)) void callout_begin(hy_vm *vm, hyi_callout *c, bool blocking,
                                                                bool idle) {
    struct hyi_threads *th = vm->threads;
    /* Only the owner writes these: plain loads and stores, no locked instructions. */
    uint32_t i = atomic_load_explicit(&th->owner, memory_order_relaxed);
    uint64_t seq = atomic_load_explicit(&th->callout_seq, memory_order_relaxed) + 1;
    uint32_t process = vm->current_process;
    c->thread = i;
    c->seq = seq;
    c->process = process;
    c->priority = vm->current_priority;
    atomic_store_explicit(&th->callout_seq, seq, memory_order_relaxed);
    if (__builtin_expect(idle, 0))
        atomic_store_explicit(&th->idle_callouts, atomic_load_explicit(&th->idle_callouts, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    tinfo *t = &th->t[i <= MAX_THREADS ? i : 0];
    t->callout_process = process;
    t->callout_blocking = blocking;
    if (__builtin_expect(blocking, 0))   /* seq_cst: see the look at pending work below */
        atomic_store_explicit(&th->in_callout, seq << 1 | 1u, memory_order_seq_cst);
    else
        atomic_store_explicit(&th->in_callout, seq << 1 | (idle ? 1u : 0u), memory_order_relaxed);
    if (__builtin_expect(blocking || vm->config.takeover_stress, 0)) {
        /* A call declared blocking hands the VM to a worker at once when another process can
         * run. When none can, it keeps the VM reserved like any call, and returns without a
         * lock: whatever makes a process runnable meanwhile brings a worker to take it over (an
         * external signal, a stop request, a due delay by way of the heartbeat). */
        if (vm->config.takeover_stress || hyi_sched_work_pending(vm)) {
            begin_handoff(vm, th);
            return;
        }
    } else {
        /* The heartbeat sleeps while nothing needs it: a call that may run long wakes it
         * (once, when it starts watching again). */
        atomic_signal_fence(memory_order_seq_cst);   /* in_callout is stored before this read */
        if (!idle && __builtin_expect(atomic_load_explicit(&vm->heartbeat_parked, memory_order_relaxed), 0))
            hyi_heartbeat_kick(vm);
    }
    /* Fast path: no lock, no syscall, unless another thread is already waiting for the VM. */
    if (__builtin_expect(atomic_load_explicit(&th->nwaiting, memory_order_relaxed) == 0, 1)) {
        /* Reserve the VM for this thread's return (a fresh flag: it is not back yet). */
        atomic_store_explicit(&t->returning, 0, memory_order_relaxed);
        if (__builtin_expect(th->asymmetric && !blocking, 1)) {
            atomic_store_explicit(&th->owner, reserved(i), memory_order_release);
            atomic_signal_fence(memory_order_seq_cst);   /* the other side's membarrier orders it */
        } else {
            /* seq_cst also for a blocking call: ordered before its look at pending work. */
            atomic_store_explicit(&th->owner, reserved(i), memory_order_seq_cst);
        }
        if (__builtin_expect(atomic_load_explicit(&th->nwaiting, memory_order_seq_cst) != 0, 0))
            begin_serve_waiter(th, i);
        /* An external signal that came before the reservation was visible found no call to
         * hand off (hyi_sched_signal_external reads in_callout, then vmOwner, both seq_cst):
         * look again now that it is. */
        if (__builtin_expect(blocking, 0) && hyi_sched_work_pending(vm)) hyi_sched_handoff(vm, true);
        return;
    }
    release(th);   /* a thread already waits: hand it the VM */
}

void hyi_callout_begin(hy_vm *vm, hyi_callout *c, bool blocking) { callout_begin(vm, c, blocking, false); }

/* The scheduler's own wait while idle: a callout for the protocol, not for the counters; it
 * counts as blocking (the heartbeat need not watch it) but wakes no worker. */
void hyi_thread_idle_begin(hy_vm *vm, hyi_callout *c) { callout_begin(vm, c, false, true); }

/* Thread i, back from its call, takes back the VM its callout reserved, if it is still so. */
static inline bool take_back(struct hyi_threads *th, uint32_t i) {
    if (__builtin_expect(th->asymmetric, 1)) {
        /* The fast side of the pair in take_reserved: flag, then read, no fence. */
        atomic_store_explicit(&th->t[i].returning, 1, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&th->owner, memory_order_relaxed) != reserved(i)) return false;
        /* A claimer may have marked it CLAIMING since: it sees the flag and backs off. */
        atomic_store_explicit(&th->owner, i, memory_order_relaxed);
        return true;
    }
    uint32_t expected = reserved(i);
    return atomic_compare_exchange_strong_explicit(&th->owner, &expected, i, memory_order_seq_cst,
                                                   memory_order_seq_cst);
}

static inline __attribute__((always_inline)) void callout_end(hy_vm *vm, const hyi_callout *c) {
    struct hyi_threads *th = vm->threads;
    uint32_t i = c->thread <= MAX_THREADS ? c->thread : 0;
    /* Fast path: the VM is still reserved for this thread. */
    if (__builtin_expect(!take_back(th, i), 0)) {
        /* A returning process brings its priority; an idle scheduler thread brings none. (The
         * process table is the owner's: read at the start of the call.) */
        own(vm, th, c->thread, c->priority);
    }
    atomic_store_explicit(&th->in_callout, 0, memory_order_relaxed);
    th->t[i].callout_process = 0;
    /* If a worker ran other processes meanwhile, this thread's process comes back. */
    if (__builtin_expect(c->process != vm->current_process, 0)) hyi_sched_reinstall(vm, c->process);
}

void hyi_callout_end(hy_vm *vm, hyi_callout *c) { callout_end(vm, c); }

void hyi_callout_ffi(hy_vm *vm, bool blocking, void *cif, void (*fn)(void), void *rv, void **values) {
    hyi_callout c;
    callout_begin(vm, &c, blocking, false);
    ffi_call(cif, fn, rv, values);
    callout_end(vm, &c);
}

uint64_t hyi_callout_direct(hy_vm *vm, bool blocking, hyi_direct_fn fn, const uint64_t *w) {
    hyi_callout c;
    callout_begin(vm, &c, blocking, false);
    uint64_t r = fn(w[0], w[1], w[2], w[3], w[4], w[5]);
    callout_end(vm, &c);
    return r;
}

void hyi_callback_enter(hy_vm *vm, hyi_callback_state *st) {
    struct hyi_threads *th = vm->threads;
    uint32_t i = self_index(th);
    st->thread = i;
    st->already_owned = atomic_load_explicit(&th->owner, memory_order_acquire) == i;
    if (st->already_owned) {
        /* A call that kept the VM (beUnthreaded) calls back: run on the current process. */
        st->temp_process = 0;
        return;
    }
    own(vm, th, i, 1000);
    /* The callback runs in the process whose callout this thread is in, or (a foreign thread)
     * in a process of its own; never on the stack of whatever process happens to be current. */
    uint32_t mine = th->t[i].callout_process;
    st->temp_process = hyi_sched_callback_enter(vm, mine);
}

void hyi_callback_leave(hy_vm *vm, hyi_callback_state *st) {
    if (st->already_owned) return;
    hyi_sched_callback_leave(vm, st->temp_process);
    release(vm->threads);
}

void hyi_thread_stats_get(hy_vm *vm, hyi_thread_stats *out) {
    struct hyi_threads *th = vm->threads;
    out->callouts = atomic_load_explicit(&th->callout_seq, memory_order_relaxed) -
                    atomic_load_explicit(&th->idle_callouts, memory_order_relaxed);
    out->takeovers = atomic_load_explicit(&th->takeovers, memory_order_relaxed);
    out->handbacks = atomic_load_explicit(&th->handbacks, memory_order_relaxed);
    out->waits = atomic_load_explicit(&th->waits, memory_order_relaxed);
    out->wait_ns = atomic_load_explicit(&th->wait_ns, memory_order_relaxed);
    out->heartbeats = atomic_load_explicit(&th->heartbeats, memory_order_relaxed);
    out->workers = atomic_load_explicit(&th->workers, memory_order_relaxed);
}

uint32_t hyi_thread_self(hy_vm *vm) { return self_index(vm->threads); }

bool hyi_thread_process_waits(hy_vm *vm, uint32_t process) {
    struct hyi_threads *th = vm->threads;
    for (uint32_t i = 0; i <= MAX_THREADS; i++)
        if (th->t[i].callout_process == process && th->t[i].callout_blocking) return true;
    return false;
}

int hyi_thread_waiting_priority(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    if (atomic_load_explicit(&th->nwaiting, memory_order_relaxed) == 0) return -1;
    pthread_mutex_lock(&th->lock);
    int pr = th->qlen ? th->t[th->queue[(th->qhead + best_waiter(th)) % MAX_THREADS]].want_priority : -1;
    pthread_mutex_unlock(&th->lock);
    return pr;
}

bool hyi_thread_in_callout(hy_vm *vm, uint64_t *seq, bool *blocking) {
    struct hyi_threads *th = vm->threads;
    /* seq_cst: an external signal's look pairs with a blocking call's start (callout_begin). */
    uint64_t s = atomic_load_explicit(&th->in_callout, memory_order_seq_cst);
    *seq = s >> 1;
    *blocking = s & 1;
    uint32_t o = atomic_load_explicit(&th->owner, memory_order_seq_cst);
    return s != 0 && (o == 0 || (o & RESERVED));
}

bool hyi_thread_try_takeover(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    pthread_mutex_lock(&th->lock);
    uint32_t i = self_index_locked(th);
    bool ok = i && th->qlen == 0 && atomic_load_explicit(&th->in_callout, memory_order_relaxed) != 0 &&
              take_free(th, i);
    pthread_mutex_unlock(&th->lock);
    if (ok) atomic_fetch_add_explicit(&th->takeovers, 1, memory_order_relaxed);
    return ok;
}

void hyi_thread_handback(hy_vm *vm) { release(vm->threads); }

void hyi_thread_own_again(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    own(vm, th, self_index(th), hyi_thread_take_bound_priority(vm));
}

void hyi_thread_release_worker(hy_vm *vm) { release(vm->threads); }

void hyi_thread_count_heartbeat(hy_vm *vm) {
    atomic_fetch_add_explicit(&vm->threads->heartbeats, 1, memory_order_relaxed);
}

void hyi_thread_count_worker(hy_vm *vm) {
    atomic_fetch_add_explicit(&vm->threads->workers, 1, memory_order_relaxed);
}

void hyi_thread_note_bound(hy_vm *vm, uint32_t thread, int priority) {
    struct hyi_threads *th = vm->threads;
    if (thread < 1 || thread > MAX_THREADS) return;
    int cur = atomic_load_explicit(&th->t[thread].bound_priority, memory_order_relaxed);
    while (priority > cur &&
           !atomic_compare_exchange_weak_explicit(&th->t[thread].bound_priority, &cur, priority,
                                                  memory_order_relaxed, memory_order_relaxed)) {}
}

int hyi_thread_take_bound_priority(hy_vm *vm) {
    struct hyi_threads *th = vm->threads;
    uint32_t i = self_index(th);
    return i ? atomic_exchange_explicit(&th->t[i].bound_priority, 0, memory_order_relaxed) : 0;
}

void hyi_thread_heavy_barrier(hy_vm *vm) { heavy_barrier(vm->threads); }
