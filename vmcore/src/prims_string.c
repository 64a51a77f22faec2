/*
 * prims_string.c -- the primitives of String and Symbol.
 *
 * Strings and Symbols are HYI_FMT_BYTES objects: size bytes followed by a NUL that size does
 * not count. Symbol is a subclass of String, so every String primitive also works on Symbols.
 * Strings are sequences of bytes (UTF-8 text is not decoded, except by isLetters): length and
 * indexes count bytes. Equality compares contents, whatever the classes ('abc' = #abc), and
 * hashcode hashes contents, so it agrees with = for Strings and Symbols alike.
 *
 * Allocation may move the receiver and arguments: they are re-read from args[] (which the GC
 * updates) after each allocation, and bytes handed to an allocating function are copied
 * first.
 */
#include <stdlib.h>

#include "prims.h"

/* ---- Helpers ---------------------------------------------------------------------------- */

static inline hyi_oop boolean(hy_vm *vm, bool b) { return b ? vm->true_ : vm->false_; }

/* A String or Symbol (or an instance of a subclass of String). */
static bool is_string(hy_vm *vm, hyi_oop o) {
    if (!hyi_is_ptr(o) || hyi_fmt(o) != HYI_FMT_BYTES) return false;
    hyi_oop cls = hyi_o(o)->cls;
    return cls == vm->cls.string || cls == vm->cls.symbol || hyi_is_kind(vm, o, vm->cls.string);
}

static hyi_prim_status bad_arg(hy_vm *vm, const char *sel, const char *what, const char *want, hyi_oop arg) {
    int len;
    const char *name;
    hyi_prim_class_name(vm, arg, &len, &name);
    return hyi_prim_fail(vm, "String>>%s: %s must be %s, not an instance of %.*s", sel, what, want, len, name);
}

#define RECEIVER_STRING(sel) do { \
    if (!is_string(vm, args[0])) return hyi_prim_fail(vm, "String>>%s: the receiver is not a String", sel); \
} while (0)

/* A new String holding bytes [from, from + len) of the string args[0] (bounds checked by
 * the caller). */
static hyi_prim_status substring(hy_vm *vm, hyi_oop *args, size_t from, size_t len, hyi_oop *result) {
    hyi_oop s = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.string, (uint32_t)len, (uint32_t)len);
    if (!s) return HYI_PRIM_OOM;
    if (len) memcpy(hyi_bytes(s), hyi_bytes(args[0]) + from, len);
    *result = s;
    return HYI_PRIM_OK;
}

/* ---- Primitives ------------------------------------------------------------------------- */

static hyi_prim_status str_concatenate(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("concatenate:");
    if (!is_string(vm, args[1])) return bad_arg(vm, "concatenate:", "the argument", "a String", args[1]);
    uint64_t la = hyi_size(args[0]), lb = hyi_size(args[1]);
    if (la + lb > UINT32_MAX - 16) return hyi_prim_fail(vm, "String>>concatenate: the result would be too long");
    hyi_oop s = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.string, (uint32_t)(la + lb), (uint32_t)(la + lb));
    if (!s) return HYI_PRIM_OOM;
    memcpy(hyi_bytes(s), hyi_bytes(args[0]), la);
    memcpy(hyi_bytes(s) + la, hyi_bytes(args[1]), lb);
    *result = s;
    return HYI_PRIM_OK;
}

static hyi_prim_status str_as_symbol(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("asSymbol");
    if (hyi_o(args[0])->cls == vm->cls.symbol) { *result = args[0]; return HYI_PRIM_OK; }
    /* hyi_symbol reads the characters again after allocating, when the receiver may have
     * moved: hand it a copy. */
    size_t len = hyi_size(args[0]);
    char local[256];
    char *copy = len <= sizeof local ? local : malloc(len);
    if (!copy) return HYI_PRIM_OOM;
    memcpy(copy, hyi_bytes(args[0]), len);
    hyi_oop sym = hyi_symbol(vm, copy, len);
    if (copy != local) free(copy);
    if (!sym) return HYI_PRIM_OOM;
    *result = sym;
    return HYI_PRIM_OK;
}

/* asString: a String answers itself; a Symbol (or other String subclass) a new String. */
static hyi_prim_status str_as_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("asString");
    if (hyi_o(args[0])->cls == vm->cls.string) { *result = args[0]; return HYI_PRIM_OK; }
    return substring(vm, args, 0, hyi_size(args[0]), result);
}

/* FNV-1a over the bytes, folded to a non-negative SmallInteger. */
static hyi_prim_status str_hashcode(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("hashcode");
    const uint8_t *p = hyi_bytes(args[0]);
    uint64_t h = 1469598103934665603u;
    for (uint32_t i = 0, n = hyi_size(args[0]); i < n; i++) {
        h ^= p[i];
        h *= 1099511628211u;
    }
    *result = hyi_smi((intptr_t)((h ^ (h >> 32)) >> 2));
    return HYI_PRIM_OK;
}

static hyi_prim_status str_length(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("length");
    *result = hyi_smi(hyi_size(args[0]));
    return HYI_PRIM_OK;
}

static hyi_prim_status str_equal(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("=");
    hyi_oop a = args[0], b = args[1];
    bool eq = a == b || (is_string(vm, b) && hyi_size(a) == hyi_size(b) &&
                         memcmp(hyi_bytes(a), hyi_bytes(b), hyi_size(a)) == 0);
    *result = boolean(vm, eq);
    return HYI_PRIM_OK;
}

static bool is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

