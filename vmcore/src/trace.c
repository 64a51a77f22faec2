/*
 * trace.c -- the trace recorder (trace.h) and the public hy_trace functions (hy_vm.h).
 *
 * A hy_trace keeps one record per VM that traced, in a list guarded by its mutex (taken only to
 * add a VM and to write the file). A record holds that VM's events in fixed-size chunks that are
 * allocated on first use and never move: an appending thread claims a slot with one atomic add,
 * fills it and sets its ready flag (release); the writer reads only ready slots. Threads are
 * told apart by pthread_self() and shown by their kernel thread id, looked up once per thread
 * and VM in a small append-only table. Writing sorts the events of all VMs by time.
 */
#include "trace.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHUNK_EVENTS 1024
#define MAX_CHUNKS 2048          /* per VM */
#define TRACE_CHUNKS 2048        /* per trace, shared by its VMs: about 2M events */
#define MAX_TIDS 256             /* threads of one VM with a cached kernel id */
#define TEXT_BYTES 42

typedef enum ev_kind {
    EV_OWN_B, EV_OWN_E, EV_PROC_B, EV_PROC_E, EV_CALLOUT_B, EV_CALLOUT_E, EV_CALLBACK_B,
    EV_CALLBACK_E, EV_IDLE_B, EV_IDLE_E, EV_GC, EV_TAKEOVER, EV_WAKE, EV_ROLE, EV_UNCLOSED,
} ev_kind;

/* An ownership span opened by an owner-only hook rather than by hyi_trace_own_begin. */
#define HOW_RUNNING 99

typedef struct event {
    uint64_t ts, dur;        /* ns */
    uint64_t a[3];           /* arguments, by kind */
    int32_t tid;
    uint8_t kind;
    _Atomic uint8_t ready;
    char text[TEXT_BYTES];   /* a callout's function name, NUL-terminated */
} event;

typedef struct tid_slot {
    _Atomic uint64_t key;    /* pthread_self() of the thread, 0 = free */
    _Atomic int32_t tid;
    uint8_t pending;         /* only this thread's: how it is about to own the VM, plus 1; 0 = unknown */
} tid_slot;

struct hyi_trace_vm {
    struct hyi_trace_vm *next;
    hy_trace *trace;
    unsigned pid;
    char *name;
    _Atomic uint64_t count;               /* slots claimed */
    _Atomic(event *) chunks[MAX_CHUNKS];
    _Atomic uint32_t ntids;
    tid_slot tids[MAX_TIDS];
    /* Owner state (trace.h): handed from thread to thread with the VM. */
    int32_t owner_tid;                    /* thread whose ownership span is open, 0 = none */
    uint32_t open_process;                /* process whose span is open there, 0 = none */
    int32_t callout_tid;                  /* thread of the last call (or idle sleep) that left the VM */
    char callout[TEXT_BYTES];
};

struct hy_trace {
    pthread_mutex_t lock;                 /* vms */
    struct hyi_trace_vm *vms;             /* newest first */
    _Atomic int32_t chunks_left;
    _Atomic uint64_t dropped;
};

/* ---- Threads ---------------------------------------------------------------------------- */

static uint64_t self_key(void) {
    pthread_t me = pthread_self();
    uint64_t k = 0;
    memcpy(&k, &me, sizeof me < sizeof k ? sizeof me : sizeof k);
    return k;
}

/* The calling thread in this VM: its kernel id, its slot (NULL when the table is full), and
 * whether it is the first time this VM sees it. */
typedef struct self {
    int32_t tid;
    bool fresh;
    tid_slot *slot;
} self;

