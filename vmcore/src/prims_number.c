/*
 * prims_number.c -- the primitives of Integer and Double.
 *
 * The interpreter inlines + - * < > <= >= = ~= for two SmallIntegers (and the comparisons for
 * two Doubles); these primitives are the general case: SmallInteger overflow into
 * LargeIntegers, LargeInteger operands, and mixes of Integers and Doubles.
 *
 * Semantics (those of SOM-st/SOM and its test suites):
 *  - An operation between an Integer and a Double converts the Integer to a Double (failing
 *    when it is too large for one) and answers a Double, except Integer / Double, which
 *    answers the Integer quotient truncated toward zero.
 *  - Integer / truncates toward zero (as C does); % rounds toward negative infinity (the
 *    result has the sign of the divisor) and rem: toward zero (the sign of the dividend);
 *    // always answers a Double. Double % is C's fmod.
 *  - Comparisons between Integers and Doubles are exact. = and ~= with a non-number answer
 *    false and true; ordering comparisons with a non-number fail.
 *  - Dividing by zero, shifting by a negative or huge count, and results beyond
 *    HYI_BIGINT_MAX_BITS fail with a message; nothing here aborts.
 */
#include <math.h>
#include <stdlib.h>

#include "bigint.h"
#include "prims.h"

/* ---- Helpers ---------------------------------------------------------------------------- */

static inline hyi_oop boolean(hy_vm *vm, bool b) { return b ? vm->true_ : vm->false_; }

static inline bool is_double(hyi_oop o) { return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_DOUBLE; }

static inline bool is_number(hyi_oop o) { return hyi_is_int(o) || is_double(o); }

static hyi_prim_status bad_arg(hy_vm *vm, const char *cls, const char *sel, const char *want, hyi_oop arg) {
    int len;
    const char *name;
    hyi_prim_class_name(vm, arg, &len, &name);
    return hyi_prim_fail(vm, "%s>>%s: the argument must be %s, not an instance of %.*s", cls, sel, want, len, name);
}

static hyi_prim_status big_result(hy_vm *vm, hyi_big_status st, const char *cls, const char *sel) {
    switch (st) {
    case HYI_BIG_OK: return HYI_PRIM_OK;
    case HYI_BIG_OOM: return HYI_PRIM_OOM;
    case HYI_BIG_TOO_LARGE: break;
    }
    return hyi_prim_fail(vm, "%s>>%s: the result would have more than %llu bits", cls, sel,
                         (unsigned long long)HYI_BIGINT_MAX_BITS);
}

static hyi_prim_status answer_double(hy_vm *vm, double d, hyi_oop *result) {
    hyi_oop o = hyi_double_new(vm, d);
    if (!o) return HYI_PRIM_OOM;
    *result = o;
    return HYI_PRIM_OK;
}

/* n as a double, or a failure naming the selector when it is too large for one. */
static bool num_to_double(hyi_oop n, double *d) {
    if (is_double(n)) { *d = hyi_double_val(n); return true; }
    return hyi_bigint_to_double(n, d);
}

static hyi_prim_status too_big_for_double(hy_vm *vm, const char *cls, const char *sel) {
    return hyi_prim_fail(vm, "%s>>%s: the integer is too large to be represented as a Double", cls, sel);
}

static hyi_prim_status zero_divide(hy_vm *vm, const char *cls, const char *sel) {
    return hyi_prim_fail(vm, "%s>>%s: division by zero", cls, sel);
}

/* Both operands as doubles (receiver args[0], argument args[1]), for mixed arithmetic. */
static hyi_prim_status both_doubles(hy_vm *vm, hyi_oop *args, const char *cls, const char *sel, bool divides,
                                    double *x, double *y) {
    if (!is_number(args[1])) return bad_arg(vm, cls, sel, "a number", args[1]);
    /* A zero divisor is reported before a receiver that is too large for a double. */
    if (divides && (is_double(args[1]) ? hyi_double_val(args[1]) == 0 : args[1] == hyi_smi(0)))
        return zero_divide(vm, cls, sel);
    if (!num_to_double(args[0], x) || !num_to_double(args[1], y)) return too_big_for_double(vm, cls, sel);
    return HYI_PRIM_OK;
}

