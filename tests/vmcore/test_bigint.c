/*
 * test_bigint.c -- large integers, the Integer/Double primitives and the String/Symbol
 * primitives, on a small VM that has a heap and the few classes these primitives use (no
 * compiler, no core library).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bigint.h"
#include "prims.h"
#include "vm.h"

/* ---- A small VM ----------------------------------------------------------------------------- */

#define NREGS 16

typedef struct fixture {
    hy_vm *vm;
    hyi_oop r[NREGS];  /* rooted registers for values that must survive allocations */
} fixture;

static hyi_oop make_class(hy_vm *vm, const char *name, hyi_oop super) {
    hyi_oop cls = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, HYI_CLASS_FIXED);
    assert_true(cls != 0);
    hyi_oop n = hyi_heap_alloc_old(vm, 0, HYI_FMT_BYTES, (uint32_t)strlen(name));
    assert_true(n != 0);
    memcpy(hyi_bytes(n), name, strlen(name));
    hyi_slots(cls)[HYI_CLASS_SUPERCLASS] = super;
    hyi_slots(cls)[HYI_CLASS_NAME] = n;
    return cls;
}

static fixture *fixture_new(bool stress) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    hy_vm *vm = f->vm = calloc(1, sizeof *vm);
    assert_non_null(vm);
    hyi_heap_config cfg = {.limit = 0, .eden_size = 0, .gc_stress = stress};
    assert_true(hyi_heap_init(vm, &cfg));
    vm->heap.stress_full_every = stress ? 7 : 0;
    vm->nil = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 0);
    vm->true_ = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 0);
    vm->false_ = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, 0);
    vm->cls.object = make_class(vm, "Object", vm->nil);
    vm->cls.integer = make_class(vm, "Integer", vm->cls.object);
    vm->cls.double_ = make_class(vm, "Double", vm->cls.object);
    vm->cls.string = make_class(vm, "String", vm->cls.object);
    vm->cls.symbol = make_class(vm, "Symbol", vm->cls.string);
    vm->cls.array = make_class(vm, "Array", vm->cls.object);
    for (int i = 0; i < NREGS; i++) {
        f->r[i] = vm->nil;
        HYI_ROOT(vm, &f->r[i]);
    }
    return f;
}

static void fixture_free(fixture *f) {
    hy_vm *vm = f->vm;
    HYI_UNROOT(vm, NREGS);
    assert_int_equal(vm->num_temp_roots, 0);
    hyi_heap_fini(vm);
    free(vm->symbols.keys);
    free(vm);
    free(f);
}

static int setup(void **state) { *state = fixture_new(false); return 0; }
static int setup_stress(void **state) { *state = fixture_new(true); return 0; }
static int teardown(void **state) { fixture_free(*state); return 0; }

/* ---- Calling primitives --------------------------------------------------------------------- */

static const hyi_prim_def *find_prim(const char *cls, const char *sel) {
    const hyi_prim_def *tables[] = {hyi_prims_number, hyi_prims_string};
    for (size_t t = 0; t < 2; t++)
        for (const hyi_prim_def *d = tables[t]; d->cls; d++)
            if (strcmp(d->cls, cls) == 0 && strcmp(d->selector, sel) == 0) return d;
    fail_msg("no primitive %s>>%s", cls, sel);
    return NULL;
}

/* Run cls>>sel with receiver and up to two arguments; the arguments sit in a rooted array as
 * they would on the value stack. */
static hyi_prim_status call(hy_vm *vm, const char *cls, const char *sel, hyi_oop *result, int nargs, ...) {
    hyi_oop args[3] = {0, 0, 0};
    va_list ap;
    va_start(ap, nargs);
    for (int i = 0; i <= nargs; i++) args[i] = va_arg(ap, hyi_oop);
    va_end(ap);
    for (int i = 0; i <= nargs; i++) HYI_ROOT(vm, &args[i]);
    vm->prim_message[0] = 0;
    hyi_prim_status st = find_prim(cls, sel)->fn(vm, args, (uint32_t)nargs, result);
    HYI_UNROOT(vm, (uint32_t)nargs + 1);
    return st;
}

/* The answer of a primitive that must succeed. */
static hyi_oop ok(hy_vm *vm, const char *cls, const char *sel, int nargs, hyi_oop recv, hyi_oop arg) {
    hyi_oop result = 0;
    hyi_prim_status st = call(vm, cls, sel, &result, nargs, recv, arg, (hyi_oop)0);
    if (st != HYI_PRIM_OK) fail_msg("%s>>%s failed: %s", cls, sel, vm->prim_message);
    return result;
}

static hyi_oop I(hy_vm *vm, const char *text) {
    hyi_oop o = hyi_bigint_parse(vm, text, strlen(text), false);
    assert_true(o != 0);
    return o;
}

static hyi_oop S(hy_vm *vm, const char *text) {
    hyi_oop o = hyi_string_new(vm, text, strlen(text));
    assert_true(o != 0);
    return o;
}

static hyi_oop D(hy_vm *vm, double d) {
    hyi_oop o = hyi_double_new(vm, d);
    assert_true(o != 0);
    return o;
}

static bool bytes_are(hyi_oop o, const char *text) {
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_BYTES && hyi_size(o) == strlen(text) &&
           memcmp(hyi_bytes(o), text, strlen(text)) == 0 && hyi_bytes(o)[strlen(text)] == 0;
}

/* Assert that integer o prints as text. */
static void assert_int_is(hy_vm *vm, hyi_oop o, const char *text) {
    assert_true(hyi_is_int(o));
    hyi_oop s = hyi_bigint_to_string(vm, o);
    assert_true(s != 0);
    if (!bytes_are(s, text)) fail_msg("expected %s, got %.*s", text, (int)hyi_size(s), (const char *)hyi_bytes(s));
}

/* cls>>sel applied to two integers given as text answers an integer printing as expected. */
static void check_int_op(hy_vm *vm, const char *a, const char *sel, const char *b, const char *expected) {
    hyi_oop x = I(vm, a);
    HYI_ROOT(vm, &x);
    hyi_oop y = I(vm, b);
    HYI_UNROOT(vm, 1);
    hyi_oop r = ok(vm, "Integer", sel, 1, x, y);
    hyi_oop s = hyi_bigint_to_string(vm, r);
    if (!bytes_are(s, expected))
        fail_msg("%s %s %s: expected %s, got %.*s", a, sel, b, expected, (int)hyi_size(s), (const char *)hyi_bytes(s));
}

static bool is_true(hy_vm *vm, hyi_oop o) {
    if (o != vm->true_ && o != vm->false_) fail_msg("not a Boolean");
    return o == vm->true_;
}

/* ---- Magnitudes ----------------------------------------------------------------------------- */

