/*
 * bigint.h -- integers of any size: SmallIntegers that overflow become LargeIntegers.
 *
 * SOM has one Integer class. A LargeInteger is an object of class vm->cls.integer with format
 * HYI_FMT_LARGEINT whose payload (size = 4 + 4n bytes) is
 *
 *     uint32_t sign;        0 = positive, 1 = negative
 *     uint32_t limb[n];     the magnitude, base 2^32, least significant limb first
 *
 * Invariants:
 *  - Every integer is normalized: a value that fits a SmallInteger IS a SmallInteger, so a
 *    LargeInteger is never zero, n >= 2 and limb[n-1] != 0. Equal values therefore have equal
 *    representations (equal SmallIntegers are identical, equal LargeIntegers have equal bytes).
 *  - No integer has more than HYI_BIGINT_MAX_BITS bits; operations whose result would be
 *    larger fail with HYI_BIG_TOO_LARGE instead of trying to allocate it.
 *  - The functions below read their operands completely before they allocate the result, so
 *    callers need not root operands they do not use afterwards. Temporaries that do not fit
 *    on the C stack are malloc'ed and freed before returning.
 *
 * The hyi_mag_* layer works on plain limb buffers (no VM, no allocation except where noted);
 * the hyi_bigint_* layer works on oops and allocates its results in the VM's heap.
 */
#ifndef HYDRA_BIGINT_H
#define HYDRA_BIGINT_H

#include "object.h"

typedef uint32_t hyi_limb;

#define HYI_BIGINT_MAX_BITS ((uint64_t)1 << 21)

/* ---- Magnitudes: little-endian limb arrays ---------------------------------------------
 * A magnitude is (d, n): n limbs, possibly with high zero limbs unless said otherwise.
 * Results are written to r (which must not overlap the inputs unless said otherwise) and the
 * functions return the number of limbs of the result with high zero limbs removed. */

size_t hyi_mag_trim(const hyi_limb *a, size_t n);
int hyi_mag_cmp(const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn);
/* r needs max(an, bn) + 1 limbs; r may be a or b. */
size_t hyi_mag_add(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn);
/* a >= b; r needs an limbs; r may be a. */
size_t hyi_mag_sub(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn);
/* r needs an + bn limbs. */
size_t hyi_mag_mul(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn);
/* a / b and a mod b (truncated) for b != 0: q needs an limbs (or 1 when an == 0), rem needs
 * bn limbs. *qn and *rn get the trimmed lengths. Returns false only when malloc fails. */
bool hyi_mag_divmod(hyi_limb *q, size_t *qn, hyi_limb *rem, size_t *rn, const hyi_limb *a, size_t an,
                    const hyi_limb *b, size_t bn);
/* a << bits: r needs an + bits / 32 + 1 limbs. a >> bits: r needs an limbs (r may be a). */
size_t hyi_mag_shl(hyi_limb *r, const hyi_limb *a, size_t an, uint64_t bits);
size_t hyi_mag_shr(hyi_limb *r, const hyi_limb *a, size_t an, uint64_t bits);
/* Number of significant bits of a (0 for zero). */
uint64_t hyi_mag_bits(const hyi_limb *a, size_t an);
/* Decimal digits of a (at least "0"), malloc'ed and NUL-terminated; NULL when malloc fails.
 * *len gets the number of digits. */
char *hyi_mag_to_decimal(const hyi_limb *a, size_t an, size_t *len);
/* Parse len decimal digits (no sign) into a malloc'ed magnitude; *n gets its trimmed length.
 * Returns NULL when malloc fails or a character is not a digit (then *n = SIZE_MAX). */
hyi_limb *hyi_mag_from_decimal(const char *digits, size_t len, size_t *n);

/* ---- Integer oops ----------------------------------------------------------------------- */

typedef enum hyi_big_status {
    HYI_BIG_OK = 0,
    HYI_BIG_OOM,        /* the heap (or malloc) could not supply memory */
    HYI_BIG_TOO_LARGE,  /* the result would exceed HYI_BIGINT_MAX_BITS */
} hyi_big_status;

static inline bool hyi_is_largeint(hyi_oop o) {
    return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_LARGEINT;
}
/* A SmallInteger or a LargeInteger. */
static inline bool hyi_is_int(hyi_oop o) { return hyi_is_smi(o) || hyi_is_largeint(o); }
static inline bool hyi_largeint_neg(hyi_oop o) { uint32_t s; memcpy(&s, hyi_bytes(o), 4); return s != 0; }
static inline size_t hyi_largeint_limbs(hyi_oop o) { return (hyi_size(o) - 4) / 4; }
static inline hyi_limb *hyi_largeint_mag(hyi_oop o) { return (hyi_limb *)(hyi_bytes(o) + 4); }

