/*
 * test_ffi.c -- the foreign function interface (vmcore/src/foreign.c, prims_ffi.c and the
 * External* classes): calls of the test library (tests/ffi/hytestlib.c, found through
 * HYDRA_FFI_TESTLIB), libc and libm from Smalltalk programs run in a fresh VM per test, with
 * their printed output checked; and white-box checks of what the VM does underneath (layouts
 * computed like the C compiler, pinned arguments in old space, signatures prepared once).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_fixture.h"

#include "foreign.h"
#include "heap.h"
#include "hydra/hy_vm.h"
#include "thread.h"
#include "vm.h"

/* ---- Fixture: a temporary class folder and captured output (test_fixture.h) ------------ */

static const char *testlib(void) {
    const char *p = getenv("HYDRA_FFI_TESTLIB");
    return p && *p ? p : NULL;
}

static int setup(void **state) {
    if (!testlib()) {
        fprintf(stderr, "HYDRA_FFI_TESTLIB is not set (ctest sets it to the test library)\n");
        return -1;
    }
    return fixture_setup(state, "ffi");
}

static int teardown(void **state) { return fixture_teardown(state); }

static hy_vm *new_vm(fixture *f) {
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = f->classpath;
    cfg.write = capture;
    cfg.write_ctx = &f->out;
    hy_vm *vm = NULL;
    hy_err err = hy_vm_new(&cfg, &vm);
    if (err != HY_OK) print_error("hy_vm_new: %s\n%s", hy_strerror(err), buffer_text(&f->err));
    assert_int_equal(err, HY_OK);
    return vm;
}

/* Run `body` as the method run of a class that has the variables lib (the test library),
 * libc, and a to z; print: prints a value on a line of its own. Answers the output. */
static const char *run_st_in(fixture *f, const char *body, hy_vm **keep) {
    static const char *fmt =
        "FfiProbe = (\n"
        "    | lib libc a b c d e g h k m n p q r s t u v w x y z |\n"
        "    print: v = (\n"
        "        v isNil ifTrue: [ ^ 'nil' println ].\n"
        "        v class == String ifTrue: [ ^ ('\\'' + v + '\\'') println ].\n"
        "        v asString println )\n"
        "    err: aBlock = ( ^ aBlock on: Error do: [ :ex | ex return: ex messageText ] )\n"
        "    fn: name returns: ty args: tys = ( ^ lib lookup: name returns: ty arguments: tys )\n"
        "    run = (\n"
        "        lib := ExternalLibrary named: '%s'.\n"
        "        libc := ExternalLibrary named: 'libc.so.6'.\n"
        "%s\n"
        "    )\n"
        ")\n";
    char path[256];
    snprintf(path, sizeof path, "%s/FfiProbe.som", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp, fmt, testlib(), body);
    assert_int_equal(fclose(fp), 0);
    buffer_clear(&f->out);
    hy_vm *vm = new_vm(f);
    int status = -1;
    hy_err err = hy_vm_run_main(vm, "FfiProbe", 0, NULL, &status);
    if (err != HY_OK || status != 0)
        print_error("run: %s, status %d: %s\n%s\n", hy_strerror(err), status, hy_vm_last_error(vm), buffer_text(&f->err));
    assert_int_equal(err, HY_OK);
    assert_int_equal(status, 0);
    if (keep) *keep = vm;
    else hy_vm_free(vm);
    return buffer_text(&f->out);
}

static const char *run_st(fixture *f, const char *body) { return run_st_in(f, body, NULL); }

static void expect(fixture *f, const char *body, const char *expected) {
    const char *out = run_st(f, body);
    if (strcmp(out, expected) != 0) print_error("expected:\n%s\ngot:\n%s\n", expected, out);
    assert_string_equal(out, expected);
}

/* ---- Calls ---------------------------------------------------------------------------------- */

static void test_add_int_int(void **state) {
    expect(*state,
           "x := self fn: 'hy_add' returns: #int32 args: #( #int32 #int32 ).\n"
           "self print: (x callWith: 3 with: 4).\n"
           "self print: (x callWith: -10 with: 3).\n"
           "self print: (x callWithArguments: #( 40 2 )).\n",
           "7\n-7\n42\n");
}