static uint64_t rng_state = 0x853c49e6748fea9bu;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Random limbs biased toward the values that exercise carries and Knuth's corrections. */
static hyi_limb rnd_limb(void) {
    switch (rnd() % 5) {
    case 0: return 0xffffffffu;
    case 1: return 0;
    case 2: return 0x80000000u;
    default: return rnd();
    }
}

static void test_divmod_reconstructs_the_dividend_for_random_operands(void **state) {
    (void)state;
    hyi_limb a[40], b[20], q[41], r[21], t[64], u[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t an = 1 + rnd() % 40, bn = 1 + rnd() % 20;
        for (size_t i = 0; i < an; i++) a[i] = rnd_limb();
        for (size_t i = 0; i < bn; i++) b[i] = rnd_limb();
        if (b[bn - 1] == 0) b[bn - 1] = 1 + (rnd() % 3 == 0 ? 0x7fffffffu : rnd() % 7);
        size_t qn, rn;
        assert_true(hyi_mag_divmod(q, &qn, r, &rn, a, an, b, bn));
        /* remainder < divisor, and q * b + r == a */
        assert_true(hyi_mag_cmp(r, rn, b, bn) < 0);
        size_t tn = hyi_mag_mul(t, q, qn, b, bn);
        size_t un = hyi_mag_add(u, t, tn, r, rn);
        assert_int_equal(hyi_mag_cmp(u, un, a, an), 0);
    }
}

static void test_add_sub_and_mul_agree_with_64_bit_arithmetic(void **state) {
    (void)state;
    for (int iter = 0; iter < 10000; iter++) {
        uint64_t x = ((uint64_t)rnd() << 32 | rnd()) >> (rnd() % 40), y = ((uint64_t)rnd() << 32 | rnd()) >> (rnd() % 40);
        if (x < y) { uint64_t t = x; x = y; y = t; }
        hyi_limb a[2] = {(hyi_limb)x, (hyi_limb)(x >> 32)}, b[2] = {(hyi_limb)y, (hyi_limb)(y >> 32)}, r[4];
        size_t n = hyi_mag_sub(r, a, 2, b, 2);
        assert_true(n <= 2);
        assert_true(((uint64_t)(n > 1 ? r[1] : 0) << 32 | (n ? r[0] : 0)) == x - y);
        n = hyi_mag_mul(r, a, 2, b, 2);
        unsigned __int128 p = (unsigned __int128)x * y, got = 0;
        for (size_t i = n; i-- > 0;) got = got << 32 | r[i];
        assert_true(got == p);
        n = hyi_mag_add(r, a, 2, b, 2);
        got = 0;
        for (size_t i = n; i-- > 0;) got = got << 32 | r[i];
        assert_true(got == (unsigned __int128)x + y);
    }
}

static void test_decimal_text_round_trips(void **state) {
    (void)state;
    const char *cases[] = {"0", "7", "4294967295", "4294967296", "18446744073709551616",
                           "340282366920938463463374607431768211457",
                           "93326215443944152681699238856266700490715968264381621468592963895217599993229915608941463976156518286253697920827223758251185210916864000000000000000000000000"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n, len;
        hyi_limb *m = hyi_mag_from_decimal(cases[i], strlen(cases[i]), &n);
        assert_non_null(m);
        char *text = hyi_mag_to_decimal(m, n, &len);
        assert_string_equal(text, cases[i]);
        assert_int_equal(len, strlen(cases[i]));
        free(text);
        free(m);
    }
    size_t n;
    assert_null(hyi_mag_from_decimal("12a", 3, &n));
    assert_true(n == SIZE_MAX);
}

static void test_shifts_move_bits_across_limbs(void **state) {
    (void)state;
    hyi_limb one = 1, r[8], back[8];
    size_t n = hyi_mag_shl(r, &one, 1, 100);
    assert_int_equal(n, 4);
    assert_int_equal(r[3], 1u << 4);
    assert_int_equal(hyi_mag_bits(r, n), 101);
    n = hyi_mag_shr(back, r, n, 99);
    assert_int_equal(n, 1);
    assert_int_equal(back[0], 2);
    hyi_limb a[2] = {0x89abcdefu, 0x01234567u};
    n = hyi_mag_shl(r, a, 2, 36);
    n = hyi_mag_shr(back, r, n, 36);
    assert_int_equal(n, 2);
    assert_int_equal(back[0], a[0]);
    assert_int_equal(back[1], a[1]);
}

/* ---- Integer oops --------------------------------------------------------------------------- */

static void test_parse_answers_small_integers_when_they_fit(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop a = I(vm, "4611686018427387903");
    assert_true(hyi_is_smi(a));
    assert_true(hyi_smi_val(a) == HYI_SMI_MAX);
    a = I(vm, "-4611686018427387904");
    assert_true(hyi_is_smi(a));
    assert_true(hyi_smi_val(a) == HYI_SMI_MIN);
    a = I(vm, "-0000");
    assert_true(a == hyi_smi(0));
    a = I(vm, "4611686018427387904");
    assert_true(hyi_is_largeint(a));
    assert_true(hyi_o(a)->cls == vm->cls.integer);
    assert_int_equal(hyi_size(a), 4 + 2 * 4);
    assert_false(hyi_largeint_neg(a));
    assert_int_is(vm, a, "4611686018427387904");
    a = I(vm, "-4611686018427387905");
    assert_true(hyi_is_largeint(a));
    assert_true(hyi_largeint_neg(a));
    assert_int_is(vm, a, "-4611686018427387905");
    a = hyi_bigint_parse(vm, "123", 3, true);
    assert_true(hyi_is_smi(a));
    a = hyi_bigint_parse(vm, "123456789012345678901234567890", 30, true);
    assert_true(hyi_o(a)->old);
    assert_true(hyi_bigint_parse(vm, "12x", 3, false) == 0);
    assert_true(hyi_bigint_parse(vm, "-", 1, false) == 0);
    assert_true(hyi_bigint_parse(vm, "", 0, false) == 0);
}

static void test_small_integer_overflow_becomes_large_and_back(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    check_int_op(vm, "4611686018427387903", "+", "1", "4611686018427387904");
    check_int_op(vm, "-4611686018427387904", "-", "1", "-4611686018427387905");
    check_int_op(vm, "4611686018427387904", "-", "1", "4611686018427387903");
    f->r[0] = ok(vm, "Integer", "-", 1, I(vm, "4611686018427387904"), hyi_smi(1));
    assert_true(hyi_is_smi(f->r[0]));
    check_int_op(vm, "3037000500", "*", "3037000500", "9223372037000250000");
    check_int_op(vm, "4611686018427387904", "*", "4611686018427387904", "21267647932558653966460912964485513216");
    check_int_op(vm, "4611686018427387904", "*", "-4611686018427387904", "-21267647932558653966460912964485513216");
    check_int_op(vm, "-4611686018427387904", "*", "-1", "4611686018427387904");
    check_int_op(vm, "18446744073709551616", "-", "18446744073709551616", "0");
    check_int_op(vm, "1", "-", "18446744073709551616", "-18446744073709551615");
    check_int_op(vm, "-18446744073709551616", "+", "18446744073709551617", "1");
}

