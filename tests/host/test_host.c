/*
 * test_host.c -- the host (hydra.h) as an embedder sees it: this file includes only the public
 * header. Many VMs in one process, each computing a known result; VMs that fail (unhandled
 * error, heap limit, stack limit, killed inside foreign calls, stopped) end alone while the
 * others go on.
 *
 * Output of the VMs is captured through the host's sink, always prefixed with the VM's name,
 * so each check reads "[name] line".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hydra/hydra.h"
#include "../vmcore/test_buffer.h"

/* ---- Captured output ----------------------------------------------------------------------- */

typedef struct capture {
    pthread_mutex_t lock;   /* VMs of the host write from their own threads */
    buffer b;
} capture;

static void capture_write(void *ctx, int stream, const char *bytes, size_t len) {
    (void)stream;
    capture *c = ctx;
    pthread_mutex_lock(&c->lock);
    buffer_append(&c->b, bytes, len);
    pthread_mutex_unlock(&c->lock);
}

/* Whether the output holds the line `line` (a whole line). */
static bool has_line(capture *c, const char *line) {
    pthread_mutex_lock(&c->lock);
    bool found = false;
    size_t n = strlen(line);
    const char *text = buffer_text(&c->b);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') { found = true; break; }
    }
    pthread_mutex_unlock(&c->lock);
    return found;
}

static bool has_text(capture *c, const char *text) {
    pthread_mutex_lock(&c->lock);
    bool found = strstr(buffer_text(&c->b), text) != NULL;
    pthread_mutex_unlock(&c->lock);
    return found;
}

/* Wait (up to a minute: slow configurations are slow) until the output holds line. */
static bool wait_line(capture *c, const char *line) {
    for (int i = 0; i < 6000; i++) {
        if (has_line(c, line)) return true;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    return false;
}

typedef struct fixture {
    capture out;
    hy_host *host;
    char classpath[1024];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->out.lock, NULL);
    const char *core = getenv("HYDRA_CORE");
    snprintf(f->classpath, sizeof f->classpath, "%s:%s/tests/host", core ? core : "images/core", HYDRA_SOURCE_DIR);
    hy_host_config hc;
    hy_host_config_init(&hc);
    hc.prefix = HY_PREFIX_ALWAYS;
    hc.colour = 0;
    hc.write = capture_write;
    hc.write_ctx = &f->out;
    assert_int_equal(hy_host_new(&hc, &f->host), HY_OK);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    hy_host_free(f->host);
    free(f->out.b.data);
    pthread_mutex_destroy(&f->out.lock);
    free(f);
    return 0;
}

/* Spawn and start a VM running class cls with arguments. */
static unsigned start_vm(fixture *f, const char *name, const char *cls, int argc, const char *const *argv,
                         size_t heap_limit, size_t stack_slots) {
    hy_spawn_config sc;
    hy_spawn_config_init(&sc);
    sc.name = name;
    sc.main_class = cls;
    sc.classpath = f->classpath;
    sc.argc = argc;
    sc.argv = argv;
    sc.heap_limit = heap_limit;
    sc.stack_slots = stack_slots;
    unsigned id = 0;
    char err[512];
    hy_err e = hy_host_spawn(f->host, &sc, &id, err, sizeof err);
    if (e != HY_OK) fail_msg("spawn %s: %s", name, err);
    assert_int_equal(hy_host_start(f->host, id), HY_OK);
    return id;
}

static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

/* A VM computing fib(n) + k; returns its id. */
static unsigned start_fib(fixture *f, const char *name, int n, int k) {
    char a[16], b[16];
    snprintf(a, sizeof a, "%d", n);
    snprintf(b, sizeof b, "%d", k);
    const char *argv[] = { a, b };
    return start_vm(f, name, "HostFib", 2, argv, 0, 0);
}

static void assert_fib_done(fixture *f, unsigned id, const char *name, int n, int k) {
    int status = -1;
    assert_int_equal(hy_host_join(f->host, id, &status), HY_OK);
    assert_int_equal(status, 0);
    char line[128];
    snprintf(line, sizeof line, "[%s] result %ld", name, fib(n) + k);
    if (!has_line(&f->out, line)) fail_msg("missing line '%s' in:\n%s", line, buffer_text(&f->out.b));
}

/* ---- Tests --------------------------------------------------------------------------------- */