static void test_integer_results_are_sign_or_zero_extended(void **state) {
    expect(*state,
           "self print: (self fn: 'hy_minus_one_i8' returns: #int8 args: #()) call.\n"
           "self print: (self fn: 'hy_max_u8' returns: #uint8 args: #()) call.\n"
           "self print: (self fn: 'hy_min_i16' returns: #int16 args: #()) call.\n"
           "self print: (self fn: 'hy_max_u16' returns: #uint16 args: #()) call.\n"
           "self print: (self fn: 'hy_min_i32' returns: #int32 args: #()) call.\n"
           "self print: (self fn: 'hy_max_u32' returns: #uint32 args: #()) call.\n"
           "self print: (self fn: 'hy_min_i64' returns: #int64 args: #()) call.\n"
           "self print: (self fn: 'hy_max_u64' returns: #uint64 args: #()) call.\n",
           "-1\n255\n-32768\n65535\n-2147483648\n4294967295\n-9223372036854775808\n18446744073709551615\n");
}

static void test_integer_arguments_keep_their_width(void **state) {
    expect(*state,
           "self print: ((self fn: 'hy_i8_to_i64' returns: #int64 args: #( #int8 )) callWith: -128).\n"
           "self print: ((self fn: 'hy_u8_to_u64' returns: #uint64 args: #( #uint8 )) callWith: 255).\n"
           "self print: ((self fn: 'hy_i16_to_i64' returns: #int64 args: #( #int16 )) callWith: -32768).\n"
           "self print: ((self fn: 'hy_u16_to_u64' returns: #uint64 args: #( #uint16 )) callWith: 65535).\n"
           "self print: ((self fn: 'hy_i32_to_i64' returns: #int64 args: #( #int32 )) callWith: -2147483648).\n"
           "self print: ((self fn: 'hy_u32_to_u64' returns: #uint64 args: #( #uint32 )) callWith: 4294967295).\n"
           "self print: ((self fn: 'hy_id_u64' returns: #uint64 args: #( #uint64 )) callWith: 18446744073709551615).\n"
           "self print: ((self fn: 'hy_sum8' returns: #int64 args: #( #int8 #uint8 #int16 #uint16 #int32 #uint32 #int64 #uint64 ))\n"
           "    callWithArguments: #( -1 255 -300 60000 -70000 4000000000 -5000000000 6000000000 )).\n",
           "-128\n255\n-32768\n65535\n-2147483648\n4294967295\n18446744073709551615\n4999989954\n");
}

static void test_float_and_double(void **state) {
    expect(*state,
           "self print: ((self fn: 'hy_mul_f' returns: #float args: #( #float #float )) callWith: 1.5 with: 2.0).\n"
           "self print: ((self fn: 'hy_mul_f' returns: #float args: #( #float #float )) callWith: 3 with: 4).\n"
           "self print: ((self fn: 'hy_add_d' returns: #double args: #( #double #double )) callWith: 0.5 with: 0.25).\n"
           "self print: ((self fn: 'hy_mix' returns: #double args: #( #int32 #float #double #int64 ))\n"
           "    callWith: 1 with: 0.5 with: 0.25 with: 10).\n"
           "self print: (((ExternalLibrary named: 'm') lookup: 'sqrt' returns: #double arguments: #( #double )) callWith: 2.25).\n",
           "3.0\n12.0\n0.75\n11.75\n1.5\n");
}

static void test_strings_in_and_out(void **state) {
    expect(*state,
           "x := libc lookup: 'strlen' returns: #size_t arguments: #( #string ).\n"
           "self print: (x callWith: 'hello').\n"
           "s := ''. 1 to: 50 do: [ :i | s := s + 'xy' ].\n"
           "self print: (x callWith: s).\n"
           "self print: (self fn: 'hy_greeting' returns: #string args: #()) call.\n"
           "self print: (self fn: 'hy_null_string' returns: #string args: #()) call.\n"
           "b := ByteArray new: 8.\n"
           "self print: ((self fn: 'hy_upper_into' returns: #string args: #( #pointer #string )) callWith: b with: 'abc').\n"
           "self print: (b at: 2).\n"
           "self print: (self err: [ x callWith: 'a\\0b' ]).\n",
           "5\n100\n'hello from C'\nnil\n'ABC'\n66\n"
           "'argument 1 of strlen: the String has an embedded NUL at index 2'\n");
}

