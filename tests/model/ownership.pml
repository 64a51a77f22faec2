/*
 * ownership.pml -- a Promela model of the VM-ownership protocol (DESIGN.md section 4;
 * vmcore/src/thread.c, and the worker and heartbeat of vmcore/src/process.c): two callout
 * threads, one pool worker and the heartbeat share one VM. tests/model/README.md maps each
 * part to the C.
 *
 * Granularity: one Promela step per C atomic operation (load, store, CAS) that a lock-free
 * path can observe, and per lock or semaphore operation. What the low-level lock guards (the
 * queue, qlen, the waiting flags) is touched only with the lock held, so such an update is
 * folded into the step of the one atomic store made beside it. Spin interleaves steps
 * sequentially consistently: the C atomics that race with each other (vmOwner, nwaiting) must
 * be seq_cst for the model to speak for the C, as the Dekker pairs below need.
 *
 * vmOwner is 0 (unowned), a thread's index (owned), RES(i) (unowned, reserved for the return of
 * thread i's callout, which takes it back with a plain load and store) or CLAIM(j) (thread j,
 * holding the lock, is taking a reserved VM: take_reserved). The claimer and the returning
 * thread form an asymmetric Dekker pair (the returning flag against vmOwner); membarrier on the
 * claimer's side makes it sequentially consistent, which is how spin interleaves it.
 *
 * Variants (spin -a -DNAME), each a known mistake that spin must refute (check.sh checks it):
 *   BROKEN_FASTPATH  callout begin disowns without re-checking the waiter count;
 *   LATE_PUBLISH     own() does not try again after counting itself as waiting;
 *   UNOWNED_RELEASE  a blocking callout disowns first and then, seeing a waiter, calls
 *                    release() although it no longer owns the VM;
 *   UNCHECKED_CLAIM  a claimer takes a reserved VM without reading the returning flag;
 *   PLAIN_FINISH     a claimer finishes its claim with a plain store instead of a CAS (the
 *                    returning thread may have overwritten the mark and reserved again).
 * NO_LTL leaves the LTL claims out (for the non-progress search); ROUNDS sets the number of
 * callouts per callout thread.
 */

#ifndef ROUNDS
#define ROUNDS 2       /* callouts made by each callout thread */
#endif
#define NC 2           /* callout threads, indices 1..NC */
#define W 3            /* the worker's index */

/* vmOwner's values besides 0 and a thread index */
#define RES(i)     (4 + (i))          /* unowned, reserved for callout thread i's return */
#define CLAIM(j)   (8 + (j))          /* thread j is taking a reserved VM */
#define ISRES(o)   ((o) >= 5 && (o) <= 7)
#define FREE(o)    ((o) == 0 || ISRES(o))   /* nobody owns the VM */

/* ---- struct hyi_threads ---- */
byte owner = 0;        /* vmOwner */
byte lk = 0;           /* the low-level mutex: 0 free, else the holder's index */
byte lkq[2];           /* threads blocked on the mutex, FIFO */
byte lkn = 0;
byte queue[NC];        /* the wanting queue, FIFO, head at queue[0] (a ring buffer in C) */
byte qlen = 0;
byte nwaiting = 0;     /* qlen, read without the lock */
bool waiting[NC + 1];  /* t[i].waiting */
byte sem[NC + 1];      /* t[i].sem of the callout threads */
bool incall = false;   /* in_callout != 0: the VM was left by a callout that has not returned */
bool returning[NC + 1]; /* t[i].returning: thread i is back from the callout that reserved */

/* ---- the scheduler's part (process.c) ---- */
bool seen = false;     /* the last beat saw the VM unowned inside the callout still in
                        * flight: last_seq == in_callout's sequence number (a new callout
                        * clears it, as its new number no longer matches) */
bool widle = true;     /* idle_workers > 0: the worker counts itself idle */
byte wsem = 0;         /* worker_sem (posts can pile up; two are enough to show it) */

