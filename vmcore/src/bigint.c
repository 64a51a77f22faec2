/*
 * bigint.c -- arbitrary-size integers (see bigint.h for the LargeInteger layout).
 *
 * Two layers: magnitude arithmetic on little-endian uint32 limb arrays (schoolbook
 * multiplication, Knuth's algorithm D for division), and the oop layer, which views both
 * SmallIntegers and LargeIntegers as (sign, magnitude), computes into a temporary buffer and
 * only then allocates the normalized result. Because operands are fully read before the one
 * allocation, a collection during it cannot leave us with stale operand pointers.
 */
#include "bigint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "vm.h"

#define LIMB_BITS 32
#define LIMB_BASE ((uint64_t)1 << LIMB_BITS)

/* ---- Magnitudes ------------------------------------------------------------------------ */

size_t hyi_mag_trim(const hyi_limb *a, size_t n) {
    while (n > 0 && a[n - 1] == 0) n--;
    return n;
}

int hyi_mag_cmp(const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn) {
    an = hyi_mag_trim(a, an);
    bn = hyi_mag_trim(b, bn);
    if (an != bn) return an < bn ? -1 : 1;
    for (size_t i = an; i-- > 0;)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

size_t hyi_mag_add(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn) {
    if (an < bn) {
        const hyi_limb *t = a; a = b; b = t;
        size_t tn = an; an = bn; bn = tn;
    }
    uint64_t carry = 0;
    size_t i = 0;
    for (; i < bn; i++) {
        uint64_t s = (uint64_t)a[i] + b[i] + carry;
        r[i] = (hyi_limb)s;
        carry = s >> LIMB_BITS;
    }
    for (; i < an; i++) {
        uint64_t s = (uint64_t)a[i] + carry;
        r[i] = (hyi_limb)s;
        carry = s >> LIMB_BITS;
    }
    r[an] = (hyi_limb)carry;
    return hyi_mag_trim(r, an + 1);
}

size_t hyi_mag_sub(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn) {
    bn = hyi_mag_trim(b, bn);
    int64_t borrow = 0;
    size_t i = 0;
    for (; i < bn; i++) {
        int64_t d = (int64_t)a[i] - b[i] - borrow;
        borrow = d < 0;
        r[i] = (hyi_limb)(d + (borrow ? (int64_t)LIMB_BASE : 0));
    }
    for (; i < an; i++) {
        int64_t d = (int64_t)a[i] - borrow;
        borrow = d < 0;
        r[i] = (hyi_limb)(d + (borrow ? (int64_t)LIMB_BASE : 0));
    }
    return hyi_mag_trim(r, an);
}

size_t hyi_mag_mul(hyi_limb *r, const hyi_limb *a, size_t an, const hyi_limb *b, size_t bn) {
    an = hyi_mag_trim(a, an);
    bn = hyi_mag_trim(b, bn);
    if (an == 0 || bn == 0) return 0;
    memset(r, 0, (an + bn) * sizeof(hyi_limb));
    for (size_t i = 0; i < an; i++) {
        uint64_t carry = 0, ai = a[i];
        if (ai == 0) continue;
        for (size_t j = 0; j < bn; j++) {
            uint64_t t = ai * b[j] + r[i + j] + carry;  /* < 2^64: (2^32-1)^2 + 2(2^32-1) */
            r[i + j] = (hyi_limb)t;
            carry = t >> LIMB_BITS;
        }
        r[i + bn] = (hyi_limb)carry;
    }
    return hyi_mag_trim(r, an + bn);
}

/* Divide a (n limbs) in place by the single limb d; returns the remainder. */
static hyi_limb mag_divmod_1(hyi_limb *q, const hyi_limb *a, size_t n, hyi_limb d) {
    uint64_t rem = 0;
    for (size_t i = n; i-- > 0;) {
        uint64_t cur = (rem << LIMB_BITS) | a[i];
        q[i] = (hyi_limb)(cur / d);
        rem = cur % d;
    }
    return (hyi_limb)rem;
}

/* Knuth, TAOCP vol. 2, 4.3.1, algorithm D, for m >= n >= 2 and v[n-1] != 0. un needs m + 1
 * limbs and vn n limbs of scratch; q gets m - n + 1 limbs, rem n limbs. */
static void mag_divmod_knuth(hyi_limb *q, hyi_limb *rem, const hyi_limb *u, size_t m, const hyi_limb *v,
                             size_t n, hyi_limb *un, hyi_limb *vn) {
    /* D1: normalize so that the top limb of the divisor has its high bit set; the quotient
     * digit estimate is then off by at most 2. */
    int s = __builtin_clz(v[n - 1]);
    for (size_t i = n - 1; i > 0; i--)
        vn[i] = (v[i] << s) | (s ? v[i - 1] >> (LIMB_BITS - s) : 0);
    vn[0] = v[0] << s;
    un[m] = s ? u[m - 1] >> (LIMB_BITS - s) : 0;
    for (size_t i = m - 1; i > 0; i--)
        un[i] = (u[i] << s) | (s ? u[i - 1] >> (LIMB_BITS - s) : 0);
    un[0] = u[0] << s;

    for (size_t j = m - n + 1; j-- > 0;) {
        /* D3: estimate the quotient digit from the top two limbs, refine with the third. */
        uint64_t num = ((uint64_t)un[j + n] << LIMB_BITS) | un[j + n - 1];
        uint64_t qhat = num / vn[n - 1], rhat = num % vn[n - 1];
        while (qhat >= LIMB_BASE || qhat * vn[n - 2] > ((rhat << LIMB_BITS) | un[j + n - 2])) {
            qhat--;
            rhat += vn[n - 1];
            if (rhat >= LIMB_BASE) break;
        }
        /* D4: multiply and subtract qhat * vn from un[j .. j+n]. */
        int64_t borrow = 0;
        uint64_t carry = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t p = qhat * vn[i] + carry;
            carry = p >> LIMB_BITS;
            int64_t t = (int64_t)un[i + j] - (int64_t)(p & 0xffffffffu) - borrow;
            un[i + j] = (hyi_limb)t;
            borrow = t < 0;
        }
        int64_t t = (int64_t)un[j + n] - (int64_t)carry - borrow;
        un[j + n] = (hyi_limb)t;
        /* D5/D6: the estimate was one too large (rare): add the divisor back. */
        if (t < 0) {
            qhat--;
            uint64_t c = 0;
            for (size_t i = 0; i < n; i++) {
                uint64_t sum = (uint64_t)un[i + j] + vn[i] + c;
                un[i + j] = (hyi_limb)sum;
                c = sum >> LIMB_BITS;
            }
            un[j + n] += (hyi_limb)c;
        }
        q[j] = (hyi_limb)qhat;
    }
    /* D8: the remainder is un[0 .. n) shifted back. */
    for (size_t i = 0; i < n; i++)
        rem[i] = (un[i] >> s) | (s ? un[i + 1] << (LIMB_BITS - s) : 0);
}