static void test_structs_by_value_and_by_pointer(void **state) {
    expect(*state,
           "t := ExternalStructureType names: #( #x #y ) types: #( #int32 #int32 ).\n"
           "p := t new. p at: #x put: 1. p at: #y put: 2.\n"
           "q := t new. q at: 1 put: 10. q at: 2 put: 20.\n"
           "r := (self fn: 'hy_point_add' returns: t args: (Array with: t with: t)) callWith: p with: q.\n"
           "self print: (r at: #x). self print: (r at: #y).\n"
           "(self fn: 'hy_point_scale' returns: #void args: #( #pointer #int32 )) callWith: q with: 3.\n"
           "self print: (q at: #x). self print: (q at: #y).\n"
           "m := ExternalStructureType types: #( #char #double #int16 ).\n"
           "s := (self fn: 'hy_mixed_make' returns: m args: #( #char #double #int16 )) callWith: 65 with: 2.5 with: -7.\n"
           "self print: (s at: 1). self print: (s at: 2). self print: (s at: 3).\n"
           "self print: ((self fn: 'hy_mixed_sum' returns: #double args: (Array with: m)) callWith: s).\n"
           "u := ExternalStructureType names: #( #origin #corner ) types: (Array with: t with: t).\n"
           "v := u new. v at: #origin put: p. v at: #corner put: r.\n"
           "self print: ((self fn: 'hy_rect_area' returns: #int32 args: (Array with: u)) callWith: v).\n"
           "w := ExternalStructureType types: ((Array new: 80) putAll: #double).\n"
           "y := w new. 1 to: 80 do: [ :i | y at: i put: i ].\n"
           "self print: ((self fn: 'hy_big_sum' returns: #double args: (Array with: w)) callWith: y).\n",
           "11\n22\n30\n60\n65\n2.5\n-7\n60.5\n200\n3240.0\n");
}

static void test_out_parameters(void **state) {
    expect(*state,
           "x := self fn: 'hy_divmod' returns: #int32 args: #( #int32 #int32 #pointer #pointer ).\n"
           "a := ByteArray new: 4. b := ByteArray new: 4.\n"
           "self print: (x callWithArguments: (Array with: 17 with: 5 with: a with: b)).\n"
           "self print: (ExternalAddress read: #int32 from: a at: 0).\n"
           "self print: (ExternalAddress read: #int32 from: b at: 0).\n"
           "c := ExternalAddress allocate: 8.\n"
           "self print: (x callWithArguments: (Array with: -17 with: 5 with: c with: c + 4)).\n"
           "self print: (c int32At: 0). self print: (c int32At: 4).\n"
           "self print: (x callWithArguments: (Array with: 1 with: 0 with: c with: nil)).\n"
           "c free.\n",
           "0\n3\n2\n0\n-3\n-2\n-1\n");
}

/* ---- Callbacks ------------------------------------------------------------------------------ */

static void test_qsort_with_a_smalltalk_comparator(void **state) {
    expect(*state,
           "x := libc lookup: 'qsort' returns: #void arguments: #( #pointer #size_t #size_t #pointer ).\n"
           "a := ExternalAddress allocate: 32.\n"
           "#( 5 -3 99 0 7 7 -100 12 ) doIndexes: [ :i | a int32At: i - 1 * 4 put: (#( 5 -3 99 0 7 7 -100 12 ) at: i) ].\n"
           "n := 0.\n"
           "c := ExternalCallback block: [ :l :r | n := n + 1. (l int32At: 0) - (r int32At: 0) ]\n"
           "    returns: #int32 arguments: #( #pointer #pointer ).\n"
           "x callWith: a with: 8 with: 4 with: c.\n"
           "0 to: 7 do: [ :i | (a int32At: i * 4) print. ' ' print ]. '' println.\n"
           "self print: n > 7.\n"
           "c free. a free.\n",
           "-100 -3 0 5 7 7 12 99 \ntrue\n");
}

