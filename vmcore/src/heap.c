/*
 * heap.c -- one VM's heap: bump allocation in eden, a copying scavenger for new space, and a
 * non-moving mark-sweep old space.
 *
 * Invariants:
 *  - New space is one mapping [young_lo, young_hi): eden, then survivor A, then survivor B.
 *    Eden allocation bumps eden_top up to eden_hi. eden_hi is the *effective* end: below the
 *    real end of eden when the heap limit leaves less room, so the fast path also enforces the
 *    limit. Between collections the "to" survivor space is empty.
 *  - Old space is a list of segments. Objects in a segment lie back to back from its base up to
 *    its walk end; dead ones become HYI_FMT_FREE chunks (free-list link in cls), so old space is
 *    always walkable. Objects larger than a quarter segment get a mapping of their own.
 *    Emptied segments are kept mapped (up to HEAP_SPARE_MAX bytes) and reused.
 *  - Old objects never move; pinned ones are old. No mark bit is set outside a full GC.
 *  - The remembered set lists old objects that may hold young oops. When it cannot grow (no
 *    memory), rs_overflow makes the next scavenge scan all of old space instead.
 *  - A collection never fails half-way: tenuring ignores the heap limit (and sets over_limit),
 *    and its work list is reserved up front for the worst case. (Only an OS refusing memory
 *    for an old segment while new space is full is fatal.)
 *  - GC stress (heap.stress) scavenges before young allocations (see stress_due) and runs a
 *    full GC every stress_full_every allocations (HYDRA_GC_STRESS_FULL_EVERY overrides it).
 */
#include "vm.h"
#include "trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HEAP_DEFAULT_EDEN ((size_t)4 << 20)
#define HEAP_MIN_EDEN ((size_t)64 << 10)
#define HEAP_SEGMENT ((size_t)1 << 20)
#define HEAP_LARGE_SEG (HEAP_SEGMENT / 4)        /* old objects above this get their own mapping */
#define HEAP_YOUNG_MAX ((size_t)64 << 10)        /* hyi_heap_alloc puts bigger objects in old space */
#define HEAP_MAX_OBJECT ((size_t)1 << 30)        /* no single object may be bigger */
#define HEAP_TENURE_AGE 2                        /* scavenges survived before tenuring */
#define HEAP_MIN_FULL_TRIGGER ((size_t)8 << 20)  /* old-space growth that triggers a full GC */
#define HEAP_SPARE_MAX ((size_t)32 << 20)        /* bytes of emptied mappings kept for reuse */
#define HEAP_STRESS_FULL_EVERY 1000
#define HEAP_STRESS_ROOT_BUDGET 16384            /* see stress_due() */
#define HEAP_SMALL_MAX 512                       /* exact-size free lists up to this many bytes */
#define HEAP_NUM_CLASSES (HEAP_SMALL_MAX / 8 + 1)
#define HEAP_MIN_CHUNK sizeof(hyi_obj)

typedef struct segment {
    struct segment *next;
    uint8_t *base;      /* mapping start */
    uint8_t *top;       /* objects and free chunks lie in [base, top) */
    uint8_t *end;       /* mapping end; [top, end) is unused bump room */
    size_t map_bytes;
    bool large;         /* holds one large object */
} segment;

struct hyi_old_space {
    segment *segments;
    segment *current;             /* segment that bump-allocates */
    hyi_oop free_small[HEAP_NUM_CLASSES]; /* exact sizes, by bytes / 8 */
    uint64_t small_bits;          /* bit (bytes / 8 - 1) set when that list is not empty */
    hyi_oop free_big;             /* chunks above HEAP_SMALL_MAX, first fit */
    size_t in_use;                /* bytes of old objects (free chunks not counted) */
    size_t full_trigger;          /* in_use that makes the next safe point run a full GC */
    bool full_pending;
    bool in_gc;
    bool rs_overflow;
    size_t last_roots;            /* root slots the last scavenge visited */
    size_t stress_skipped;        /* young allocations since the last stress scavenge */
    uint8_t *eden_end;            /* real end of eden */

    /* Emptied segments kept mapped for reuse (their pages are in memory already: a new mapping
     * costs a page fault per page, more than initialising a large object), at most spare_max
     * bytes of them. */
    segment *spare;
    size_t spare_bytes, spare_max;

    /* Scavenge work list of tenured objects still to scan, reserved for the worst case. */
    hyi_oop *promoted;
    size_t promoted_cap_bytes;

    /* Mark stack of the full GC (grows; overflow falls back to rescanning old space). */
    hyi_oop *mark;
    size_t mark_len, mark_cap;
    bool mark_overflow;
};

/* ---- Small helpers ---------------------------------------------------------------------- */

static size_t page_round(size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) & ~(pg - 1);
}