bool hyi_mag_divmod(hyi_limb *q, size_t *qn, hyi_limb *rem, size_t *rn, const hyi_limb *a, size_t an,
                    const hyi_limb *b, size_t bn) {
    an = hyi_mag_trim(a, an);
    bn = hyi_mag_trim(b, bn);
    if (bn == 0 || hyi_mag_cmp(a, an, b, bn) < 0) {
        if (an) memmove(rem, a, an * sizeof(hyi_limb));
        *rn = bn == 0 ? 0 : an;
        *qn = 0;
        return true;
    }
    if (bn == 1) {
        rem[0] = mag_divmod_1(q, a, an, b[0]);
        *qn = hyi_mag_trim(q, an);
        *rn = hyi_mag_trim(rem, 1);
        return true;
    }
    hyi_limb local[64];
    hyi_limb *scratch = an + 1 + bn <= 64 ? local : malloc((an + 1 + bn) * sizeof(hyi_limb));
    if (!scratch) return false;
    mag_divmod_knuth(q, rem, a, an, b, bn, scratch, scratch + an + 1);
    if (scratch != local) free(scratch);
    *qn = hyi_mag_trim(q, an - bn + 1);
    *rn = hyi_mag_trim(rem, bn);
    return true;
}

size_t hyi_mag_shl(hyi_limb *r, const hyi_limb *a, size_t an, uint64_t bits) {
    an = hyi_mag_trim(a, an);
    if (an == 0) return 0;
    size_t w = (size_t)(bits / LIMB_BITS);
    unsigned s = (unsigned)(bits % LIMB_BITS);
    if (s == 0) {
        r[an + w] = 0;
        for (size_t i = an; i-- > 0;) r[i + w] = a[i];
    } else {
        r[an + w] = a[an - 1] >> (LIMB_BITS - s);
        for (size_t i = an - 1; i > 0; i--) r[i + w] = (a[i] << s) | (a[i - 1] >> (LIMB_BITS - s));
        r[w] = a[0] << s;
    }
    for (size_t i = 0; i < w; i++) r[i] = 0;
    return hyi_mag_trim(r, an + w + 1);
}

size_t hyi_mag_shr(hyi_limb *r, const hyi_limb *a, size_t an, uint64_t bits) {
    an = hyi_mag_trim(a, an);
    if (bits / LIMB_BITS >= an) return 0;
    size_t w = (size_t)(bits / LIMB_BITS);
    unsigned s = (unsigned)(bits % LIMB_BITS);
    for (size_t i = 0; i + w < an; i++) {
        hyi_limb hi = (s && i + w + 1 < an) ? a[i + w + 1] << (LIMB_BITS - s) : 0;
        r[i] = (a[i + w] >> s) | hi;
    }
    return hyi_mag_trim(r, an - w);
}