static self who(struct hyi_trace_vm *tv) {
    uint64_t key = self_key();
    uint32_t n = atomic_load_explicit(&tv->ntids, memory_order_acquire);
    if (n > MAX_TIDS) n = MAX_TIDS;
    for (uint32_t i = 0; i < n; i++)
        if (atomic_load_explicit(&tv->tids[i].key, memory_order_acquire) == key)
            return (self){ atomic_load_explicit(&tv->tids[i].tid, memory_order_relaxed), false, &tv->tids[i] };
    int32_t tid = (int32_t)syscall(SYS_gettid);
    uint32_t i = atomic_fetch_add_explicit(&tv->ntids, 1, memory_order_acq_rel);
    if (i >= MAX_TIDS) return (self){ tid, true, NULL };
    atomic_store_explicit(&tv->tids[i].tid, tid, memory_order_relaxed);
    atomic_store_explicit(&tv->tids[i].key, key, memory_order_release);
    return (self){ tid, true, &tv->tids[i] };
}

/* Remember how the calling thread is about to own the VM (for a span that an owner-only hook
 * opens before hyi_trace_own_begin runs, e.g. when the call that owns it installs a process). */
static void expect_own(self me, hyi_trace_how how) {
    if (me.slot) me.slot->pending = (uint8_t)(how + 1);
}

/* ---- Appending ---------------------------------------------------------------------------- */