static void *map_bytes(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t young_in_use(const hyi_heap *h) {
    return (size_t)(h->eden_top - h->eden_lo) + (size_t)(h->surv_from_top - h->surv_from_lo);
}

static size_t total_in_use(const hyi_heap *h) { return h->old->in_use + young_in_use(h); }

static bool fits_limit(const hyi_heap *h, size_t extra) {
    return h->limit == 0 || total_in_use(h) + extra <= h->limit;
}

/* Recompute eden_hi: the real end of eden, or less when the heap limit leaves less room. */
static void set_eden_limit(hyi_heap *h) {
    uint8_t *end = h->old->eden_end;
    if (h->limit) {
        size_t other = h->old->in_use + (size_t)(h->surv_from_top - h->surv_from_lo);
        size_t room = other >= h->limit ? 0 : h->limit - other;
        if (room < (size_t)(end - h->eden_lo)) end = h->eden_lo + room;
        if (end < h->eden_top) end = h->eden_top;
    }
    h->eden_hi = end;
    h->stats.young_bytes = young_in_use(h);
    h->stats.old_bytes = h->old->in_use;
}

static uint32_t next_hash(hyi_heap *h) { return hyi_heap_next_hash(h); }

/* Bytes of a whole object of this format and size, or 0 when it is too big to exist. */
static size_t object_bytes(hyi_format fmt, uint32_t size) {
    size_t payload = hyi_payload_bytes(fmt, size);
    if (payload > HEAP_MAX_OBJECT) return 0;
    return sizeof(hyi_obj) + payload;
}

/* Header and payload of a fresh object at p: zeroed, pointer slots nil, but for the first keep
 * bytes of a byte object's body, left as they are for the caller to write. The header is built
 * in registers and stored whole (a bit-field update of memory just cleared would stall). */
static hyi_oop init_object(hy_vm *vm, uint8_t *p, size_t bytes, hyi_oop cls, hyi_format fmt,
                           uint32_t size, bool old, size_t keep) {
    hyi_obj hd = { .cls = cls, .size = size, .format = fmt, .old = old, .hash = next_hash(&vm->heap) };
    *(hyi_obj *)p = hd;
    hyi_oop oop = (hyi_oop)p;
    if (hyi_fmt_has_slots(fmt)) {
        hyi_oop *s = hyi_slots(oop), nil = vm->nil;
        for (uint32_t i = 0; i < size; i++) s[i] = nil;
    } else {
        memset(p + sizeof(hyi_obj) + keep, 0, bytes - sizeof(hyi_obj) - keep);
        if (fmt == HYI_FMT_METHOD && bytes >= sizeof(hyi_obj) + HYI_METHOD_OOPS * sizeof(hyi_oop))
            for (uint32_t i = 0; i < HYI_METHOD_OOPS; i++) hyi_slots(oop)[i] = vm->nil;
    }
    vm->heap.stats.bytes_allocated += bytes;
    return oop;
}

/* ---- Old space: segments and free lists ------------------------------------------------- */

static void make_free(uint8_t *p, size_t bytes) {
    hyi_obj *o = (hyi_obj *)p;
    memset(o, 0, sizeof *o);
    o->format = HYI_FMT_FREE;
    o->old = 1;
    o->size = (uint32_t)(bytes - sizeof(hyi_obj));
}

static size_t chunk_bytes(hyi_oop c) { return sizeof(hyi_obj) + hyi_size(c); }

/* Put a free chunk (already formatted) on its list. */
static void free_push(struct hyi_old_space *os, uint8_t *p, size_t bytes) {
    make_free(p, bytes);
    hyi_oop c = (hyi_oop)p;
    if (bytes <= HEAP_SMALL_MAX) {
        hyi_o(c)->cls = os->free_small[bytes / 8];
        os->free_small[bytes / 8] = c;
        os->small_bits |= (uint64_t)1 << (bytes / 8 - 1);
    } else {
        hyi_o(c)->cls = os->free_big;
        os->free_big = c;
    }
}

/* Take bytes from chunk c (already unlinked), putting any remainder back on a list. The caller
 * guarantees the remainder is 0 or at least one header. */
static uint8_t *take_chunk(struct hyi_old_space *os, hyi_oop c, size_t bytes) {
    size_t have = chunk_bytes(c);
    uint8_t *p = (uint8_t *)c;
    if (have > bytes) free_push(os, p + bytes, have - bytes);
    return p;
}

static bool splittable(size_t have, size_t want) {
    return have == want || have >= want + HEAP_MIN_CHUNK;
}

static hyi_oop small_pop(struct hyi_old_space *os, size_t cls) {
    hyi_oop c = os->free_small[cls];
    os->free_small[cls] = hyi_o(c)->cls;
    if (!os->free_small[cls]) os->small_bits &= ~((uint64_t)1 << (cls - 1));
    return c;
}

static uint8_t *alloc_from_lists(struct hyi_old_space *os, size_t bytes) {
    if (bytes <= HEAP_SMALL_MAX) {
        if (os->free_small[bytes / 8]) return (uint8_t *)small_pop(os, bytes / 8);
        /* The smallest bigger chunk that leaves a remainder of at least one header. */
        size_t first = (bytes + HEAP_MIN_CHUNK) / 8;
        if (first <= HEAP_SMALL_MAX / 8) {
            uint64_t bits = os->small_bits & ~(((uint64_t)1 << (first - 1)) - 1);
            if (bits) return take_chunk(os, small_pop(os, (size_t)__builtin_ctzll(bits) + 1), bytes);
        }
    }
    for (hyi_oop *link = &os->free_big; *link; link = &hyi_o(*link)->cls) {
        hyi_oop c = *link;
        if (splittable(chunk_bytes(c), bytes)) {
            *link = hyi_o(c)->cls;
            return take_chunk(os, c, bytes);
        }
    }
    return NULL;
}

/* The spare segment that best fits a mapping of n bytes (at most a quarter bigger), taken off
 * the spare list, or NULL. */
static segment *take_spare(struct hyi_old_space *os, size_t n) {
    segment **best = NULL;
    for (segment **l = &os->spare; *l; l = &(*l)->next)
        if ((*l)->map_bytes >= n && (*l)->map_bytes - n <= n / 4 && (!best || (*l)->map_bytes < (*best)->map_bytes))
            best = l;
    if (!best) return NULL;
    segment *s = *best;
    *best = s->next;
    os->spare_bytes -= s->map_bytes;
    return s;
}

static segment *segment_new(hyi_heap *h, size_t bytes, bool large) {
    struct hyi_old_space *os = h->old;
    size_t n = page_round(bytes);
    segment *s = take_spare(os, n);
    if (!s) {
        h->stats.old_mappings++;
        s = calloc(1, sizeof *s);
        if (!s) return NULL;
        s->map_bytes = n;
        s->base = map_bytes(n);
        if (!s->base) {
            free(s);
            return NULL;
        }
    }
    s->top = s->base;
    s->end = s->base + s->map_bytes;
    s->large = large;
    s->next = os->segments;
    os->segments = s;
    return s;
}

static void segment_free(segment *s) {
    munmap(s->base, s->map_bytes);
    free(s);
}

/* An emptied segment: kept for reuse while the spares stay within spare_max, else unmapped. */
static void segment_release(struct hyi_old_space *os, segment *s) {
    if (os->spare_bytes + s->map_bytes > os->spare_max) {
        segment_free(s);
        return;
    }
    s->next = os->spare;
    os->spare = s;
    os->spare_bytes += s->map_bytes;
}

/* Old-space memory for bytes, ignoring the heap limit; NULL only when the OS has none. */
static uint8_t *old_raw_alloc(hyi_heap *h, size_t bytes) {
    struct hyi_old_space *os = h->old;
    if (bytes > HEAP_LARGE_SEG) {
        segment *s = segment_new(h, bytes, true);
        if (!s) return NULL;
        s->top = s->base + bytes;
        return s->base;
    }
    uint8_t *p = alloc_from_lists(os, bytes);
    if (p) return p;
    segment *cur = os->current;
    if (cur && (size_t)(cur->end - cur->top) >= bytes) {
        p = cur->top;
        cur->top += bytes;
        return p;
    }
    segment *s = segment_new(h, HEAP_SEGMENT, false);
    if (!s) return NULL;
    if (cur && (size_t)(cur->end - cur->top) >= HEAP_MIN_CHUNK) {
        /* The old bump segment's tail becomes a free chunk (an 8-byte tail stays past top). */
        free_push(os, cur->top, (size_t)(cur->end - cur->top) & ~(size_t)7);
        cur->top += (size_t)(cur->end - cur->top) & ~(size_t)7;
    }
    os->current = s;
    p = s->top;
    s->top += bytes;
    return p;
}

/* ---- Allocation ---------------------------------------------------------------------------- */

static void collect_for_allocation(hy_vm *vm, bool full);

/* GC stress scavenges at every young allocation, except that when the roots are very many
 * (a deep recursion fills the value stack) it scavenges every k-th allocation, k growing with
 * the root count, so that stress runs stay linear instead of quadratic in the stack depth. */
static bool stress_due(struct hyi_old_space *os) {
    if (++os->stress_skipped < 1 + os->last_roots / HEAP_STRESS_ROOT_BUDGET) return false;
    os->stress_skipped = 0;
    return true;
}

static hyi_oop alloc_old_checked(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size, bool remember,
                                 size_t keep) {
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    size_t bytes = object_bytes(fmt, size);
    if (!bytes) return 0;
    if (!os->in_gc) {
        if (h->stress && h->stress_full_every && ++h->stress_count % h->stress_full_every == 0)
            collect_for_allocation(vm, true);
        else if (h->over_limit || !fits_limit(h, bytes) || os->full_pending || os->in_use > os->full_trigger)
            collect_for_allocation(vm, true);
        if (!fits_limit(h, bytes)) return 0;
    }
    uint8_t *p = old_raw_alloc(h, bytes);
    if (!p) return 0;
    os->in_use += bytes;
    hyi_oop o = init_object(vm, p, bytes, cls, fmt, size, true, keep);
    if (remember) hyi_heap_remember(vm, o);
    set_eden_limit(h);
    return o;
}

hyi_oop hyi_heap_alloc_old(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size) {
    return alloc_old_checked(vm, cls, fmt, size, false, 0);
}

static hyi_oop alloc(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size, size_t keep) {
    hyi_heap *h = &vm->heap;
    size_t bytes = object_bytes(fmt, size);
    if (!bytes) return 0;
    if (bytes > HEAP_YOUNG_MAX || bytes > h->eden_size / 4) {
        /* Callers may fill a "young" object without the write barrier: remember it so the
         * next scavenge scans it anyway. */
        return alloc_old_checked(vm, cls, fmt, size, true, keep);
    }
    if (!h->stress && (size_t)(h->eden_hi - h->eden_top) >= bytes) {
        uint8_t *p = h->eden_top;
        h->eden_top += bytes;
        h->stats.young_bytes += bytes;
        return init_object(vm, p, bytes, cls, fmt, size, false, keep);
    }
    /* Slow path: collect until the object fits, or give up at the limit. */
    uint64_t fulls = h->stats.full_gcs;
    bool full = h->over_limit;
    if (h->stress && h->stress_full_every && ++h->stress_count % h->stress_full_every == 0) full = true;
    bool room = (size_t)(h->eden_hi - h->eden_top) >= bytes;
    if (full || !room || !h->stress || stress_due(h->old)) collect_for_allocation(vm, full);
    room = (size_t)(h->eden_hi - h->eden_top) >= bytes;
    if (!room && h->stats.full_gcs == fulls) {
        collect_for_allocation(vm, true);
        room = (size_t)(h->eden_hi - h->eden_top) >= bytes;
    }
    if (!room) return 0;
    uint8_t *p = h->eden_top;
    h->eden_top += bytes;
    h->stats.young_bytes += bytes;
    return init_object(vm, p, bytes, cls, fmt, size, false, keep);
}

hyi_oop hyi_heap_alloc(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size) {
    return alloc(vm, cls, fmt, size, 0);
}

hyi_oop hyi_heap_alloc_bytes_to_fill(hy_vm *vm, hyi_oop cls, uint32_t size, uint32_t fill) {
    return alloc(vm, cls, HYI_FMT_BYTES, size, fill <= size ? fill : size);
}

/* ---- Remembered set ------------------------------------------------------------------------ */

void hyi_heap_remember(hy_vm *vm, hyi_oop obj) {
    hyi_heap *h = &vm->heap;
    hyi_o(obj)->remembered = 1;
    if (h->remembered_len == h->remembered_cap) {
        size_t ncap = h->remembered_cap ? h->remembered_cap * 2 : 256;
        hyi_oop *n = realloc(h->remembered, ncap * sizeof *n);
        if (!n) {
            h->old->rs_overflow = true;
            return;
        }
        h->remembered = n;
        h->remembered_cap = ncap;
    }
    h->remembered[h->remembered_len++] = obj;
}

/* ---- Reference scanning ------------------------------------------------------------------
 * The one place that knows which words of an object are oops. fn sees every oop slot,
 * including the class; slots may hold 0 during bootstrap. With weak_ics, inline caches lose
 * their class and target instead of having them traced (they are weak, see object.h).
 */
typedef void (*slot_fn)(void *ctx, hyi_oop *slot);

static inline void each_slot(hyi_oop o, slot_fn fn, void *ctx, bool weak_ics) {
    hyi_obj *hd = hyi_o(o);
    if (hd->cls) fn(ctx, &hd->cls);
    hyi_format f = (hyi_format)hd->format;
    if (hyi_fmt_has_slots(f)) {
        hyi_oop *s = hyi_slots(o);
        for (uint32_t i = 0, n = hd->size; i < n; i++) fn(ctx, &s[i]);
    } else if (f == HYI_FMT_METHOD) {
        size_t bytes = sizeof(hyi_obj) + hyi_payload_bytes(f, hd->size);
        if (bytes < sizeof(hyi_obj) + HYI_METHOD_OOPS * sizeof(hyi_oop)) return;
        hyi_oop *s = hyi_slots(o);
        for (uint32_t i = 0; i < HYI_METHOD_OOPS; i++) fn(ctx, &s[i]);
        if (bytes < sizeof(hyi_method)) return;
        hyi_method *m = hyi_m(o);
        /* A method still being built may have no valid cache table yet. */
        if (!m->num_ics || m->ic_offset < sizeof(hyi_method) ||
            m->ic_offset + (size_t)m->num_ics * sizeof(hyi_ic) > bytes)
            return;
        hyi_ic *ics = hyi_method_ics(m);
        for (uint32_t i = 0; i < m->num_ics; i++) {
            fn(ctx, &ics[i].selector);
            if (weak_ics) {
                ics[i].cls = 0;
                ics[i].target = 0;
            } else {
                if (ics[i].cls) fn(ctx, &ics[i].cls);
                if (ics[i].target) fn(ctx, &ics[i].target);
            }
        }
    }
}

static bool is_ref(hyi_oop o) { return o != 0 && hyi_is_ptr(o); }

static void heap_fatal(const char *why) {
    fprintf(stderr, "hydra: heap: %s\n", why);
    abort();
}

static void poison(uint8_t *lo, uint8_t *hi) {
#ifdef HYDRA_CHECKED
    /* Stale young pointers now read as wild addresses (low bit clear, non-canonical). */
    memset(lo, 0xd8, (size_t)(hi - lo));
#else
    (void)lo;
    (void)hi;
#endif
}

/* ---- Scavenge ---------------------------------------------------------------------------- */

typedef struct scavenger {
    hy_vm *vm;
    hyi_heap *h;
    uint8_t *to_top;      /* bump pointer in the "to" survivor space */
    size_t npromoted;     /* tenured objects queued for scanning */
    bool tenure_all;      /* full GC or pin: empty new space completely */
    bool saw_young;       /* the object being scanned still refers to new space */
    size_t nroots;
} scavenger;

static bool in_from_space(const scavenger *sc, hyi_oop o) {
    const hyi_heap *h = sc->h;
    return hyi_heap_is_young(h, o) &&
           (uintptr_t)((uint8_t *)o - h->surv_to_lo) >= (uintptr_t)(h->surv_to_hi - h->surv_to_lo);
}

/* Copy o (in eden or from-space) to the survivor space or to old space, once. */
static hyi_oop forward(scavenger *sc, hyi_oop o) {
    hyi_obj *hd = hyi_o(o);
    if (hd->forwarded) return hd->cls;
    hyi_heap *h = sc->h;
    struct hyi_old_space *os = h->old;
    size_t n = hyi_obj_bytes(o);
    bool to_survivor = !sc->tenure_all && hd->age < HEAP_TENURE_AGE &&
                       (size_t)(h->surv_to_hi - sc->to_top) >= n;
    uint8_t *dst = NULL;
    if (!to_survivor) {
        dst = old_raw_alloc(h, n);
        /* The OS refused memory: keep the object young if there is any room. */
        if (!dst && (size_t)(h->surv_to_hi - sc->to_top) >= n) to_survivor = true;
        else if (!dst) heap_fatal("out of memory while collecting");
    }
    if (to_survivor) {
        dst = sc->to_top;
        sc->to_top += n;
    }
    memcpy(dst, hd, n);
    hyi_obj *nh = (hyi_obj *)dst;
    if (to_survivor) {
        if (nh->age < 3) nh->age++;
    } else {
        nh->old = 1;
        nh->age = 0;
        nh->remembered = 0;
        os->in_use += n;
        h->stats.bytes_promoted += n;
        os->promoted[sc->npromoted++] = (hyi_oop)dst;
    }
    hd->forwarded = 1;
    hd->cls = (hyi_oop)dst;
    return (hyi_oop)dst;
}

static void scavenge_slot(void *ctx, hyi_oop *slot) {
    scavenger *sc = ctx;
    hyi_oop o = *slot;
    if (!hyi_heap_is_young(sc->h, o)) return;
    if (in_from_space(sc, o)) *slot = o = forward(sc, o);
    sc->saw_young = true;
}

static void scavenge_root(hy_vm *vm, hyi_oop *slot, void *arg) {
    (void)vm;
    scavenger *sc = arg;
    sc->nroots++;
    if (in_from_space(sc, *slot)) *slot = forward(sc, *slot);
}

/* Scan an old object that may refer to new space; keep it remembered while it does. */
static void scavenge_old_object(scavenger *sc, hyi_oop o) {
    sc->saw_young = false;
    each_slot(o, scavenge_slot, sc, false);
    if (sc->saw_young && !hyi_o(o)->remembered) hyi_heap_remember(sc->vm, o);
}

static void rescan_old_object(hy_vm *vm, hyi_oop o, void *arg) {
    (void)vm;
    scavenge_old_object(arg, o);
}

/* The whole scavenge; extra (may be NULL) is one more root slot. */
static void scavenge(hy_vm *vm, bool tenure_all, hyi_oop *extra) {
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    scavenger sc = { .vm = vm, .h = h, .to_top = h->surv_to_lo, .tenure_all = tenure_all };
    bool was_in_gc = os->in_gc;
    os->in_gc = true;

    hyi_vm_visit_roots(vm, scavenge_root, &sc);
    if (extra) scavenge_root(vm, extra, &sc);

    /* The remembered set: scan each entry, keep those that still refer to new space. */
    size_t n = h->remembered_len, kept = 0;
    h->remembered_len = 0;
    for (size_t i = 0; i < n; i++) {
        hyi_oop o = h->remembered[i];
        sc.saw_young = false;
        each_slot(o, scavenge_slot, &sc, false);
        if (sc.saw_young) h->remembered[kept++] = o;
        else hyi_o(o)->remembered = 0;
    }
    h->remembered_len = kept;
    if (os->rs_overflow) {
        /* Some old objects were not recorded: scan them all. */
        os->rs_overflow = false;
        hyi_heap_each_old(vm, rescan_old_object, &sc);
    }

    /* Cheney scan of the survivor copies, interleaved with the tenured objects. */
    uint8_t *scan = h->surv_to_lo;
    size_t pscan = 0;
    while (scan < sc.to_top || pscan < sc.npromoted) {
        while (scan < sc.to_top) {
            hyi_oop o = (hyi_oop)scan;
            each_slot(o, scavenge_slot, &sc, false);
            scan += hyi_obj_bytes(o);
        }
        while (pscan < sc.npromoted) scavenge_old_object(&sc, os->promoted[pscan++]);
    }

    /* Swap the survivor spaces; eden and the old "from" space are empty now. */
    poison(h->eden_lo, h->eden_top);
    poison(h->surv_from_lo, h->surv_from_top);
    uint8_t *lo = h->surv_from_lo, *hi = h->surv_from_hi;
    h->surv_from_lo = h->surv_to_lo;
    h->surv_from_hi = h->surv_to_hi;
    h->surv_from_top = sc.to_top;
    h->surv_to_lo = lo;
    h->surv_to_hi = hi;
    h->eden_top = h->eden_lo;

    if (os->in_use > os->full_trigger) os->full_pending = true;
    h->over_limit = h->limit && total_in_use(h) > h->limit;
    os->last_roots = sc.nroots;
    set_eden_limit(h);
    os->in_gc = was_in_gc;
}

static void note_pause(hyi_heap *h, uint64_t t0, uint64_t *total) {
    uint64_t dt = hyi_now_ns() - t0;
    *total += dt;
    if (dt > h->stats.max_pause_ns) h->stats.max_pause_ns = dt;
}

void hyi_gc_scavenge(hy_vm *vm) {
    hyi_heap *h = &vm->heap;
    if (h->old->in_gc) return;
    uint64_t t0 = hyi_now_ns(), before = total_in_use(h), promoted = h->stats.bytes_promoted;
    scavenge(vm, false, NULL);
    h->stats.scavenges++;
    note_pause(h, t0, &h->stats.scavenge_ns);
    if (hyi_tracing(vm))
        hyi_trace_gc(vm, HYI_TRACE_SCAVENGE, t0, before, total_in_use(h), h->stats.bytes_promoted - promoted);
}

/* ---- Full GC: mark ------------------------------------------------------------------------ */

static void mark_push(struct hyi_old_space *os, hyi_oop o) {
    if (os->mark_len == os->mark_cap) {
        size_t ncap = os->mark_cap ? os->mark_cap * 2 : 4096;
        hyi_oop *n = realloc(os->mark, ncap * sizeof *n);
        if (!n) {
            /* o stays marked but unscanned; the overflow pass finds it. */
            os->mark_overflow = true;
            return;
        }
        os->mark = n;
        os->mark_cap = ncap;
    }
    os->mark[os->mark_len++] = o;
}

static void mark_slot(void *ctx, hyi_oop *slot) {
    hyi_oop o = *slot;
    if (!is_ref(o) || hyi_o(o)->marked) return;
    hyi_o(o)->marked = 1;
    mark_push(ctx, o);
}

static void mark_root(hy_vm *vm, hyi_oop *slot, void *arg) {
    (void)vm;
    mark_slot(arg, slot);
}

static void mark_drain(struct hyi_old_space *os) {
    while (os->mark_len) each_slot(os->mark[--os->mark_len], mark_slot, os, true);
}

static void rescan_marked(hy_vm *vm, hyi_oop o, void *arg) {
    (void)vm;
    struct hyi_old_space *os = arg;
    if (!hyi_o(o)->marked) return;
    each_slot(o, mark_slot, os, true);
    mark_drain(os);
}

/* Objects the scavenge had to leave young (only when the OS refused memory). */
static void each_survivor(hyi_heap *h, void (*fn)(hy_vm *, hyi_oop, void *), hy_vm *vm, void *arg) {
    for (uint8_t *p = h->surv_from_lo; p < h->surv_from_top; p += hyi_obj_bytes((hyi_oop)p))
        fn(vm, (hyi_oop)p, arg);
}

static void unmark(hy_vm *vm, hyi_oop o, void *arg) {
    (void)vm;
    (void)arg;
    hyi_o(o)->marked = 0;
}

/* ---- Full GC: sweep ------------------------------------------------------------------------ */

/* Free every unmarked old object, coalescing neighbours into free chunks, and unmark the rest.
 * Returns the bytes freed. Segments left empty become spares or go back to the OS. */
static size_t sweep(struct hyi_old_space *os) {
    size_t freed = 0;
    memset(os->free_small, 0, sizeof os->free_small);
    os->small_bits = 0;
    os->free_big = 0;
    for (segment **link = &os->segments; *link;) {
        segment *s = *link;
        if (s->large) {
            hyi_oop o = (hyi_oop)s->base;
            if (hyi_o(o)->marked) {
                hyi_o(o)->marked = 0;
                link = &s->next;
            } else {
                size_t n = hyi_obj_bytes(o);
                freed += n;
                os->in_use -= n;
                *link = s->next;
                segment_release(os, s);
            }
            continue;
        }
        uint8_t *run = NULL;
        for (uint8_t *p = s->base; p < s->top;) {
            hyi_oop o = (hyi_oop)p;
            size_t n = hyi_obj_bytes(o);
            if (hyi_fmt(o) == HYI_FMT_FREE || !hyi_o(o)->marked) {
                if (hyi_fmt(o) != HYI_FMT_FREE) {
                    freed += n;
                    os->in_use -= n;
                }
                if (!run) run = p;
            } else {
                hyi_o(o)->marked = 0;
                if (run) free_push(os, run, (size_t)(p - run));
                run = NULL;
            }
            p += n;
        }
        if (run == s->base && s != os->current) {
            *link = s->next;
            segment_release(os, s);
            continue;
        }
        if (run && s == os->current) s->top = run; /* give the tail back to bump allocation */
        else if (run) free_push(os, run, (size_t)(s->top - run));
        link = &s->next;
    }
    return freed;
}

static void full_gc(hy_vm *vm) {
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    os->in_gc = true;
    /* 1. Empty new space, so that only old space needs marking and sweeping. */
    scavenge(vm, true, NULL);
    for (size_t i = 0; i < h->remembered_len; i++) hyi_o(h->remembered[i])->remembered = 0;
    h->remembered_len = 0;

    /* 2. Mark from the roots with an explicit stack. */
    os->mark_overflow = false;
    hyi_vm_visit_roots(vm, mark_root, os);
    mark_drain(os);
    while (os->mark_overflow) {
        os->mark_overflow = false;
        hyi_heap_each_old(vm, rescan_marked, os);
        each_survivor(h, rescan_marked, vm, os);
    }

    /* 3. Sweep. Survivors the scavenge could not tenure remember nothing; re-scan them next time. */
    h->stats.bytes_freed_old += sweep(os);
    each_survivor(h, unmark, vm, NULL);
    if (h->surv_from_top > h->surv_from_lo) os->rs_overflow = true;
    hyi_clear_method_cache(vm);   /* its classes are weak references */

    size_t trigger = os->in_use * 2;
    os->full_trigger = trigger > HEAP_MIN_FULL_TRIGGER ? trigger : HEAP_MIN_FULL_TRIGGER;
    os->full_pending = false;
    h->over_limit = h->limit && total_in_use(h) > h->limit;
    set_eden_limit(h);
    os->in_gc = false;
}

void hyi_gc_full(hy_vm *vm) {
    hyi_heap *h = &vm->heap;
    if (h->old->in_gc) return;
    uint64_t t0 = hyi_now_ns(), before = total_in_use(h), promoted = h->stats.bytes_promoted;
    full_gc(vm);
    h->stats.full_gcs++;
    note_pause(h, t0, &h->stats.full_gc_ns);
    if (hyi_tracing(vm))
        hyi_trace_gc(vm, HYI_TRACE_FULL_GC, t0, before, total_in_use(h), h->stats.bytes_promoted - promoted);
}

static void collect_for_allocation(hy_vm *vm, bool full) {
    if (!full) {
        hyi_gc_scavenge(vm);
        full = vm->heap.old->full_pending;
    }
    if (full) hyi_gc_full(vm);
}

/* ---- Pinning ------------------------------------------------------------------------------- */

bool hyi_heap_pin(hy_vm *vm, hyi_oop *ref) {
    hyi_heap *h = &vm->heap;
    if (!ref || !is_ref(*ref)) return false;
    if (!hyi_o(*ref)->old) {
        /* Tenuring everything never adds to the bytes in use, so the limit cannot stop it. */
        if (h->old->in_gc) return false;
        uint64_t t0 = hyi_now_ns(), before = total_in_use(h), promoted = h->stats.bytes_promoted;
        scavenge(vm, true, ref);
        h->stats.scavenges++;
        note_pause(h, t0, &h->stats.scavenge_ns);
        if (hyi_tracing(vm))
            hyi_trace_gc(vm, HYI_TRACE_PIN_SCAVENGE, t0, before, total_in_use(h), h->stats.bytes_promoted - promoted);
        if (!hyi_o(*ref)->old) return false;
    }
    hyi_o(*ref)->pinned = 1;
    return true;
}

/* ---- Adopting a region (images) ------------------------------------------------------------ */

uint8_t *hyi_heap_adopt_old(hy_vm *vm, size_t bytes) {
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    if (!bytes || bytes % 8) return NULL;
    segment *s = segment_new(h, bytes, false);
    if (!s) return NULL;
    s->top = s->base + bytes;
    os->in_use += bytes;
    size_t trigger = os->in_use * 2;
    if (trigger > os->full_trigger) os->full_trigger = trigger;
    set_eden_limit(h);
    return s->base;
}

/* ---- Walking old space ---------------------------------------------------------------------- */

void hyi_heap_each_old(hy_vm *vm, void (*fn)(hy_vm *vm, hyi_oop obj, void *arg), void *arg) {
    for (segment *s = vm->heap.old->segments; s; s = s->next) {
        for (uint8_t *p = s->base; p < s->top;) {
            hyi_oop o = (hyi_oop)p;
            size_t n = hyi_obj_bytes(o);
            if (hyi_fmt(o) != HYI_FMT_FREE) fn(vm, o, arg);
            p += n;
        }
    }
}

/* ---- Set-up and tear-down ------------------------------------------------------------------- */

bool hyi_heap_init(hy_vm *vm, const hyi_heap_config *cfg) {
    hyi_heap *h = &vm->heap;
    memset(h, 0, sizeof *h);
    struct hyi_old_space *os = calloc(1, sizeof *os);
    if (!os) return false;
    h->old = os;
    size_t eden = cfg && cfg->eden_size ? cfg->eden_size : HEAP_DEFAULT_EDEN;
    if (eden < HEAP_MIN_EDEN) eden = HEAP_MIN_EDEN;
    eden = page_round(eden);
    size_t surv = page_round(eden / 4);
    h->eden_size = eden;
    h->survivor_size = surv;
    h->limit = cfg ? cfg->limit : 0;
    os->spare_max = h->limit && h->limit / 4 < HEAP_SPARE_MAX ? h->limit / 4 : HEAP_SPARE_MAX;
    h->stress = cfg && cfg->gc_stress;
    h->stress_full_every = HEAP_STRESS_FULL_EVERY;
    const char *env = getenv("HYDRA_GC_STRESS_FULL_EVERY");
    if (env && *env) h->stress_full_every = (uint32_t)strtoul(env, NULL, 10);
    h->hash_state = 0x2545f491u ^ (uint32_t)((uintptr_t)vm >> 4);
    if (!h->hash_state) h->hash_state = 1;

    uint8_t *young = map_bytes(eden + 2 * surv);
    if (!young) goto fail;
    h->young_lo = young;
    h->young_hi = young + eden + 2 * surv;
    h->eden_lo = h->eden_top = young;
    os->eden_end = young + eden;
    h->surv_from_lo = h->surv_from_top = young + eden;
    h->surv_from_hi = young + eden + surv;
    h->surv_to_lo = young + eden + surv;
    h->surv_to_hi = young + eden + 2 * surv;

    /* Worst case of one scavenge: every young object tenured, each 16 bytes at least. */
    os->promoted_cap_bytes = page_round((eden + surv) / sizeof(hyi_obj) * sizeof(hyi_oop));
    os->promoted = map_bytes(os->promoted_cap_bytes);
    if (!os->promoted) goto fail;
    os->full_trigger = HEAP_MIN_FULL_TRIGGER;
    set_eden_limit(h);
    return true;
fail:
    hyi_heap_fini(vm);
    return false;
}

void hyi_heap_fini(hy_vm *vm) {
    if (!vm) return;
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    if (h->young_lo) munmap(h->young_lo, (size_t)(h->young_hi - h->young_lo));
    if (os) {
        for (segment *s = os->segments, *next; s; s = next) {
            next = s->next;
            segment_free(s);
        }
        for (segment *s = os->spare, *next; s; s = next) {
            next = s->next;
            segment_free(s);
        }
        if (os->promoted) munmap(os->promoted, os->promoted_cap_bytes);
        free(os->mark);
        free(os);
    }
    free(h->remembered);
    memset(h, 0, sizeof *h);
}
