/*
 * hytestlib.c -- a small shared library that the FFI tests call (tests/vmcore/test_ffi.c and
 * tests/st/FfiTests.som): every integer width, floating point, strings, structures by value and
 * by pointer, out-parameters, and callbacks called on the caller's thread or on a new thread.
 * The tests find it through HYDRA_FFI_TESTLIB (CMake passes its path).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HY_EXPORT __attribute__((visibility("default")))

/* ---- Integers ---------------------------------------------------------------------------- */

HY_EXPORT int32_t hy_add(int32_t a, int32_t b) { return a + b; }

/* The same value back at each width: the VM must sign- or zero-extend the result. */
HY_EXPORT int8_t hy_id_i8(int8_t x) { return x; }
HY_EXPORT uint8_t hy_id_u8(uint8_t x) { return x; }
HY_EXPORT int16_t hy_id_i16(int16_t x) { return x; }
HY_EXPORT uint16_t hy_id_u16(uint16_t x) { return x; }
HY_EXPORT int32_t hy_id_i32(int32_t x) { return x; }
HY_EXPORT uint32_t hy_id_u32(uint32_t x) { return x; }
HY_EXPORT int64_t hy_id_i64(int64_t x) { return x; }
HY_EXPORT uint64_t hy_id_u64(uint64_t x) { return x; }

/* An argument as C saw it, widened in C: the VM must have passed the right bits. */
HY_EXPORT int64_t hy_i8_to_i64(int8_t x) { return x; }
HY_EXPORT uint64_t hy_u8_to_u64(uint8_t x) { return x; }
HY_EXPORT int64_t hy_i16_to_i64(int16_t x) { return x; }
HY_EXPORT uint64_t hy_u16_to_u64(uint16_t x) { return x; }
HY_EXPORT int64_t hy_i32_to_i64(int32_t x) { return x; }
HY_EXPORT uint64_t hy_u32_to_u64(uint32_t x) { return x; }

/* Results with the high bit set, made in C. */
HY_EXPORT int8_t hy_minus_one_i8(void) { return -1; }
HY_EXPORT uint8_t hy_max_u8(void) { return UINT8_MAX; }
HY_EXPORT int16_t hy_min_i16(void) { return INT16_MIN; }
HY_EXPORT uint16_t hy_max_u16(void) { return UINT16_MAX; }
HY_EXPORT int32_t hy_min_i32(void) { return INT32_MIN; }
HY_EXPORT uint32_t hy_max_u32(void) { return UINT32_MAX; }
HY_EXPORT int64_t hy_min_i64(void) { return INT64_MIN; }
HY_EXPORT uint64_t hy_max_u64(void) { return UINT64_MAX; }

/* Eight arguments of eight widths (some go on the stack on every ABI we know). */
HY_EXPORT int64_t hy_sum8(int8_t a, uint8_t b, int16_t c, uint16_t d, int32_t e, uint32_t f, int64_t g,
                          uint64_t h) {
    return (int64_t)a + b + c + d + e + (int64_t)f + g + (int64_t)h;
}

/* Six arguments of six widths: as many as the integer argument registers of x86-64, the most
 * a direct call takes (vmcore/src/foreign.c). */
HY_EXPORT int64_t hy_sum6(int8_t a, uint8_t b, int16_t c, uint16_t d, int32_t e, uint32_t f) {
    return (int64_t)a + b + c + d + e + (int64_t)f;
}

/* The low bits of x at a narrower type: the compiler may leave x's other bits in the result
 * register, which the caller must ignore. */
HY_EXPORT int8_t hy_low_i8(int64_t x) { return (int8_t)x; }
HY_EXPORT uint16_t hy_low_u16(int64_t x) { return (uint16_t)x; }
HY_EXPORT int32_t hy_low_i32(int64_t x) { return (int32_t)x; }

/* ---- Floating point ------------------------------------------------------------------------ */

HY_EXPORT float hy_mul_f(float a, float b) { return a * b; }
HY_EXPORT double hy_add_d(double a, double b) { return a + b; }
HY_EXPORT double hy_mix(int32_t a, float b, double c, int64_t d) { return a + (double)b + c + (double)d; }

/* ---- Strings and pointers ------------------------------------------------------------------- */

HY_EXPORT const char *hy_greeting(void) { return "hello from C"; }
HY_EXPORT const char *hy_null_string(void) { return NULL; }
HY_EXPORT void *hy_null_pointer(void) { return NULL; }
HY_EXPORT size_t hy_length(const char *s) { return s ? strlen(s) : (size_t)-1; }
HY_EXPORT int32_t hy_is_null(const void *p) { return p == NULL; }

/* Copy s upper-cased into buf (room for strlen(s) + 1 bytes); answers buf. */
HY_EXPORT char *hy_upper_into(char *buf, const char *s) {
    size_t i = 0;
    for (; s[i]; i++) buf[i] = (s[i] >= 'a' && s[i] <= 'z') ? (char)(s[i] - 32) : s[i];
    buf[i] = 0;
    return buf;
}