#define RECEIVER_INT(sel) do { \
    if (!hyi_is_int(args[0])) return hyi_prim_fail(vm, "Integer>>%s: the receiver is not an Integer", sel); \
} while (0)
#define RECEIVER_DOUBLE(sel) do { \
    if (!is_double(args[0])) return hyi_prim_fail(vm, "Double>>%s: the receiver is not a Double", sel); \
} while (0)

/* ---- Integer arithmetic ----------------------------------------------------------------- */

typedef hyi_big_status (*big_binop)(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);

static hyi_prim_status int_arith(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, big_binop op,
                                 int dop) {
    RECEIVER_INT(sel);
    if (hyi_is_int(args[1])) return big_result(vm, op(vm, args[0], args[1], result), "Integer", sel);
    double x, y;
    hyi_prim_status st = both_doubles(vm, args, "Integer", sel, false, &x, &y);
    if (st != HYI_PRIM_OK) return st;
    return answer_double(vm, dop == '+' ? x + y : dop == '-' ? x - y : x * y, result);
}

static hyi_prim_status int_add(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_arith(vm, args, result, "+", hyi_bigint_add, '+');
}
static hyi_prim_status int_sub(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_arith(vm, args, result, "-", hyi_bigint_sub, '-');
}
static hyi_prim_status int_mul(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_arith(vm, args, result, "*", hyi_bigint_mul, '*');
}

/* Integer / : the quotient truncated toward zero, an Integer even for a Double argument. */
static hyi_prim_status int_div(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("/");
    if (hyi_is_int(args[1])) {
        if (hyi_bigint_sign(args[1]) == 0) return zero_divide(vm, "Integer", "/");
        return big_result(vm, hyi_bigint_quo(vm, args[0], args[1], false, result), "Integer", "/");
    }
    double x, y;
    hyi_prim_status st = both_doubles(vm, args, "Integer", "/", true, &x, &y);
    if (st != HYI_PRIM_OK) return st;
    if (y == 0) return zero_divide(vm, "Integer", "/");
    double q = trunc(x / y);
    if (!isfinite(q)) return hyi_prim_fail(vm, "Integer>>/: the quotient %g is not a finite number", q);
    return big_result(vm, hyi_bigint_from_double(vm, q, result), "Integer", "/");
}

/* Integer // : the quotient as a Double. */
static hyi_prim_status int_fdiv(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("//");
    double x, y;
    hyi_prim_status st = both_doubles(vm, args, "Integer", "//", true, &x, &y);
    if (st != HYI_PRIM_OK) return st;
    if (y == 0) return zero_divide(vm, "Integer", "//");
    return answer_double(vm, x / y, result);
}

static hyi_prim_status int_modulo(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, bool floor) {
    RECEIVER_INT(sel);
    if (hyi_is_int(args[1])) {
        if (hyi_bigint_sign(args[1]) == 0) return zero_divide(vm, "Integer", sel);
        return big_result(vm, hyi_bigint_rem(vm, args[0], args[1], floor, result), "Integer", sel);
    }
    double x, y;
    hyi_prim_status st = both_doubles(vm, args, "Integer", sel, true, &x, &y);
    if (st != HYI_PRIM_OK) return st;
    if (y == 0) return zero_divide(vm, "Integer", sel);
    return answer_double(vm, fmod(x, y), result);
}

static hyi_prim_status int_mod(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_modulo(vm, args, result, "%", true);
}
static hyi_prim_status int_rem(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_modulo(vm, args, result, "rem:", false);
}

/* ---- Integer bit operations ------------------------------------------------------------- */

static hyi_prim_status int_bitop(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, big_binop op) {
    /* Two SmallIntegers: the tagged words combine directly (the tag bit survives & | ^ as 1, 1, 0). */
    if (hyi_is_smi(args[0] & args[1])) {
        hyi_oop a = args[0], b = args[1];
        if (op == hyi_bigint_and) { *result = a & b; return HYI_PRIM_OK; }
        if (op == hyi_bigint_or) { *result = a | b; return HYI_PRIM_OK; }
        if (op == hyi_bigint_xor) { *result = (a ^ b) | 1; return HYI_PRIM_OK; }
    }
    RECEIVER_INT(sel);
    if (!hyi_is_int(args[1])) return bad_arg(vm, "Integer", sel, "an Integer", args[1]);
    return big_result(vm, op(vm, args[0], args[1], result), "Integer", sel);
}