static void test_two_vms_embedded(void **state) {
    fixture *f = *state;
    unsigned a = start_fib(f, "a", 20, 1), b = start_fib(f, "b", 21, 2);
    assert_int_not_equal(a, b);
    assert_fib_done(f, a, "a", 20, 1);
    assert_fib_done(f, b, "b", 21, 2);
    hy_vm_info info[4];
    size_t count = 0;
    assert_int_equal(hy_host_list(f->host, info, 4, &count), HY_OK);
    assert_int_equal(count, 2);
    assert_string_equal(info[0].name, "a");
    assert_string_equal(info[1].name, "b");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(info[i].state, HY_VM_EXITED);
        assert_int_equal(info[i].exit_status, 0);
        assert_true(info[i].gc.bytes_allocated > 0);
    }
}

static void test_sixteen_vms_from_one_image(void **state) {
    fixture *f = *state;
    const char *image = getenv("HYDRA_CORE_IMAGE");
    if (!image) fail_msg("HYDRA_CORE_IMAGE is not set (ctest sets it to build/images/core.image)");
    unsigned ids[16];
    char names[16][16], n[16][8], k[16][8];
    for (int i = 0; i < 16; i++) {
        snprintf(names[i], sizeof names[i], "v%d", i);
        snprintf(n[i], sizeof n[i], "%d", 15 + i % 6);
        snprintf(k[i], sizeof k[i], "%d", i);
        /* The core image has no entry: its first argument names the class to run. */
        const char *argv[] = { "HostFib", n[i], k[i] };
        hy_spawn_config sc;
        hy_spawn_config_init(&sc);
        sc.name = names[i];
        sc.image = image;
        sc.classpath = f->classpath;   /* for HostFib, which the image does not hold */
        sc.argc = 3;
        sc.argv = argv;
        char err[512];
        if (hy_host_spawn(f->host, &sc, &ids[i], err, sizeof err) != HY_OK) fail_msg("spawn: %s", err);
    }
    for (int i = 0; i < 16; i++) assert_int_equal(hy_host_start(f->host, ids[i]), HY_OK);
    for (int i = 0; i < 16; i++) assert_fib_done(f, ids[i], names[i], 15 + i % 6, i);
    int worst = -1;
    assert_int_equal(hy_host_join_all(f->host, &worst), HY_OK);
    assert_int_equal(worst, 0);
}

static void test_unhandled_error_ends_alone(void **state) {
    fixture *f = *state;
    unsigned bad = start_vm(f, "bad", "HostCrash", 0, NULL, 0, 0);
    unsigned good = start_fib(f, "good", 22, 0);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, bad, &status), HY_OK);
    assert_int_equal(status, 1);
    assert_true(has_line(&f->out, "[bad] about to fail"));
    assert_true(has_text(&f->out, "[bad] ERROR:"));
    assert_fib_done(f, good, "good", 22, 0);
    hy_vm_info info;
    assert_int_equal(hy_host_info(f->host, bad, &info), HY_OK);
    assert_int_equal(info.state, HY_VM_FAILED);
    int worst = 0;
    hy_host_join_all(f->host, &worst);
    assert_int_equal(worst, 1);
}

/* VM `name` running `cls` under a heap or stack limit fails with status 1 and an error, while
 * a Fibonacci VM next to it finishes. */
static void assert_limit_ends_alone(fixture *f, const char *name, const char *cls, size_t heap_limit,
                                    size_t stack_slots, int tag) {
    unsigned v = start_vm(f, name, cls, 0, NULL, heap_limit, stack_slots);
    unsigned good = start_fib(f, "good", 22, tag);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, v, &status), HY_OK);
    assert_int_equal(status, 1);
    char error[64];
    snprintf(error, sizeof error, "[%s] ERROR", name);
    assert_true(has_text(&f->out, error));
    assert_fib_done(f, good, "good", 22, tag);
}

static void test_heap_limit_ends_alone(void **state) {
    assert_limit_ends_alone(*state, "hog", "HostHog", 24u << 20, 0, 5);
}

static void test_stack_limit_ends_alone(void **state) {
    assert_limit_ends_alone(*state, "deep", "HostDeep", 0, 262144, 7);
}