uint64_t hyi_mag_bits(const hyi_limb *a, size_t an) {
    an = hyi_mag_trim(a, an);
    if (an == 0) return 0;
    return (uint64_t)(an - 1) * LIMB_BITS + (uint64_t)(LIMB_BITS - __builtin_clz(a[an - 1]));
}

char *hyi_mag_to_decimal(const hyi_limb *a, size_t an, size_t *len) {
    an = hyi_mag_trim(a, an);
    /* Peel off base-10^9 chunks, least significant first. */
    size_t max_chunks = an * LIMB_BITS / 29 + 2;
    hyi_limb *work = malloc((an + 1) * sizeof(hyi_limb));
    uint32_t *chunks = malloc(max_chunks * sizeof(uint32_t));
    char *out = malloc(max_chunks * 9 + 2);
    if (!work || !chunks || !out) {
        free(work); free(chunks); free(out);
        return NULL;
    }
    if (an) memcpy(work, a, an * sizeof(hyi_limb));
    size_t nchunks = 0, n = an;
    do {
        chunks[nchunks++] = mag_divmod_1(work, work, n, 1000000000u);
        n = hyi_mag_trim(work, n);
    } while (n > 0);
    size_t pos = (size_t)sprintf(out, "%u", chunks[nchunks - 1]);
    for (size_t i = nchunks - 1; i-- > 0;) pos += (size_t)sprintf(out + pos, "%09u", chunks[i]);
    free(work);
    free(chunks);
    *len = pos;
    return out;
}

hyi_limb *hyi_mag_from_decimal(const char *digits, size_t len, size_t *n) {
    static const uint32_t pow10[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000, 1000000000};
    for (size_t i = 0; i < len; i++)
        if (digits[i] < '0' || digits[i] > '9') { *n = SIZE_MAX; return NULL; }
    /* Each chunk of up to 9 digits adds less than one limb. */
    size_t cap = len / 9 + 2;
    hyi_limb *r = calloc(cap, sizeof(hyi_limb));
    if (!r) { *n = 0; return NULL; }
    size_t rn = 0;
    for (size_t i = 0; i < len;) {
        size_t k = len - i < 9 ? len - i : 9;
        uint32_t chunk = 0;
        for (size_t j = 0; j < k; j++) chunk = chunk * 10 + (uint32_t)(digits[i + j] - '0');
        i += k;
        uint64_t carry = chunk;
        for (size_t j = 0; j < rn; j++) {
            uint64_t t = (uint64_t)r[j] * pow10[k] + carry;
            r[j] = (hyi_limb)t;
            carry = t >> LIMB_BITS;
        }
        if (carry) r[rn++] = (hyi_limb)carry;
    }
    *n = rn;
    return r;
}

/* ---- Views of integer oops ------------------------------------------------------------- */

/* (sign, magnitude) of a SmallInteger or LargeInteger. d points into small for a
 * SmallInteger, into the object otherwise: valid until the next allocation. */
typedef struct ival {
    const hyi_limb *d;
    size_t n;
    bool neg;
    hyi_limb small[2];
} ival;

static void view(hyi_oop o, ival *v) {
    if (hyi_is_smi(o)) {
        intptr_t x = hyi_smi_val(o);
        uint64_t m = x < 0 ? -(uint64_t)x : (uint64_t)x;
        v->small[0] = (hyi_limb)m;
        v->small[1] = (hyi_limb)(m >> LIMB_BITS);
        v->d = v->small;
        v->n = hyi_mag_trim(v->small, 2);
        v->neg = x < 0;
    } else {
        v->d = hyi_largeint_mag(o);
        v->n = hyi_mag_trim(v->d, hyi_largeint_limbs(o));
        v->neg = hyi_largeint_neg(o) && v->n > 0;
    }
}

/* A temporary limb buffer: on the C stack when small, malloc'ed otherwise. */
#define TMP_LOCAL 48
typedef struct tmpbuf {
    hyi_limb *heap;
    hyi_limb local[TMP_LOCAL];
} tmpbuf;

static hyi_limb *tmp_get(tmpbuf *t, size_t n) {
    t->heap = NULL;
    if (n <= TMP_LOCAL) return t->local;
    t->heap = malloc(n * sizeof(hyi_limb));
    return t->heap;
}
static void tmp_free(tmpbuf *t) { free(t->heap); t->heap = NULL; }

/* The normalized integer (sign, d[0..n)): a SmallInteger when it fits, else a new
 * LargeInteger. 0 when out of memory. */
static hyi_oop make(hy_vm *vm, const hyi_limb *d, size_t n, bool neg, bool old) {
    n = hyi_mag_trim(d, n);
    if (n <= 2) {
        uint64_t m = n == 0 ? 0 : n == 1 ? d[0] : ((uint64_t)d[1] << LIMB_BITS) | d[0];
        if (!neg && m <= (uint64_t)HYI_SMI_MAX) return hyi_smi((intptr_t)m);
        if (neg && m <= (uint64_t)HYI_SMI_MAX + 1) return hyi_smi(-(intptr_t)(m - 1) - 1);
    }
    uint32_t size = (uint32_t)(4 + 4 * n);
    hyi_oop o = old ? hyi_heap_alloc_old(vm, vm->cls.integer, HYI_FMT_LARGEINT, size)
                    : hyi_heap_alloc(vm, vm->cls.integer, HYI_FMT_LARGEINT, size);
    if (!o) return 0;
    uint32_t sign = neg ? 1 : 0;
    memcpy(hyi_bytes(o), &sign, 4);
    memcpy(hyi_largeint_mag(o), d, n * sizeof(hyi_limb));
    return o;
}

