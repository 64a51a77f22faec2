/*
 * test_heap.c -- the heap and garbage collector of one VM, on a minimal VM that has a heap,
 * nil and temporary roots but no classes (class fields are 0 or plain old objects).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vm.h"

#ifdef HYDRA_TEST_STANDALONE
/* Stand-ins for the modules a bare heap test never reaches, for building this file alone. */
#include "compiler.h"
#include "prims.h"
bool hyi_compile_class(hy_vm *vm, const char *src, size_t len, const char *file, hyi_oop *out,
                       hyi_diag *diag) {
    (void)vm, (void)src, (void)len, (void)file, (void)out, (void)diag;
    return false;
}
const hyi_prim_def hyi_prims_number[] = { { 0 } };
const hyi_prim_def hyi_prims_string[] = { { 0 } };
const hyi_prim_def hyi_prims_object[] = { { 0 } };
#endif

/* ---- A bare VM ------------------------------------------------------------------------------ */

static hy_vm *bare_vm(size_t limit, size_t eden) {
    hy_vm *vm = calloc(1, sizeof *vm);
    assert_non_null(vm);
    hyi_heap_config cfg = { .limit = limit, .eden_size = eden, .gc_stress = false };
    assert_true(hyi_heap_init(vm, &cfg));
    vm->heap.stress_full_every = 0;
    vm->nil = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 0);
    assert_true(vm->nil != 0);
    return vm;
}

static void bare_vm_free(hy_vm *vm) {
    assert_int_equal(vm->num_temp_roots, 0);
    hyi_heap_fini(vm);
    free(vm);
}

static hyi_oop string(hy_vm *vm, const char *s) {
    hyi_oop o = hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, (uint32_t)strlen(s));
    assert_true(o != 0);
    memcpy(hyi_bytes(o), s, strlen(s));
    return o;
}

static bool string_is(hyi_oop o, const char *s) {
    return hyi_fmt(o) == HYI_FMT_BYTES && hyi_size(o) == strlen(s) && memcmp(hyi_bytes(o), s, strlen(s)) == 0 &&
           hyi_bytes(o)[strlen(s)] == 0;
}

static bool is_young(hy_vm *vm, hyi_oop o) { return hyi_heap_is_young(&vm->heap, o); }

static size_t in_use(hy_vm *vm) { return vm->heap.stats.old_bytes + vm->heap.stats.young_bytes; }

/* ---- Allocation ----------------------------------------------------------------------------- */

static void test_alloc_zeroes_bytes_and_fills_slots_with_nil(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop a = hyi_heap_alloc(vm, vm->nil, HYI_FMT_INDEXED, 7);
    assert_true(is_young(vm, a));
    assert_int_equal(hyi_size(a), 7);
    assert_int_equal(hyi_fmt(a), HYI_FMT_INDEXED);
    assert_true(hyi_o(a)->cls == vm->nil);
    for (uint32_t i = 0; i < 7; i++) assert_true(hyi_slots(a)[i] == vm->nil);
    hyi_oop b = hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 13);
    for (uint32_t i = 0; i <= 13; i++) assert_int_equal(hyi_bytes(b)[i], 0);
    hyi_oop o = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 3);
    assert_false(is_young(vm, o));
    assert_true(hyi_o(o)->old);
    for (uint32_t i = 0; i < 3; i++) assert_true(hyi_slots(o)[i] == vm->nil);
    assert_true(vm->heap.stats.bytes_allocated >= hyi_obj_bytes(a) + hyi_obj_bytes(b) + hyi_obj_bytes(o));
    bare_vm_free(vm);
}

/* A byte object to fill keeps its first bytes as the memory had them and zeroes the rest, in
 * memory a dead object left dirty (eden is reused from its start after a scavenge; a checked
 * build fills it with a pattern), young or old. */
