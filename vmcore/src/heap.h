/*
 * heap.h -- one VM's heap: a copying new space and a non-moving old space.
 *
 * Invariants:
 *  - New space = eden + two survivor semispaces in one contiguous reservation, so "is young"
 *    is one range check. A scavenge copies live young objects to the other survivor space or,
 *    once old enough (or when the survivor space is full), into old space.
 *  - Old space never moves an object. Pinned objects are old objects. hyi_heap_pin moves a
 *    young object into old space by a scavenge that tenures it, and reports the new address.
 *  - The remembered set lists every old object that may hold a young pointer. hyi_store
 *    keeps it exact enough: an old object holding a young oop is always remembered.
 *  - Roots are what hyi_vm_visit_roots (vm.c) reports plus the remembered set. Any C code
 *    that holds an oop across a call that may allocate registers it with HYI_ROOT.
 *  - Allocation never aborts: when the heap limit is reached even after a full GC, the
 *    allocation returns 0 and the caller raises OutOfMemory in Smalltalk.
 */
#ifndef HYDRA_HEAP_H
#define HYDRA_HEAP_H

#include "object.h"

typedef struct hyi_gc_stats {
    uint64_t scavenges;
    uint64_t full_gcs;
    uint64_t bytes_allocated;   /* total bytes ever allocated (young and old) */
    uint64_t bytes_promoted;    /* bytes copied from new to old space */
    uint64_t bytes_freed_old;   /* bytes reclaimed by full GCs */
    uint64_t scavenge_ns;       /* total pause time of scavenges */
    uint64_t full_gc_ns;        /* total pause time of full GCs */
    uint64_t max_pause_ns;      /* longest single pause */
    uint64_t old_bytes;         /* bytes in use in old space now */
    uint64_t young_bytes;       /* bytes in use in eden + survivor now */
    uint64_t old_mappings;      /* old-space segments mapped from the OS (a reused spare: none) */
} hyi_gc_stats;

struct hyi_old_space; /* private to heap.c / gc.c */

typedef struct hyi_heap {
    /* New space: [young_lo, young_hi) holds eden then survivor A then survivor B. */
    uint8_t *young_lo, *young_hi;
    uint8_t *eden_lo, *eden_top, *eden_hi;  /* bump allocation: eden_top grows to eden_hi */
    uint8_t *surv_from_lo, *surv_from_top, *surv_from_hi;
    uint8_t *surv_to_lo, *surv_to_hi;

    struct hyi_old_space *old;

    hyi_oop *remembered;        /* remembered old objects */
    size_t remembered_len, remembered_cap;

    size_t limit;               /* max bytes of old space + new space; 0 = unlimited */
    size_t eden_size, survivor_size;
    bool over_limit;            /* set when a scavenge had to tenure past the limit */
    uint32_t stress;            /* GC stress: scavenge at every young allocation */
    uint32_t stress_full_every; /* GC stress: also a full GC every N allocations (0 = never) */
    uint64_t stress_count;
    uint32_t hash_state;        /* identity hash generator */
    hyi_gc_stats stats;
} hyi_heap;

typedef struct hyi_heap_config {
    size_t limit;          /* bytes, 0 = unlimited */
    size_t eden_size;      /* bytes, 0 = default (4 MiB) */
    bool gc_stress;
} hyi_heap_config;

/* Set up / tear down the heap of vm (vm->heap). init returns false when memory is short. */
bool hyi_heap_init(hy_vm *vm, const hyi_heap_config *cfg);
void hyi_heap_fini(hy_vm *vm);

/* Allocate an object of class cls (an oop, may be 0 during bootstrap) with the given format
 * and size (oops or bytes as the format says). The payload is zeroed and pointer slots are set
 * to vm->nil. Young unless the object is large (then old). May run a GC, so every oop the caller
 * holds in a C variable must be rooted. Returns 0 when the heap limit is reached. */
hyi_oop hyi_heap_alloc(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size);

/* A byte object (HYI_FMT_BYTES) of size bytes whose first fill bytes are left unwritten, for
 * the caller to write before anything else allocates (the rest is zeroed): for a copy of
 * bytes from elsewhere, which need not be zeroed first. */
hyi_oop hyi_heap_alloc_bytes_to_fill(hy_vm *vm, hyi_oop cls, uint32_t size, uint32_t fill);

/* The same as hyi_heap_alloc, directly in old space (never moves). For compiler output and
 * long-lived data. */
hyi_oop hyi_heap_alloc_old(hy_vm *vm, hyi_oop cls, hyi_format fmt, uint32_t size);

/* Make *ref (a heap object) pinned: it will never move again. A young object is first moved
 * to old space (by a scavenge), and *ref is updated. Returns false when the heap limit makes
 * that impossible. */
bool hyi_heap_pin(hy_vm *vm, hyi_oop *ref);

/* Collections. A full GC also clears every inline cache and the global method cache. */
void hyi_gc_scavenge(hy_vm *vm);
void hyi_gc_full(hy_vm *vm);

/* Write barrier slow path; call hyi_store instead. */
void hyi_heap_remember(hy_vm *vm, hyi_oop obj);

static inline bool hyi_heap_is_young(const hyi_heap *h, hyi_oop o) {
    return hyi_is_ptr(o) && (uintptr_t)((uint8_t *)o - h->young_lo) < (uintptr_t)(h->young_hi - h->young_lo);
}

/* The identity-hash generator (xorshift; 21 bits, never 0), used by every allocation path. */
static inline uint32_t hyi_heap_next_hash(hyi_heap *h) {
    uint32_t x = h->hash_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    h->hash_state = x;
    uint32_t v = (x >> 7) & ((1u << HYI_HASH_BITS) - 1);
    return v ? v : 1;
}

/* A new old-space region of exactly bytes (a multiple of 8) for objects that the caller writes
 * into it back to back (an image's heap); counted as in use. The caller must fill it with
 * walkable objects before the next allocation. NULL when memory is short. */
uint8_t *hyi_heap_adopt_old(hy_vm *vm, size_t bytes);

/* Visit every old-space object (for snapshots and reflection). */
void hyi_heap_each_old(hy_vm *vm, void (*fn)(hy_vm *vm, hyi_oop obj, void *arg), void *arg);

#endif