/* Decimal digits with an optional leading '-' to an integer (a SmallInteger when it fits);
 * old=true allocates in old space (for compiler literals). Returns 0 when out of memory, when
 * the text is not such a numeral, or when it exceeds HYI_BIGINT_MAX_BITS. */
hyi_oop hyi_bigint_parse(hy_vm *vm, const char *digits, size_t len, bool old);
/* True if text is an optional '-' followed by at least one decimal digit and nothing else. */
bool hyi_bigint_is_numeral(const char *text, size_t len);

/* Integers from C values (SmallIntegers when they fit). 0 when out of memory. */
hyi_oop hyi_bigint_from_int64(hy_vm *vm, int64_t v);
hyi_oop hyi_bigint_from_uint64(hy_vm *vm, uint64_t v);
/* The normalized integer with magnitude d[0..n) (n may include high zero limbs). */
hyi_big_status hyi_bigint_make(hy_vm *vm, const hyi_limb *d, size_t n, bool neg, hyi_oop *out);
/* The integer value of d truncated toward zero; HYI_BIG_TOO_LARGE when d is not finite. */
hyi_big_status hyi_bigint_from_double(hy_vm *vm, double d, hyi_oop *out);

/* Arithmetic on integers a and b (SmallIntegers or LargeIntegers). */
hyi_big_status hyi_bigint_add(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
hyi_big_status hyi_bigint_sub(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
hyi_big_status hyi_bigint_mul(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
/* Quotient or remainder for b != 0. floor: the quotient rounds toward negative infinity and
 * the remainder has the sign of b (Integer // and %); otherwise toward zero, the remainder
 * has the sign of a (rem:). */
hyi_big_status hyi_bigint_quo(hy_vm *vm, hyi_oop a, hyi_oop b, bool floor, hyi_oop *out);
hyi_big_status hyi_bigint_rem(hy_vm *vm, hyi_oop a, hyi_oop b, bool floor, hyi_oop *out);
/* Two's complement bit operations (negative numbers have infinitely many leading ones). */
hyi_big_status hyi_bigint_and(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
hyi_big_status hyi_bigint_or(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
hyi_big_status hyi_bigint_xor(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out);
/* a * 2^bits, and floor(a / 2^bits). */
hyi_big_status hyi_bigint_shl(hy_vm *vm, hyi_oop a, uint64_t bits, hyi_oop *out);
hyi_big_status hyi_bigint_shr(hy_vm *vm, hyi_oop a, uint64_t bits, hyi_oop *out);
/* floor(sqrt(a)) for a >= 0. */
hyi_big_status hyi_bigint_isqrt(hy_vm *vm, hyi_oop a, hyi_oop *out);

/* Comparisons and conversions that never allocate. */
int hyi_bigint_cmp(hyi_oop a, hyi_oop b);               /* -1, 0 or 1 */
int hyi_bigint_sign(hyi_oop a);                         /* -1, 0 or 1 */
/* Compare integer a with d exactly: -1, 0 or 1, or 2 when d is NaN. */
int hyi_bigint_cmp_double(hyi_oop a, double d);
/* a as the nearest double; false when |a| is too large for a finite double. */
bool hyi_bigint_to_double(hyi_oop a, double *out);
/* a as an int64_t; false when it does not fit. */
bool hyi_bigint_to_int64(hyi_oop a, int64_t *out);
/* The low 64 bits of a's two's complement representation. */
uint64_t hyi_bigint_low64(hyi_oop a);
/* A hash that depends only on the value (equal integers hash equal), as a SmallInteger
 * value: a SmallInteger hashes to itself. */
intptr_t hyi_bigint_hash(hyi_oop a);
/* Decimal text of a (with '-' when negative) as a new String. 0 when out of memory. */
hyi_oop hyi_bigint_to_string(hy_vm *vm, hyi_oop a);

/* ---- Doubles (prims_number.c) ----------------------------------------------------------
 * The text SOM prints for d: the shortest digits that read back as d; plain decimal with at
 * least one fractional digit ("1.0", "0.5", "100000.19879879123") when 1e-4 <= |d| < 1e16 or
 * d is zero, otherwise scientific ("1.152921504606847e18", "9.3e-61"); "inf", "-inf", "NaN".
 * buf needs 32 bytes; returns the length. */
size_t hyi_double_format(double d, char *buf);

#endif