static hyi_prim_status int_and(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_bitop(vm, args, result, "&", hyi_bigint_and);
}
static hyi_prim_status int_or(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_bitop(vm, args, result, "bitOr:", hyi_bigint_or);
}
static hyi_prim_status int_xor(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return int_bitop(vm, args, result, "bitXor:", hyi_bigint_xor);
}

/* The shift count args[1]: a non-negative SmallInteger. */
static hyi_prim_status shift_count(hy_vm *vm, hyi_oop *args, const char *sel, uint64_t *count) {
    hyi_oop n = args[1];
    if (!hyi_is_int(n)) return bad_arg(vm, "Integer", sel, "an Integer", n);
    if (hyi_bigint_sign(n) < 0) return hyi_prim_fail(vm, "Integer>>%s: negative shift count", sel);
    if (!hyi_is_smi(n) || (uint64_t)hyi_smi_val(n) > HYI_BIGINT_MAX_BITS)
        return hyi_prim_fail(vm, "Integer>>%s: shift count too big", sel);
    *count = (uint64_t)hyi_smi_val(n);
    return HYI_PRIM_OK;
}

static hyi_prim_status int_shl(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    /* A SmallInteger shifted by a small count that stays a SmallInteger. */
    if (hyi_is_smi(args[0] & args[1]) && hyi_smi_val(args[1]) >= 0 && hyi_smi_val(args[1]) < 62) {
        intptr_t v = hyi_smi_val(args[0]), k = hyi_smi_val(args[1]);
        intptr_t r = (intptr_t)((uintptr_t)v << k);
        if ((r >> k) == v && hyi_smi_fits(r)) { *result = hyi_smi(r); return HYI_PRIM_OK; }
    }
    RECEIVER_INT("<<");
    uint64_t n;
    hyi_prim_status st = shift_count(vm, args, "<<", &n);
    if (st != HYI_PRIM_OK) return st;
    return big_result(vm, hyi_bigint_shl(vm, args[0], n, result), "Integer", "<<");
}

/* >>> : a logical shift of the 64-bit two's complement value for receivers that fit 64 bits
 * (so -1 >>> 1 is 2^63 - 1); an arithmetic shift (floor) for larger ones. */
static hyi_prim_status int_lshr(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT(">>>");
    uint64_t n;
    hyi_prim_status st = shift_count(vm, args, ">>>", &n);
    if (st != HYI_PRIM_OK) return st;
    int64_t v;
    if (hyi_bigint_to_int64(args[0], &v)) {
        if (n == 0) { *result = args[0]; return HYI_PRIM_OK; }
        hyi_oop o = hyi_bigint_from_uint64(vm, n >= 64 ? 0 : (uint64_t)v >> n);
        if (!o) return HYI_PRIM_OOM;
        *result = o;
        return HYI_PRIM_OK;
    }
    return big_result(vm, hyi_bigint_shr(vm, args[0], n, result), "Integer", ">>>");
}

/* ---- Integer comparisons ---------------------------------------------------------------- */

enum { CMP_EQ, CMP_NE, CMP_LT, CMP_GT, CMP_LE, CMP_GE };

static bool cmp_holds(int c, int op) {
    if (c == 2) return op == CMP_NE;  /* NaN: unordered */
    switch (op) {
    case CMP_EQ: return c == 0;
    case CMP_NE: return c != 0;
    case CMP_LT: return c < 0;
    case CMP_GT: return c > 0;
    case CMP_LE: return c <= 0;
    default: return c >= 0;
    }
}

/* Compare number a with number b: -1, 0, 1, or 2 when unordered (NaN). */
static int num_cmp(hyi_oop a, hyi_oop b) {
    if (hyi_is_int(a)) {
        if (hyi_is_int(b)) return hyi_bigint_cmp(a, b);
        return hyi_bigint_cmp_double(a, hyi_double_val(b));
    }
    double x = hyi_double_val(a);
    if (hyi_is_int(b)) {
        int c = hyi_bigint_cmp_double(b, x);
        return c == 2 ? 2 : -c;
    }
    double y = hyi_double_val(b);
    if (isnan(x) || isnan(y)) return 2;
    return (x > y) - (x < y);
}