static void test_bytes_to_fill_zero_only_past_the_bytes_to_fill(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop dirty = hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 40);
    memset(hyi_bytes(dirty), 0xAB, 40);
    hyi_gc_scavenge(vm);
    uint8_t was[40];
    memcpy(was, hyi_bytes(dirty), sizeof was);
    for (size_t i = 0; i < sizeof was; i++) assert_int_not_equal(was[i], 0);
    hyi_oop b = hyi_heap_alloc_bytes_to_fill(vm, 0, 21, 5);
    assert_true(b == dirty);   /* the same memory */
    assert_int_equal(hyi_fmt(b), HYI_FMT_BYTES);
    assert_int_equal(hyi_size(b), 21);
    for (uint32_t i = 0; i < 5; i++) assert_int_equal(hyi_bytes(b)[i], was[i]);
    for (uint32_t i = 5; i < hyi_obj_bytes(b) - sizeof(hyi_obj); i++) assert_int_equal(hyi_bytes(b)[i], 0);
    /* A fill larger than the object is the whole object; a large one is old and the same. */
    hyi_oop c = hyi_heap_alloc_bytes_to_fill(vm, 0, 3, 9);
    assert_int_equal(hyi_size(c), 3);
    assert_int_equal(hyi_bytes(c)[3], 0);
    hyi_oop big = hyi_heap_alloc_bytes_to_fill(vm, 0, 1u << 20, 1u << 19);
    assert_true(big != 0 && !is_young(vm, big));
    for (uint32_t i = 1u << 19; i <= 1u << 20; i++)
        if (hyi_bytes(big)[i] != 0) fail_msg("byte %u of the old object is %u", i, hyi_bytes(big)[i]);
    bare_vm_free(vm);
}

static void test_identity_hashes_are_nonzero_varied_and_stable(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop arr = hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, 10000);
    HYI_ROOT(vm, &arr);
    static uint32_t hashes[10000];
    static uint8_t seen[1u << HYI_HASH_BITS];
    memset(seen, 0, sizeof seen);
    uint32_t distinct = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        hyi_oop o = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 1);
        hyi_store(vm, arr, i, o);
        hashes[i] = hyi_o(o)->hash;
        assert_int_not_equal(hashes[i], 0);
        if (!seen[hashes[i]]) distinct++;
        seen[hashes[i]] = 1;
    }
    assert_true(distinct > 9900);
    hyi_gc_scavenge(vm);
    hyi_gc_full(vm);
    for (uint32_t i = 0; i < 10000; i++) assert_int_equal(hyi_o(hyi_slots(arr)[i])->hash, hashes[i]);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_large_object_is_allocated_old_and_still_traced(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop big = hyi_heap_alloc(vm, 0, HYI_FMT_INDEXED, 20000);
    assert_true(big != 0);
    assert_true(hyi_o(big)->old);
    HYI_ROOT(vm, &big);
    /* A caller treating it as fresh may store a young oop without the write barrier. */
    hyi_slots(big)[5] = string(vm, "inside big");
    hyi_gc_scavenge(vm);
    assert_true(string_is(hyi_slots(big)[5], "inside big"));
    hyi_gc_full(vm);
    assert_true(string_is(hyi_slots(big)[5], "inside big"));
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_eden_exhaustion_scavenges_automatically(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 128 << 10);
    hyi_oop keep = string(vm, "kept");
    HYI_ROOT(vm, &keep);
    for (int i = 0; i < 100000; i++) assert_true(hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 4) != 0);
    assert_true(vm->heap.stats.scavenges > 10);
    assert_true(string_is(keep, "kept"));
    assert_true(vm->heap.stats.young_bytes <= vm->heap.eden_size + vm->heap.survivor_size);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* ---- Scavenge ------------------------------------------------------------------------------- */