static event *chunk_new(struct hyi_trace_vm *tv, uint64_t c) {
    hy_trace *t = tv->trace;
    int32_t left = atomic_load_explicit(&t->chunks_left, memory_order_relaxed);
    do {
        if (left <= 0) return NULL;
    } while (!atomic_compare_exchange_weak_explicit(&t->chunks_left, &left, left - 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    event *fresh = calloc(CHUNK_EVENTS, sizeof *fresh);
    event *seen = NULL;
    if (fresh && atomic_compare_exchange_strong_explicit(&tv->chunks[c], &seen, fresh, memory_order_acq_rel,
                                                         memory_order_acquire))
        return fresh;
    /* Out of memory, or another thread installed the chunk first. */
    free(fresh);
    atomic_fetch_add_explicit(&t->chunks_left, 1, memory_order_relaxed);
    return seen;
}

/* Record an event (text: len bytes, may be NULL). Drops it, counting, when the trace is full. */
static void put(struct hyi_trace_vm *tv, ev_kind kind, int32_t tid, uint64_t ts, uint64_t dur, uint64_t a0,
                uint64_t a1, uint64_t a2, const char *text, size_t len) {
    uint64_t i = atomic_fetch_add_explicit(&tv->count, 1, memory_order_relaxed);
    uint64_t c = i / CHUNK_EVENTS;
    event *chunk = c < MAX_CHUNKS ? atomic_load_explicit(&tv->chunks[c], memory_order_acquire) : NULL;
    if (!chunk && c < MAX_CHUNKS) chunk = chunk_new(tv, c);
    if (!chunk) {
        atomic_fetch_add_explicit(&tv->trace->dropped, 1, memory_order_relaxed);
        return;
    }
    event *e = &chunk[i % CHUNK_EVENTS];
    e->ts = ts;
    e->dur = dur;
    e->a[0] = a0;
    e->a[1] = a1;
    e->a[2] = a2;
    e->tid = tid;
    e->kind = (uint8_t)kind;
    if (len > TEXT_BYTES - 1) len = TEXT_BYTES - 1;
    if (text) memcpy(e->text, text, len);
    e->text[text ? len : 0] = 0;
    atomic_store_explicit(&e->ready, 1, memory_order_release);
}

/* ---- Owner state ---------------------------------------------------------------------------- */

/* Open the calling thread's ownership span unless it is open. A span still open on another
 * thread means a release without hyi_trace_own_end: it is closed here and flagged. */
static void own_open(struct hyi_trace_vm *tv, self me, uint64_t ts, uint64_t how) {
    int32_t tid = me.tid;
    if (me.slot) {
        if (how == HOW_RUNNING && me.slot->pending) how = me.slot->pending - 1u;
        me.slot->pending = 0;
    }
    if (tv->owner_tid == tid) return;
    if (tv->owner_tid) {
        put(tv, EV_UNCLOSED, tv->owner_tid, ts, 0, 0, 0, 0, NULL, 0);
        if (tv->open_process) put(tv, EV_PROC_E, tv->owner_tid, ts, 0, 0, 0, 0, NULL, 0);
        put(tv, EV_OWN_E, tv->owner_tid, ts, 0, 0, 0, 0, NULL, 0);
        tv->open_process = 0;
    }
    put(tv, EV_OWN_B, tid, ts, 0, how, 0, 0, NULL, 0);
    tv->owner_tid = tid;
}

/* Close the calling thread's process and ownership spans, if open. */
static void own_close(struct hyi_trace_vm *tv, int32_t tid, uint64_t ts) {
    if (tv->owner_tid != tid) return;
    if (tv->open_process) put(tv, EV_PROC_E, tid, ts, 0, 0, 0, 0, NULL, 0);
    put(tv, EV_OWN_E, tid, ts, 0, 0, 0, 0, NULL, 0);
    tv->open_process = 0;
    tv->owner_tid = 0;
}

static void process_open(struct hyi_trace_vm *tv, int32_t tid, uint64_t ts, uint32_t id, int priority) {
    put(tv, EV_PROC_B, tid, ts, 0, id, (uint64_t)(int64_t)priority, 0, NULL, 0);
    tv->open_process = id;
}

/* ---- Hooks ------------------------------------------------------------------------------------ */

bool hyi_trace_vm_init(hy_vm *vm) {
    hy_trace *t = vm->config.trace;
    if (!t) return true;
    struct hyi_trace_vm *tv = calloc(1, sizeof *tv);
    if (!tv) return false;
    tv->name = strdup(vm->config.name ? vm->config.name : "vm");
    if (!tv->name) { free(tv); return false; }
    tv->trace = t;
    tv->pid = vm->config.id;
    pthread_mutex_lock(&t->lock);
    tv->next = t->vms;
    t->vms = tv;
    pthread_mutex_unlock(&t->lock);
    vm->trace_vm = tv;
    return true;
}

void hyi_trace_vm_fini(hy_vm *vm) { vm->trace_vm = NULL; }

void hyi_trace_role_set(hy_vm *vm, hyi_trace_role role) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    /* Look the kernel id up again: a thread that ended may have left its pthread_t to this one. */
    int32_t tid = (int32_t)syscall(SYS_gettid);
    if (!me.fresh && me.slot && me.tid != tid) atomic_store_explicit(&me.slot->tid, tid, memory_order_relaxed);
    put(tv, EV_ROLE, tid, hyi_now_ns(), 0, (uint64_t)role, 0, 0, NULL, 0);
}

void hyi_trace_own_begin(hy_vm *vm, hyi_trace_how how, bool resume) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    uint64_t ts = hyi_now_ns();
    own_open(tv, me, ts, (uint64_t)how);
    if (resume && vm->current_process && tv->open_process != vm->current_process)
        process_open(tv, me.tid, ts, vm->current_process, vm->current_priority);
}

void hyi_trace_own_end(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    own_close(tv, who(tv).tid, hyi_now_ns());
}

void hyi_trace_callout_begin(hy_vm *vm, const char *name, size_t len, hyi_trace_call mode) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    int32_t tid = who(tv).tid;
    uint64_t ts = hyi_now_ns();
    if (mode != HYI_TRACE_UNTHREADED) {
        own_close(tv, tid, ts);
        size_t n = len < TEXT_BYTES - 1 ? len : TEXT_BYTES - 1;
        memcpy(tv->callout, name, n);
        tv->callout[n] = 0;
        tv->callout_tid = tid;
    }
    put(tv, EV_CALLOUT_B, tid, ts, 0, (uint64_t)mode, vm->current_process, 0, name, len);
}

void hyi_trace_callout_end(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    expect_own(me, HYI_TRACE_CALLOUT_RETURN);
    put(tv, EV_CALLOUT_E, me.tid, hyi_now_ns(), 0, 0, 0, 0, NULL, 0);
}