static void test_kill_inside_callouts(void **state) {
    fixture *f = *state;
    const char *argv[] = { "4" };
    unsigned s = start_vm(f, "sleeper", "HostSleeper", 1, argv, 0, 0);
    assert_true(wait_line(&f->out, "[sleeper] sleeping"));
    unsigned good = start_fib(f, "good", 22, 9);
    hy_vm_info info;
    assert_int_equal(hy_host_info(f->host, s, &info), HY_OK);
    assert_int_equal(info.state, HY_VM_RUNNING);
    assert_true(info.threads.callouts >= 4);
    assert_int_equal(hy_host_kill(f->host, s), HY_OK);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, s, &status), HY_OK);
    assert_int_equal(status, HY_EXIT_KILLED);
    assert_int_equal(hy_host_info(f->host, s, &info), HY_OK);
    assert_int_equal(info.state, HY_VM_KILLED);
    assert_fib_done(f, good, "good", 22, 9);
    /* Its threads come back from usleep and end; teardown's hy_host_free waits for them and
     * frees the VM (LeakSanitizer checks that nothing stays behind). */
}

static void test_stop_runs_ensure_blocks(void **state) {
    fixture *f = *state;
    unsigned w = start_vm(f, "waiter", "HostWaiter", 0, NULL, 0, 0);
    assert_true(wait_line(&f->out, "[waiter] waiting"));
    assert_int_equal(hy_host_stop(f->host, w), HY_OK);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, w, &status), HY_OK);
    assert_int_equal(status, HY_EXIT_STOPPED);
    assert_true(has_line(&f->out, "[waiter] ensure ran"));
}

static void test_kill_skips_ensure_blocks(void **state) {
    fixture *f = *state;
    unsigned w = start_vm(f, "waiter", "HostWaiter", 0, NULL, 0, 0);
    assert_true(wait_line(&f->out, "[waiter] waiting"));
    assert_int_equal(hy_host_kill(f->host, w), HY_OK);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, w, &status), HY_OK);
    assert_int_equal(status, HY_EXIT_KILLED);
    /* The VM's own thread is gone once hy_host_free returns: by then nothing else was printed. */
    hy_host_free(f->host);
    f->host = NULL;
    assert_false(has_text(&f->out, "ensure ran"));
}

static void test_bad_images_are_refused(void **state) {
    fixture *f = *state;
    char path[256];
    snprintf(path, sizeof path, "%s/tests/host/HostFib.som", HYDRA_SOURCE_DIR);   /* not an image */
    hy_spawn_config sc;
    hy_spawn_config_init(&sc);
    sc.image = path;
    unsigned id = 0;
    char err[512] = "";
    assert_int_not_equal(hy_host_spawn(f->host, &sc, &id, err, sizeof err), HY_OK);
    if (!strstr(err, "HostFib.som")) fail_msg("the message should name the file: %s", err);
    sc.image = "no/such/file.image";
    assert_int_not_equal(hy_host_spawn(f->host, &sc, &id, err, sizeof err), HY_OK);
    if (!strstr(err, "no/such/file.image")) fail_msg("the message should name the file: %s", err);
    /* The host goes on: a good VM still runs. */
    unsigned good = start_fib(f, "good", 18, 3);
    assert_fib_done(f, good, "good", 18, 3);
}

static void test_bad_targets_are_reported(void **state) {
    fixture *f = *state;
    hy_spawn_config sc;
    hy_spawn_config_init(&sc);
    sc.main_class = "NoSuchClassAnywhere";
    sc.classpath = f->classpath;
    unsigned id = 0;
    char err[512] = "";
    assert_int_equal(hy_host_spawn(f->host, &sc, &id, err, sizeof err), HY_OK);
    assert_int_equal(hy_host_start(f->host, id), HY_OK);
    int status = 0;
    assert_int_equal(hy_host_join(f->host, id, &status), HY_OK);
    assert_int_equal(status, 1);
    assert_true(has_text(&f->out, "NoSuchClassAnywhere not found"));
    /* Nothing to spawn from. */
    hy_spawn_config_init(&sc);
    assert_int_equal(hy_host_spawn(f->host, &sc, &id, err, sizeof err), HY_EINVAL);
    assert_true(strlen(err) > 0);
    /* Unknown ids. */
    assert_int_equal(hy_host_join(f->host, 999, &status), HY_EINVAL);
    assert_int_equal(hy_host_kill(f->host, 999), HY_EINVAL);
    assert_int_equal(hy_host_start(f->host, id), HY_EINVAL);   /* started already */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_vms_embedded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sixteen_vms_from_one_image, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unhandled_error_ends_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heap_limit_ends_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stack_limit_ends_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_inside_callouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_runs_ensure_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_skips_ensure_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_targets_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_images_are_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
