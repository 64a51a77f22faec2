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
 *  - Old objects never move; pinned ones are old. No mark bit is set outside a full GC.
 *  - The remembered set lists old objects that may hold young oops. When it cannot grow (no
 *    memory), rs_overflow makes the next scavenge scan all of old space instead.
 *  - A collection never fails half-way: tenuring ignores the heap limit (and sets over_limit),
 *    and its work list is reserved up front for the worst case.
 */
#include "vm.h"

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
#define HEAP_STRESS_FULL_EVERY 1000
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
    hyi_oop free_big;             /* chunks above HEAP_SMALL_MAX, first fit */
    size_t in_use;                /* bytes of old objects (free chunks not counted) */
    size_t full_trigger;          /* in_use that makes the next safe point run a full GC */
    bool full_pending;
    bool in_gc;
    bool rs_overflow;
    uint8_t *eden_end;            /* real end of eden */

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

static uint32_t next_hash(hyi_heap *h) {
    uint32_t x = h->hash_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    h->hash_state = x;
    uint32_t v = (x >> 7) & ((1u << HYI_HASH_BITS) - 1);
    return v ? v : 1;
}

/* Bytes of a whole object of this format and size, or 0 when it is too big to exist. */
static size_t object_bytes(hyi_format fmt, uint32_t size) {
    size_t payload = hyi_payload_bytes(fmt, size);
    if (payload > HEAP_MAX_OBJECT) return 0;
    return sizeof(hyi_obj) + payload;
}

/* Header and payload of a fresh object at p: zeroed, pointer slots nil. */
static hyi_oop init_object(hy_vm *vm, uint8_t *p, size_t bytes, hyi_oop cls, hyi_format fmt,
                           uint32_t size, bool old) {
    hyi_obj *o = (hyi_obj *)p;
    memset(o, 0, bytes);
    o->cls = cls;
    o->size = size;
    o->format = fmt;
    o->old = old;
    o->hash = next_hash(&vm->heap);
    hyi_oop oop = (hyi_oop)p;
    if (hyi_fmt_has_slots(fmt)) {
        hyi_oop *s = hyi_slots(oop);
        for (uint32_t i = 0; i < size; i++) s[i] = vm->nil;
    } else if (fmt == HYI_FMT_METHOD && bytes >= sizeof(hyi_obj) + HYI_METHOD_OOPS * sizeof(hyi_oop)) {
        hyi_oop *s = hyi_slots(oop);
        for (uint32_t i = 0; i < HYI_METHOD_OOPS; i++) s[i] = vm->nil;
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

static uint8_t *alloc_from_lists(struct hyi_old_space *os, size_t bytes) {
    if (bytes <= HEAP_SMALL_MAX) {
        hyi_oop c = os->free_small[bytes / 8];
        if (c) {
            os->free_small[bytes / 8] = hyi_o(c)->cls;
            return (uint8_t *)c;
        }
        for (size_t b = bytes + HEAP_MIN_CHUNK; b <= HEAP_SMALL_MAX; b += 8) {
            c = os->free_small[b / 8];
            if (c) {
                os->free_small[b / 8] = hyi_o(c)->cls;
                return take_chunk(os, c, bytes);
            }
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

static segment *segment_new(struct hyi_old_space *os, size_t bytes, bool large) {
    segment *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->map_bytes = page_round(bytes);
    s->base = map_bytes(s->map_bytes);
    if (!s->base) {
        free(s);
        return NULL;
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

/* Old-space memory for bytes, ignoring the heap limit; NULL only when the OS has none. */
static uint8_t *old_raw_alloc(struct hyi_old_space *os, size_t bytes) {
    if (bytes > HEAP_LARGE_SEG) {
        segment *s = segment_new(os, bytes, true);
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
    segment *s = segment_new(os, HEAP_SEGMENT, false);
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

static hyi_oop alloc_old_checked(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size, bool remember) {
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    size_t bytes = object_bytes(fmt, size);
    if (!bytes) return 0;
    if (!os->in_gc) {
        if (h->stress && h->stress_full_every && ++h->stress_count % h->stress_full_every == 0)
            collect_for_allocation(vm, true);
        else if (h->over_limit || !fits_limit(h, bytes) || os->full_pending || os->in_use + bytes > os->full_trigger)
            collect_for_allocation(vm, true);
        if (!fits_limit(h, bytes)) return 0;
    }
    uint8_t *p = old_raw_alloc(os, bytes);
    if (!p) return 0;
    os->in_use += bytes;
    hyi_oop o = init_object(vm, p, bytes, cls, fmt, size, true);
    if (remember) hyi_heap_remember(vm, o);
    set_eden_limit(h);
    return o;
}

hyi_oop hyi_heap_alloc_old(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size) {
    return alloc_old_checked(vm, cls, fmt, size, false);
}

hyi_oop hyi_heap_alloc(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size) {
    hyi_heap *h = &vm->heap;
    size_t bytes = object_bytes(fmt, size);
    if (!bytes) return 0;
    if (bytes > HEAP_YOUNG_MAX || bytes > h->eden_size / 4) {
        /* Callers may fill a "young" object without the write barrier: remember it so the
         * next scavenge scans it anyway. */
        return alloc_old_checked(vm, cls, fmt, size, true);
    }
    if (!h->stress && (size_t)(h->eden_hi - h->eden_top) >= bytes) {
        uint8_t *p = h->eden_top;
        h->eden_top += bytes;
        h->stats.young_bytes += bytes;
        return init_object(vm, p, bytes, cls, fmt, size, false);
    }
    /* Slow path: collect until the object fits, or give up at the limit. */
    if (h->stress) {
        bool full = h->stress_full_every && ++h->stress_count % h->stress_full_every == 0;
        collect_for_allocation(vm, full);
    } else if (h->over_limit) {
        collect_for_allocation(vm, true);
    } else {
        collect_for_allocation(vm, false);
        if ((size_t)(h->eden_hi - h->eden_top) < bytes) collect_for_allocation(vm, true);
    }
    if ((size_t)(h->eden_hi - h->eden_top) < bytes || !fits_limit(h, bytes)) return 0;
    uint8_t *p = h->eden_top;
    h->eden_top += bytes;
    h->stats.young_bytes += bytes;
    return init_object(vm, p, bytes, cls, fmt, size, false);
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

/* ---- Collections (placeholder until the collectors land) ------------------------------------ */

static void collect_for_allocation(hy_vm *vm, bool full) {
    (void)vm;
    (void)full;
}

void hyi_gc_scavenge(hy_vm *vm) { (void)vm; }
void hyi_gc_full(hy_vm *vm) { (void)vm; }

bool hyi_heap_pin(hy_vm *vm, hyi_oop *ref) {
    (void)vm;
    if (!hyi_is_ptr(*ref) || !*ref || !hyi_o(*ref)->old) return false;
    hyi_o(*ref)->pinned = 1;
    return true;
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
    hyi_heap *h = &vm->heap;
    struct hyi_old_space *os = h->old;
    if (h->young_lo) munmap(h->young_lo, (size_t)(h->young_hi - h->young_lo));
    if (os) {
        for (segment *s = os->segments, *next; s; s = next) {
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