static void test_factorial_quotients_are_exact(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = hyi_smi(1);
    for (int i = 2; i <= 100; i++) {
        f->r[0] = ok(vm, "Integer", "*", 1, f->r[0], hyi_smi(i));
        if (i == 98) f->r[1] = f->r[0];
    }
    assert_int_is(vm, f->r[0],
                  "93326215443944152681699238856266700490715968264381621468592963895217599993229915608941463976156518286253697920827223758251185210916864000000000000000000000000");
    assert_true(ok(vm, "Integer", "/", 1, f->r[0], f->r[1]) == hyi_smi(9900));
    assert_true(ok(vm, "Integer", "%", 1, f->r[0], f->r[1]) == hyi_smi(0));
    assert_true(ok(vm, "Integer", "/", 1, f->r[1], f->r[0]) == hyi_smi(0));
    /* 100! / 7^16 leaves remainder 0; (100! + 5) rem: 7 = 5 */
    f->r[2] = ok(vm, "Integer", "+", 1, f->r[0], hyi_smi(5));
    assert_true(ok(vm, "Integer", "rem:", 1, f->r[2], hyi_smi(7)) == hyi_smi(5));
    f->r[3] = ok(vm, "Integer", "/", 1, f->r[0], I(vm, "33232930569601")); /* 7^16 */
    f->r[3] = ok(vm, "Integer", "*", 1, f->r[3], I(vm, "33232930569601"));
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[3], f->r[0])));
}

static void test_division_rounds_like_smalltalk(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    /* / truncates, % has the sign of the divisor, rem: the sign of the dividend */
    check_int_op(vm, "-7", "/", "2", "-3");
    check_int_op(vm, "7", "/", "-2", "-3");
    check_int_op(vm, "-7", "/", "-2", "3");
    check_int_op(vm, "-7", "%", "2", "1");
    check_int_op(vm, "10", "%", "-3", "-2");
    check_int_op(vm, "-10", "%", "-3", "-1");
    check_int_op(vm, "-10", "rem:", "3", "-1");
    check_int_op(vm, "10", "rem:", "-3", "1");
    check_int_op(vm, "-4611686018427387904", "/", "-1", "4611686018427387904");
    check_int_op(vm, "-1267650600228229401496703205376", "%", "7", "5");
    check_int_op(vm, "-1267650600228229401496703205376", "rem:", "7", "-2");
    check_int_op(vm, "1267650600228229401496703205376", "rem:", "-7", "2");
    check_int_op(vm, "1267650600228229401496703205376", "%", "-7", "-5");
    check_int_op(vm, "-1267650600228229401496703205377", "/", "1267650600228229401496703205376", "-1");
    check_int_op(vm, "-2535301200456458802993406410753", "/", "1267650600228229401496703205376", "-2");
    check_int_op(vm, "2535301200456458802993406410753", "/", "-7", "-362185885779494114713343772964");
    check_int_op(vm, "-1267650600228229401496703205377", "%", "1267650600228229401496703205376",
                 "1267650600228229401496703205375");
    check_int_op(vm, "3", "%", "-1606938044258990275541962092341162602522202993782792835301376",
                 "-1606938044258990275541962092341162602522202993782792835301373");
    check_int_op(vm, "18446744073709551616", "/", "3", "6148914691236517205");
}

static void test_division_by_zero_fails_with_a_message(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    const char *sels[] = {"/", "//", "%", "rem:"};
    hyi_oop r;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(call(vm, "Integer", sels[i], &r, 1, hyi_smi(5), hyi_smi(0)), HYI_PRIM_FAIL);
        assert_non_null(strstr(vm->prim_message, "division by zero"));
        assert_int_equal(call(vm, "Integer", sels[i], &r, 1, I(vm, "18446744073709551616"), hyi_smi(0)), HYI_PRIM_FAIL);
        assert_int_equal(call(vm, "Integer", sels[i], &r, 1, hyi_smi(5), D(vm, 0.0)), HYI_PRIM_FAIL);
    }
    assert_int_equal(call(vm, "Double", "//", &r, 1, D(vm, 1.5), hyi_smi(0)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "division by zero"));
}

static void test_wrong_argument_classes_fail_naming_the_class(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    const char *sels[] = {"+", "-", "*", "/", "//", "%", "rem:", "<", ">", "<=", ">=", "&", "bitXor:", "<<", ">>>"};
    hyi_oop r;
    for (size_t i = 0; i < sizeof sels / sizeof sels[0]; i++) {
        assert_int_equal(call(vm, "Integer", sels[i], &r, 1, hyi_smi(1), S(vm, "a")), HYI_PRIM_FAIL);
        assert_non_null(strstr(vm->prim_message, "String"));
        assert_int_equal(call(vm, "Integer", sels[i], &r, 1, I(vm, "99999999999999999999"), vm->nil), HYI_PRIM_FAIL);
    }
    assert_int_equal(call(vm, "Integer", "&", &r, 1, hyi_smi(1), D(vm, 1.1)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "Double"));
    const char *dsels[] = {"+", "-", "*", "//", "%", "<", ">", "<=", ">="};
    for (size_t i = 0; i < sizeof dsels / sizeof dsels[0]; i++) {
        assert_int_equal(call(vm, "Double", dsels[i], &r, 1, D(vm, 1.5), S(vm, "a")), HYI_PRIM_FAIL);
        assert_non_null(strstr(vm->prim_message, "String"));
    }
    /* = and ~= with a non-number answer false and true */
    assert_false(is_true(vm, ok(vm, "Integer", "=", 1, hyi_smi(0), S(vm, "a"))));
    assert_true(is_true(vm, ok(vm, "Integer", "~=", 1, hyi_smi(0), S(vm, "a"))));
    assert_false(is_true(vm, ok(vm, "Integer", "=", 1, I(vm, "9223372036854775808"), S(vm, "a"))));
    assert_false(is_true(vm, ok(vm, "Double", "=", 1, D(vm, 1.0), vm->nil)));
    assert_true(is_true(vm, ok(vm, "Double", "~=", 1, D(vm, 1.0), vm->nil)));
}