static hyi_big_status finish(hy_vm *vm, const hyi_limb *d, size_t n, bool neg, hyi_oop *out) {
    if (hyi_mag_bits(d, n) > HYI_BIGINT_MAX_BITS) return HYI_BIG_TOO_LARGE;
    hyi_oop o = make(vm, d, n, neg, false);
    if (!o) return HYI_BIG_OOM;
    *out = o;
    return HYI_BIG_OK;
}

hyi_big_status hyi_bigint_make(hy_vm *vm, const hyi_limb *d, size_t n, bool neg, hyi_oop *out) {
    return finish(vm, d, n, neg && hyi_mag_trim(d, n) > 0, out);
}

hyi_oop hyi_bigint_from_uint64(hy_vm *vm, uint64_t v) {
    if (v <= (uint64_t)HYI_SMI_MAX) return hyi_smi((intptr_t)v);   /* the common case, at once */
    hyi_limb d[2] = {(hyi_limb)v, (hyi_limb)(v >> LIMB_BITS)};
    return make(vm, d, 2, false, false);
}

hyi_oop hyi_bigint_from_int64(hy_vm *vm, int64_t v) {
    if (hyi_smi_fits((intptr_t)v)) return hyi_smi((intptr_t)v);
    uint64_t m = v < 0 ? -(uint64_t)v : (uint64_t)v;
    hyi_limb d[2] = {(hyi_limb)m, (hyi_limb)(m >> LIMB_BITS)};
    return make(vm, d, 2, v < 0, false);
}

/* The magnitude of the integral, finite, non-negative double t (at most 1024 bits). */
static size_t mag_from_double(hyi_limb r[34], double t) {
    if (t < 18446744073709551616.0) {
        uint64_t m = (uint64_t)t;
        r[0] = (hyi_limb)m;
        r[1] = (hyi_limb)(m >> LIMB_BITS);
        return hyi_mag_trim(r, 2);
    }
    int e;
    double f = frexp(t, &e);                   /* t = f * 2^e, 0.5 <= f < 1, e > 64 */
    uint64_t m = (uint64_t)ldexp(f, 64);       /* exact: f has 53 significant bits */
    hyi_limb base[2] = {(hyi_limb)m, (hyi_limb)(m >> LIMB_BITS)};
    return hyi_mag_shl(r, base, 2, (uint64_t)(e - 64));
}

hyi_big_status hyi_bigint_from_double(hy_vm *vm, double d, hyi_oop *out) {
    if (!isfinite(d)) return HYI_BIG_TOO_LARGE;
    d = trunc(d);
    if (fabs(d) < 4611686018427387904.0) { /* 2^62: a SmallInteger */
        *out = hyi_smi((intptr_t)d);
        return HYI_BIG_OK;
    }
    hyi_limb r[34];
    size_t n = mag_from_double(r, fabs(d));
    return finish(vm, r, n, d < 0, out);
}

/* ---- Parsing and printing -------------------------------------------------------------- */

bool hyi_bigint_is_numeral(const char *text, size_t len) {
    size_t i = (len > 0 && text[0] == '-') ? 1 : 0;
    if (i == len) return false;
    for (; i < len; i++)
        if (text[i] < '0' || text[i] > '9') return false;
    return true;
}

hyi_oop hyi_bigint_parse(hy_vm *vm, const char *digits, size_t len, bool old) {
    if (!hyi_bigint_is_numeral(digits, len)) return 0;
    bool neg = digits[0] == '-';
    if (neg) { digits++; len--; }
    while (len > 1 && digits[0] == '0') { digits++; len--; }
    /* 10^len < 2^(len * 3.33): reject numerals whose value certainly exceeds the limit. */
    if ((uint64_t)len > HYI_BIGINT_MAX_BITS / 3 + 1) return 0;
    if (len <= 18) {
        int64_t v = 0;
        for (size_t i = 0; i < len; i++) v = v * 10 + (digits[i] - '0');
        if (neg) v = -v;
        if (hyi_smi_fits((intptr_t)v)) return hyi_smi((intptr_t)v);
    }
    size_t n;
    hyi_limb *mag = hyi_mag_from_decimal(digits, len, &n);
    if (!mag) return 0;
    hyi_oop o = hyi_mag_bits(mag, n) > HYI_BIGINT_MAX_BITS ? 0 : make(vm, mag, n, neg, old);
    free(mag);
    return o;
}