void hyi_trace_idle_begin(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    int32_t tid = who(tv).tid;
    uint64_t ts = hyi_now_ns();
    own_close(tv, tid, ts);
    memcpy(tv->callout, "idle", 5);
    tv->callout_tid = tid;
    put(tv, EV_IDLE_B, tid, ts, 0, 0, 0, 0, NULL, 0);
}

void hyi_trace_idle_end(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    expect_own(me, HYI_TRACE_IDLE_END);
    put(tv, EV_IDLE_E, me.tid, hyi_now_ns(), 0, 0, 0, 0, NULL, 0);
}

void hyi_trace_callback_wait(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    /* A thread this VM has not seen before is a foreign one. */
    if (me.fresh) put(tv, EV_ROLE, me.tid, hyi_now_ns(), 0, HYI_TRACE_FOREIGN, 0, 0, NULL, 0);
    expect_own(me, HYI_TRACE_CALLBACK);
}

void hyi_trace_callback_begin(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    uint64_t ts = hyi_now_ns();
    own_open(tv, me, ts, HYI_TRACE_CALLBACK);
    put(tv, EV_CALLBACK_B, me.tid, ts, 0, 0, 0, 0, NULL, 0);
}

void hyi_trace_callback_end(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    put(tv, EV_CALLBACK_E, who(tv).tid, hyi_now_ns(), 0, 0, 0, 0, NULL, 0);
}

void hyi_trace_takeover(hy_vm *vm) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    uint64_t ts = hyi_now_ns();
    own_open(tv, me, ts, HYI_TRACE_TAKEOVER);
    put(tv, EV_TAKEOVER, me.tid, ts, 0, (uint64_t)(int64_t)tv->callout_tid, vm->current_process, 0, tv->callout,
        strlen(tv->callout));
}

void hyi_trace_wake_worker(hy_vm *vm, bool delay_due) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    put(tv, EV_WAKE, who(tv).tid, hyi_now_ns(), 0, delay_due, 0, 0, NULL, 0);
}

void hyi_trace_process(hy_vm *vm, uint32_t id, int priority) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    if (id == tv->open_process) return;
    self me = who(tv);
    uint64_t ts = hyi_now_ns();
    if (id) own_open(tv, me, ts, HOW_RUNNING);
    if (tv->open_process && tv->owner_tid == me.tid) put(tv, EV_PROC_E, me.tid, ts, 0, 0, 0, 0, NULL, 0);
    tv->open_process = 0;
    if (id) process_open(tv, me.tid, ts, id, priority);
}

void hyi_trace_gc(hy_vm *vm, hyi_trace_gc_kind kind, uint64_t start_ns, uint64_t bytes_before, uint64_t bytes_after,
                  uint64_t bytes_promoted) {
    struct hyi_trace_vm *tv = vm->trace_vm;
    self me = who(tv);
    uint64_t end = hyi_now_ns();
    own_open(tv, me, start_ns, HOW_RUNNING);
    char k = (char)kind;   /* the kind goes in the text */
    put(tv, EV_GC, me.tid, start_ns, end - start_ns, bytes_before, bytes_after, bytes_promoted, &k, 1);
}

/* ---- The public trace object -------------------------------------------------------------- */

hy_err hy_trace_new(hy_trace **out) {
    if (!out) return HY_EINVAL;
    hy_trace *t = calloc(1, sizeof *t);
    if (!t) return HY_ENOMEM;
    pthread_mutex_init(&t->lock, NULL);
    atomic_init(&t->chunks_left, TRACE_CHUNKS);
    *out = t;
    return HY_OK;
}

void hy_trace_free(hy_trace *t) {
    if (!t) return;
    for (struct hyi_trace_vm *tv = t->vms, *next; tv; tv = next) {
        next = tv->next;
        for (uint32_t c = 0; c < MAX_CHUNKS; c++) free(atomic_load_explicit(&tv->chunks[c], memory_order_acquire));
        free(tv->name);
        free(tv);
    }
    pthread_mutex_destroy(&t->lock);
    free(t);
}