static void test_comparisons_mix_small_large_and_doubles_exactly(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = I(vm, "18446744073709551616");   /* 2^64 */
    f->r[1] = I(vm, "18446744073709551617");
    f->r[2] = I(vm, "-18446744073709551616");
    f->r[3] = D(vm, 18446744073709551616.0);
    assert_true(is_true(vm, ok(vm, "Integer", "<", 1, f->r[0], f->r[1])));
    assert_true(is_true(vm, ok(vm, "Integer", ">", 1, f->r[1], f->r[0])));
    assert_true(is_true(vm, ok(vm, "Integer", "<", 1, f->r[2], hyi_smi(-5))));
    assert_true(is_true(vm, ok(vm, "Integer", ">", 1, hyi_smi(5), f->r[2])));
    assert_true(is_true(vm, ok(vm, "Integer", "<=", 1, f->r[0], f->r[0])));
    assert_true(is_true(vm, ok(vm, "Integer", ">=", 1, f->r[0], f->r[0])));
    assert_true(is_true(vm, ok(vm, "Integer", "~=", 1, f->r[0], f->r[1])));
    /* 2^64 = 2^64 as a double, but 2^64 + 1 is not, although it converts to the same double */
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[0], f->r[3])));
    assert_false(is_true(vm, ok(vm, "Integer", "=", 1, f->r[1], f->r[3])));
    assert_true(is_true(vm, ok(vm, "Integer", ">", 1, f->r[1], f->r[3])));
    assert_true(is_true(vm, ok(vm, "Double", "<", 1, f->r[3], f->r[1])));
    assert_true(is_true(vm, ok(vm, "Double", "=", 1, D(vm, 1.0), hyi_smi(1))));
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, hyi_smi(1), D(vm, 1.0))));
    assert_true(is_true(vm, ok(vm, "Integer", "<", 1, hyi_smi(3), D(vm, 3.5))));
    assert_true(is_true(vm, ok(vm, "Double", ">", 1, D(vm, 3.5), hyi_smi(3))));
    assert_true(is_true(vm, ok(vm, "Integer", "<", 1, hyi_smi(4611686018427387903), D(vm, 4611686018427387904.0))));
    assert_true(is_true(vm, ok(vm, "Double", ">", 1, D(vm, INFINITY), f->r[1])));
    assert_true(is_true(vm, ok(vm, "Double", "<", 1, D(vm, -INFINITY), f->r[2])));
    /* NaN is unordered */
    assert_false(is_true(vm, ok(vm, "Double", "=", 1, D(vm, NAN), D(vm, NAN))));
    assert_false(is_true(vm, ok(vm, "Integer", "<", 1, hyi_smi(1), D(vm, NAN))));
    assert_false(is_true(vm, ok(vm, "Integer", ">=", 1, hyi_smi(1), D(vm, NAN))));
    assert_true(is_true(vm, ok(vm, "Double", "~=", 1, D(vm, NAN), hyi_smi(1))));
    assert_true(is_true(vm, ok(vm, "Double", "=", 1, D(vm, 0.0), D(vm, -0.0))));
}

static void test_mixed_arithmetic_with_doubles(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop r = ok(vm, "Integer", "+", 1, hyi_smi(2), D(vm, 0.5));
    assert_true(hyi_fmt(r) == HYI_FMT_DOUBLE && hyi_double_val(r) == 2.5);
    r = ok(vm, "Double", "-", 1, D(vm, 0.5), hyi_smi(10));
    assert_true(hyi_double_val(r) == -9.5);
    r = ok(vm, "Integer", "//", 1, hyi_smi(1), hyi_smi(2));
    assert_true(hyi_double_val(r) == 0.5);
    r = ok(vm, "Integer", "//", 1, I(vm, "36893488147419103232"), I(vm, "13835058055282163712"));
    assert_true(hyi_double_val(r) == 2.6666666666666665);
    /* Integer / Double answers the Integer quotient, truncated */
    assert_true(ok(vm, "Integer", "/", 1, hyi_smi(-10), D(vm, 1.3)) == hyi_smi(-7));
    f->r[0] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(200));
    r = ok(vm, "Integer", "/", 1, f->r[0], D(vm, 1.3));
    assert_int_is(vm, r, "1236106187891530871397840632111672689764312345256368613097472");
    r = ok(vm, "Integer", "+", 1, f->r[0], D(vm, 1.1));
    assert_true(hyi_double_val(r) == 1.6069380442589903e60);
    r = ok(vm, "Integer", "%", 1, hyi_smi(5), D(vm, 1.2));
    assert_true(hyi_double_val(r) == fmod(5.0, 1.2));
    r = ok(vm, "Double", "%", 1, D(vm, -3.0), D(vm, 2.0));
    assert_true(hyi_double_val(r) == -1.0);
    r = ok(vm, "Double", "%", 1, D(vm, 1.1), f->r[0]);
    assert_true(hyi_double_val(r) == 1.1);
    /* integers beyond the double range cannot mix with doubles */
    f->r[1] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(2000));
    assert_int_equal(call(vm, "Integer", "+", &r, 1, f->r[1], D(vm, 1.1)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "Double"));
    assert_int_equal(call(vm, "Double", "*", &r, 1, D(vm, 1.1), f->r[1]), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Integer", "asDouble", &r, 0, f->r[1]), HYI_PRIM_FAIL);
}