hyi_oop hyi_bigint_to_string(hy_vm *vm, hyi_oop a) {
    if (hyi_is_smi(a)) {
        char buf[32];
        int len = snprintf(buf, sizeof buf, "%ld", (long)hyi_smi_val(a));
        return hyi_string_new(vm, buf, (size_t)len);
    }
    ival x;
    view(a, &x);
    size_t len;
    char *digits = hyi_mag_to_decimal(x.d, x.n, &len);
    if (!digits) return 0;
    if (x.neg) {  /* hyi_mag_to_decimal leaves room for one more character */
        memmove(digits + 1, digits, len + 1);
        digits[0] = '-';
        len++;
    }
    hyi_oop s = hyi_string_new(vm, digits, len);
    free(digits);
    return s;
}

/* ---- Arithmetic ------------------------------------------------------------------------ */

static hyi_big_status add_signed(hy_vm *vm, const ival *x, const hyi_limb *yd, size_t yn, bool yneg,
                                 hyi_oop *out) {
    size_t cap = (x->n > yn ? x->n : yn) + 1;
    if ((uint64_t)cap * LIMB_BITS > HYI_BIGINT_MAX_BITS + 2 * LIMB_BITS) return HYI_BIG_TOO_LARGE;
    tmpbuf t;
    hyi_limb *r = tmp_get(&t, cap);
    if (!r) return HYI_BIG_OOM;
    size_t rn;
    bool rneg;
    if (x->neg == yneg) {
        rn = hyi_mag_add(r, x->d, x->n, yd, yn);
        rneg = x->neg;
    } else if (hyi_mag_cmp(x->d, x->n, yd, yn) >= 0) {
        rn = hyi_mag_sub(r, x->d, x->n, yd, yn);
        rneg = x->neg;
    } else {
        rn = hyi_mag_sub(r, yd, yn, x->d, x->n);
        rneg = yneg;
    }
    hyi_big_status st = finish(vm, r, rn, rneg && rn > 0, out);
    tmp_free(&t);
    return st;
}

hyi_big_status hyi_bigint_add(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) {
    if (hyi_is_smi(a) && hyi_is_smi(b)) {
        /* Two 63-bit values never overflow 64 bits. */
        hyi_oop o = hyi_bigint_from_int64(vm, (int64_t)hyi_smi_val(a) + (int64_t)hyi_smi_val(b));
        if (!o) return HYI_BIG_OOM;
        *out = o;
        return HYI_BIG_OK;
    }
    ival x, y;
    view(a, &x);
    view(b, &y);
    return add_signed(vm, &x, y.d, y.n, y.neg, out);
}

hyi_big_status hyi_bigint_sub(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) {
    if (hyi_is_smi(a) && hyi_is_smi(b)) {
        hyi_oop o = hyi_bigint_from_int64(vm, (int64_t)hyi_smi_val(a) - (int64_t)hyi_smi_val(b));
        if (!o) return HYI_BIG_OOM;
        *out = o;
        return HYI_BIG_OK;
    }
    ival x, y;
    view(a, &x);
    view(b, &y);
    return add_signed(vm, &x, y.d, y.n, !y.neg && y.n > 0, out);
}

hyi_big_status hyi_bigint_mul(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) {
    ival x, y;
    view(a, &x);
    view(b, &y);
    if (hyi_mag_bits(x.d, x.n) + hyi_mag_bits(y.d, y.n) > HYI_BIGINT_MAX_BITS + 1)
        return HYI_BIG_TOO_LARGE;
    tmpbuf t;
    hyi_limb *r = tmp_get(&t, x.n + y.n + 1);
    if (!r) return HYI_BIG_OOM;
    size_t rn = hyi_mag_mul(r, x.d, x.n, y.d, y.n);
    hyi_big_status st = finish(vm, r, rn, (x.neg != y.neg) && rn > 0, out);
    tmp_free(&t);
    return st;
}

/* Quotient (want_quo) or remainder of a / b, b != 0. */
static hyi_big_status divide(hy_vm *vm, hyi_oop a, hyi_oop b, bool floor, bool want_quo, hyi_oop *out) {
    if (hyi_is_smi(a) && hyi_is_smi(b)) {
        int64_t x = hyi_smi_val(a), y = hyi_smi_val(b);
        if (y == 0) return HYI_BIG_TOO_LARGE;
        int64_t q = x / y, r = x % y;  /* no overflow: x >= -2^62 */
        if (floor && r != 0 && ((r < 0) != (y < 0))) { q -= 1; r += y; }
        hyi_oop o = hyi_bigint_from_int64(vm, want_quo ? q : r);
        if (!o) return HYI_BIG_OOM;
        *out = o;
        return HYI_BIG_OK;
    }
    ival x, y;
    view(a, &x);
    view(b, &y);
    if (y.n == 0) return HYI_BIG_TOO_LARGE;
    tmpbuf tq, tr;
    hyi_limb *q = tmp_get(&tq, x.n + 2);
    hyi_limb *r = tmp_get(&tr, y.n + 1);
    hyi_big_status st = HYI_BIG_OOM;
    size_t qn, rn;
    if (!q || !r || !hyi_mag_divmod(q, &qn, r, &rn, x.d, x.n, y.d, y.n)) goto done;
    bool qneg = x.neg != y.neg, rneg = x.neg;
    if (floor && rn != 0 && x.neg != y.neg) {
        /* Round the (negative) quotient down: |q| + 1, and the remainder becomes |b| - |r|
         * with the sign of b. */
        hyi_limb one = 1;
        qn = hyi_mag_add(q, q, qn, &one, 1);
        rn = hyi_mag_sub(r, y.d, y.n, r, rn);
        rneg = y.neg;
    }
    st = want_quo ? finish(vm, q, qn, qneg && qn > 0, out) : finish(vm, r, rn, rneg && rn > 0, out);
done:
    tmp_free(&tq);
    tmp_free(&tr);
    return st;
}

