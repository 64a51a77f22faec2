/*
 * test_compiler.c -- the SOM compiler: diagnostics with file:line:column, inlining of control
 * structures, closures and non-local return, checked by running the compiled code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bytecode.h"
#include "compiler.h"
#include "interp.h"
#include "vm.h"

#ifndef HYDRA_SOURCE_DIR
#define HYDRA_SOURCE_DIR "."
#endif

typedef struct sink {
    char out[65536];
    size_t len;
} sink;

static void capture(void *ctx, int stream, const char *bytes, size_t len) {
    sink *s = ctx;
    (void)stream;
    if (s->len + len >= sizeof s->out) len = sizeof s->out - 1 - s->len;
    memcpy(s->out + s->len, bytes, len);
    s->len += len;
    s->out[s->len] = 0;
}

typedef struct fixture {
    char dir[128];
    char cp[512];
    sink out;
    hy_vm *vm;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/hydra-test-compiler-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    snprintf(f->cp, sizeof f->cp, "%s/images/core:%s", HYDRA_SOURCE_DIR, f->dir);
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = f->cp;
    cfg.write = capture;
    cfg.write_ctx = &f->out;
    if (hy_vm_new(&cfg, &f->vm) != HY_OK) {
        fprintf(stderr, "VM does not start: %s\n", f->out.out);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    hy_vm_free(f->vm);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) return -1;
    free(f);
    return 0;
}

static void write_class(fixture *f, const char *name, const char *src) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.som", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(src, fp);
    fclose(fp);
}

/* Run class `name` (written from src) and answer its exit status; output in f->out. */
static int run(fixture *f, const char *name, const char *src) {
    write_class(f, name, src);
    f->out.len = 0;
    f->out.out[0] = 0;
    int status = -1;
    hy_err err = hy_vm_run_main(f->vm, name, 0, NULL, &status);
    if (err != HY_OK) {
        fprintf(stderr, "run %s: %s\n", name, hy_vm_last_error(f->vm));
        return -100 - (int)err;
    }
    return status;
}

static bool compile_fails(fixture *f, const char *src, hyi_diag *d) {
    hyi_oop cls;
    memset(d, 0, sizeof *d);
    return !hyi_compile_class(f->vm, src, strlen(src), "Bad.som", &cls, d);
}

/* ---- Diagnostics ---------------------------------------------------------------------------- */

static void test_syntax_error_position(void **state) {
    fixture *f = *state;
    hyi_diag d;
    assert_true(compile_fails(f, "Bad = (\n  foo = (\n    ^ 1 + )\n)\n", &d));
    assert_string_equal(d.file, "Bad.som");
    assert_int_equal(d.line, 3);
    assert_int_equal(d.column, 11);
    assert_non_null(strstr(d.message, "expected an expression"));
    assert_non_null(strstr(d.message, "')'"));
}

static void test_missing_paren_at_end(void **state) {
    fixture *f = *state;
    hyi_diag d;
    assert_true(compile_fails(f, "Bad = (\n  foo = ( ^ 1 )\n", &d));
    assert_int_equal(d.line, 3);
    assert_non_null(strstr(d.message, "end of file"));
}

static void test_unterminated_string_and_comment(void **state) {
    fixture *f = *state;
    hyi_diag d;
    assert_true(compile_fails(f, "Bad = (\n foo = ( ^ 'abc )\n)", &d));
    assert_int_equal(d.line, 2);
    assert_int_equal(d.column, 12);
    assert_non_null(strstr(d.message, "unterminated string"));
    assert_true(compile_fails(f, "Bad = ( \"no end\n foo = ( ^ 1 ) )", &d));
    assert_int_equal(d.line, 1);
    assert_non_null(strstr(d.message, "unterminated comment"));
}

static void test_bad_assignments(void **state) {
    fixture *f = *state;
    hyi_diag d;
    assert_true(compile_fails(f, "Bad = ( foo = ( self := 3 ) )", &d));
    assert_non_null(strstr(d.message, "cannot assign to self"));
    assert_true(compile_fails(f, "Bad = ( foo = ( undefinedThing := 3 ) )", &d));
    assert_non_null(strstr(d.message, "undefinedThing"));
    assert_int_equal(d.column, 17);
}

