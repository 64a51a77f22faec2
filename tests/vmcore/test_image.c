/*
 * test_image.c -- snapshot images (hy_vm.h, "Snapshot images"): saving a VM's heap and making
 * VMs from it without sources, running its entry class, many VMs from one image on many
 * threads at once, foreign handles and processes reset by a save, and refusal of corrupt,
 * truncated, foreign and wrong-version files with a message and without a crash.
 *
 * Each test writes its class files into a fresh temporary folder that follows the core
 * library on the class path (HYDRA_CORE, else images/core of the source tree); images are
 * written into that folder too.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_fixture.h"

#include "hydra/hy_vm.h"
#include "image.h"
#include "object.h"

/* ---- Fixture ---------------------------------------------------------------------------------- */

static int setup(void **state) { return fixture_setup(state, "image"); }
static int teardown(void **state) { return fixture_teardown(state); }

static void write_file(const char *path, const void *bytes, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void remove_class(fixture *f, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.som", f->dir, name);
    assert_int_equal(unlink(path), 0);
}

static uint8_t *read_whole(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return b;
}

static hy_config config(fixture *f, const char *classpath) {
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = classpath;
    cfg.write = capture;
    cfg.write_ctx = &f->out;   /* out and err are adjacent: capture() takes them as a pair */
    return cfg;
}

/* A VM on the fixture's class path that has loaded every class of it, saved to f->image. */
static void save_image(fixture *f, const char *entry) {
    hy_config cfg = config(f, f->classpath);
    hy_vm *vm;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    hy_err err = hy_vm_load_all_classes(vm);
    if (err != HY_OK) print_error("load: %s\n", hy_vm_last_error(vm));
    assert_int_equal(err, HY_OK);
    err = hy_vm_save_image(vm, entry, f->image);
    if (err != HY_OK) print_error("save: %s\n", hy_vm_last_error(vm));
    assert_int_equal(err, HY_OK);
    hy_vm_free(vm);
}

static hy_image *open_image(const char *path) {
    hy_image *img = NULL;
    char why[512];
    hy_err err = hy_image_open(path, &img, why, sizeof why);
    if (err != HY_OK) print_error("open: %s\n", why);
    assert_int_equal(err, HY_OK);
    return img;
}

/* Run the image's entry (args as given) in a new VM with the class path cp; returns the exit
 * status, output in f->out. */
static int run_entry(fixture *f, const hy_image *img, const char *cp, int argc, const char *const *argv) {
    hy_config cfg = config(f, cp);
    hy_vm *vm;
    assert_int_equal(hy_vm_new_from_image(&cfg, img, &vm), HY_OK);
    int status = -1;
    hy_err err = hy_vm_run_entry(vm, argc, argv, &status);
    if (err != HY_OK) print_error("run: %s: %s\n", hy_strerror(err), hy_vm_last_error(vm));
    assert_int_equal(err, HY_OK);
    hy_vm_free(vm);
    return status;
}

static const char shapes_source[] =
    "ImgShape = Object (\n"
    "    | sides name |\n"
    "    setSides: n name: s = ( sides := n. name := s )\n"
    "    describe = ( ^ name + ' has ' + sides asString + ' sides' )\n"
    "    ----\n"
    "    | made |\n"
    "    sides: n name: s = ( made := (made ifNil: [ 0 ]) + 1. ^ self new setSides: n name: s )\n"
    "    made = ( ^ made )\n"
    ")\n";

static const char main_source[] =
    "ImgMain = (\n"
    "    fib: n = ( n < 2 ifTrue: [ ^ n ]. ^ (self fib: n - 1) + (self fib: n - 2) )\n"
    "    run: args = (\n"
    "        | d n |\n"
    "        (ImgShape sides: 3 name: 'triangle') describe println.\n"
    "        d := Dictionary new.\n"
    "        d at: #a put: 1. d at: #b put: 2.\n"
    "        ((d at: #a) + (d at: #b)) println.\n"
    "        n := args length > 1 ifTrue: [ (args at: 2) asInteger ] ifFalse: [ 20 ].\n"
    "        (self fib: n) println.\n"
    "        (2 raisedTo: 100) println.\n"
    "        [ nil foo ] on: MessageNotUnderstood do: [ :e | 'dnu caught' println ].\n"
    "        ImgShape made println.\n"
    "        system exit: 3\n"
    "    )\n"
    ")\n";

/* The two classes above written to the fixture's folder and saved with ImgMain as entry. */
static void save_shapes_image(fixture *f) {
    write_class(f, "ImgShape", shapes_source);
    write_class(f, "ImgMain", main_source);
    save_image(f, "ImgMain");
}

static const char main_expected[] =
    "triangle has 3 sides\n3\n6765\n1267650600228229401496703205376\ndnu caught\n1\n";

/* ---- Saving and running ------------------------------------------------------------------------ */

static void test_saved_image_runs_its_entry_without_sources(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    /* The sources are gone and the VM gets no class path: everything comes from the image. */
    remove_class(f, "ImgShape");
    remove_class(f, "ImgMain");
    hy_image *img = open_image(f->image);
    assert_string_equal(hy_image_entry(img), "ImgMain");
    assert_true(hy_image_heap_bytes(img) > 0);
    assert_int_equal(run_entry(f, img, NULL, 0, NULL), 3);
    assert_string_equal(buffer_text(&f->out), main_expected);
    /* Arguments reach run: after the class name. */
    buffer_clear(&f->out);
    const char *argv[] = { "10" };
    assert_int_equal(run_entry(f, img, NULL, 1, argv), 3);
    assert_non_null(strstr(buffer_text(&f->out), "\n55\n"));
    hy_image_close(img);
}

static void test_image_without_entry_runs_the_class_its_first_argument_names(void **state) {
    fixture *f = *state;
    char core_only[4200];
    snprintf(core_only, sizeof core_only, "%s", core_dir());
    hy_config cfg = config(f, core_only);
    hy_vm *vm;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    assert_int_equal(hy_vm_load_all_classes(vm), HY_OK);
    assert_int_equal(hy_vm_save_image(vm, NULL, f->image), HY_OK);
    hy_vm_free(vm);

    write_class(f, "ImgShape", shapes_source);
    write_class(f, "ImgMain", main_source);
    hy_image *img = open_image(f->image);
    assert_string_equal(hy_image_entry(img), "");
    /* ImgMain is not in the image: it loads from the class path. */
    const char *argv[] = { "ImgMain", "12" };
    assert_int_equal(run_entry(f, img, f->dir, 2, argv), 3);
    assert_non_null(strstr(buffer_text(&f->out), "\n144\n"));

    cfg = config(f, f->dir);
    assert_int_equal(hy_vm_new_from_image(&cfg, img, &vm), HY_OK);
    int status = -1;
    assert_int_equal(hy_vm_run_entry(vm, 0, NULL, &status), HY_EINVAL);
    assert_non_null(strstr(hy_vm_last_error(vm), "no entry"));
    const char *missing[] = { "NoSuchClass" };
    assert_int_equal(hy_vm_run_entry(vm, 1, missing, &status), HY_ENOENT);
    hy_vm_free(vm);
    hy_image_close(img);
}

static void test_image_saved_with_a_class_path_missing_at_load_still_runs(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    hy_image *img = open_image(f->image);
    /* The folder the classes came from is not on the class path (and does not exist). */
    assert_int_equal(run_entry(f, img, "/nonexistent-hydra-folder:/also-missing", 0, NULL), 3);
    assert_string_equal(buffer_text(&f->out), main_expected);
    hy_image_close(img);
}

static void test_save_refuses_unknown_entry_and_unwritable_path(void **state) {
    fixture *f = *state;
    hy_config cfg = config(f, f->classpath);
    hy_vm *vm;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    assert_int_equal(hy_vm_save_image(vm, "NoSuchClass", f->image), HY_ENOENT);
    assert_non_null(strstr(hy_vm_last_error(vm), "NoSuchClass"));
    assert_int_equal(hy_vm_save_image(vm, "../evil", f->image), HY_ENOENT);
    assert_int_equal(hy_vm_save_image(vm, NULL, "/nonexistent-hydra-folder/x.image"), HY_EIMAGE);
    assert_non_null(strstr(hy_vm_last_error(vm), "/nonexistent-hydra-folder/x.image"));
    assert_int_equal(access(f->image, F_OK), -1);
    hy_vm_free(vm);
}

static void test_classes_state_survives_and_a_vm_saved_after_a_run_resets_processes(void **state) {
    fixture *f = *state;
    /* The program fills class-side state, forks a process that ends, and keeps a Process and a
     * foreign function in class-side fields; then the VM is saved. */
    write_class(f, "ImgKeep",
                "ImgKeep = (\n"
                "    ----\n"
                "    | counter proc fn lib sem |\n"
                "    fill = (\n"
                "        | s |\n"
                "        counter := 41.\n"
                "        s := Semaphore new.\n"
                "        proc := [ counter := counter + 1. s signal ] fork.\n"
                "        s wait.\n"
                "        lib := ExternalLibrary default.\n"
                "        fn := lib lookup: 'strlen' returns: #size_t arguments: #( #string ).\n"
                "        (fn callWith: 'abcd') println.\n"
                "        sem := Semaphore new.\n"
                "        [ sem wait ] fork.\n"
                "        Processor yield )\n"
                "    sem = ( ^ sem )\n"
                "    counter = ( ^ counter )\n"
                "    proc = ( ^ proc )\n"
                "    fn = ( ^ fn )\n"
                "    lib = ( ^ lib )\n"
                ")\n");
    write_class(f, "ImgFill", "ImgFill = ( run = ( ImgKeep fill ) )\n");
    write_class(f, "ImgUse",
                "ImgUse = (\n"
                "    run = (\n"
                "        ImgKeep counter println.\n"
                "        ImgKeep proc isTerminated println.\n"
                "        ([ ImgKeep fn callWith: 'abc' ] on: Error do: [ :e | e return: e messageText ]) println.\n"
                "        ([ ImgKeep lib addressOf: 'strlen' ] on: Error do: [ :e | e return: e messageText ]) println.\n"
                "        ([ (ExternalLibrary default lookup: 'strlen' returns: #size_t arguments: #( #string ))\n"
                "             callWith: 'hello' ] on: Error do: [ :e | e return: e messageText ]) println.\n"
                "        ImgKeep sem signal.\n"
                "        ImgKeep sem excessSignals println )\n"
                ")\n");
    hy_config cfg = config(f, f->classpath);
    hy_vm *vm;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    int status = -1;
    assert_int_equal(hy_vm_run_main(vm, "ImgFill", 0, NULL, &status), HY_OK);
    assert_int_equal(status, 0);
    assert_string_equal(buffer_text(&f->out), "4\n");
    assert_int_equal(hy_vm_load_all_classes(vm), HY_OK);
    assert_int_equal(hy_vm_save_image(vm, "ImgUse", f->image), HY_OK);
    hy_vm_free(vm);

    buffer_clear(&f->out);
    hy_image *img = open_image(f->image);
    assert_int_equal(run_entry(f, img, NULL, 0, NULL), 0);
    /* The state is there; the old process is not a process of the new VM; the stale foreign
     * handles fail with an error instead of calling into the old process; new ones work; the
     * semaphore the old process waited on has no waiter, so a signal is counted. */
    assert_string_equal(buffer_text(&f->out),
                        "42\ntrue\nstrlen was not prepared: make functions with ExternalLibrary>>lookup:returns:arguments:\n"
                        "the library is not open\n5\n1\n");
    hy_image_close(img);
}

static void test_a_vm_made_from_an_image_saves_an_equivalent_image(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    hy_image *img = open_image(f->image);
    hy_config cfg = config(f, NULL);
    hy_vm *vm;
    assert_int_equal(hy_vm_new_from_image(&cfg, img, &vm), HY_OK);
    hy_image_close(img);
    char second[160];
    snprintf(second, sizeof second, "%s/second.image", f->dir);
    assert_int_equal(hy_vm_save_image(vm, "ImgMain", second), HY_OK);
    hy_vm_free(vm);
    img = open_image(second);
    assert_int_equal(run_entry(f, img, NULL, 0, NULL), 3);
    assert_string_equal(buffer_text(&f->out), main_expected);
    hy_image_close(img);
}

/* ---- Many VMs from one image ------------------------------------------------------------------- */

#define THREADS 4
#define VMS_PER_THREAD 4

typedef struct worker {
    const hy_image *img;
    int index;
    int ok;
} worker;

static void *spawn_and_run(void *arg) {
    worker *w = arg;
    for (int i = 0; i < VMS_PER_THREAD; i++) {
        buffer pair[2];
        memset(pair, 0, sizeof pair);
        hy_config cfg;
        hy_config_init(&cfg);
        cfg.write = capture;
        cfg.write_ctx = pair;
        hy_vm *vm;
        if (hy_vm_new_from_image(&cfg, w->img, &vm) != HY_OK) return NULL;
        int n = 10 + w->index + i, status = -1;
        char arg_n[16];
        snprintf(arg_n, sizeof arg_n, "%d", n);
        const char *argv[] = { arg_n };
        hy_err err = hy_vm_run_entry(vm, 1, argv, &status);
        hy_vm_free(vm);
        /* fib(n) for n = 10.. */
        static const char *const fibs[] = { "55", "89", "144", "233", "377", "610", "987", "1597" };
        char want[64];
        snprintf(want, sizeof want, "\n3\n%s\n", fibs[n - 10]);
        if (err == HY_OK && status == 3 && strstr(buffer_text(&pair[0]), want)) w->ok++;
        free(pair[0].data);
        free(pair[1].data);
    }
    return NULL;
}

static void test_many_vms_from_one_image_on_several_threads_at_once(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    hy_image *img = open_image(f->image);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){ .img = img, .index = i };
        assert_int_equal(pthread_create(&t[i], NULL, spawn_and_run, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].ok, VMS_PER_THREAD);
    }
    hy_image_close(img);
}