hyi_big_status hyi_bigint_quo(hy_vm *vm, hyi_oop a, hyi_oop b, bool floor, hyi_oop *out) {
    return divide(vm, a, b, floor, true, out);
}

hyi_big_status hyi_bigint_rem(hy_vm *vm, hyi_oop a, hyi_oop b, bool floor, hyi_oop *out) {
    return divide(vm, a, b, floor, false, out);
}

/* ---- Bit operations -------------------------------------------------------------------- */

/* x as an L-limb two's complement number (L > x->n). */
static void to_twos(hyi_limb *r, size_t L, const ival *x) {
    memset(r, 0, L * sizeof(hyi_limb));
    if (x->n) memcpy(r, x->d, x->n * sizeof(hyi_limb));
    if (!x->neg) return;
    uint64_t carry = 1;
    for (size_t i = 0; i < L; i++) {
        uint64_t t = (uint64_t)(hyi_limb)~r[i] + carry;
        r[i] = (hyi_limb)t;
        carry = t >> LIMB_BITS;
    }
}

/* Back from two's complement to (sign, magnitude) in place; returns the magnitude length. */
static size_t from_twos(hyi_limb *r, size_t L, bool *neg) {
    *neg = (r[L - 1] >> (LIMB_BITS - 1)) != 0;
    if (*neg) {
        uint64_t carry = 1;
        for (size_t i = 0; i < L; i++) {
            uint64_t t = (uint64_t)(hyi_limb)~r[i] + carry;
            r[i] = (hyi_limb)t;
            carry = t >> LIMB_BITS;
        }
    }
    return hyi_mag_trim(r, L);
}

enum { BIT_AND, BIT_OR, BIT_XOR };

static hyi_big_status bitop(hy_vm *vm, hyi_oop a, hyi_oop b, int op, hyi_oop *out) {
    if (hyi_is_smi(a) && hyi_is_smi(b)) {
        intptr_t x = hyi_smi_val(a), y = hyi_smi_val(b);
        *out = hyi_smi(op == BIT_AND ? (x & y) : op == BIT_OR ? (x | y) : (x ^ y));
        return HYI_BIG_OK;
    }
    ival x, y;
    view(a, &x);
    view(b, &y);
    size_t L = (x.n > y.n ? x.n : y.n) + 1;
    tmpbuf tx, ty;
    hyi_limb *rx = tmp_get(&tx, L), *ry = tmp_get(&ty, L);
    hyi_big_status st = HYI_BIG_OOM;
    if (rx && ry) {
        to_twos(rx, L, &x);
        to_twos(ry, L, &y);
        for (size_t i = 0; i < L; i++)
            rx[i] = op == BIT_AND ? (rx[i] & ry[i]) : op == BIT_OR ? (rx[i] | ry[i]) : (rx[i] ^ ry[i]);
        bool neg;
        size_t rn = from_twos(rx, L, &neg);
        st = finish(vm, rx, rn, neg && rn > 0, out);
    }
    tmp_free(&tx);
    tmp_free(&ty);
    return st;
}

hyi_big_status hyi_bigint_and(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) { return bitop(vm, a, b, BIT_AND, out); }
hyi_big_status hyi_bigint_or(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) { return bitop(vm, a, b, BIT_OR, out); }
hyi_big_status hyi_bigint_xor(hy_vm *vm, hyi_oop a, hyi_oop b, hyi_oop *out) { return bitop(vm, a, b, BIT_XOR, out); }

hyi_big_status hyi_bigint_shl(hy_vm *vm, hyi_oop a, uint64_t bits, hyi_oop *out) {
    ival x;
    view(a, &x);
    if (x.n == 0) { *out = hyi_smi(0); return HYI_BIG_OK; }
    if (bits > HYI_BIGINT_MAX_BITS || hyi_mag_bits(x.d, x.n) + bits > HYI_BIGINT_MAX_BITS)
        return HYI_BIG_TOO_LARGE;
    tmpbuf t;
    hyi_limb *r = tmp_get(&t, x.n + (size_t)(bits / LIMB_BITS) + 1);
    if (!r) return HYI_BIG_OOM;
    size_t rn = hyi_mag_shl(r, x.d, x.n, bits);
    hyi_big_status st = finish(vm, r, rn, x.neg, out);
    tmp_free(&t);
    return st;
}