static void test_scavenge_moves_live_objects_with_contents_intact(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop klass = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 2);
    HYI_ROOT(vm, &klass);
    hyi_oop arr = hyi_heap_alloc(vm, klass, HYI_FMT_INDEXED, 100);
    HYI_ROOT(vm, &arr);
    char buf[32];
    for (uint32_t i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, "item %u", i);
        hyi_oop s = string(vm, buf);
        hyi_slots(arr)[i] = i % 3 ? s : hyi_smi(-(intptr_t)i);
    }
    hyi_slots(arr)[99] = arr; /* a cycle */
    uint32_t hash = hyi_o(arr)->hash;
    hyi_oop before = arr;
    hyi_gc_scavenge(vm);
    assert_true(arr != before);
    assert_true(is_young(vm, arr));
    for (int round = 0; round < 4; round++) {
        assert_true(hyi_o(arr)->cls == klass);
        assert_int_equal(hyi_o(arr)->hash, hash);
        assert_int_equal(hyi_size(arr), 100);
        assert_true(hyi_slots(arr)[99] == arr);
        for (uint32_t i = 0; i < 99; i++) {
            snprintf(buf, sizeof buf, "item %u", i);
            if (i % 3) assert_true(string_is(hyi_slots(arr)[i], buf));
            else assert_true(hyi_slots(arr)[i] == hyi_smi(-(intptr_t)i));
        }
        hyi_gc_scavenge(vm);
    }
    /* Survivors that outlive a few scavenges are tenured. */
    assert_true(hyi_o(arr)->old);
    assert_false(is_young(vm, hyi_slots(arr)[1]));
    assert_int_equal(vm->heap.stats.scavenges, 5);
    assert_true(vm->heap.stats.bytes_promoted >= hyi_obj_bytes(arr));
    HYI_UNROOT(vm, 2);
    bare_vm_free(vm);
}

static void test_scavenge_drops_unreachable_young_objects(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    for (int i = 0; i < 1000; i++) string(vm, "garbage garbage garbage");
    assert_true(vm->heap.stats.young_bytes > 1000 * 16);
    hyi_gc_scavenge(vm);
    assert_int_equal(vm->heap.stats.young_bytes, 0);
    assert_int_equal(vm->heap.stats.bytes_promoted, 0);
    bare_vm_free(vm);
}

static void test_remembered_old_object_keeps_young_object_alive(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop holder = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 2);
    HYI_ROOT(vm, &holder);
    hyi_oop young = string(vm, "only the old object knows me");
    hyi_store(vm, holder, 1, young);
    assert_true(hyi_o(holder)->remembered);
    assert_int_equal(vm->heap.remembered_len, 1);
    hyi_gc_scavenge(vm);
    hyi_oop moved = hyi_slots(holder)[1];
    assert_true(moved != young);
    assert_true(is_young(vm, moved));
    assert_true(string_is(moved, "only the old object knows me"));
    /* Still pointing young: still remembered. */
    assert_true(hyi_o(holder)->remembered);
    assert_int_equal(vm->heap.remembered_len, 1);
    for (int i = 0; i < 4; i++) hyi_gc_scavenge(vm);
    assert_true(hyi_o(hyi_slots(holder)[1])->old);
    assert_true(string_is(hyi_slots(holder)[1], "only the old object knows me"));
    /* Nothing young left behind it: forgotten. */
    assert_false(hyi_o(holder)->remembered);
    assert_int_equal(vm->heap.remembered_len, 0);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_tenured_object_pointing_young_is_remembered(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    /* The parent ages until the next scavenge tenures it, while its new child stays young. */
    hyi_oop parent = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 1);
    HYI_ROOT(vm, &parent);
    hyi_gc_scavenge(vm);
    hyi_gc_scavenge(vm);
    hyi_slots(parent)[0] = string(vm, "child"); /* parent is young: no barrier needed */
    hyi_gc_scavenge(vm); /* parent is tenured, its child is copied to the survivor space */
    assert_true(hyi_o(parent)->old);
    assert_true(is_young(vm, hyi_slots(parent)[0]));
    assert_true(hyi_o(parent)->remembered);
    hyi_gc_scavenge(vm);
    assert_true(string_is(hyi_slots(parent)[0], "child"));
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* ---- Full GC -------------------------------------------------------------------------------- */

