/*
 * test_vm.c -- the embedding API of one VM (hy_vm.h): creating and freeing VMs, running a
 * program from a class path, exit status, captured output, syntax errors, unhandled errors
 * with their backtrace, the heap limit, and GC statistics.
 *
 * Each test writes its class files into a fresh temporary folder that follows the core
 * library on the class path (HYDRA_CORE, else images/core of the source tree).
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

#include "hydra/hy_vm.h"

/* ---- Fixture: a temporary class folder and captured output ------------------------------ */

static int setup(void **state) { return fixture_setup(state, "vm"); }
static int teardown(void **state) { return fixture_teardown(state); }

/* A VM on the fixture's class path whose output is captured. */
static hy_vm *new_vm_eden(fixture *f, size_t heap_limit, size_t eden_size) {
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = f->classpath;
    cfg.heap_limit = heap_limit;
    cfg.eden_size = eden_size;
    cfg.write = capture;
    cfg.write_ctx = &f->out;
    hy_vm *vm = NULL;
    hy_err err = hy_vm_new(&cfg, &vm);
    if (err != HY_OK) print_error("hy_vm_new: %s\n%s", hy_strerror(err), buffer_text(&f->err));
    assert_int_equal(err, HY_OK);
    assert_non_null(vm);
    return vm;
}

static hy_vm *new_vm(fixture *f, size_t heap_limit) { return new_vm_eden(f, heap_limit, 0); }

/* Run class_name with no arguments in a new VM; returns the exit status. */
static int run_program(fixture *f, const char *class_name, size_t heap_limit) {
    hy_vm *vm = new_vm(f, heap_limit);
    int status = -1;
    hy_err err = hy_vm_run_main(vm, class_name, 0, NULL, &status);
    if (err != HY_OK) print_error("hy_vm_run_main: %s: %s\n", hy_strerror(err), hy_vm_last_error(vm));
    assert_int_equal(err, HY_OK);
    hy_vm_free(vm);
    return status;
}

/* ---- Tests ---------------------------------------------------------------------------------- */

static void test_config_init_gives_documented_defaults(void **state) {
    (void)state;
    hy_config cfg;
    memset(&cfg, 0xab, sizeof cfg);
    hy_config_init(&cfg);
    assert_null(cfg.classpath);
    assert_int_equal(cfg.heap_limit, 0);
    assert_null(cfg.write);
}

static void test_vm_new_rejects_null_config_and_leaves_out_untouched(void **state) {
    (void)state;
    hy_vm *vm = (hy_vm *)(uintptr_t)0x1234;
    assert_int_equal(hy_vm_new(NULL, &vm), HY_EINVAL);
    assert_ptr_equal(vm, (hy_vm *)(uintptr_t)0x1234);
    hy_vm_free(NULL);
}

static void test_vm_new_without_core_library_is_enoent(void **state) {
    fixture *f = *state;
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = f->dir;   /* empty: no Object.som */
    cfg.write = capture;
    cfg.write_ctx = &f->out;
    hy_vm *vm = NULL;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_ENOENT);
    assert_null(vm);
}

static void test_many_vms_are_created_and_freed(void **state) {
    fixture *f = *state;
    hy_vm *vms[4];
    for (int i = 0; i < 4; i++) vms[i] = new_vm(f, 0);
    for (int i = 0; i < 4; i++) hy_vm_free(vms[i]);
    /* A VM still works after others were freed. */
    write_class(f, "Seven", "Seven = ( run = ( system exit: 7 ) )\n");
    assert_int_equal(run_program(f, "Seven", 0), 7);
}

static void test_program_exit_status_and_output_are_captured(void **state) {
    fixture *f = *state;
    write_class(f, "Answer",
                "Answer = (\n"
                "    run = (\n"
                "        | sum |\n"
                "        sum := 0.\n"
                "        1 to: 10 do: [ :i | sum := sum + i ].\n"
                "        sum println.\n"
                "        system exit: 42\n"
                "    )\n"
                ")\n");
    assert_int_equal(run_program(f, "Answer", 0), 42);
    assert_string_equal(buffer_text(&f->out), "55\n");
}

static void test_program_that_returns_normally_exits_zero(void **state) {
    fixture *f = *state;
    write_class(f, "Quiet", "Quiet = ( run = ( ^ 3 + 4 ) )\n");
    assert_int_equal(run_program(f, "Quiet", 0), 0);
    assert_string_equal(buffer_text(&f->out), "");
}

static void test_run_receives_class_name_then_arguments(void **state) {
    fixture *f = *state;
    write_class(f, "Args",
                "Args = (\n"
                "    run: args = (\n"
                "        args length println.\n"
                "        (args at: 1) println.\n"
                "        (args at: 3) println.\n"
                "        system exit: args length\n"
                "    )\n"
                ")\n");
    hy_vm *vm = new_vm(f, 0);
    const char *argv[] = { "first", "second" };
    int status = -1;
    assert_int_equal(hy_vm_run_main(vm, "Args", 2, argv, &status), HY_OK);
    hy_vm_free(vm);
    assert_int_equal(status, 3);
    assert_string_equal(buffer_text(&f->out), "3\nArgs\nsecond\n");
}

static void test_missing_class_is_enoent(void **state) {
    fixture *f = *state;
    hy_vm *vm = new_vm(f, 0);
    int status = -7;
    assert_int_equal(hy_vm_run_main(vm, "NoSuchClass", 0, NULL, &status), HY_ENOENT);
    assert_int_equal(status, -7);
    assert_non_null(strstr(hy_vm_last_error(vm), "NoSuchClass"));
    hy_vm_free(vm);
}