static hyi_prim_status compare(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *cls, const char *sel,
                               int op) {
    if (!is_number(args[0])) return hyi_prim_fail(vm, "%s>>%s: the receiver is not a number", cls, sel);
    if (!is_number(args[1])) {
        if (op == CMP_EQ || op == CMP_NE) { *result = boolean(vm, op == CMP_NE); return HYI_PRIM_OK; }
        return bad_arg(vm, cls, sel, "a number", args[1]);
    }
    *result = boolean(vm, cmp_holds(num_cmp(args[0], args[1]), op));
    return HYI_PRIM_OK;
}

#define COMPARE_PRIM(fn, cls, sel, op) \
    static hyi_prim_status fn(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) { \
        (void)nargs; \
        return compare(vm, args, result, cls, sel, op); \
    }
COMPARE_PRIM(int_eq, "Integer", "=", CMP_EQ)
COMPARE_PRIM(int_ne, "Integer", "~=", CMP_NE)
COMPARE_PRIM(int_lt, "Integer", "<", CMP_LT)
COMPARE_PRIM(int_gt, "Integer", ">", CMP_GT)
COMPARE_PRIM(int_le, "Integer", "<=", CMP_LE)
COMPARE_PRIM(int_ge, "Integer", ">=", CMP_GE)
COMPARE_PRIM(dbl_eq, "Double", "=", CMP_EQ)
COMPARE_PRIM(dbl_ne, "Double", "~=", CMP_NE)
COMPARE_PRIM(dbl_lt, "Double", "<", CMP_LT)
COMPARE_PRIM(dbl_gt, "Double", ">", CMP_GT)
COMPARE_PRIM(dbl_le, "Double", "<=", CMP_LE)
COMPARE_PRIM(dbl_ge, "Double", ">=", CMP_GE)

/* ---- Integer conversions and the rest ---------------------------------------------------- */

static hyi_prim_status int_as_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("asString");
    hyi_oop s = hyi_bigint_to_string(vm, args[0]);
    if (!s) return HYI_PRIM_OOM;
    *result = s;
    return HYI_PRIM_OK;
}

static hyi_prim_status int_as_double(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("asDouble");
    double d;
    if (!hyi_bigint_to_double(args[0], &d)) return too_big_for_double(vm, "Integer", "asDouble");
    return answer_double(vm, d, result);
}

static hyi_prim_status int_as_32_signed(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("as32BitSignedValue");
    *result = hyi_smi((int32_t)(uint32_t)hyi_bigint_low64(args[0]));
    return HYI_PRIM_OK;
}

static hyi_prim_status int_as_32_unsigned(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("as32BitUnsignedValue");
    *result = hyi_smi((intptr_t)(uint32_t)hyi_bigint_low64(args[0]));
    return HYI_PRIM_OK;
}

static hyi_prim_status int_hashcode(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("hashcode");
    *result = hyi_smi(hyi_bigint_hash(args[0]));
    return HYI_PRIM_OK;
}

/* sqrt: an Integer when the root (as a double) is integral, else a Double. Integers too
 * large for a double answer their integer square root. Negative receivers fail. */
static hyi_prim_status int_sqrt(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("sqrt");
    if (hyi_bigint_sign(args[0]) < 0) return hyi_prim_fail(vm, "Integer>>sqrt: the receiver is negative");
    double d;
    if (!hyi_bigint_to_double(args[0], &d))
        return big_result(vm, hyi_bigint_isqrt(vm, args[0], result), "Integer", "sqrt");
    double r = sqrt(d);
    if (r == floor(r)) return big_result(vm, hyi_bigint_from_double(vm, r, result), "Integer", "sqrt");
    return answer_double(vm, r, result);
}

/* The VM's random stream lives in the identity-hash generator state: each draw advances it
 * through a SplitMix64 step, so sequences are per VM and reproducible from that state. */