/* ---- Refusing bad files ------------------------------------------------------------------------ */

/* Open bytes as a file named dir/x.image; the error message, or NULL when it opened. */
static const char *open_as_file(fixture *f, const void *bytes, size_t len, hy_err *err, char *why, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "%s/x.image", f->dir);
    write_file(path, bytes, len);
    hy_image *img = (hy_image *)(uintptr_t)0x1234;
    *err = hy_image_open(path, &img, why, n);
    if (*err == HY_OK) {
        hy_image_close(img);
        return NULL;
    }
    assert_ptr_equal(img, (hy_image *)(uintptr_t)0x1234);   /* untouched on failure */
    assert_non_null(strstr(why, path));
    return why;
}

static void expect_refused(fixture *f, const void *bytes, size_t len, const char *message) {
    char why[512];
    hy_err err;
    const char *msg = open_as_file(f, bytes, len, &err, why, sizeof why);
    if (!msg || !strstr(msg, message)) print_error("expected '%s', got '%s'\n", message, msg ? msg : "(opened)");
    assert_non_null(msg);
    assert_int_equal(err, HY_EIMAGE);
    assert_non_null(strstr(msg, message));
}

static void fix_checksum(uint8_t *b, size_t len) {
    uint64_t sum = hyi_image_checksum(b, len);
    memcpy(b + offsetof(hyi_image_header, checksum), &sum, 8);
}