/* ---- ghost state, for the properties ---- */
bool ins[W + 1];       /* thread i is in its owned section */
bool ret[W + 1];       /* callout thread i returned from its foreign call and wants the VM */
byte ndone = 0;        /* callout threads finished, or inside a call that never returns */

#define ENTER(me)  ins[me] = true; ret[me] = false

/* The mutex, modelled as fair (FIFO): unlock hands it to the first thread blocked on it.
 * Spin's weak fairness cannot express a fair mutex otherwise, and without it the search
 * "finds" a thread that loses every race for the mutex, for ever. */
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

/* wake_worker: post worker_sem if the worker counts itself idle (the pool is full). */
inline wake_worker() {
    atomic { if :: widle && wsem < 2 -> wsem++ :: else -> skip fi }
}

/* take_reserved and take_free (lock held): take the VM for `me` if nobody owns it. From
 * another thread's reservation: mark it CLAIM(me) (a CAS), then (after membarrier) read that
 * thread's returning flag; finish the claim by a CAS CLAIM(me) -> me if the flag is clear, else
 * back off by a CAS CLAIM(me) -> RES(victim). Either CAS fails if the returning thread,
 * having read RES before the mark, overwrote it. Sets got. */
inline take_free(me) {
    atomic {
        if
        :: owner == 0 || owner == RES(me) -> owner = me; ENTER(me); got = true
        :: ISRES(owner) && owner != RES(me) -> victim = owner - 4; owner = CLAIM(me); got = false
        :: else -> got = false
        fi
    };
    if
    :: victim != 0 ->
#ifdef UNCHECKED_CLAIM
        back = false;
#else
        back = returning[victim];
#endif
#ifdef PLAIN_FINISH
        if
        :: !back -> atomic { owner = me; ENTER(me); got = true }
        :: else -> atomic { if :: owner == CLAIM(me) -> owner = RES(victim) :: else -> skip fi }
        fi;
#else
        atomic {
            if
            :: owner == CLAIM(me) && !back -> owner = me; ENTER(me); got = true
            :: owner == CLAIM(me) && back -> owner = RES(victim)
            :: else -> skip
            fi
        };
#endif
        victim = 0; back = false
    :: else -> skip
    fi
}

/* own(vm, th, i): under the lock take the VM if free; else publish the wait and try again
 * (with the disowning store and the re-load of nwaiting in callout begin this is a Dekker
 * pair: either the second try sees the VM free or that re-load sees the waiter); else wait on
 * the semaphore to be handed the VM. */
inline own(me) {
    lock(me);
    take_free(me);
    if
    :: got -> got = false; unlock()
    :: else ->
        atomic { queue[qlen] = me; qlen++; waiting[me] = true; nwaiting = qlen };
#ifndef LATE_PUBLISH
        take_free(me);
#endif
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
    fi
}