static uint64_t next_random(hy_vm *vm) {
    uint64_t z = (uint64_t)vm->heap.hash_state * 0x9E3779B97F4A7C15u + 0xD1B54A32D192ED03u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    uint32_t next = (uint32_t)(z >> 32);
    vm->heap.hash_state = next ? next : 0x9E3779B9u;
    return z;
}

/* atRandom: a random integer in [0, self) for self > 0; 0 for 0. */
static hyi_prim_status int_at_random(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_INT("atRandom");
    int sign = hyi_bigint_sign(args[0]);
    if (sign < 0) return hyi_prim_fail(vm, "Integer>>atRandom: the receiver must not be negative");
    if (sign == 0) { *result = hyi_smi(0); return HYI_PRIM_OK; }
    if (hyi_is_smi(args[0])) {
        *result = hyi_smi((intptr_t)(next_random(vm) % (uint64_t)hyi_smi_val(args[0])));
        return HYI_PRIM_OK;
    }
    /* Two limbs more than the receiver make the bias of the final reduction negligible. */
    size_t n = hyi_largeint_limbs(args[0]), rn = n + 2, qn, mn;
    hyi_limb *r = malloc(rn * sizeof(hyi_limb)), *q = malloc(rn * sizeof(hyi_limb));
    hyi_limb *m = malloc(n * sizeof(hyi_limb));
    hyi_prim_status st = HYI_PRIM_OOM;
    if (r && q && m) {
        for (size_t i = 0; i < rn; i += 2) {
            uint64_t x = next_random(vm);
            r[i] = (hyi_limb)x;
            if (i + 1 < rn) r[i + 1] = (hyi_limb)(x >> 32);
        }
        if (hyi_mag_divmod(q, &qn, m, &mn, r, rn, hyi_largeint_mag(args[0]), n))
            st = big_result(vm, hyi_bigint_make(vm, m, mn, false, result), "Integer", "atRandom");
    }
    free(r); free(q); free(m);
    return st;
}

/* Integer class>>fromString: */
static hyi_prim_status int_from_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop s = args[1];
    if (!hyi_is_ptr(s) || hyi_fmt(s) != HYI_FMT_BYTES) return bad_arg(vm, "Integer class", "fromString:", "a String", s);
    const char *text = (const char *)hyi_bytes(s);
    size_t len = hyi_size(s);
    if (!hyi_bigint_is_numeral(text, len))
        return hyi_prim_fail(vm, "Integer class>>fromString: '%.*s' cannot be converted to an Integer",
                             len > 100 ? 100 : (int)len, text);
    if (len > HYI_BIGINT_MAX_BITS * 3 / 10)  /* 10 digits need more than 33 bits */
        return hyi_prim_fail(vm, "Integer class>>fromString: the numeral is too long (%zu digits)", len);
    hyi_oop o = hyi_bigint_parse(vm, text, len, false);
    if (!o) return HYI_PRIM_OOM;
    *result = o;
    return HYI_PRIM_OK;
}

/* ---- Double ----------------------------------------------------------------------------- */

size_t hyi_double_format(double d, char *buf) {
    if (isnan(d)) { memcpy(buf, "NaN", 4); return 3; }
    if (isinf(d)) { strcpy(buf, d > 0 ? "inf" : "-inf"); return strlen(buf); }
    if (d == 0) { strcpy(buf, signbit(d) ? "-0.0" : "0.0"); return strlen(buf); }
    /* The fewest significant digits that read back as d. */
    char sci[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec - 1, d);
        if (strtod(sci, NULL) == d) break;
    }
    /* sci is [-]D[.DDD]e(+|-)XX: split into digits and exponent. */
    char digits[24];
    size_t nd = 0;
    const char *p = sci;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.' && nd < sizeof digits - 1) digits[nd++] = *p;
    int exp10 = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;

    size_t pos = 0;
    if (neg) buf[pos++] = '-';
    double ad = fabs(d);
    if (ad >= 1e-4 && ad < 1e16) {
        if (exp10 >= 0) {
            for (int i = 0; i <= exp10; i++) buf[pos++] = (size_t)i < nd ? digits[i] : '0';
            buf[pos++] = '.';
            if ((size_t)exp10 + 1 < nd) {
                for (size_t i = (size_t)exp10 + 1; i < nd; i++) buf[pos++] = digits[i];
            } else {
                buf[pos++] = '0';
            }
        } else {
            buf[pos++] = '0';
            buf[pos++] = '.';
            for (int i = -1; i > exp10; i--) buf[pos++] = '0';
            for (size_t i = 0; i < nd; i++) buf[pos++] = digits[i];
        }
        buf[pos] = 0;
    } else {
        buf[pos++] = digits[0];
        if (nd > 1) {
            buf[pos++] = '.';
            for (size_t i = 1; i < nd; i++) buf[pos++] = digits[i];
        }
        pos += (size_t)sprintf(buf + pos, "e%d", exp10);
    }
    return pos;
}