/* ---- Writing JSON -------------------------------------------------------------------------------- */

/* A JSON string: quotes, backslashes and control characters escaped, bytes that are not UTF-8
 * replaced by U+FFFD. */
static void put_string(FILE *f, const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    fputc('"', f);
    while (p < end) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') { fputc('\\', f); fputc(c, f); p++; continue; }
        if (c < 0x20) { fprintf(f, "\\u%04x", c); p++; continue; }
        if (c < 0x80) { fputc(c, f); p++; continue; }
        /* The length of a well-formed sequence starting here, or 0. */
        size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (n && (size_t)(end - p) >= n) {
            bool ok = true;
            for (size_t k = 1; k < n; k++) ok &= (p[k] & 0xc0) == 0x80;
            if (ok && c == 0xe0) ok = p[1] >= 0xa0;          /* overlong */
            if (ok && c == 0xed) ok = p[1] < 0xa0;           /* surrogates */
            if (ok && c == 0xf0) ok = p[1] >= 0x90;          /* overlong */
            if (ok && c == 0xf4) ok = p[1] < 0x90;           /* beyond U+10FFFF */
            if (ok) { fwrite(p, 1, n, f); p += n; continue; }
        }
        fputs("\\ufffd", f);
        p++;
    }
    fputc('"', f);
}

static void put_ts(FILE *f, uint64_t ns) { fprintf(f, "%" PRIu64 ".%03u", ns / 1000, (unsigned)(ns % 1000)); }

typedef struct item {
    uint64_t ts, seq;
    const event *e;
    const struct hyi_trace_vm *tv;
} item;