hyi_big_status hyi_bigint_shr(hy_vm *vm, hyi_oop a, uint64_t bits, hyi_oop *out) {
    if (hyi_is_smi(a)) {
        intptr_t x = hyi_smi_val(a);
        *out = hyi_smi(bits >= 63 ? (x < 0 ? -1 : 0) : x >> bits);
        return HYI_BIG_OK;
    }
    ival x;
    view(a, &x);
    if (bits >= (uint64_t)x.n * LIMB_BITS) { *out = hyi_smi(x.neg ? -1 : 0); return HYI_BIG_OK; }
    /* floor(-m / 2^k) = -(m >> k) - 1 when any shifted-out bit is set. */
    bool lost = false;
    size_t w = (size_t)(bits / LIMB_BITS);
    for (size_t i = 0; i < w && !lost; i++) lost = x.d[i] != 0;
    if (!lost && bits % LIMB_BITS) lost = (x.d[w] & (((hyi_limb)1 << (bits % LIMB_BITS)) - 1)) != 0;
    tmpbuf t;
    hyi_limb *r = tmp_get(&t, x.n + 1);
    if (!r) return HYI_BIG_OOM;
    size_t rn = hyi_mag_shr(r, x.d, x.n, bits);
    if (x.neg && lost) {
        hyi_limb one = 1;
        rn = hyi_mag_add(r, r, rn, &one, 1);
    }
    hyi_big_status st = finish(vm, r, rn, x.neg && rn > 0, out);
    tmp_free(&t);
    return st;
}

/* floor(sqrt(a)) into r (an / 2 + 2 limbs); returns its length, or SIZE_MAX when malloc
 * fails. The root of a >> 2k (k a quarter of a's bits), plus one and shifted back by k, lies
 * above the root with a relative error near 2^-k, so two or three Newton steps, which
 * decrease monotonically from above, reach it: the cost is a few divisions of a's size. */
static size_t mag_isqrt(hyi_limb *r, const hyi_limb *a, size_t an) {
    an = hyi_mag_trim(a, an);
    uint64_t bits = hyi_mag_bits(a, an);
    if (bits <= 64) {
        uint64_t v = an == 0 ? 0 : an == 1 ? a[0] : ((uint64_t)a[1] << LIMB_BITS) | a[0];
        uint64_t s = (uint64_t)sqrt((double)v);
        while ((unsigned __int128)s * s > v) s--;
        while ((unsigned __int128)(s + 1) * (s + 1) <= v) s++;
        r[0] = (hyi_limb)s;
        r[1] = (hyi_limb)(s >> LIMB_BITS);
        return hyi_mag_trim(r, 2);
    }
    size_t cap = an + 2, result = SIZE_MAX;
    hyi_limb *block = malloc(5 * cap * sizeof(hyi_limb));
    if (!block) return SIZE_MAX;
    hyi_limb *m = block, *x = block + cap, *y = block + 2 * cap, *q = block + 3 * cap, *rem = block + 4 * cap;
    uint64_t k = bits / 4;
    size_t mn = hyi_mag_shr(m, a, an, 2 * k);
    size_t yn = mag_isqrt(y, m, mn);
    if (yn == SIZE_MAX) goto done;
    hyi_limb one = 1;
    yn = hyi_mag_add(y, y, yn, &one, 1);
    size_t xn = hyi_mag_shl(x, y, yn, k);
    for (;;) {
        size_t qn, rn;
        if (!hyi_mag_divmod(q, &qn, rem, &rn, a, an, x, xn)) goto done;
        yn = hyi_mag_add(y, x, xn, q, qn);
        yn = hyi_mag_shr(y, y, yn, 1);
        if (hyi_mag_cmp(y, yn, x, xn) >= 0) break;
        hyi_limb *t = x; x = y; y = t;
        xn = yn;
    }
    memcpy(r, x, xn * sizeof(hyi_limb));
    result = xn;
done:
    free(block);
    return result;
}

hyi_big_status hyi_bigint_isqrt(hy_vm *vm, hyi_oop a, hyi_oop *out) {
    ival x;
    view(a, &x);
    if (x.n == 0 || x.neg) { *out = hyi_smi(0); return HYI_BIG_OK; }
    tmpbuf t;
    hyi_limb *r = tmp_get(&t, x.n / 2 + 2);
    if (!r) return HYI_BIG_OOM;
    size_t rn = mag_isqrt(r, x.d, x.n);
    hyi_big_status st = rn == SIZE_MAX ? HYI_BIG_OOM : finish(vm, r, rn, false, out);
    tmp_free(&t);
    return st;
}