static hyi_prim_status dbl_arith(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, int op) {
    RECEIVER_DOUBLE(sel);
    double x, y;
    hyi_prim_status st = both_doubles(vm, args, "Double", sel, op == '/' || op == '%', &x, &y);
    if (st != HYI_PRIM_OK) return st;
    double r;
    switch (op) {
    case '+': r = x + y; break;
    case '-': r = x - y; break;
    case '*': r = x * y; break;
    case '/':
        if (y == 0) return zero_divide(vm, "Double", sel);
        r = x / y;
        break;
    default:
        if (y == 0) return zero_divide(vm, "Double", sel);
        r = fmod(x, y);
        break;
    }
    return answer_double(vm, r, result);
}

static hyi_prim_status dbl_add(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_arith(vm, args, result, "+", '+');
}
static hyi_prim_status dbl_sub(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_arith(vm, args, result, "-", '-');
}
static hyi_prim_status dbl_mul(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_arith(vm, args, result, "*", '*');
}
static hyi_prim_status dbl_fdiv(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_arith(vm, args, result, "//", '/');
}
static hyi_prim_status dbl_mod(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_arith(vm, args, result, "%", '%');
}

static hyi_prim_status dbl_unary(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, double (*fn)(double)) {
    RECEIVER_DOUBLE(sel);
    return answer_double(vm, fn(hyi_double_val(args[0])), result);
}
static hyi_prim_status dbl_sqrt(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_unary(vm, args, result, "sqrt", sqrt);
}
static hyi_prim_status dbl_sin(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_unary(vm, args, result, "sin", sin);
}
static hyi_prim_status dbl_cos(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_unary(vm, args, result, "cos", cos);
}

static hyi_prim_status dbl_to_int(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel, double (*fn)(double)) {
    RECEIVER_DOUBLE(sel);
    double d = hyi_double_val(args[0]);
    if (!isfinite(d)) {
        char text[32];
        hyi_double_format(d, text);
        return hyi_prim_fail(vm, "Double>>%s: %s cannot be converted to an Integer", sel, text);
    }
    return big_result(vm, hyi_bigint_from_double(vm, fn(d), result), "Double", sel);
}
/* round: halves round away from zero (1.5 -> 2, -1.5 -> -2). */
static hyi_prim_status dbl_round(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_to_int(vm, args, result, "round", round);
}
static hyi_prim_status dbl_as_integer(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return dbl_to_int(vm, args, result, "asInteger", trunc);
}

static hyi_prim_status dbl_as_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_DOUBLE("asString");
    char text[32];
    size_t len = hyi_double_format(hyi_double_val(args[0]), text);
    hyi_oop s = hyi_string_new(vm, text, len);
    if (!s) return HYI_PRIM_OOM;
    *result = s;
    return HYI_PRIM_OK;
}

/* hashcode: equal numbers hash equal, so an integral Double hashes like the Integer. */
static hyi_prim_status dbl_hashcode(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_DOUBLE("hashcode");
    double d = hyi_double_val(args[0]);
    if (d == trunc(d) && fabs(d) < 4611686018427387904.0) { /* 2^62 */
        *result = hyi_smi((intptr_t)d);
        return HYI_PRIM_OK;
    }
    if (d == trunc(d) && isfinite(d)) {
        hyi_oop i;
        hyi_big_status st = hyi_bigint_from_double(vm, d, &i);
        if (st != HYI_BIG_OK) return big_result(vm, st, "Double", "hashcode");
        *result = hyi_smi(hyi_bigint_hash(i));
        return HYI_PRIM_OK;
    }
    uint64_t bits;
    memcpy(&bits, &d, 8);
    bits ^= bits >> 29;
    bits *= 0xBF58476D1CE4E5B9u;
    bits ^= bits >> 32;
    *result = hyi_smi((intptr_t)(bits >> 2));
    return HYI_PRIM_OK;
}