static hyi_prim_status str_is_white_space(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("isWhiteSpace");
    const uint8_t *p = hyi_bytes(args[0]);
    uint32_t n = hyi_size(args[0]);
    bool all = n > 0;
    for (uint32_t i = 0; i < n && all; i++) all = is_space(p[i]);
    *result = boolean(vm, all);
    return HYI_PRIM_OK;
}

static hyi_prim_status str_is_digits(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("isDigits");
    const uint8_t *p = hyi_bytes(args[0]);
    uint32_t n = hyi_size(args[0]);
    bool all = n > 0;
    for (uint32_t i = 0; i < n && all; i++) all = p[i] >= '0' && p[i] <= '9';
    *result = boolean(vm, all);
    return HYI_PRIM_OK;
}

/* Letters beyond ASCII: the letter blocks of the common alphabetic and ideographic scripts
 * (an approximation of Unicode's L categories without shipping its tables). */
static const struct { uint32_t lo, hi; } letter_ranges[] = {
    {0x00AA, 0x00AA}, {0x00B5, 0x00B5}, {0x00BA, 0x00BA}, {0x00C0, 0x00D6}, {0x00D8, 0x00F6},
    {0x00F8, 0x02C1}, {0x0386, 0x0386}, {0x0388, 0x03F5}, {0x03F7, 0x0481}, {0x048A, 0x052F},
    {0x0531, 0x0556}, {0x0561, 0x0587}, {0x05D0, 0x05EA}, {0x0620, 0x064A}, {0x0904, 0x0939},
    {0x0E01, 0x0E30}, {0x10A0, 0x10FF}, {0x1E00, 0x1FBC}, {0x3041, 0x3096}, {0x30A1, 0x30FA},
    {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3},
};

static bool is_letter(uint32_t c) {
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    for (size_t i = 0; i < sizeof letter_ranges / sizeof letter_ranges[0]; i++)
        if (c >= letter_ranges[i].lo && c <= letter_ranges[i].hi) return true;
    return false;
}

/* Decode one UTF-8 character at p[*i] (n bytes in all); false if the encoding is invalid. */
static bool utf8_next(const uint8_t *p, uint32_t n, uint32_t *i, uint32_t *cp) {
    uint8_t c = p[*i];
    uint32_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0 || *i + len > n) return false;
    uint32_t v = len == 1 ? c : c & (0x7Fu >> len);
    for (uint32_t k = 1; k < len; k++) {
        if ((p[*i + k] & 0xC0) != 0x80) return false;
        v = (v << 6) | (p[*i + k] & 0x3F);
    }
    *i += len;
    *cp = v;
    return true;
}

static hyi_prim_status str_is_letters(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("isLetters");
    const uint8_t *p = hyi_bytes(args[0]);
    uint32_t n = hyi_size(args[0]), i = 0, cp = 0;
    bool all = n > 0;
    while (all && i < n) all = utf8_next(p, n, &i, &cp) && is_letter(cp);
    *result = boolean(vm, all);
    return HYI_PRIM_OK;
}

/* primSubstringFrom: start to: end -- bytes start..end (1-based, inclusive); end = start - 1
 * gives the empty string. */
static hyi_prim_status str_substring(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    RECEIVER_STRING("primSubstringFrom:to:");
    if (!hyi_is_smi(args[1])) return bad_arg(vm, "primSubstringFrom:to:", "the start", "an Integer", args[1]);
    if (!hyi_is_smi(args[2])) return bad_arg(vm, "primSubstringFrom:to:", "the end", "an Integer", args[2]);
    intptr_t start = hyi_smi_val(args[1]), end = hyi_smi_val(args[2]), len = hyi_size(args[0]);
    if (start < 1 || end > len || start > end + 1)
        return hyi_prim_fail(vm, "String>>primSubstringFrom:to: index out of bounds (start: %ld end: %ld length: %ld)",
                             (long)start, (long)end, (long)len);
    return substring(vm, args, (size_t)(start - 1), (size_t)(end - start + 1), result);
}

/* charAt: / at: -- the character at a 1-based index, as a String of length 1. */
static hyi_prim_status char_at(hy_vm *vm, hyi_oop *args, hyi_oop *result, const char *sel) {
    RECEIVER_STRING(sel);
    if (!hyi_is_smi(args[1])) return bad_arg(vm, sel, "the index", "an Integer", args[1]);
    intptr_t i = hyi_smi_val(args[1]), len = hyi_size(args[0]);
    if (i < 1 || i > len)
        return hyi_prim_fail(vm, "String>>%s index %ld out of bounds (length: %ld)", sel, (long)i, (long)len);
    return substring(vm, args, (size_t)(i - 1), 1, result);
}

static hyi_prim_status str_char_at(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return char_at(vm, args, result, "charAt:");
}
static hyi_prim_status str_at(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return char_at(vm, args, result, "at:");
}

/* ---- The table -------------------------------------------------------------------------- */

const hyi_prim_def hyi_prims_string[] = {
    {"String", "concatenate:", str_concatenate, 0},
    {"String", "asSymbol", str_as_symbol, 0},
    {"String", "asString", str_as_string, 0},
    {"String", "hashcode", str_hashcode, 0},
    {"String", "length", str_length, 0},
    {"String", "isWhiteSpace", str_is_white_space, 0},
    {"String", "isLetters", str_is_letters, 0},
    {"String", "isDigits", str_is_digits, 0},
    {"String", "=", str_equal, 0},
    {"String", "primSubstringFrom:to:", str_substring, 0},
    {"String", "charAt:", str_char_at, 0},
    {"String", "at:", str_at, 0},
    {"Symbol", "asString", str_as_string, 0},
    {"Symbol", "length", str_length, 0},
    {"Symbol", "hashcode", str_hashcode, 0},
    {NULL, NULL, NULL, 0},
};