/* release(th): hand the VM to the first waiter, or store 0 when nobody waits. */
inline release_body(me) {
    lock(me);
    if
    :: qlen > 0 ->
        atomic {
            next = queue[0]; queue[0] = queue[1]; queue[1] = 0;
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
inline release(me) {
    assert(owner == me && ins[me]);
    release_body(me)
}

/* hyi_callout_begin: disown. */
inline callout_begin(me) {
    assert(owner == me && ins[me]);          /* c->thread = vmOwner */
    seen = false; incall = true;             /* callout_seq++, in_callout := seq */
    if
    :: /* blocking (or takeover stress): hand the VM to a waiter or a worker at once */
#ifdef UNOWNED_RELEASE
        atomic { owner = 0; ins[me] = false };
        if :: nwaiting > 0 -> release_body(me) :: else -> skip fi;
#else
        release(me);
#endif
        if :: wake_worker() :: skip fi        /* hyi_sched_handoff: when a process can run */
    :: nwaiting == 0 ->
        /* the fast path: reserve the VM for this thread's return, re-check the waiter count */
        returning[me] = false;
        atomic { owner = RES(me); ins[me] = false };
#ifndef BROKEN_FASTPATH
        if
        :: nwaiting == 0 -> skip
        :: else ->
            /* a waiter arrived between the check and the store: make sure it is served */
            lock(me);
            atomic { if :: qlen > 0 && owner == RES(me) -> owner = me; ENTER(me); got = true
                        :: else -> got = false fi };
            unlock();
            if :: got -> got = false; release(me) :: else -> skip fi
        fi
#endif
    :: nwaiting != 0 -> release(me)          /* a thread already waits: hand it the VM */
    fi
}

/* hyi_callout_end: own again. The fast path (take_back) sets the returning flag, reads vmOwner
 * and, if it is still RES(me), stores me: three steps, no lock, no read-modify-write. */
inline callout_end(me) {
    atomic { ret[me] = true; returning[me] = true };
    got = (owner == RES(me));
    if
    :: got -> atomic { owner = me; ENTER(me) }; got = false
    :: else -> own(me)
    fi;
    incall = false                           /* in_callout := 0 */
}

/* A thread that makes callouts: attach (own), then ROUNDS times: run its process (with an
 * attention poll that hands the VM to a waiter and queues again: HYI_RUN_HANDBACK on a
 * non-worker thread), callout begin, the foreign call, callout end; then detach (release). */
proctype caller(byte me) {
    byte r = 0, next = 0, victim = 0;
    bool got = false, back = false;
    own(me);
    do
    :: r < ROUNDS ->
progress_run:
        assert(owner == me && ins[me]);      /* runs its process */
        if
        :: nwaiting > 0 -> release(me); own(me)     /* poll: a thread waits */
        :: else -> skip
        fi;
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

/* The pool worker (worker_main): idle on worker_sem until posted; takes the VM over only if
 * it sits unowned inside a callout with nobody queued (hyi_thread_try_takeover); runs other
 * processes; at each attention poll, when a thread waits, hands the VM to it
 * (hyi_thread_handback) and goes idle; when nothing is left to run, releases it and goes idle. */
proctype worker(byte me) {
    byte next = 0, victim = 0;
    bool got = false, back = false;
    do
    :: widle = true;                         /* idle_workers++ */
end_idle:
        atomic { wsem > 0 -> wsem-- };
        widle = false;                       /* idle_workers-- */
        lock(me);
        if
        :: qlen == 0 && incall -> take_free(me)
        :: else -> got = false
        fi;
        unlock();
        if
        :: got ->
            got = false;
            do
            :: nwaiting > 0 -> break         /* poll: a thread wants the VM */
            :: else ->
                if
                :: skip; progress_slice: assert(owner == me && ins[me])   /* runs a process */
                :: break                     /* nothing left to run */
                fi
            od;
            release(me)
        :: else -> skip
        fi
    od
}

/* The heartbeat: each beat, when the VM is unowned inside the same callout as at the previous
 * beat and a process is runnable, wake a worker. It stops when the callout threads are done
 * (the VM ends); until then it beats for ever.
 * A beat is one step here although the C reads in_callout, vmOwner and nrunnable one after
 * the other and wakes the worker after that: the decision only permits a wake-up, whether a
 * process is runnable is left open, and a woken worker re-checks everything under the lock, so
 * the split interleavings add no behaviour, only states. */
proctype heartbeat() {
    do
    :: atomic {
        ndone < NC ->
        if
        :: incall && FREE(owner) ->
            if
            :: seen -> if :: wake_worker() :: skip fi   /* runnable, or not */
            :: else -> skip
            fi;
            seen = true
        :: else -> seen = false
        fi
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
/* No lost wake-up: the queue is never non-empty while nobody owns the VM for good, and a thread
 * in the queue (waiting on its semaphore) is eventually handed the VM. */
ltl no_lost_wakeup {
    ([] <> !(qlen > 0 && FREE(owner))) && [] (waiting[1] -> <> ins[1]) && [] (waiting[2] -> <> ins[2])
}
/* Every callout thread that returns from its foreign call eventually owns the VM. */
ltl returning_owns {
    [] (ret[1] -> <> ins[1]) && [] (ret[2] -> <> ins[2])
}
#endif