static void test_truncated_flipped_foreign_and_wrong_version_files_are_refused(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    size_t len;
    uint8_t *good = read_whole(f->image, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);
    char msg[128];

    expect_refused(f, good, 0, "empty file, not a Hydra image");
    expect_refused(f, good, 5, "not a Hydra image");
    expect_refused(f, good, 40, "truncated at byte 40");
    size_t cuts[] = { sizeof(hyi_image_header), len / 3, len / 2, len - 8, len - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(msg, sizeof msg, "truncated at byte %zu of %zu", cuts[i], len);
        expect_refused(f, good, cuts[i], msg);
    }

    memcpy(b, good, len);
    b[len / 2] ^= 0x10;
    expect_refused(f, b, len, "checksum mismatch");

    memcpy(b, good, len);
    memcpy(b, "HYDRAIMX", 8);
    expect_refused(f, b, len, "not a Hydra image");

    static const char text[] = "Hello = ( run = ( 'this is a class file, not an image' println ) )\n";
    expect_refused(f, text, sizeof text - 1, "not a Hydra image");

    hyi_image_header hd;
    memcpy(b, good, len);
    memcpy(&hd, b, sizeof hd);
    hd.version = 2;
    memcpy(b, &hd, sizeof hd);
    fix_checksum(b, len);
    expect_refused(f, b, len, "format version 2, this hydra reads version 1");

    memcpy(b, good, len);
    memcpy(&hd, b, sizeof hd);
    hd.word_bytes = 4;
    memcpy(b, &hd, sizeof hd);
    fix_checksum(b, len);
    expect_refused(f, b, len, "built for 32-bit words");

    memcpy(b, good, len);
    memcpy(&hd, b, sizeof hd);
    hd.layout ^= 1;
    memcpy(b, &hd, sizeof hd);
    fix_checksum(b, len);
    expect_refused(f, b, len, "another object layout");

    /* Structure: the class word of the 100th object a SmallInteger, then a reference into the
     * middle of an object. */
    memcpy(&hd, good, sizeof hd);
    size_t obj = len - (size_t)hd.payload_bytes;
    for (int i = 0; i < 100; i++) {
        hyi_obj *o = (hyi_obj *)(good + obj);
        obj += sizeof(hyi_obj) + hyi_payload_bytes((hyi_format)o->format, o->size);
    }
    memcpy(b, good, len);
    uint64_t w = 3;
    memcpy(b + obj, &w, 8);
    fix_checksum(b, len);
    expect_refused(f, b, len, "its class is not a class");
    memcpy(b, good, len);
    w = 8 + 8;
    memcpy(b + obj, &w, 8);
    fix_checksum(b, len);
    expect_refused(f, b, len, "its class holds a bad reference 0x10");

    /* Trailing data. */
    uint8_t *longer = malloc(len + 16);
    assert_non_null(longer);
    memcpy(longer, good, len);
    memset(longer + len, 0, 16);
    expect_refused(f, longer, len + 16, "16 bytes of trailing data");
    free(longer);

    /* The path names a missing file or a folder. */
    hy_image *img;
    char why[256];
    assert_int_equal(hy_image_open("/nonexistent-hydra-folder/y.image", &img, why, sizeof why), HY_ENOENT);
    assert_non_null(strstr(why, "/nonexistent-hydra-folder/y.image"));
    assert_int_equal(hy_image_open(f->dir, &img, why, sizeof why), HY_ENOENT);
    /* Bytes in memory are named "image". */
    assert_int_equal(hy_image_open_bytes(text, sizeof text - 1, &img, why, sizeof why), HY_EIMAGE);
    assert_string_equal(why, "image: not a Hydra image");
    free(b);
    free(good);
}