static int item_cmp(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The slot i of tv if it holds a recorded event. */
static const event *slot(const struct hyi_trace_vm *tv, uint64_t i) {
    const event *chunk = atomic_load_explicit(&((struct hyi_trace_vm *)tv)->chunks[i / CHUNK_EVENTS], memory_order_acquire);
    if (!chunk) return NULL;
    const event *e = &chunk[i % CHUNK_EVENTS];
    return atomic_load_explicit(&((event *)e)->ready, memory_order_acquire) ? e : NULL;
}

static uint64_t recorded(const struct hyi_trace_vm *tv) {
    uint64_t n = atomic_load_explicit(&((struct hyi_trace_vm *)tv)->count, memory_order_acquire);
    return n < (uint64_t)MAX_CHUNKS * CHUNK_EVENTS ? n : (uint64_t)MAX_CHUNKS * CHUNK_EVENTS;
}

typedef struct thread_info {
    int32_t tid;
    int role;          /* hyi_trace_role, -1 = none */
    unsigned worker;   /* its number among the VM's workers */
} thread_info;

/* The metadata of one VM: its name and the names of its threads. */
static bool put_vm_metadata(FILE *f, const struct hyi_trace_vm *tv, bool *first) {
    thread_info *th = NULL;
    size_t nth = 0, cap = 0;
    unsigned workers = 0;
    uint64_t n = recorded(tv);
    for (uint64_t i = 0; i < n; i++) {
        const event *e = slot(tv, i);
        if (!e) continue;
        size_t k = 0;
        while (k < nth && th[k].tid != e->tid) k++;
        if (k == nth) {
            if (nth == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                thread_info *nt = realloc(th, ncap * sizeof *nt);
                if (!nt) { free(th); return false; }
                th = nt;
                cap = ncap;
            }
            th[nth++] = (thread_info){ .tid = e->tid, .role = -1 };
        }
        if (e->kind == EV_ROLE && (int)e->a[0] > th[k].role) {
            th[k].role = (int)e->a[0];
            if (e->a[0] == HYI_TRACE_WORKER) th[k].worker = ++workers;
        }
    }
    fprintf(f, "%s\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%u,\"args\":{\"name\":", *first ? "" : ",", tv->pid);
    *first = false;
    put_string(f, tv->name, strlen(tv->name));
    fprintf(f, "}},\n{\"name\":\"process_sort_index\",\"ph\":\"M\",\"pid\":%u,\"args\":{\"sort_index\":%u}}", tv->pid, tv->pid);
    for (size_t k = 0; k < nth; k++) {
        char name[32];
        unsigned order;
        switch (th[k].role) {
        case HYI_TRACE_MAIN: snprintf(name, sizeof name, "main"); order = 0; break;
        case HYI_TRACE_HEARTBEAT: snprintf(name, sizeof name, "heartbeat"); order = 1; break;
        case HYI_TRACE_WORKER: snprintf(name, sizeof name, "worker %u", th[k].worker); order = 1 + th[k].worker; break;
        case HYI_TRACE_FOREIGN: snprintf(name, sizeof name, "foreign"); order = 1000; break;
        /* Only the embedder's threads (making, freeing, saving the VM) have no role. */
        default: snprintf(name, sizeof name, "host"); order = 2000; break;
        }
        fprintf(f, ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%u,\"tid\":%" PRId32 ",\"args\":{\"name\":\"%s\"}}",
                tv->pid, th[k].tid, name);
        fprintf(f, ",\n{\"name\":\"thread_sort_index\",\"ph\":\"M\",\"pid\":%u,\"tid\":%" PRId32 ",\"args\":{\"sort_index\":%u}}",
                tv->pid, th[k].tid, order);
    }
    free(th);
    return true;
}

static const char *how_name(uint64_t how) {
    switch (how) {
    case HYI_TRACE_ATTACH: return "attach";
    case HYI_TRACE_CALLOUT_RETURN: return "callout return";
    case HYI_TRACE_IDLE_END: return "idle end";
    case HYI_TRACE_CALLBACK: return "callback";
    case HYI_TRACE_TAKEOVER: return "takeover";
    case HYI_TRACE_OWN_AGAIN: return "own again";
    default: return "running";
    }
}

static void put_event(FILE *f, const struct hyi_trace_vm *tv, const event *e) {
    static const char *const modes[] = { "threaded", "blocking", "unthreaded" };
    static const char *const gcs[] = { "scavenge", "scavenge (pin)", "full GC" };
    fprintf(f, ",\n{\"pid\":%u,\"tid\":%" PRId32 ",\"ts\":", tv->pid, e->tid);
    put_ts(f, e->ts);
    switch ((ev_kind)e->kind) {
    case EV_OWN_B:
        fprintf(f, ",\"ph\":\"B\",\"cat\":\"owner\",\"name\":\"owns VM\",\"args\":{\"how\":\"%s\"}}", how_name(e->a[0]));
        break;
    case EV_PROC_B:
        fprintf(f, ",\"ph\":\"B\",\"cat\":\"process\",\"name\":\"process %" PRIu64 "\",\"args\":{\"process\":%" PRIu64
                   ",\"priority\":%" PRId64 "}}", e->a[0], e->a[0], (int64_t)e->a[1]);
        break;
    case EV_CALLOUT_B:
        fputs(",\"ph\":\"B\",\"cat\":\"callout\",\"name\":", f);
        put_string(f, e->text, strlen(e->text));
        fprintf(f, ",\"args\":{\"mode\":\"%s\",\"process\":%" PRIu64 "}}", modes[e->a[0] < 3 ? e->a[0] : 0], e->a[1]);
        break;
    case EV_CALLBACK_B: fputs(",\"ph\":\"B\",\"cat\":\"callback\",\"name\":\"callback\"}", f); break;
    case EV_IDLE_B: fputs(",\"ph\":\"B\",\"cat\":\"idle\",\"name\":\"idle\"}", f); break;
    case EV_OWN_E: fputs(",\"ph\":\"E\",\"cat\":\"owner\"}", f); break;
    case EV_PROC_E: fputs(",\"ph\":\"E\",\"cat\":\"process\"}", f); break;
    case EV_CALLOUT_E: fputs(",\"ph\":\"E\",\"cat\":\"callout\"}", f); break;
    case EV_CALLBACK_E: fputs(",\"ph\":\"E\",\"cat\":\"callback\"}", f); break;
    case EV_IDLE_E: fputs(",\"ph\":\"E\",\"cat\":\"idle\"}", f); break;
    case EV_GC:
        fprintf(f, ",\"ph\":\"X\",\"dur\":");
        put_ts(f, e->dur);
        fprintf(f, ",\"cat\":\"gc\",\"name\":\"%s\",\"args\":{\"bytes_before\":%" PRIu64 ",\"bytes_after\":%" PRIu64
                   ",\"bytes_promoted\":%" PRIu64 "}}", gcs[(unsigned char)e->text[0] < 3 ? (unsigned char)e->text[0] : 0], e->a[0], e->a[1], e->a[2]);
        break;
    case EV_TAKEOVER:
        fputs(",\"ph\":\"i\",\"s\":\"t\",\"cat\":\"takeover\",\"name\":\"takeover\",\"args\":{\"callout\":", f);
        put_string(f, e->text, strlen(e->text));
        fprintf(f, ",\"from_tid\":%" PRId64 ",\"process\":%" PRIu64 "}}", (int64_t)e->a[0], e->a[1]);
        break;
    case EV_WAKE:
        fprintf(f, ",\"ph\":\"i\",\"s\":\"t\",\"cat\":\"heartbeat\",\"name\":\"wake worker\",\"args\":{\"reason\":\"%s\"}}",
                e->a[0] ? "delay due" : "long callout");
        break;
    case EV_UNCLOSED:
    default:
        fputs(",\"ph\":\"i\",\"s\":\"t\",\"cat\":\"trace-error\",\"name\":\"ownership span left open\"}", f);
        break;
    }
}

hy_err hy_trace_write_json(hy_trace *t, const char *path) {
    if (!t || !path) return HY_EINVAL;
    pthread_mutex_lock(&t->lock);
    size_t n = 0;
    for (const struct hyi_trace_vm *tv = t->vms; tv; tv = tv->next) n += recorded(tv);
    item *items = malloc((n ? n : 1) * sizeof *items);
    if (!items) { pthread_mutex_unlock(&t->lock); return HY_ENOMEM; }
    size_t m = 0;
    uint64_t seq = 0;
    for (const struct hyi_trace_vm *tv = t->vms; tv; tv = tv->next) {
        uint64_t k = recorded(tv);
        for (uint64_t i = 0; i < k && m < n; i++, seq++) {
            const event *e = slot(tv, i);
            if (e && e->kind != EV_ROLE) items[m++] = (item){ .ts = e->ts, .seq = seq, .e = e, .tv = tv };
        }
    }
    qsort(items, m, sizeof *items, item_cmp);

    hy_err err = HY_OK;
    FILE *f = fopen(path, "w");
    if (!f) { err = HY_ENOENT; goto out; }
    fprintf(f, "{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"hydra\",\"dropped_events\":%" PRIu64 "},"
               "\n\"traceEvents\":[", atomic_load_explicit(&t->dropped, memory_order_relaxed));
    bool first = true;
    for (const struct hyi_trace_vm *tv = t->vms; tv && err == HY_OK; tv = tv->next)
        if (!put_vm_metadata(f, tv, &first)) err = HY_ENOMEM;
    /* (Events come from VMs, so metadata came first and every event starts with a comma.) */
    for (size_t i = 0; i < m && err == HY_OK; i++) put_event(f, items[i].tv, items[i].e);
    fputs("\n]}\n", f);
    if (ferror(f)) err = HY_ENOENT;
    if (fclose(f) != 0 && err == HY_OK) err = HY_ENOENT;
out:
    pthread_mutex_unlock(&t->lock);
    free(items);
    return err;
}