static void test_full_gc_keeps_a_million_node_list(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    const intptr_t n = 1000000;
    hyi_oop head = vm->nil;
    HYI_ROOT(vm, &head);
    for (intptr_t i = 0; i < n; i++) {
        hyi_oop node = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 2);
        assert_true(node != 0);
        hyi_slots(node)[0] = hyi_smi(i);
        hyi_slots(node)[1] = head;
        head = node;
    }
    hyi_gc_full(vm);
    hyi_gc_full(vm);
    intptr_t expect = n - 1, count = 0;
    for (hyi_oop p = head; p != vm->nil; p = hyi_slots(p)[1], expect--, count++) {
        assert_true(hyi_o(p)->old);
        assert_true(hyi_slots(p)[0] == hyi_smi(expect));
    }
    assert_int_equal(count, n);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_full_gc_reclaims_garbage_in_old_space(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop keep = hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, 10);
    HYI_ROOT(vm, &keep);
    for (uint32_t i = 0; i < 10; i++) {
        hyi_oop s = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 100);
        memset(hyi_bytes(s), 'a' + (int)i, 100);
        hyi_store(vm, keep, i, s);
    }
    size_t before = vm->heap.stats.old_bytes;
    /* Below the growth that would start a full GC on its own. */
    for (int i = 0; i < 1000; i++) assert_true(hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 1000) != 0);
    for (int i = 0; i < 10; i++) assert_true(hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 300000) != 0);
    assert_int_equal(vm->heap.stats.full_gcs, 0);
    size_t garbage = vm->heap.stats.old_bytes - before;
    assert_true(garbage >= 1000 * 1000 + 10 * 300000);
    uint64_t freed0 = vm->heap.stats.bytes_freed_old;
    hyi_gc_full(vm);
    assert_int_equal(vm->heap.stats.old_bytes, before);
    assert_int_equal(vm->heap.stats.bytes_freed_old - freed0, garbage);
    for (uint32_t i = 0; i < 10; i++) {
        hyi_oop s = hyi_slots(keep)[i];
        assert_int_equal(hyi_size(s), 100);
        for (int b = 0; b < 100; b++) assert_int_equal(hyi_bytes(s)[b], 'a' + (int)i);
    }
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* A large object that died leaves its mapping for the next one: no new mapping per object,
 * and the reused memory reads as zero again. */
static void test_dead_large_objects_leave_their_memory_for_the_next(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_gc_full(vm);
    uint64_t mapped0 = vm->heap.stats.old_mappings;
    for (int i = 0; i < 50; i++) {
        hyi_oop big = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 300000 + (uint32_t)i * 8);
        assert_true(big != 0);
        for (uint32_t b = 0; b < hyi_size(big); b += 997) assert_int_equal(hyi_bytes(big)[b], 0);
        memset(hyi_bytes(big), 0xa5, hyi_size(big));
        hyi_gc_full(vm);   /* big is garbage now */
    }
    assert_true(vm->heap.stats.old_mappings - mapped0 <= 2);
    bare_vm_free(vm);
}

static void count_old(hy_vm *vm, hyi_oop o, void *arg) {
    (void)vm;
    assert_int_not_equal(hyi_fmt(o), HYI_FMT_FREE);
    (*(size_t *)arg)++;
}

static void test_freed_old_space_is_reused_and_stays_walkable(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    enum { N = 3000 };
    hyi_oop arr = hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, N);
    HYI_ROOT(vm, &arr);
    for (uint32_t i = 0; i < N; i++) {
        hyi_oop o = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 8 + (i * 37) % 900);
        memset(hyi_bytes(o), (int)(i & 0x7f), hyi_size(o));
        hyi_store(vm, arr, i, o);
    }
    for (uint32_t i = 0; i < N; i += 2) hyi_store(vm, arr, i, vm->nil);
    hyi_gc_full(vm);
    size_t count = 0;
    hyi_heap_each_old(vm, count_old, &count);
    assert_int_equal(count, 2 + N / 2); /* nil, arr, the odd strings */
    size_t old_after_gc = vm->heap.stats.old_bytes;
    /* Refill the holes: the same objects fit in the freed chunks. */
    for (uint32_t i = 0; i < N; i += 2) {
        hyi_oop o = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 8 + (i * 37) % 900);
        memset(hyi_bytes(o), (int)(i & 0x7f), hyi_size(o));
        hyi_store(vm, arr, i, o);
    }
    assert_true(vm->heap.stats.old_bytes > old_after_gc);
    hyi_gc_full(vm);
    count = 0;
    hyi_heap_each_old(vm, count_old, &count);
    assert_int_equal(count, 2 + N);
    for (uint32_t i = 0; i < N; i++) {
        hyi_oop o = hyi_slots(arr)[i];
        assert_int_equal(hyi_size(o), 8 + (i * 37) % 900);
        for (uint32_t b = 0; b < hyi_size(o); b++) assert_int_equal(hyi_bytes(o)[b], (int)(i & 0x7f));
    }
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_full_gc_tenures_young_objects_and_updates_old_slots(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop holder = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 1);
    HYI_ROOT(vm, &holder);
    hyi_store(vm, holder, 0, string(vm, "young"));
    hyi_oop root = string(vm, "rooted");
    HYI_ROOT(vm, &root);
    hyi_gc_full(vm);
    assert_true(hyi_o(root)->old);
    assert_true(string_is(root, "rooted"));
    assert_true(hyi_o(hyi_slots(holder)[0])->old);
    assert_true(string_is(hyi_slots(holder)[0], "young"));
    assert_int_equal(vm->heap.stats.young_bytes, 0);
    assert_int_equal(vm->heap.remembered_len, 0);
    assert_false(hyi_o(holder)->remembered);
    HYI_UNROOT(vm, 2);
    bare_vm_free(vm);
}