/* ---- Comparisons and conversions ------------------------------------------------------- */

int hyi_bigint_sign(hyi_oop a) {
    if (hyi_is_smi(a)) return hyi_smi_val(a) < 0 ? -1 : hyi_smi_val(a) > 0;
    ival x;
    view(a, &x);
    return x.n == 0 ? 0 : x.neg ? -1 : 1;
}

int hyi_bigint_cmp(hyi_oop a, hyi_oop b) {
    if (hyi_is_smi(a) && hyi_is_smi(b)) {
        intptr_t x = hyi_smi_val(a), y = hyi_smi_val(b);
        return (x > y) - (x < y);
    }
    ival x, y;
    view(a, &x);
    view(b, &y);
    if (x.neg != y.neg) return x.neg ? -1 : 1;
    int c = hyi_mag_cmp(x.d, x.n, y.d, y.n);
    return x.neg ? -c : c;
}

int hyi_bigint_cmp_double(hyi_oop a, double d) {
    if (isnan(d)) return 2;
    if (isinf(d)) return d > 0 ? -1 : 1;
    if (hyi_is_smi(a)) {
        intptr_t v = hyi_smi_val(a);
        if (v > -((intptr_t)1 << 53) && v < ((intptr_t)1 << 53)) {
            double x = (double)v;   /* exact */
            return (x > d) - (x < d);
        }
    }
    int sa = hyi_bigint_sign(a), sd = (d > 0) - (d < 0);
    if (sa != sd) return sa < sd ? -1 : 1;
    if (sa == 0) return 0;
    double ad = fabs(d), t = trunc(ad);
    hyi_limb dm[34];
    size_t dn = mag_from_double(dm, t);
    ival x;
    view(a, &x);
    int c = hyi_mag_cmp(x.d, x.n, dm, dn);
    if (c == 0 && ad > t) c = -1;
    return sa > 0 ? c : -c;
}

/* (a >> shift) mod 2^64 for a magnitude a. */
static uint64_t bits64_at(const hyi_limb *a, size_t an, uint64_t shift) {
    size_t w = (size_t)(shift / LIMB_BITS);
    unsigned s = (unsigned)(shift % LIMB_BITS);
    unsigned __int128 t = 0;
    for (size_t i = 0; i < 3; i++)
        if (w + i < an) t |= (unsigned __int128)a[w + i] << (LIMB_BITS * i);
    return (uint64_t)(t >> s);
}

bool hyi_bigint_to_double(hyi_oop a, double *out) {
    if (hyi_is_smi(a)) { *out = (double)hyi_smi_val(a); return true; }
    ival x;
    view(a, &x);
    uint64_t bits = hyi_mag_bits(x.d, x.n);
    double d;
    if (bits <= 64) {
        d = (double)bits64_at(x.d, x.n, 0);
    } else if (bits > 1025) {
        return false;
    } else {
        /* The top 64 bits, with a sticky low bit when anything below them is set, round to
         * the same double as the exact value (the rounding point is 11 bits higher). */
        uint64_t shift = bits - 64;
        uint64_t top = bits64_at(x.d, x.n, shift);
        bool sticky = false;
        size_t w = (size_t)(shift / LIMB_BITS);
        for (size_t i = 0; i < w && !sticky; i++) sticky = x.d[i] != 0;
        if (!sticky && shift % LIMB_BITS) sticky = (x.d[w] & (((hyi_limb)1 << (shift % LIMB_BITS)) - 1)) != 0;
        d = ldexp((double)(top | (uint64_t)sticky), (int)shift);
        if (isinf(d)) return false;
    }
    *out = x.neg ? -d : d;
    return true;
}

bool hyi_bigint_to_int64(hyi_oop a, int64_t *out) {
    if (hyi_is_smi(a)) { *out = hyi_smi_val(a); return true; }
    ival x;
    view(a, &x);
    if (x.n > 2) return false;
    uint64_t m = bits64_at(x.d, x.n, 0);
    if (!x.neg && m > (uint64_t)INT64_MAX) return false;
    if (x.neg && m > (uint64_t)INT64_MAX + 1) return false;
    *out = x.neg ? (int64_t)(0 - m) : (int64_t)m;
    return true;
}

uint64_t hyi_bigint_low64(hyi_oop a) {
    if (hyi_is_smi(a)) return (uint64_t)(int64_t)hyi_smi_val(a);
    ival x;
    view(a, &x);
    uint64_t m = bits64_at(x.d, x.n, 0);
    return x.neg ? 0 - m : m;
}

intptr_t hyi_bigint_hash(hyi_oop a) {
    if (hyi_is_smi(a)) return hyi_smi_val(a);
    ival x;
    view(a, &x);
    uint64_t h = 1469598103934665603u ^ (uint64_t)x.neg;
    for (size_t i = 0; i < x.n; i++) {
        h ^= x.d[i];
        h *= 1099511628211u;
    }
    return (intptr_t)(h >> 2);  /* non-negative, fits a SmallInteger */
}