static void test_deep_nesting_is_an_error(void **state) {
    fixture *f = *state;
    size_t n = 5000;
    char *src = malloc(2 * n + 64);
    strcpy(src, "Bad = ( foo = ( ^ ");
    size_t k = strlen(src);
    for (size_t i = 0; i < n; i++) src[k++] = '(';
    src[k++] = '1';
    for (size_t i = 0; i < n; i++) src[k++] = ')';
    strcpy(src + k, " ) )");
    hyi_diag d;
    assert_true(compile_fails(f, src, &d));
    assert_non_null(strstr(d.message, "nesting deeper"));
    free(src);
}

static void test_failed_class_is_not_defined(void **state) {
    fixture *f = *state;
    hyi_diag d;
    assert_true(compile_fails(f, "Ghost = ( foo = ( self := 1 ) )", &d));
    assert_int_equal(hyi_global_get(f->vm, hyi_symbol_c(f->vm, "Ghost")), 0);
}

static void test_load_error_names_file_line_column(void **state) {
    fixture *f = *state;
    write_class(f, "Broken", "Broken = (\n run = ( ^ 3 + + )\n)\n");
    int status = 0;
    hy_err err = hy_vm_run_main(f->vm, "Broken", 0, NULL, &status);
    assert_int_equal(err, HY_ESYNTAX);
    const char *msg = hy_vm_last_error(f->vm);
    assert_non_null(strstr(msg, "Broken.som:2:"));
    assert_non_null(strstr(msg, "expected"));
}

/* ---- Inlining ------------------------------------------------------------------------------- */

static char *disasm_of(fixture *f, const char *method_src) {
    hyi_oop m;
    hyi_diag d;
    bool ok = hyi_compile_method(f->vm, f->vm->cls.object, method_src, strlen(method_src), "t", &m, &d);
    if (!ok) fprintf(stderr, "%d:%d: %s\n", d.line, d.column, d.message);
    assert_true(ok);
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    hyi_disasm(f->vm, (const void *)m, mf);
    fclose(mf);
    return buf;
}

static void test_control_structures_are_inlined(void **state) {
    fixture *f = *state;
    char *s = disasm_of(f, "hyTestInline: n = ( | sum | sum := 0. 1 to: n do: [:i | "
                           "(i > 3 and: [i < 9]) ifTrue: [sum := sum + i] ifFalse: [sum := sum - 1]]. "
                           "[sum > 100] whileTrue: [sum := sum - 100]. "
                           "n isNil or: [n timesRepeat: [sum := sum + 1]]. ^ sum )");
    assert_non_null(strstr(s, "FOR_ENTER"));
    assert_non_null(strstr(s, "FOR_STEP"));
    assert_non_null(strstr(s, "JUMP_BACK"));
    assert_null(strstr(s, "#to:do:"));
    assert_null(strstr(s, "#ifTrue:"));
    assert_null(strstr(s, "#and:"));
    assert_null(strstr(s, "#or:"));
    assert_null(strstr(s, "#whileTrue:"));
    assert_null(strstr(s, "#timesRepeat:"));
    assert_null(strstr(s, "PUSH_BLOCK"));
    /* No heap context: nothing is captured. */
    assert_null(strstr(s, "MAKE_CTX"));
    free(s);
}

static void test_captured_loop_variable_is_not_inlined(void **state) {
    fixture *f = *state;
    char *s = disasm_of(f, "hyTestCapture = ( | bs | bs := Array new: 3. "
                           "1 to: 3 do: [:i | bs at: i put: [i]]. ^ bs )");
    assert_non_null(strstr(s, "#to:do:"));
    free(s);
}

/* ---- Running compiled code ------------------------------------------------------------------ */