/* Every 199th byte of the image flipped, the checksum fixed, so that the structural checks see
 * it: each is refused or, when the change is harmless (inside a string, say), makes a VM that
 * can be freed. None may crash (the sanitizer builds watch). */
static void test_structural_damage_anywhere_is_refused_or_harmless(void **state) {
    fixture *f = *state;
    save_shapes_image(f);
    size_t len;
    uint8_t *good = read_whole(f->image, &len);
    uint8_t *b = malloc(len);
    assert_non_null(b);
    size_t refused = 0, opened = 0;
    for (size_t at = 0; at < len; at += 199) {
        memcpy(b, good, len);
        b[at] ^= (uint8_t)(1u << (at % 8));
        fix_checksum(b, len);
        hy_image *img = NULL;
        char why[256];
        hy_err err = hy_image_open_bytes(b, len, &img, why, sizeof why);
        if (err != HY_OK) {
            assert_int_equal(err, HY_EIMAGE);
            assert_true(strncmp(why, "image: ", 7) == 0);
            refused++;
            continue;
        }
        hy_config cfg;
        hy_config_init(&cfg);
        hy_vm *vm;
        assert_int_equal(hy_vm_new_from_image(&cfg, img, &vm), HY_OK);
        hy_vm_free(vm);
        hy_image_close(img);
        opened++;
    }
    /* Most of an image is references and headers: most damage must be seen. */
    assert_true(refused > opened);
    free(b);
    free(good);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_saved_image_runs_its_entry_without_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_without_entry_runs_the_class_its_first_argument_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_image_saved_with_a_class_path_missing_at_load_still_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_refuses_unknown_entry_and_unwritable_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_classes_state_survives_and_a_vm_saved_after_a_run_resets_processes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_vm_made_from_an_image_saves_an_equivalent_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_vms_from_one_image_on_several_threads_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_flipped_foreign_and_wrong_version_files_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_structural_damage_anywhere_is_refused_or_harmless, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