static void test_conversions_between_integers_and_doubles(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop r = ok(vm, "Integer", "asDouble", 0, I(vm, "18446744073709551616"), 0);
    assert_true(hyi_double_val(r) == 18446744073709551616.0);
    r = ok(vm, "Integer", "asDouble", 0, I(vm, "-9007199254740993"), 0);  /* -(2^53 + 1): tie, to even */
    assert_true(hyi_double_val(r) == -9007199254740992.0);
    r = ok(vm, "Integer", "asDouble", 0, I(vm, "36893488147419103233"), 0);  /* 2^65 + 1 */
    assert_true(hyi_double_val(r) == 36893488147419103232.0);
    /* 2^54 + 2^1 + 1 rounds up (above the halfway point thanks to the low bit) */
    r = ok(vm, "Integer", "asDouble", 0, I(vm, "73786976294838206467"), 0);  /* 2^66 + 3 */
    assert_true(hyi_double_val(r) == 73786976294838206464.0);
    r = ok(vm, "Double", "asInteger", 0, D(vm, 18446744073709551616.0), 0);
    assert_int_is(vm, r, "18446744073709551616");
    r = ok(vm, "Double", "asInteger", 0, D(vm, -1e20), 0);
    assert_int_is(vm, r, "-100000000000000000000");
    r = ok(vm, "Double", "asInteger", 0, D(vm, -1.999), 0);
    assert_true(r == hyi_smi(-1));
    r = ok(vm, "Double", "round", 0, D(vm, 1.5), 0);
    assert_true(r == hyi_smi(2));
    r = ok(vm, "Double", "round", 0, D(vm, -1.5), 0);
    assert_true(r == hyi_smi(-2));
    r = ok(vm, "Double", "round", 0, D(vm, 1.4999), 0);
    assert_true(r == hyi_smi(1));
    r = ok(vm, "Double", "round", 0, D(vm, 1.6069380442589903e60), 0);
    assert_int_is(vm, r, "1606938044258990275541962092341162602522202993782792835301376");
    assert_int_equal(call(vm, "Double", "asInteger", &r, 0, D(vm, INFINITY)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Double", "round", &r, 0, D(vm, NAN)), HYI_PRIM_FAIL);
    /* the largest finite double converts both ways */
    r = ok(vm, "Double", "asInteger", 0, D(vm, 1.7976931348623157e308), 0);
    f->r[0] = r;
    r = ok(vm, "Integer", "asDouble", 0, f->r[0], 0);
    assert_true(hyi_double_val(r) == 1.7976931348623157e308);
}

static void test_double_printing_is_shortest_round_trip(void **state) {
    (void)state;
    struct { double d; const char *text; } cases[] = {
        {1.0, "1.0"}, {1.1, "1.1"}, {0.5, "0.5"}, {-1.5, "-1.5"}, {100000.19879879123153, "100000.19879879123"},
        {0.1 + 0.2, "0.30000000000000004"}, {1.1 - 1.0, "0.10000000000000009"}, {1073741825.1, "1073741825.1"},
        {1.152921504606847e18, "1.152921504606847e18"}, {-1.152921504606847e18, "-1.152921504606847e18"},
        {9.334522916791713e-61, "9.334522916791713e-61"}, {1.8446744073709552e19, "1.8446744073709552e19"},
        {9999999.0, "9999999.0"}, {1e16, "1e16"}, {9999999999999998.0, "9999999999999998.0"},
        {0.0001, "0.0001"}, {0.00001, "1e-5"}, {0.0, "0.0"}, {-0.0, "-0.0"}, {INFINITY, "inf"},
        {-INFINITY, "-inf"}, {NAN, "NaN"}, {1.7320508075688772, "1.7320508075688772"},
        {2.6666666666666665, "2.6666666666666665"}, {5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e308"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        size_t len = hyi_double_format(cases[i].d, buf);
        assert_string_equal(buf, cases[i].text);
        assert_int_equal(len, strlen(cases[i].text));
    }
    /* random doubles read back exactly */
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = (uint64_t)rnd() << 32 | rnd();
        double d;
        memcpy(&d, &bits, 8);
        if (!isfinite(d)) continue;
        char buf[32];
        assert_true(hyi_double_format(d, buf) < 32);
        assert_true(strtod(buf, NULL) == d);
    }
}

static void test_double_primitives(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop r = ok(vm, "Double", "asString", 0, D(vm, 0.5), 0);
    assert_true(bytes_are(r, "0.5"));
    assert_true(hyi_o(r)->cls == vm->cls.string);
    r = ok(vm, "Double", "sqrt", 0, D(vm, 1.21), 0);
    assert_true(hyi_double_val(r) == 1.1);
    r = ok(vm, "Double", "sqrt", 0, D(vm, -1.0), 0);
    assert_true(isnan(hyi_double_val(r)));
    r = ok(vm, "Double", "sin", 0, D(vm, 1.0), 0);
    assert_true(hyi_double_val(r) == sin(1.0));
    r = ok(vm, "Double", "cos", 0, D(vm, 2.0), 0);
    assert_true(hyi_double_val(r) == cos(2.0));
    r = ok(vm, "Double class", "PositiveInfinity", 0, vm->nil, 0);
    assert_true(isinf(hyi_double_val(r)) && hyi_double_val(r) > 0);
    r = ok(vm, "Double class", "fromString:", 1, vm->nil, S(vm, "-672.433244"));
    assert_true(hyi_double_val(r) == -672.433244);
    r = ok(vm, "Double class", "fromString:", 1, vm->nil, S(vm, "1"));
    assert_true(hyi_double_val(r) == 1.0);
    assert_int_equal(call(vm, "Double class", "fromString:", &r, 1, vm->nil, S(vm, "123.b")), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "'123.b'"));
    assert_int_equal(call(vm, "Double class", "fromString:", &r, 1, vm->nil, S(vm, "")), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Double class", "fromString:", &r, 1, vm->nil, hyi_smi(3)), HYI_PRIM_FAIL);
    /* equal numbers hash equal */
    hyi_oop h1 = ok(vm, "Double", "hashcode", 0, D(vm, 1.1), 0), h2 = ok(vm, "Double", "hashcode", 0, D(vm, 1.1), 0);
    assert_true(h1 == h2);
    assert_true(ok(vm, "Double", "hashcode", 0, D(vm, 42.0), 0) == ok(vm, "Integer", "hashcode", 0, hyi_smi(42), 0));
}

static void test_bit_operations_use_twos_complement(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    check_int_op(vm, "5", "&", "4", "4");
    check_int_op(vm, "1606938044258990275541962092341162602522202993782792835301376", "&", "1", "0");
    check_int_op(vm, "1606938044258990275541962092341162602522202993782792835301376", "bitXor:", "1",
                 "1606938044258990275541962092341162602522202993782792835301377");
    check_int_op(vm, "-1180591620717411303424", "&", "255", "0");
    check_int_op(vm, "-1180591620717411303423", "&", "255", "1");
    check_int_op(vm, "-1", "bitXor:", "1180591620717411303424", "-1180591620717411303425");
    check_int_op(vm, "-1180591620717411303424", "&", "-1", "-1180591620717411303424");
    check_int_op(vm, "-1180591620717411303424", "bitOr:", "1180591620717411303423", "-1");
    check_int_op(vm, "-18446744073709551616", "bitXor:", "-18446744073709551616", "0");
    /* a xor b = (a or b) - (a and b) for random mixed-sign operands */
    for (int i = 0; i < 200; i++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%s%u%u%u", rnd() % 2 ? "-" : "", rnd(), rnd(), rnd() % 1000);
        snprintf(b, sizeof b, "%s%u%u", rnd() % 2 ? "-" : "", rnd(), rnd() % 100000);
        f->r[0] = I(vm, a);
        f->r[1] = I(vm, b);
        f->r[2] = ok(vm, "Integer", "bitXor:", 1, f->r[0], f->r[1]);
        f->r[3] = ok(vm, "Integer", "bitOr:", 1, f->r[0], f->r[1]);
        f->r[4] = ok(vm, "Integer", "&", 1, f->r[0], f->r[1]);
        f->r[5] = ok(vm, "Integer", "-", 1, f->r[3], f->r[4]);
        assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[2], f->r[5])));
    }
}