static hyi_prim_status dbl_positive_infinity(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    return answer_double(vm, INFINITY, result);
}

/* Double class>>fromString: the whole string must be a number C's strtod accepts. */
static hyi_prim_status dbl_from_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop s = args[1];
    if (!hyi_is_ptr(s) || hyi_fmt(s) != HYI_FMT_BYTES) return bad_arg(vm, "Double class", "fromString:", "a String", s);
    size_t len = hyi_size(s);
    const char *text = (const char *)hyi_bytes(s);
    char *end = NULL;
    double d = 0;
    /* The string is NUL-terminated after its size; an embedded NUL ends strtod early and
     * is caught by the length check. */
    if (len > 0 && !(text[0] == ' ' || (text[0] >= '\t' && text[0] <= '\r')))
        d = strtod(text, &end);
    if (!end || end != text + len)
        return hyi_prim_fail(vm, "Double class>>fromString: '%.*s' cannot be converted to a Double",
                             len > 100 ? 100 : (int)len, text);
    return answer_double(vm, d, result);
}

/* ---- The table -------------------------------------------------------------------------- */

const hyi_prim_def hyi_prims_number[] = {
    {"Integer", "+", int_add, 0},
    {"Integer", "-", int_sub, 0},
    {"Integer", "*", int_mul, 0},
    {"Integer", "/", int_div, 0},
    {"Integer", "//", int_fdiv, 0},
    {"Integer", "%", int_mod, 0},
    {"Integer", "rem:", int_rem, 0},
    {"Integer", "&", int_and, 0},
    {"Integer", "bitOr:", int_or, 0},
    {"Integer", "bitXor:", int_xor, 0},
    {"Integer", "<<", int_shl, 0},
    {"Integer", ">>>", int_lshr, 0},
    {"Integer", "=", int_eq, 0},
    {"Integer", "~=", int_ne, 0},
    {"Integer", "<", int_lt, 0},
    {"Integer", ">", int_gt, 0},
    {"Integer", "<=", int_le, 0},
    {"Integer", ">=", int_ge, 0},
    {"Integer", "sqrt", int_sqrt, 0},
    {"Integer", "atRandom", int_at_random, 0},
    {"Integer", "asString", int_as_string, 0},
    {"Integer", "asDouble", int_as_double, 0},
    {"Integer", "as32BitSignedValue", int_as_32_signed, 0},
    {"Integer", "as32BitUnsignedValue", int_as_32_unsigned, 0},
    {"Integer", "hashcode", int_hashcode, 0},
    {"Integer class", "fromString:", int_from_string, 0},
    {"Double", "+", dbl_add, 0},
    {"Double", "-", dbl_sub, 0},
    {"Double", "*", dbl_mul, 0},
    {"Double", "//", dbl_fdiv, 0},
    {"Double", "/", dbl_fdiv, 0},
    {"Double", "%", dbl_mod, 0},
    {"Double", "sqrt", dbl_sqrt, 0},
    {"Double", "round", dbl_round, 0},
    {"Double", "asInteger", dbl_as_integer, 0},
    {"Double", "cos", dbl_cos, 0},
    {"Double", "sin", dbl_sin, 0},
    {"Double", "=", dbl_eq, 0},
    {"Double", "~=", dbl_ne, 0},
    {"Double", "<", dbl_lt, 0},
    {"Double", ">", dbl_gt, 0},
    {"Double", "<=", dbl_le, 0},
    {"Double", ">=", dbl_ge, 0},
    {"Double", "asString", dbl_as_string, 0},
    {"Double", "hashcode", dbl_hashcode, 0},
    {"Double class", "PositiveInfinity", dbl_positive_infinity, 0},
    {"Double class", "fromString:", dbl_from_string, 0},
    {NULL, NULL, NULL, 0},
};
