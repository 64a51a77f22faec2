/*
 * ownership.pml -- a Promela model of the VM-ownership protocol (DESIGN.md section 4,
 * vmcore/src/thread.c): two callout threads, one pool worker and the heartbeat share one VM.
 *
 * Granularity: one Promela step per C atomic operation (load, store, CAS, fetch_add) that a
 * lock-free path can observe, and per lock or semaphore operation. What the low-level lock
 * guards (the queue, qlen, the waiting flags) is only touched with the lock held, so such an
 * update is folded into the step of the one atomic store made beside it. Spin interleaves
 * steps sequentially consistently: the model assumes the C atomics that race with each other
 * (vmOwner and nwaiting) are seq_cst, as the Dekker pair below needs.
 *
 * Variants (spin -a -DNAME):
 *   BROKEN_FASTPATH  callout begin releases the VM without re-checking the waiter count;
 *   LATE_PUBLISH     own() counts itself as waiting only after its CAS failed;
 *   NO_LTL           leaves out the LTL claims (for the non-progress search).
 * Both broken variants must be refuted by spin (tests/model/check.sh checks that they are).
 */

#ifndef ROUNDS
#define ROUNDS 2       /* callouts made by each callout thread */
#endif
#define NC 2           /* callout threads, indices 1..NC */
#define W 3            /* the worker's index */
#define NQ 3           /* every thread can be queued at most once */

/* ---- the shared state of struct hyi_threads ---- */
byte owner = 0;        /* vmOwner: index of the owning thread, 0 = unowned */
byte lk = 0;           /* the low-level lock: 0 free, else the holder's index */
byte lkq[2];           /* threads blocked on the lock, FIFO */
byte lkn = 0;
byte queue[NQ];        /* the wanting queue, FIFO; the head is queue[0] (a ring buffer in C) */
byte qlen = 0;
byte nwaiting = 0;     /* qlen, read without the lock */
bool waiting[4];       /* t[i].waiting: thread i is in the queue */
byte sem[4];           /* t[i].sem: per-thread semaphore counts */
bool moved = false;    /* callout_seq moved since the heartbeat last read it: the heartbeat
                        * compares the counter with its value at the previous beat, and that
                        * comparison is all the model keeps of the counter */
bool widle = true;     /* the worker is parked in the pool */

/* ---- ghost state, for the properties ---- */
bool ins[4];           /* thread i is in its owned section */
bool ret[4];           /* callout thread i returned from its foreign call and wants the VM */
byte ndone = 0;        /* callout threads that finished, or sit in a call that never returns */

#define ENTER(me)  ins[me] = true; ret[me] = false

/* The low-level lock, modelled as a fair (FIFO) mutex: unlock hands it to the first thread
 * blocked on it. Spin's weak fairness cannot express a fair mutex otherwise, and without it
 * the search "finds" a thread that loses every race for the mutex, forever. */
inline lock(me) {
    atomic { if :: lk == 0 -> lk = me :: else -> lkq[lkn] = me; lkn++ fi };
    lk == me
}
inline unlock() {
    atomic { lk = lkq[0]; lkq[0] = lkq[1]; lkq[1] = 0; if :: lkn > 0 -> lkn-- :: else -> skip fi }
}

/* sem_wait that ends in ownership: the releaser stored our index in vmOwner before posting. */
inline sleep_for_vm(me) {
    atomic { sem[me] > 0 -> sem[me]--; ENTER(me) };
    assert(owner == me)
}

/* Wake the parked worker, if it is parked (the pool's own bookkeeping, one step). */
inline wake_worker() {
    atomic { if :: widle -> widle = false; sem[W]++ :: else -> skip fi }
}

/* own(th, i): CAS 0 -> i under the lock, else queue and wait to be handed the VM. */
inline own(me) {
    lock(me);
#ifdef LATE_PUBLISH
    atomic { if :: owner == 0 -> owner = me; ENTER(me); got = true :: else -> got = false fi };
    if
    :: got -> got = false; unlock()
    :: else ->
        atomic { queue[qlen] = me; qlen++; waiting[me] = true; nwaiting = qlen };
        unlock();
        sleep_for_vm(me)
    fi
#else
    /* Publish the wait first, then CAS: with the seq_cst store of 0 and re-load of nwaiting
     * in callout_begin this is a Dekker pair -- either our CAS sees 0 or the releaser sees us. */
    atomic { queue[qlen] = me; qlen++; waiting[me] = true; nwaiting = qlen };
    atomic { if :: owner == 0 -> owner = me; ENTER(me); got = true :: else -> got = false fi };
    if
    :: got ->
        got = false;
        /* still the tail: nobody else took the lock since we appended */
        atomic { qlen--; queue[qlen] = 0; waiting[me] = false; nwaiting = qlen };
        unlock()
    :: else ->
        unlock();
        sleep_for_vm(me)
    fi
#endif
}