static void test_callback_from_a_c_pthread(void **state) {
    expect(*state,
           "c := ExternalCallback block: [ :i | i * i + 1 ] returns: #int32 arguments: #( #int32 ).\n"
           "self print: ((self fn: 'hy_apply_on_thread' returns: #int32 args: #( #pointer #int32 )) callWith: c with: 9).\n"
           "self print: ((self fn: 'hy_apply_on_threads' returns: #int32 args: #( #pointer #int32 )) callWith: c with: 4).\n"
           "self print: ((self fn: 'hy_apply' returns: #int32 args: #( #pointer #int32 )) callWith: c with: 3).\n"
           "c free.\n",
           "82\n18\n10\n");
}

static void test_callback_errors_do_not_unwind_through_c(void **state) {
    expect(*state,
           "x := self fn: 'hy_apply' returns: #int32 args: #( #pointer #int32 ).\n"
           "c := ExternalCallback block: [ :i | i bar ] returns: #int32 arguments: #( #int32 ).\n"
           "self print: (x callWith: c with: 3).\n"
           "self print: c hasFailed.\n"
           "self print: ((c lastError indexOf: 'bar') > 0).\n"
           "c free.\n"
           "c := ExternalCallback block: [ :i | ^ 5 ] returns: #int32 arguments: #( #int32 ).\n"
           "self print: (x callWith: c with: 3).\n"
           "self print: c lastError.\n"
           "c free.\n"
           "self print: ExternalCallback liveCount.\n",
           "0\ntrue\ntrue\n0\n'a non-local return cannot leave a callback; C got 0'\n0\n");
}

/* ---- Errors ------------------------------------------------------------------------------- */

static void test_wrong_arguments_are_errors_not_crashes(void **state) {
    expect(*state,
           "x := libc lookup: 'strlen' returns: #size_t arguments: #( #string ).\n"
           "self print: (self err: [ x callWith: 42 ]).\n"
           "self print: (self err: [ x callWith: 'a' with: 'b' ]).\n"
           "y := self fn: 'hy_id_u8' returns: #uint8 args: #( #uint8 ).\n"
           "self print: (self err: [ y callWith: 256 ]).\n"
           "self print: (self err: [ y callWith: -1 ]).\n"
           "self print: (self err: [ y callWithArguments: 3 ]).\n"
           "z := self fn: 'hy_is_null' returns: #int32 args: #( #pointer ).\n"
           "self print: (self err: [ z callWith: Object new ]).\n"
           "self print: (self err: [ self fn: 'hy_add' returns: #bogus args: #() ]).\n"
           "self print: (self err: [ ExternalFunction address: ExternalAddress null returns: #void arguments: #() ]).\n"
           "a := ExternalAddress allocate: 4. a free.\n"
           "self print: (self err: [ z callWith: a ]).\n"
           "self print: (self err: [ a int8At: 0 ]).\n"
           "b := ExternalAddress allocate: 4.\n"
           "self print: (self err: [ b int64At: 0 ]).\n"
           "b free.\n",
           "'argument 1 of strlen: expected a String, an ExternalAddress or nil, got the Integer 42'\n"
           "'strlen takes 1 argument, got 2'\n"
           "'argument 1 of hy_id_u8: 256 is out of range for uint8'\n"
           "'argument 1 of hy_id_u8: -1 is out of range for uint8'\n"
           "'callWithArguments: needs an Array, got the Integer 3'\n"
           "'argument 1 of hy_is_null: expected an ExternalAddress, a ByteArray, a String, an ExternalStructure or nil, got an Object'\n"
           "'hy_add: unknown C type #bogus'\n"
           "'a function pointer: a NULL function pointer cannot be called'\n"
           "'argument 1 of hy_is_null: the ExternalAddress was freed'\n"
           "'reading a number: the ExternalAddress was freed'\n"
           "'reading a number: 8 bytes at offset 0 are past the end (the size is 4)'\n");
}

static void test_missing_library_and_symbol(void **state) {
    /* dlerror's text follows ours; its wording is the C library's. */
    const char *out = run_st(*state,
           "self print: (self err: [ ExternalLibrary named: 'libhydra-missing.so' ]).\n"
           "self print: (self err: [ libc lookup: 'hydra_missing' returns: #void arguments: #() ]).\n");
    assert_non_null(strstr(out, "'cannot load the library 'libhydra-missing.so': libhydra-missing.so: cannot open shared object file"));
    assert_non_null(strstr(out, "'symbol 'hydra_missing' not found in 'libc.so.6': "));
    assert_non_null(strstr(out, "undefined symbol: hydra_missing"));
}