static void test_shifts(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    check_int_op(vm, "1", "<<", "70", "1180591620717411303424");
    check_int_op(vm, "-1", "<<", "70", "-1180591620717411303424");
    check_int_op(vm, "1", "<<", "62", "4611686018427387904");
    check_int_op(vm, "-1", "<<", "62", "-4611686018427387904");
    check_int_op(vm, "0", "<<", "100000", "0");
    check_int_op(vm, "1023", ">>>", "3", "127");
    check_int_op(vm, "-1", ">>>", "0", "-1");
    check_int_op(vm, "-1", ">>>", "1", "9223372036854775807");
    check_int_op(vm, "-1024", ">>>", "1", "9223372036854775296");
    check_int_op(vm, "-1", ">>>", "64", "0");
    check_int_op(vm, "1606938044258990275541962092341162602522202993782792835301376", ">>>", "200", "1");
    check_int_op(vm, "-1606938044258990275541962092341162602522202993782792835301377", ">>>", "200", "-2");
    hyi_oop r;
    assert_int_equal(call(vm, "Integer", "<<", &r, 1, hyi_smi(1), hyi_smi(-1)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "negative"));
    assert_int_equal(call(vm, "Integer", ">>>", &r, 1, hyi_smi(1), hyi_smi(-1)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Integer", "<<", &r, 1, hyi_smi(1), I(vm, "1267650600228229401496703205376")), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "too big"));
    assert_int_equal(call(vm, "Integer", ">>>", &r, 1, hyi_smi(1), I(vm, "1267650600228229401496703205376")), HYI_PRIM_FAIL);
    /* beyond HYI_BIGINT_MAX_BITS: a clear failure, not an attempt to allocate it */
    f->r[0] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(999999));
    assert_int_equal(hyi_mag_bits(hyi_largeint_mag(f->r[0]), hyi_largeint_limbs(f->r[0])), 1000000);
    assert_int_equal(call(vm, "Integer", "<<", &r, 1, f->r[0], hyi_smi((intptr_t)HYI_BIGINT_MAX_BITS)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Integer", "*", &r, 1, f->r[0], f->r[0]), HYI_PRIM_OK);  /* 2^1999998 */
    f->r[1] = r;
    assert_int_equal(call(vm, "Integer", "*", &r, 1, f->r[1], f->r[1]), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "bits"));
    /* (1 << 999999) % (3 << 83) */
    f->r[2] = ok(vm, "Integer", "<<", 1, hyi_smi(3), hyi_smi(83));
    r = ok(vm, "Integer", "%", 1, f->r[0], f->r[2]);
    assert_int_is(vm, r, "9671406556917033397649408");
}

static void test_32_bit_views(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    struct { const char *in; const char *u; const char *s; } cases[] = {
        {"0", "0", "0"}, {"1", "1", "1"}, {"-1", "4294967295", "-1"}, {"4294967295", "4294967295", "-1"},
        {"2147483648", "2147483648", "-2147483648"}, {"1152921504606846976", "0", "0"},
        {"-9223372036854775296", "512", "512"}, {"9223372036854775296", "4294966784", "-512"},
        {"1606938044258990275541962092341162602522202993782792835301375", "4294967295", "-1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_is(vm, ok(vm, "Integer", "as32BitUnsignedValue", 0, I(vm, cases[i].in), 0), cases[i].u);
        assert_int_is(vm, ok(vm, "Integer", "as32BitSignedValue", 0, I(vm, cases[i].in), 0), cases[i].s);
    }
}

static void test_sqrt_answers_integers_for_integral_roots(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    assert_true(ok(vm, "Integer", "sqrt", 0, hyi_smi(25), 0) == hyi_smi(5));
    hyi_oop r = ok(vm, "Integer", "sqrt", 0, hyi_smi(3), 0);
    assert_true(hyi_fmt(r) == HYI_FMT_DOUBLE && hyi_double_val(r) == 1.7320508075688772);
    f->r[0] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(200));
    assert_int_is(vm, ok(vm, "Integer", "sqrt", 0, f->r[0], 0), "1267650600228229401496703205376");
    f->r[0] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(2000));
    f->r[1] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(1000));
    r = ok(vm, "Integer", "sqrt", 0, f->r[0], 0);
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, r, f->r[1])));
    f->r[0] = ok(vm, "Integer", "-", 1, f->r[0], hyi_smi(1));    /* 2^2000 - 1: root is 2^1000 - 1 */
    f->r[1] = ok(vm, "Integer", "-", 1, f->r[1], hyi_smi(1));
    r = ok(vm, "Integer", "sqrt", 0, f->r[0], 0);
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, r, f->r[1])));
    /* isqrt against squares of random large numbers, exact and off by one */
    for (int i = 0; i < 100; i++) {
        char digits[400];
        size_t n = 0;
        for (size_t len = 320 + rnd() % 60; n < len; n++) digits[n] = (char)('0' + (n == 0 ? 1 + rnd() % 9 : rnd() % 10));
        digits[n] = 0;
        f->r[2] = I(vm, digits);
        f->r[3] = ok(vm, "Integer", "*", 1, f->r[2], f->r[2]);
        assert_true(is_true(vm, ok(vm, "Integer", "=", 1, ok(vm, "Integer", "sqrt", 0, f->r[3], 0), f->r[2])));
        f->r[3] = ok(vm, "Integer", "-", 1, f->r[3], hyi_smi(1));
        f->r[4] = ok(vm, "Integer", "-", 1, f->r[2], hyi_smi(1));
        assert_true(is_true(vm, ok(vm, "Integer", "=", 1, ok(vm, "Integer", "sqrt", 0, f->r[3], 0), f->r[4])));
    }
    assert_int_equal(call(vm, "Integer", "sqrt", &r, 0, hyi_smi(-1)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Integer", "sqrt", &r, 0, I(vm, "-18446744073709551616")), HYI_PRIM_FAIL);
}

static void test_hashcodes_depend_on_the_value(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    assert_true(ok(vm, "Integer", "hashcode", 0, hyi_smi(42), 0) == hyi_smi(42));
    f->r[0] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(70));
    f->r[1] = ok(vm, "Integer", "<<", 1, hyi_smi(1), hyi_smi(69));
    f->r[1] = ok(vm, "Integer", "*", 1, f->r[1], hyi_smi(2));
    assert_true(f->r[0] != f->r[1]);
    assert_true(ok(vm, "Integer", "hashcode", 0, f->r[0], 0) == ok(vm, "Integer", "hashcode", 0, f->r[1], 0));
    f->r[2] = ok(vm, "Integer", "+", 1, f->r[0], hyi_smi(1));
    assert_true(ok(vm, "Integer", "hashcode", 0, f->r[0], 0) != ok(vm, "Integer", "hashcode", 0, f->r[2], 0));
}