/* ---- Structures ----------------------------------------------------------------------------- */

typedef struct hy_point { int32_t x, y; } hy_point;
typedef struct hy_mixed { char c; double d; int16_t s; } hy_mixed;    /* padding after c and s */
typedef struct hy_rect { hy_point origin, corner; } hy_rect;
typedef struct hy_big { double v[80]; } hy_big;                    /* 640 bytes by value */

HY_EXPORT hy_point hy_point_add(hy_point a, hy_point b) { return (hy_point){ a.x + b.x, a.y + b.y }; }
HY_EXPORT void hy_point_scale(hy_point *p, int32_t k) { p->x *= k; p->y *= k; }
HY_EXPORT hy_mixed hy_mixed_make(char c, double d, int16_t s) { return (hy_mixed){ c, d, s }; }
HY_EXPORT double hy_mixed_sum(hy_mixed m) { return m.c + m.d + m.s; }
HY_EXPORT int32_t hy_rect_area(hy_rect r) { return (r.corner.x - r.origin.x) * (r.corner.y - r.origin.y); }
HY_EXPORT double hy_big_sum(hy_big b) {
    double s = 0;
    for (int i = 0; i < 80; i++) s += b.v[i];
    return s;
}
HY_EXPORT size_t hy_mixed_offset_d(void) { return offsetof(hy_mixed, d); }
HY_EXPORT size_t hy_mixed_offset_s(void) { return offsetof(hy_mixed, s); }
HY_EXPORT size_t hy_mixed_size(void) { return sizeof(hy_mixed); }

/* ---- Out-parameters ------------------------------------------------------------------------- */

/* Quotient and remainder through pointers; answers 0, or -1 when b is 0. */
HY_EXPORT int32_t hy_divmod(int32_t a, int32_t b, int32_t *q, int32_t *r) {
    if (b == 0) return -1;
    *q = a / b;
    *r = a % b;
    return 0;
}

/* Fill n bytes with the pattern (i * 7 + 3) mod 256. */
HY_EXPORT void hy_fill(uint8_t *buf, size_t n) {
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(i * 7 + 3);
}

/* ---- Callbacks ------------------------------------------------------------------------------ */

typedef int32_t (*hy_int_fn)(int32_t);
typedef double (*hy_double_fn)(double);
typedef hy_point (*hy_point_fn)(hy_point);
typedef void (*hy_void_fn)(void);

HY_EXPORT int32_t hy_apply(hy_int_fn f, int32_t x) { return f(x); }
HY_EXPORT int32_t hy_apply_twice(hy_int_fn f, int32_t x) { return f(f(x)); }
HY_EXPORT double hy_apply_d(hy_double_fn f, double x) { return f(x); }
HY_EXPORT hy_point hy_apply_point(hy_point_fn f, hy_point p) { return f(p); }

typedef struct thread_call { hy_int_fn f; int32_t x, result; } thread_call;

static void *run_int_fn(void *arg) {
    thread_call *c = arg;
    c->result = c->f(c->x);
    return NULL;
}

/* f(x), called on a new thread that this function starts and joins. -1 if no thread. */
HY_EXPORT int32_t hy_apply_on_thread(hy_int_fn f, int32_t x) {
    thread_call c = { f, x, -1 };
    pthread_t t;
    if (pthread_create(&t, NULL, run_int_fn, &c) != 0) return -1;
    pthread_join(t, NULL);
    return c.result;
}

/* f called n times, each on a new thread; answers the sum of the results. */
HY_EXPORT int32_t hy_apply_on_threads(hy_int_fn f, int32_t n) {
    int32_t sum = 0;
    for (int32_t i = 0; i < n; i++) sum += hy_apply_on_thread(f, i);
    return sum;
}

typedef struct thread_void { hy_void_fn f; } thread_void;

static void *run_void_fn(void *arg) {
    ((thread_void *)arg)->f();
    return NULL;
}

/* Fill buf like hy_fill, but in two halves with a call of f in between: f may collect
 * garbage, and buf must not move. On a new thread when on_thread is not 0. */
HY_EXPORT void hy_fill_around(uint8_t *buf, size_t n, hy_void_fn f, int32_t on_thread) {
    size_t half = n / 2;
    for (size_t i = 0; i < half; i++) buf[i] = (uint8_t)(i * 7 + 3);
    if (on_thread) {
        thread_void c = { f };
        pthread_t t;
        if (pthread_create(&t, NULL, run_void_fn, &c) == 0) pthread_join(t, NULL);
    } else {
        f();
    }
    for (size_t i = half; i < n; i++) buf[i] = (uint8_t)(i * 7 + 3);
}

/* A function pointer, to be called through ExternalFunction address:returns:arguments:. */
HY_EXPORT void *hy_add_pointer(void) { return (void *)&hy_add; }