/* release(th): hand the VM to the first waiter, or store 0 when nobody waits. */
inline release(me) {
    assert(owner == me && ins[me]);
    lock(me);
    if
    :: qlen > 0 ->
        atomic {
            next = queue[0]; queue[0] = queue[1]; queue[1] = queue[2]; queue[2] = 0;
            qlen--; nwaiting = qlen; waiting[next] = false
        };
        atomic { owner = next; ins[me] = false };
        unlock();
        sem[next]++;            /* sem_post */
        next = 0
    :: else ->
        atomic { owner = 0; ins[me] = false };
        unlock()
    fi
}

/* hyi_callout_begin: disown. Fast path: one store of 0 and a re-check of the waiter count. */
inline callout_begin(me) {
    assert(owner == me && ins[me]);          /* c->thread = vmOwner */
    moved = true;                            /* fetch_add(callout_seq) */
    if
    :: nwaiting == 0 ->
        atomic { owner = 0; ins[me] = false };
#ifndef BROKEN_FASTPATH
        if
        :: nwaiting == 0 -> skip
        :: else ->
            /* a waiter arrived between the check and the store: make sure it is served */
            lock(me);
            atomic { if :: qlen > 0 && owner == 0 -> owner = me; ENTER(me); got = true
                        :: else -> got = false fi };
            unlock();
            if :: got -> got = false; release(me) :: else -> skip fi
        fi
#endif
    :: else -> release(me)
    fi;
    /* a callout declared blocking wakes a worker at once (when a process can run) */
    if :: wake_worker() :: skip fi
}

/* hyi_callout_end: own again; fast path is a lock-free CAS 0 -> i. */
inline callout_end(me) {
    ret[me] = true;
    atomic { if :: owner == 0 -> owner = me; ENTER(me); got = true :: else -> got = false fi };
    if :: got -> got = false :: else -> own(me) fi
}

/* A thread that makes callouts: attach (own), then run / callout begin / foreign call /
 * callout end, ROUNDS times, then detach (release). */
proctype caller(byte me) {
    byte r = 0, next = 0;
    bool got = false;
    own(me);
    do
    :: r < ROUNDS ->
progress_run:
        assert(owner == me && ins[me]);      /* runs its process */
        callout_begin(me);
        if
        :: skip                              /* the foreign call returns */
        :: ndone++; end_forever: false        /* ... or never returns */
        fi;
        callout_end(me);
        r++
    :: else -> break
    od;
    release(me);
    ndone++
}

/* The pool worker: parked until woken, owns the VM like a returning callout, runs other
 * processes, and at each poll point hands the VM to the first waiter when one waits. */
proctype worker(byte me) {
    byte next = 0;
    bool got = false;
end_park:
    atomic { sem[me] > 0 -> sem[me]-- };
    own(me);
    do
    :: nwaiting > 0 -> break                 /* poll: a thread wants the VM */
    :: else ->
        if
        :: skip; progress_slice: assert(owner == me && ins[me])   /* runs a process */
        :: break                             /* nothing left to run */
        fi
    od;
    release(me);
    widle = true;
    goto end_park
}

/* The heartbeat: each beat, if vmOwner == 0, the callout counter is the same as at the
 * previous beat and a process is runnable, wake an idle worker. It stops when the callout
 * threads are done (the VM ends); until then it beats forever.
 * A beat is one step here although the C reads vmOwner and the counter one after the other and
 * wakes the worker after that: the decision only permits a wake-up, whether a process is runnable
 * is left open, and a woken worker owns the VM through own() whenever it gets to run, so the
 * split interleavings add no behaviour of the protocol, only states. */
proctype heartbeat() {
    do
    :: atomic {
        ndone < NC ->
        if
        :: owner == 0 && !moved ->
            if :: wake_worker() :: skip fi        /* a process is runnable, or not */
        :: else -> skip
        fi;
        moved = false
       }
    :: ndone == NC -> break
    od
}

/* Never two owners: whoever is in its owned section is vmOwner (checked in every state). */
active proctype monitor() {
end_monitor:
    atomic {
        !((ins[1] + ins[2] + ins[3] <= 1) && (!ins[1] || owner == 1) && (!ins[2] || owner == 2)
          && (!ins[3] || owner == 3)) -> assert(false)
    }
}

init {
    atomic {
        run caller(1); run caller(2); run worker(W); run heartbeat()
    }
}

#ifndef NO_LTL
/* No lost wake-up: the queue is never non-empty while vmOwner == 0 for good, and a thread
 * in the queue (waiting on its semaphore) is eventually handed the VM. */
ltl no_lost_wakeup {
    ([] <> !(qlen > 0 && owner == 0))
    && [] (waiting[1] -> <> ins[1]) && [] (waiting[2] -> <> ins[2]) && [] (waiting[3] -> <> ins[3])
}
/* Every callout thread that returns from its foreign call eventually owns the VM. */
ltl returning_owns {
    [] (ret[1] -> <> ins[1]) && [] (ret[2] -> <> ins[2])
}
#endif