static void test_full_gc_traces_methods_and_clears_inline_caches(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    uint32_t code_len = 5, num_ics = 2;
    uint32_t ic_offset = (uint32_t)((sizeof(hyi_method) + code_len + 7) & ~(size_t)7);
    uint32_t bytes = ic_offset + num_ics * (uint32_t)sizeof(hyi_ic) - (uint32_t)sizeof(hyi_obj);
    hyi_oop mo = hyi_heap_alloc_old(vm, 0, HYI_FMT_METHOD, bytes);
    HYI_ROOT(vm, &mo);
    hyi_method *m = hyi_m(mo);
    assert_true(m->signature == vm->nil && m->debug == vm->nil);
    m->code_len = code_len;
    m->num_ics = (uint16_t)num_ics;
    m->ic_offset = ic_offset;
    hyi_oop lits = hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, 1);
    hyi_store(vm, lits, 0, hyi_heap_alloc_old(vm, 0, HYI_FMT_DOUBLE, 8));
    m->literals = lits;
    m->signature = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 3);
    memcpy(hyi_bytes(m->signature), "foo", 3);
    hyi_ic *ics = hyi_method_ics(m);
    hyi_oop sel = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 3);
    memcpy(hyi_bytes(sel), "bar", 3);
    ics[1].selector = sel;
    ics[0].selector = vm->nil;
    hyi_oop weak = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 4000);
    ics[1].cls = weak;
    ics[1].target = mo;
    vm->mcache[7].cls = weak;
    size_t live = vm->heap.stats.old_bytes - hyi_obj_bytes(weak);
    hyi_gc_full(vm);
    assert_true(ics[1].cls == 0 && ics[1].target == 0);
    assert_true(vm->mcache[7].cls == 0);
    assert_true(string_is(ics[1].selector, "bar"));
    assert_true(string_is(m->signature, "foo"));
    assert_int_equal(hyi_fmt(hyi_slots(m->literals)[0]), HYI_FMT_DOUBLE);
    assert_int_equal(vm->heap.stats.old_bytes, live);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* ---- Pinning -------------------------------------------------------------------------------- */