/* ---- Pinning and GC ----------------------------------------------------------------------- */

static void test_pinned_buffer_survives_full_gc_during_the_call(void **state) {
    /* C fills the first half, calls back into Smalltalk (here and on a new thread), which
     * makes garbage and runs full collections, then fills the second half through the pointer
     * it was given before: a buffer that moved would miss the second half. */
    const char *body =
        "x := self fn: 'hy_fill_around' returns: #void args: #( #pointer #size_t #pointer #int32 ).\n"
        "k := Array new: 64.\n"
        "c := ExternalCallback block: [ 1 to: 3000 do: [ :i | k at: i % 64 + 1 put: (Array new: 10) ]. system fullGC ]\n"
        "    returns: #void arguments: #().\n"
        "#( 0 1 ) do: [ :t |\n"
        "    b := ByteArray new: 5000.\n"
        "    x callWith: b with: 5000 with: c with: t.\n"
        "    n := 0.\n"
        "    1 to: 5000 do: [ :i | (b at: i) = (i - 1 * 7 + 3 % 256) ifFalse: [ n := n + 1 ] ].\n"
        "    self print: n ].\n"
        "c free.\n"
        "self print: (system gcStats at: 2) >= 2.\n";
    expect(*state, body, "0\n0\ntrue\n");
}

/* ---- White box ------------------------------------------------------------------------------ */

typedef struct mixed { char c; double d; short s; } mixed;
typedef struct nested { char tag; mixed m; float f; } nested;

static hyi_oop symbols(hy_vm *vm, const char *const *names, uint32_t n) {
    hyi_oop arr = hyi_array_new(vm, n);
    assert_true(arr != 0);
    HYI_ROOT(vm, &arr);
    for (uint32_t i = 0; i < n; i++) {
        hyi_oop s = hyi_symbol_c(vm, names[i]);
        assert_true(s != 0);
        hyi_store(vm, arr, i, s);
    }
    HYI_UNROOT(vm, 1);
    return arr;
}

static void test_struct_layout_is_the_c_compilers(void **state) {
    hy_vm *vm = new_vm(*state);
    assert_true(hyi_thread_attach(vm));
    static const char *const m[] = { "char", "double", "short" };
    hyi_oop members = symbols(vm, m, 3);
    size_t size, align, offs[3];
    assert_true(hyi_ffi_struct_layout(vm, members, &size, &align, offs));
    assert_int_equal(size, sizeof(mixed));
    assert_int_equal(align, _Alignof(mixed));
    assert_int_equal(offs[0], offsetof(mixed, c));
    assert_int_equal(offs[1], offsetof(mixed, d));
    assert_int_equal(offs[2], offsetof(mixed, s));
    static const char *const bad[] = { "char", "nosuchtype" };
    hyi_oop b = symbols(vm, bad, 2);
    assert_false(hyi_ffi_struct_layout(vm, b, &size, &align, offs));
    assert_non_null(strstr(vm->prim_message, "unknown C type #nosuchtype"));
    hyi_thread_detach(vm);
    hy_vm_free(vm);
}

static void test_nested_struct_layout_is_the_c_compilers(void **state) {
    char expected[128];
    snprintf(expected, sizeof expected, "%zu\n%zu\n%zu\n%zu\n%zu\n", sizeof(nested), _Alignof(nested),
             offsetof(nested, tag), offsetof(nested, m), offsetof(nested, f));
    expect(*state,
           "m := ExternalStructureType types: #( #char #double #short ).\n"
           "t := ExternalStructureType types: (Array with: #char with: m with: #float).\n"
           "self print: t size. self print: t alignment.\n"
           "1 to: 3 do: [ :i | self print: (t offsetAt: i) ].\n",
           expected);
}