static void test_at_random_stays_in_range_and_varies(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    bool seen[10] = {false};
    for (int i = 0; i < 1000; i++) {
        hyi_oop r = ok(vm, "Integer", "atRandom", 0, hyi_smi(10), 0);
        assert_true(hyi_is_smi(r) && hyi_smi_val(r) >= 0 && hyi_smi_val(r) < 10);
        seen[hyi_smi_val(r)] = true;
    }
    for (int i = 0; i < 10; i++) assert_true(seen[i]);
    f->r[0] = I(vm, "1267650600228229401496703205376");
    f->r[1] = ok(vm, "Integer", "atRandom", 0, f->r[0], 0);
    f->r[2] = ok(vm, "Integer", "atRandom", 0, f->r[0], 0);
    assert_true(is_true(vm, ok(vm, "Integer", "<", 1, f->r[1], f->r[0])));
    assert_true(is_true(vm, ok(vm, "Integer", ">=", 1, f->r[1], hyi_smi(0))));
    assert_false(is_true(vm, ok(vm, "Integer", "=", 1, f->r[1], f->r[2])));
    assert_true(ok(vm, "Integer", "atRandom", 0, hyi_smi(0), 0) == hyi_smi(0));
    /* the identity hash generator keeps a usable (non-zero) state */
    assert_true(vm->heap.hash_state != 0);
}

static void test_integer_from_string(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    assert_true(ok(vm, "Integer class", "fromString:", 1, vm->nil, S(vm, "-50")) == hyi_smi(-50));
    hyi_oop r = ok(vm, "Integer class", "fromString:", 1, vm->nil, S(vm, "-922337203685477580700"));
    assert_int_is(vm, r, "-922337203685477580700");
    assert_int_equal(call(vm, "Integer class", "fromString:", &r, 1, vm->nil, S(vm, "123b")), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "'123b'"));
    assert_int_equal(call(vm, "Integer class", "fromString:", &r, 1, vm->nil, S(vm, "")), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "Integer class", "fromString:", &r, 1, vm->nil, hyi_smi(1)), HYI_PRIM_FAIL);
    r = ok(vm, "Integer", "asString", 0, I(vm, "-4611686018427387904"), 0);
    assert_true(bytes_are(r, "-4611686018427387904"));
}

/* Every large-integer operation under GC stress (a scavenge at every allocation, a full GC
 * every few): results stay correct although operands move. */
static void test_operations_survive_collections_at_every_allocation(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = hyi_smi(1);
    for (int i = 2; i <= 60; i++) f->r[0] = ok(vm, "Integer", "*", 1, f->r[0], hyi_smi(i));
    f->r[1] = ok(vm, "Integer", "-", 1, f->r[0], hyi_smi(1));
    f->r[2] = ok(vm, "Integer", "+", 1, f->r[1], f->r[0]);
    f->r[3] = ok(vm, "Integer", "/", 1, f->r[2], f->r[0]);
    assert_true(f->r[3] == hyi_smi(1));
    f->r[3] = ok(vm, "Integer", "%", 1, f->r[2], f->r[0]);
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[3], f->r[1])));
    f->r[4] = ok(vm, "Integer", "bitXor:", 1, f->r[0], f->r[1]);
    f->r[5] = ok(vm, "Integer", "<<", 1, f->r[4], hyi_smi(77));
    f->r[5] = ok(vm, "Integer", ">>>", 1, f->r[5], hyi_smi(77));
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[4], f->r[5])));
    assert_int_is(vm, f->r[0], "8320987112741390144276341183223364380754172606361245952449277696409600000000000000");
    f->r[6] = ok(vm, "Integer", "asString", 0, f->r[0], 0);
    f->r[7] = ok(vm, "Integer class", "fromString:", 1, vm->nil, f->r[6]);
    assert_true(is_true(vm, ok(vm, "Integer", "=", 1, f->r[7], f->r[0])));
    f->r[8] = ok(vm, "String", "concatenate:", 1, f->r[6], f->r[6]);
    assert_int_equal(hyi_size(f->r[8]), 2 * hyi_size(f->r[6]));
    f->r[9] = ok(vm, "String", "asSymbol", 0, f->r[8], 0);
    assert_true(bytes_are(f->r[9], (const char *)hyi_bytes(f->r[8])));
    f->r[10] = ok(vm, "Double", "asInteger", 0, D(vm, 1e300), 0);
    f->r[11] = ok(vm, "Integer", "asDouble", 0, f->r[10], 0);
    assert_true(hyi_double_val(f->r[11]) == 1e300);
}

/* ---- Strings and Symbols ---------------------------------------------------------------------- */

static void test_string_concatenation_and_length(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop r = ok(vm, "String", "concatenate:", 1, S(vm, "foo"), S(vm, "bar"));
    assert_true(bytes_are(r, "foobar"));
    assert_true(hyi_o(r)->cls == vm->cls.string);
    assert_true(ok(vm, "String", "length", 0, r, 0) == hyi_smi(6));
    f->r[0] = hyi_symbol(vm, "ab", 2);
    r = ok(vm, "String", "concatenate:", 1, S(vm, "x"), f->r[0]);
    assert_true(bytes_are(r, "xab"));
    assert_true(ok(vm, "String", "length", 0, S(vm, ""), 0) == hyi_smi(0));
    assert_int_equal(call(vm, "String", "concatenate:", &r, 1, S(vm, "x"), hyi_smi(1)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "Integer"));
}

static void test_string_equality_compares_contents_across_classes(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = hyi_symbol(vm, "foo", 3);
    assert_true(is_true(vm, ok(vm, "String", "=", 1, S(vm, "foo"), S(vm, "foo"))));
    assert_true(is_true(vm, ok(vm, "String", "=", 1, S(vm, "foo"), f->r[0])));
    assert_true(is_true(vm, ok(vm, "String", "=", 1, f->r[0], S(vm, "foo"))));
    assert_false(is_true(vm, ok(vm, "String", "=", 1, S(vm, "foo"), S(vm, "fooo"))));
    assert_false(is_true(vm, ok(vm, "String", "=", 1, S(vm, "a"), hyi_smi(0))));
    assert_false(is_true(vm, ok(vm, "String", "=", 1, S(vm, "a"), vm->nil)));
    /* embedded NULs do not end the comparison */
    hyi_oop a = hyi_string_new(vm, "a\0b", 3);
    f->r[1] = a;
    hyi_oop b = hyi_string_new(vm, "a\0c", 3);
    assert_false(is_true(vm, ok(vm, "String", "=", 1, f->r[1], b)));
}