static void test_pinned_old_object_keeps_its_address(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop o = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 64);
    memset(hyi_bytes(o), 'p', 64);
    HYI_ROOT(vm, &o);
    hyi_oop at = o;
    assert_true(hyi_heap_pin(vm, &o));
    assert_true(o == at);
    assert_true(hyi_o(o)->pinned);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 1000; j++) string(vm, "churn");
        hyi_gc_scavenge(vm);
        hyi_gc_full(vm);
        /* New old objects must not land on the pinned one. */
        for (int j = 0; j < 100; j++) memset(hyi_bytes(hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 64)), 'x', 64);
        assert_true(o == at);
        assert_true(hyi_o(o)->pinned);
        assert_int_equal(hyi_fmt(o), HYI_FMT_BYTES);
        for (int b = 0; b < 64; b++) assert_int_equal(hyi_bytes(o)[b], 'p');
    }
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_pin_moves_a_young_object_to_old_space(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_oop o = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 2);
    HYI_ROOT(vm, &o);
    hyi_slots(o)[0] = string(vm, "pinned payload");
    hyi_slots(o)[1] = hyi_smi(42);
    hyi_oop young = o;
    assert_true(is_young(vm, o));
    assert_true(hyi_heap_pin(vm, &o));
    assert_true(o != young);
    assert_false(is_young(vm, o));
    assert_true(hyi_o(o)->old && hyi_o(o)->pinned);
    assert_true(string_is(hyi_slots(o)[0], "pinned payload"));
    hyi_oop at = o;
    hyi_gc_scavenge(vm);
    hyi_gc_full(vm);
    assert_true(o == at);
    assert_true(hyi_slots(o)[1] == hyi_smi(42));
    assert_true(string_is(hyi_slots(o)[0], "pinned payload"));
    hyi_oop smi = hyi_smi(3);
    assert_false(hyi_heap_pin(vm, &smi));
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* ---- Heap limit ----------------------------------------------------------------------------- */

static void test_heap_limit_makes_allocation_fail_and_heap_recovers(void **state) {
    (void)state;
    const size_t limit = 4 << 20;
    hy_vm *vm = bare_vm(limit, 256 << 10);
    assert_int_equal(hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 5 << 20), 0);
    assert_int_equal(hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 5 << 20), 0);
    hyi_oop holder = hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, 4096);
    HYI_ROOT(vm, &holder);
    uint32_t kept = 0;
    bool failed = false;
    while (kept < 4096) {
        hyi_oop s = hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 16 << 10);
        if (!s) {
            failed = true;
            break;
        }
        hyi_store(vm, holder, kept++, s);
    }
    assert_true(failed);
    assert_true(kept >= 100);                     /* most of the limit was usable */
    assert_true(kept * (size_t)(16 << 10) <= limit);
    assert_true(vm->heap.stats.full_gcs > 0);
    /* Old-space allocation fails too while everything is held. */
    assert_int_equal(hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, 1 << 20), 0);
    /* Failing again must stay harmless. */
    assert_int_equal(hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 16 << 10), 0);
    /* Let go of half and the heap is usable again. */
    for (uint32_t i = 0; i < kept; i += 2) hyi_store(vm, holder, i, vm->nil);
    hyi_oop again = hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, 16 << 10);
    assert_true(again != 0);
    assert_true(in_use(vm) <= limit);
    for (uint32_t i = 1; i < kept; i += 2) assert_int_equal(hyi_size(hyi_slots(holder)[i]), 16 << 10);
    for (int i = 0; i < 1000; i++) assert_true(hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 8) != 0);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

/* ---- Statistics and stress ------------------------------------------------------------------ */

static void test_stats_count_collections(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    hyi_gc_stats s0 = vm->heap.stats;
    hyi_oop o = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 10);
    HYI_ROOT(vm, &o);
    assert_int_equal(vm->heap.stats.bytes_allocated - s0.bytes_allocated, hyi_obj_bytes(o));
    assert_int_equal(vm->heap.stats.young_bytes, hyi_obj_bytes(o));
    hyi_gc_scavenge(vm);
    hyi_gc_scavenge(vm);
    hyi_gc_scavenge(vm);
    hyi_gc_full(vm);
    hyi_gc_full(vm);
    assert_int_equal(vm->heap.stats.scavenges - s0.scavenges, 3);
    assert_int_equal(vm->heap.stats.full_gcs - s0.full_gcs, 2);
    assert_int_equal(vm->heap.stats.bytes_promoted, hyi_obj_bytes(o));
    assert_int_equal(vm->heap.stats.young_bytes, 0);
    assert_int_equal(vm->heap.stats.old_bytes, hyi_obj_bytes(vm->nil) + hyi_obj_bytes(o));
    assert_true(vm->heap.stats.max_pause_ns <= vm->heap.stats.scavenge_ns + vm->heap.stats.full_gc_ns);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_stress_mode_collects_at_every_allocation(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    vm->heap.stress = 1;
    vm->heap.stress_full_every = 10;
    hyi_oop head = vm->nil;
    HYI_ROOT(vm, &head);
    for (int i = 0; i < 50; i++) {
        hyi_oop node = hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 2);
        hyi_slots(node)[0] = hyi_smi(i);
        hyi_slots(node)[1] = head;
        head = node;
    }
    assert_int_equal(vm->heap.stats.full_gcs, 5);
    assert_int_equal(vm->heap.stats.scavenges, 45);
    int expect = 49;
    for (hyi_oop p = head; p != vm->nil; p = hyi_slots(p)[1]) assert_true(hyi_slots(p)[0] == hyi_smi(expect--));
    assert_int_equal(expect, -1);
    HYI_UNROOT(vm, 1);
    bare_vm_free(vm);
}