static void test_syntax_error_names_file_line_column_and_expectation(void **state) {
    fixture *f = *state;
    write_class(f, "Broken",
                "Broken = (\n"
                "    run = (\n"
                "        ^ 1 +\n"
                "    )\n"
                ")\n");
    hy_vm *vm = new_vm(f, 0);
    int status = -7;
    assert_int_equal(hy_vm_run_main(vm, "Broken", 0, NULL, &status), HY_ESYNTAX);
    assert_int_equal(status, -7);
    const char *msg = hy_vm_last_error(vm);
    if (!strstr(msg, "Broken.som:4:5") || !strstr(msg, "expected"))
        print_error("syntax error message: %s\n", msg);
    /* The binary operator lacks its argument: the error is at the ')' of line 4, column 5. */
    assert_non_null(strstr(msg, "Broken.som:4:5"));
    assert_non_null(strstr(msg, "expected"));
    hy_vm_free(vm);
}

static void test_unhandled_error_exits_nonzero_with_backtrace(void **state) {
    fixture *f = *state;
    write_class(f, "Crash",
                "Crash = (\n"
                "    run = (\n"
                "        self helper.\n"
                "        'not reached' println\n"
                "    )\n"
                "    helper = (\n"
                "        ^ nil frobnicate\n"
                "    )\n"
                ")\n");
    int status = run_program(f, "Crash", 0);
    const char *err = buffer_text(&f->err);
    if (status == 0 || !strstr(err, "Crash>>helper")) print_error("stderr:\n%s\n", err);
    assert_int_not_equal(status, 0);
    assert_null(strstr(buffer_text(&f->out), "not reached"));
    assert_non_null(strstr(err, "frobnicate"));
    /* Innermost first: helper at line 7, then run at line 3. */
    const char *helper = strstr(err, "Crash>>helper");
    const char *run = strstr(err, "Crash>>run");
    assert_non_null(helper);
    assert_non_null(run);
    assert_true(helper < run);
    assert_non_null(strstr(err, "Crash.som:7"));
    assert_non_null(strstr(err, "Crash.som:3"));
}

static void test_heap_limit_raises_catchable_out_of_memory(void **state) {
    fixture *f = *state;
    write_class(f, "Hog",
                "Hog = (\n"
                "    run = (\n"
                "        | r |\n"
                "        r := [ | v |\n"
                "            v := Vector new.\n"
                "            [ true ] whileTrue: [ v append: (Array new: 100000) ].\n"
                "            1 ] on: OutOfMemory do: [ :e | 2 ].\n"
                "        r println.\n"
                "        \"The memory of the abandoned vector can be used again.\"\n"
                "        (Array new: 100000) length println.\n"
                "        system exit: 40 + r\n"
                "    )\n"
                ")\n");
    assert_int_equal(run_program(f, "Hog", 32u << 20), 42);
    assert_string_equal(buffer_text(&f->out), "2\n100000\n");
}

static void test_unhandled_out_of_memory_ends_the_program_not_the_process(void **state) {
    fixture *f = *state;
    write_class(f, "Hog2",
                "Hog2 = (\n"
                "    run = (\n"
                "        | v |\n"
                "        v := Vector new.\n"
                "        [ true ] whileTrue: [ v append: (Array new: 100000) ]\n"
                "    )\n"
                ")\n");
    int status = run_program(f, "Hog2", 32u << 20);
    assert_int_not_equal(status, 0);
    assert_non_null(strstr(buffer_text(&f->err), "Hog2>>run"));
}

static void test_full_gc_and_scavenges_are_counted(void **state) {
    fixture *f = *state;
    write_class(f, "Churn",
                "Churn = (\n"
                "    run = (\n"
                "        | keep |\n"
                "        1 to: 20000 do: [ :i | keep := Array new: 16 ].\n"
                "        system fullGC.\n"
                "        system fullGC.\n"
                "        system fullGC.\n"
                "        system exit: keep length\n"
                "    )\n"
                ")\n");
    hy_vm *vm = new_vm_eden(f, 0, 256u << 10);
    hy_gc_stats before, after;
    memset(&before, 0xab, sizeof before);
    assert_int_equal(hy_vm_gc_stats(vm, &before), HY_OK);
    int status = -1;
    assert_int_equal(hy_vm_run_main(vm, "Churn", 0, NULL, &status), HY_OK);
    assert_int_equal(status, 16);
    assert_int_equal(hy_vm_gc_stats(vm, &after), HY_OK);
    hy_vm_free(vm);

    assert_true(after.full_gcs >= before.full_gcs + 3);
    /* 20000 arrays of 16 slots: over 2.5 MB, ten times the 256 KiB eden. */
    assert_true(after.bytes_allocated >= before.bytes_allocated + 20000u * 16 * sizeof(void *));
    assert_true(after.scavenges > before.scavenges);
    assert_true(after.total_pause_ns >= after.max_pause_ns);
    assert_true(after.heap_in_use > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_init_gives_documented_defaults),
        cmocka_unit_test(test_vm_new_rejects_null_config_and_leaves_out_untouched),
        cmocka_unit_test_setup_teardown(test_vm_new_without_core_library_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_vms_are_created_and_freed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_exit_status_and_output_are_captured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program_that_returns_normally_exits_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_receives_class_name_then_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_class_is_enoent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error_names_file_line_column_and_expectation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unhandled_error_exits_nonzero_with_backtrace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_limit_raises_catchable_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unhandled_out_of_memory_ends_the_program_not_the_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_gc_and_scavenges_are_counted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