static void test_string_hashcode_agrees_with_equality(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop h1 = ok(vm, "String", "hashcode", 0, S(vm, "foobarfoobar"), 0);
    f->r[0] = ok(vm, "String", "concatenate:", 1, S(vm, "foobar"), S(vm, "foobar"));
    hyi_oop h2 = ok(vm, "String", "hashcode", 0, f->r[0], 0);
    assert_true(h1 == h2);
    assert_true(hyi_smi_val(h1) >= 0);
    f->r[1] = hyi_symbol(vm, "foobarfoobar", 12);
    assert_true(ok(vm, "Symbol", "hashcode", 0, f->r[1], 0) == h1);
    assert_true(ok(vm, "String", "hashcode", 0, S(vm, "foobarfoobaR"), 0) != h1);
}

static void test_as_symbol_interns_and_as_string_copies(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = ok(vm, "String", "asSymbol", 0, S(vm, "oink"), 0);
    assert_true(hyi_o(f->r[0])->cls == vm->cls.symbol);
    assert_true(bytes_are(f->r[0], "oink"));
    f->r[1] = S(vm, "oi");
    f->r[2] = S(vm, "nk");
    f->r[1] = ok(vm, "String", "concatenate:", 1, f->r[1], f->r[2]);
    assert_true(ok(vm, "String", "asSymbol", 0, f->r[1], 0) == f->r[0]);
    assert_true(ok(vm, "String", "asSymbol", 0, f->r[0], 0) == f->r[0]);
    hyi_oop s = ok(vm, "Symbol", "asString", 0, f->r[0], 0);
    assert_true(hyi_o(s)->cls == vm->cls.string);
    assert_true(s != f->r[0]);
    assert_true(bytes_are(s, "oink"));
    assert_true(ok(vm, "String", "asString", 0, f->r[1], 0) == f->r[1]);
    /* a long string (copied through malloc before interning) */
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    f->r[2] = ok(vm, "String", "asSymbol", 0, S(vm, big), 0);
    assert_true(bytes_are(f->r[2], big));
}

static void test_substrings_are_bounds_checked(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    f->r[0] = S(vm, "foobar");
    hyi_oop r = 0;
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(1), hyi_smi(3)), HYI_PRIM_OK);
    assert_true(bytes_are(r, "foo"));
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(4), hyi_smi(6)), HYI_PRIM_OK);
    assert_true(bytes_are(r, "bar"));
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(7), hyi_smi(6)), HYI_PRIM_OK);
    assert_true(bytes_are(r, ""));
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(0), hyi_smi(3)), HYI_PRIM_FAIL);
    assert_non_null(strstr(vm->prim_message, "out of bounds"));
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(2), hyi_smi(7)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(5), hyi_smi(3)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], hyi_smi(-5), hyi_smi(-9)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "String", "primSubstringFrom:to:", &r, 2, f->r[0], vm->nil, hyi_smi(3)), HYI_PRIM_FAIL);
    r = ok(vm, "String", "charAt:", 1, f->r[0], hyi_smi(6));
    assert_true(bytes_are(r, "r"));
    r = ok(vm, "String", "at:", 1, f->r[0], hyi_smi(1));
    assert_true(bytes_are(r, "f"));
    assert_int_equal(call(vm, "String", "charAt:", &r, 1, f->r[0], hyi_smi(7)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "String", "at:", &r, 1, f->r[0], hyi_smi(0)), HYI_PRIM_FAIL);
    assert_int_equal(call(vm, "String", "at:", &r, 1, f->r[0], I(vm, "18446744073709551616")), HYI_PRIM_FAIL);
}

static void test_character_class_predicates(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    struct { const char *s; bool white, letters, digits; } cases[] = {
        {" ", true, false, false}, {"\t\n   \n \n", true, false, false}, {"", false, false, false},
        {"\t\n N  \n \n", false, false, false}, {"all", false, true, false}, {"aOo\xc3\xb6\xc3\xa9\xc3\x89\xc3\xad\xc3\xa4", false, true, false},
        {"\xc3\xa6", false, true, false}, {"\xc2\xbe", false, false, false}, {"aOo \xc3\xb6", false, false, false},
        {"a0", false, false, false}, {"0123456789", false, false, true}, {"66e7", false, false, false},
        {"333 3", false, false, false}, {"\xc3", false, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        f->r[0] = S(vm, cases[i].s);
        assert_int_equal(is_true(vm, ok(vm, "String", "isWhiteSpace", 0, f->r[0], 0)), cases[i].white);
        assert_int_equal(is_true(vm, ok(vm, "String", "isLetters", 0, f->r[0], 0)), cases[i].letters);
        assert_int_equal(is_true(vm, ok(vm, "String", "isDigits", 0, f->r[0], 0)), cases[i].digits);
    }
}

static void test_string_primitives_reject_non_string_receivers(void **state) {
    fixture *f = *state;
    hy_vm *vm = f->vm;
    hyi_oop r;
    const char *sels[] = {"asSymbol", "hashcode", "length", "isWhiteSpace", "isLetters", "isDigits", "asString"};
    for (size_t i = 0; i < sizeof sels / sizeof sels[0]; i++) {
        assert_int_equal(call(vm, "String", sels[i], &r, 0, hyi_smi(3)), HYI_PRIM_FAIL);
        assert_int_equal(call(vm, "String", sels[i], &r, 0, D(vm, 1.0)), HYI_PRIM_FAIL);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_divmod_reconstructs_the_dividend_for_random_operands),
        cmocka_unit_test(test_add_sub_and_mul_agree_with_64_bit_arithmetic),
        cmocka_unit_test(test_decimal_text_round_trips),
        cmocka_unit_test(test_shifts_move_bits_across_limbs),
        cmocka_unit_test(test_double_printing_is_shortest_round_trip),
        cmocka_unit_test_setup_teardown(test_parse_answers_small_integers_when_they_fit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_integer_overflow_becomes_large_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_factorial_quotients_are_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_division_rounds_like_smalltalk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_division_by_zero_fails_with_a_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_argument_classes_fail_naming_the_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_comparisons_mix_small_large_and_doubles_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mixed_arithmetic_with_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conversions_between_integers_and_doubles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_double_primitives, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bit_operations_use_twos_complement, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shifts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_32_bit_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sqrt_answers_integers_for_integral_roots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hashcodes_depend_on_the_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_random_stays_in_range_and_varies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_from_string, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operations_survive_collections_at_every_allocation, setup_stress, teardown),
        cmocka_unit_test_setup_teardown(test_string_concatenation_and_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_equality_compares_contents_across_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_hashcode_agrees_with_equality, setup, teardown),
        cmocka_unit_test_setup_teardown(test_as_symbol_interns_and_as_string_copies, setup_stress, teardown),
        cmocka_unit_test_setup_teardown(test_substrings_are_bounds_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_character_class_predicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_string_primitives_reject_non_string_receivers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