static void test_signature_is_prepared_once(void **state) {
    expect(*state,
           "x := self fn: 'hy_add' returns: #int32 args: #( #int32 #int32 ).\n"
           "h := x instVarAt: 1.\n"
           "1 to: 1000 do: [ :i | x callWith: i with: i ].\n"
           "system fullGC.\n"
           "self print: (x instVarAt: 1) == h.\n"
           "self print: (x callWith: 1 with: 2).\n",
           "true\n3\n");
}

static void test_byte_arrays_passed_to_c_are_pinned_in_old_space(void **state) {
    hy_vm *vm = new_vm(*state);
    assert_true(hyi_thread_attach(vm));
    hyi_oop ba = hyi_heap_alloc(vm, vm->cls.bytearray, HYI_FMT_BYTES, 64);
    assert_true(ba != 0);
    assert_true(hyi_heap_is_young(&vm->heap, ba));
    HYI_ROOT(vm, &ba);
    assert_int_equal(hyi_ffi_pin_target(vm, HYI_K_POINTER, ba), ba);
    assert_true(hyi_heap_pin(vm, &ba));
    assert_false(hyi_heap_is_young(&vm->heap, ba));
    assert_true(hyi_o(ba)->pinned);
    /* What a call hands to C is the body itself, and it stays put across collections. */
    void *p = NULL;
    char why[200];
    assert_true(hyi_ffi_to_c(vm, HYI_K_POINTER, sizeof(void *), vm->nil, ba, &p, true, why, sizeof why));
    assert_ptr_equal(p, hyi_bytes(ba));
    hyi_oop before = ba;
    hyi_gc_full(vm);
    hyi_gc_scavenge(vm);
    assert_true(ba == before);
    /* An unpinned young one is refused rather than handed over. */
    hyi_oop young = hyi_heap_alloc(vm, vm->cls.bytearray, HYI_FMT_BYTES, 8);
    assert_true(young != 0);
    assert_false(hyi_ffi_to_c(vm, HYI_K_POINTER, sizeof(void *), vm->nil, young, &p, true, why, sizeof why));
    HYI_UNROOT(vm, 1);
    hyi_thread_detach(vm);
    hy_vm_free(vm);
}

static void test_unfreed_callbacks_are_released_with_the_vm(void **state) {
    hy_vm *vm = NULL;
    run_st_in(*state,
              "x := Array new: 3.\n"
              "1 to: 3 do: [ :i | x at: i put: (ExternalCallback block: [ :j | j + i ] returns: #int32 arguments: #( #int32 )) ].\n"
              "self print: ((self fn: 'hy_apply' returns: #int32 args: #( #pointer #int32 )) callWith: (x at: 2) with: 40).\n"
              "system global: #KeptCallbacks put: x.\n",
              &vm);
    assert_string_equal(buffer_text(&((fixture *)*state)->out), "42\n");
    assert_true(hyi_thread_attach(vm));
    hyi_ffi_release_all(vm);
    hyi_oop kept = hyi_global_get(vm, hyi_symbol_c(vm, "KeptCallbacks"));
    assert_true(kept && hyi_is_ptr(kept) && hyi_size(kept) == 3);
    for (uint32_t i = 0; i < 3; i++) {
        hyi_oop cb = hyi_slots(kept)[i];
        assert_true(hyi_ffi_is_a(vm, cb, HYI_FC_CALLBACK, HYI_CB_FIELDS));
        assert_true(hyi_slots(cb)[HYI_CB_HANDLE] == vm->nil);
        assert_true(hyi_slots(cb)[HYI_EA_FREED] == vm->true_);
    }
    hyi_thread_detach(vm);
    hy_vm_free(vm);   /* with LeakSanitizer on, a closure left behind is reported */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_add_int_int, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_results_are_sign_or_zero_extended, setup, teardown),
        cmocka_unit_test_setup_teardown(test_integer_arguments_keep_their_width, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_and_double, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_in_and_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structs_by_value_and_by_pointer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_parameters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qsort_with_a_smalltalk_comparator, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_from_a_c_pthread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_errors_do_not_unwind_through_c, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_arguments_are_errors_not_crashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_library_and_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pinned_buffer_survives_full_gc_during_the_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_struct_layout_is_the_c_compilers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_struct_layout_is_the_c_compilers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_signature_is_prepared_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_byte_arrays_passed_to_c_are_pinned_in_old_space, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfreed_callbacks_are_released_with_the_vm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