static void test_closures_and_loops_run(void **state) {
    fixture *f = *state;
    int st = run(f, "Closures",
                 "Closures = (\n"
                 "  run = ( | bs sum counter inc get |\n"
                 "    bs := Array new: 3.\n"
                 "    1 to: 3 do: [:i | bs at: i put: [i * 10]].\n"
                 "    sum := 0. bs do: [:b | sum := sum + b value].\n"
                 "    sum = 60 ifFalse: [ system exit: 10 ].\n"
                 "    counter := 0. inc := [counter := counter + 1]. get := [counter].\n"
                 "    5 timesRepeat: [inc value].\n"
                 "    get value = 5 ifFalse: [ system exit: 11 ].\n"
                 "    (self adder: 7) value: 3.\n"
                 "    ((self adder: 7) value: 3) = 10 ifFalse: [ system exit: 12 ].\n"
                 "    (self find: 4 in: #(1 3 4 5)) = 3 ifFalse: [ system exit: 13 ].\n"
                 "    (self find: 9 in: #(1 3 4 5)) isNil ifFalse: [ system exit: 14 ].\n"
                 "    (nil ifNil: [1] ifNotNil: [:x | x]) = 1 ifFalse: [ system exit: 15 ].\n"
                 "    (5 ifNil: [1] ifNotNil: [:x | x + 1]) = 6 ifFalse: [ system exit: 16 ].\n"
                 "    (false and: [1/0]) ifTrue: [ system exit: 17 ].\n"
                 "    (1 to: 0 do: [:i | system exit: 18]) = 1 ifFalse: [ system exit: 19 ].\n"
                 "    system exit: 42 )\n"
                 "  adder: n = ( ^ [:x | x + n] )\n"
                 "  find: x in: arr = ( 1 to: arr length do: [:i | (arr at: i) = x ifTrue: [^ i]]. ^ nil )\n"
                 ")\n");
    if (st != 42) fprintf(stderr, "%s", f->out.out);
    assert_int_equal(st, 42);
}

static void test_escaped_block(void **state) {
    fixture *f = *state;
    int st = run(f, "Escaper",
                 "Escaper = (\n"
                 "  | escaped |\n"
                 "  run = ( | b r | b := self makeBlock. r := b value.\n"
                 "    escaped == b ifFalse: [ system exit: 20 ].\n"
                 "    r = 77 ifFalse: [ system exit: 21 ].\n"
                 "    system exit: 42 )\n"
                 "  makeBlock = ( ^ [ ^ 5 ] )\n"
                 "  escapedBlock: aBlock = ( escaped := aBlock. ^ 77 )\n"
                 ")\n");
    if (st != 42) fprintf(stderr, "%s", f->out.out);
    assert_int_equal(st, 42);
}

static void test_runtime_error_backtrace(void **state) {
    fixture *f = *state;
    int st = run(f, "Crash",
                 "Crash = (\n"
                 "  run = ( ^ self helper )\n"
                 "  helper = (\n"
                 "    ^ 3 frobnicate )\n"
                 ")\n");
    assert_int_not_equal(st, 0);
    assert_non_null(strstr(f->out.out, "frobnicate"));
    assert_non_null(strstr(f->out.out, "Crash>>helper"));
    assert_non_null(strstr(f->out.out, "Crash.som:4)"));
    assert_non_null(strstr(f->out.out, "Crash>>run"));
}

static void test_literals(void **state) {
    fixture *f = *state;
    int st = run(f, "Literals",
                 "Literals = (\n"
                 "  run = ( | a |\n"
                 "    a := #(1 -2 3.5 'str' #sym foo: #(nested) true nil).\n"
                 "    a length = 9 ifFalse: [ system exit: 30 ].\n"
                 "    (a at: 2) = -2 ifFalse: [ system exit: 31 ].\n"
                 "    (a at: 5) == #sym ifFalse: [ system exit: 32 ].\n"
                 "    (a at: 6) == #foo: ifFalse: [ system exit: 33 ].\n"
                 "    (a at: 8) == true ifFalse: [ system exit: 34 ].\n"
                 "    (a at: 9) isNil ifFalse: [ system exit: 35 ].\n"
                 "    'it\\'s' length = 4 ifFalse: [ system exit: 36 ].\n"
                 "    '\\n' length = 1 ifFalse: [ system exit: 37 ].\n"
                 "    (100000000000000000000 - 99999999999999999999) = 1 ifFalse: [ system exit: 38 ].\n"
                 "    (3 - -2) = 5 ifFalse: [ system exit: 39 ].\n"
                 "    system exit: 42 )\n"
                 ")\n");
    if (st != 42) fprintf(stderr, "%s", f->out.out);
    assert_int_equal(st, 42);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_syntax_error_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_paren_at_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unterminated_string_and_comment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_assignments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deep_nesting_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_class_is_not_defined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_error_names_file_line_column, setup, teardown),
        cmocka_unit_test_setup_teardown(test_control_structures_are_inlined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_captured_loop_variable_is_not_inlined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_closures_and_loops_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaped_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_error_backtrace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