static void test_stress_full_gc_interval_comes_from_the_environment(void **state) {
    (void)state;
    setenv("HYDRA_GC_STRESS_FULL_EVERY", "7", 1);
    hy_vm *vm = calloc(1, sizeof *vm);
    hyi_heap_config cfg = { .gc_stress = true };
    assert_true(hyi_heap_init(vm, &cfg));
    unsetenv("HYDRA_GC_STRESS_FULL_EVERY");
    assert_int_equal(vm->heap.stress_full_every, 7);
    assert_true(vm->heap.stress);
    vm->nil = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 0);
    for (int i = 0; i < 6; i++) assert_true(hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 1) != 0);
    assert_int_equal(vm->heap.stats.full_gcs, 1); /* the 7th allocation counted nil's */
    bare_vm_free(vm);
}

static void test_impossible_sizes_fail_without_crashing(void **state) {
    (void)state;
    hy_vm *vm = bare_vm(0, 0);
    assert_int_equal(hyi_heap_alloc(vm, 0, HYI_FMT_INDEXED, UINT32_MAX), 0);
    assert_int_equal(hyi_heap_alloc(vm, 0, HYI_FMT_BYTES, UINT32_MAX), 0);
    assert_int_equal(hyi_heap_alloc_old(vm, 0, HYI_FMT_INDEXED, 1u << 30), 0);
    assert_true(hyi_heap_alloc(vm, 0, HYI_FMT_SLOTS, 1) != 0);
    bare_vm_free(vm);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_zeroes_bytes_and_fills_slots_with_nil),
        cmocka_unit_test(test_bytes_to_fill_zero_only_past_the_bytes_to_fill),
        cmocka_unit_test(test_identity_hashes_are_nonzero_varied_and_stable),
        cmocka_unit_test(test_large_object_is_allocated_old_and_still_traced),
        cmocka_unit_test(test_eden_exhaustion_scavenges_automatically),
        cmocka_unit_test(test_scavenge_moves_live_objects_with_contents_intact),
        cmocka_unit_test(test_scavenge_drops_unreachable_young_objects),
        cmocka_unit_test(test_remembered_old_object_keeps_young_object_alive),
        cmocka_unit_test(test_tenured_object_pointing_young_is_remembered),
        cmocka_unit_test(test_full_gc_keeps_a_million_node_list),
        cmocka_unit_test(test_full_gc_reclaims_garbage_in_old_space),
        cmocka_unit_test(test_freed_old_space_is_reused_and_stays_walkable),
        cmocka_unit_test(test_full_gc_tenures_young_objects_and_updates_old_slots),
        cmocka_unit_test(test_full_gc_traces_methods_and_clears_inline_caches),
        cmocka_unit_test(test_pinned_old_object_keeps_its_address),
        cmocka_unit_test(test_pin_moves_a_young_object_to_old_space),
        cmocka_unit_test(test_heap_limit_makes_allocation_fail_and_heap_recovers),
        cmocka_unit_test(test_stats_count_collections),
        cmocka_unit_test(test_dead_large_objects_leave_their_memory_for_the_next),
        cmocka_unit_test(test_stress_mode_collects_at_every_allocation),
        cmocka_unit_test(test_stress_full_gc_interval_comes_from_the_environment),
        cmocka_unit_test(test_impossible_sizes_fail_without_crashing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
