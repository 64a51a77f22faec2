/*
 * test_trace.c -- hy_trace through the public API: bad arguments are refused, an empty trace is
 * an empty event list, two VMs running at once on two threads record into one trace (under
 * ThreadSanitizer this also checks that recording is thread-safe), and names are escaped.
 * tests/trace/check_trace.py checks the spans of a threaded scenario in detail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "hydra/hy_vm.h"

#ifndef HYDRA_SOURCE_DIR
#define HYDRA_SOURCE_DIR "."
#endif

static void discard(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx;
    if (stream == 2) fwrite(bytes, 1, len, stderr);
}

/* The whole file at path, NUL-terminated (caller frees). */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void temp_path(char *buf, size_t n, const char *what) {
    snprintf(buf, n, "/tmp/hydra-test-trace-%s-%ld.json", what, (long)getpid());
}

static void test_bad_arguments_are_refused(void **state) {
    (void)state;
    assert_int_equal(hy_trace_new(NULL), HY_EINVAL);
    hy_trace *t = NULL;
    assert_int_equal(hy_trace_new(&t), HY_OK);
    assert_non_null(t);
    assert_int_equal(hy_trace_write_json(NULL, "/tmp/x.json"), HY_EINVAL);
    assert_int_equal(hy_trace_write_json(t, NULL), HY_EINVAL);
    assert_int_equal(hy_trace_write_json(t, "/nonexistent-folder-of-hydra/trace.json"), HY_ENOENT);
    hy_trace_free(t);
    hy_trace_free(NULL);
}

static void test_an_empty_trace_has_no_events(void **state) {
    (void)state;
    hy_trace *t;
    assert_int_equal(hy_trace_new(&t), HY_OK);
    char path[128];
    temp_path(path, sizeof path, "empty");
    assert_int_equal(hy_trace_write_json(t, path), HY_OK);
    char *s = slurp(path);
    assert_non_null(strstr(s, "\"traceEvents\":[\n]}"));
    assert_non_null(strstr(s, "\"dropped_events\":0"));
    free(s);
    unlink(path);
    hy_trace_free(t);
}

typedef struct job {
    const char *classpath;
    const char *name;
    unsigned id;
    hy_trace *trace;
    pthread_barrier_t *start;
    hy_err new_err, run_err;
    int status;
} job;

static const char *core_dir(void) {
    const char *core = getenv("HYDRA_CORE");
    return core && *core ? core : HYDRA_SOURCE_DIR "/images/core";
}

static void *run_job(void *arg) {
    job *j = arg;
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = j->classpath;
    cfg.name = j->name;
    cfg.id = j->id;
    cfg.trace = j->trace;
    cfg.write = discard;
    cfg.eden_size = 256u << 10;   /* small: both VMs collect */
    hy_vm *vm = NULL;
    j->new_err = hy_vm_new(&cfg, &vm);
    pthread_barrier_wait(j->start);
    if (j->new_err != HY_OK) return NULL;
    j->run_err = hy_vm_run_main(vm, "TraceChurn", 0, NULL, &j->status);
    hy_vm_free(vm);
    return NULL;
}

/* Lines of the file (one event a line) for pid that contain every one of the needles. */
static int count_lines(const char *s, unsigned pid, const char *a, const char *b) {
    char key[32];
    snprintf(key, sizeof key, "\"pid\":%u,", pid);
    int n = 0;
    for (const char *line = s; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        if (len < sizeof buf) {
            memcpy(buf, line, len);
            buf[len] = 0;
            if (strstr(buf, key) && strstr(buf, a) && (!b || strstr(buf, b))) n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

static void test_two_vms_record_into_one_trace_at_once(void **state) {
    (void)state;
    char dir[] = "/tmp/hydra-test-trace-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/TraceChurn.som", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("TraceChurn = (\n"
          "    run = ( | junk done |\n"
          "        done := Semaphore new.\n"
          "        [ 1 to: 3000 do: [ :i | junk := Array new: 40 ]. done signal ] fork.\n"
          "        1 to: 3000 do: [ :i | junk := Array new: 40 ].\n"
          "        done wait.\n"
          "        system exit: 7 )\n"
          ")\n", f);
    assert_int_equal(fclose(f), 0);
    char classpath[4096];
    snprintf(classpath, sizeof classpath, "%s:%s", core_dir(), dir);

    hy_trace *t;
    assert_int_equal(hy_trace_new(&t), HY_OK);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    job jobs[2] = { { .classpath = classpath, .name = "alpha", .id = 1, .trace = t, .start = &start, .status = -1 },
                    { .classpath = classpath, .name = "beta", .id = 2, .trace = t, .start = &start, .status = -1 } };
    pthread_t th[2];
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(jobs[i].new_err, HY_OK);
        assert_int_equal(jobs[i].run_err, HY_OK);
        assert_int_equal(jobs[i].status, 7);
    }

    char out[256];
    snprintf(out, sizeof out, "%s/trace.json", dir);
    assert_int_equal(hy_trace_write_json(t, out), HY_OK);
    hy_trace_free(t);
    char *s = slurp(out);
    assert_non_null(strstr(s, "\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"alpha\"}"));
    assert_non_null(strstr(s, "\"name\":\"process_name\",\"ph\":\"M\",\"pid\":2,\"args\":{\"name\":\"beta\"}"));
    for (unsigned pid = 1; pid <= 2; pid++) {
        int begins = count_lines(s, pid, "\"ph\":\"B\"", "\"cat\":\"owner\"");
        int ends = count_lines(s, pid, "\"ph\":\"E\"", "\"cat\":\"owner\"");
        assert_true(begins >= 2);   /* creation, the run, the teardown */
        assert_int_equal(begins, ends);
        assert_true(count_lines(s, pid, "\"cat\":\"gc\"", "\"name\":\"scavenge\"") >= 1);
        assert_true(count_lines(s, pid, "\"cat\":\"process\"", "\"ph\":\"B\"") >= 2);
        assert_int_equal(count_lines(s, pid, "\"name\":\"thread_name\"", "\"args\":{\"name\":\"main\"}"), 1);
    }
    free(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_names_are_escaped(void **state) {
    (void)state;
    hy_trace *t;
    assert_int_equal(hy_trace_new(&t), HY_OK);
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = core_dir();
    cfg.name = "we\"ird\\\n\xff\xc3\xa9";
    cfg.id = 3;
    cfg.trace = t;
    cfg.write = discard;
    hy_vm *vm = NULL;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    hy_vm_free(vm);
    char path[128];
    temp_path(path, sizeof path, "names");
    assert_int_equal(hy_trace_write_json(t, path), HY_OK);
    hy_trace_free(t);
    char *s = slurp(path);
    /* Quote, backslash and newline escaped; the stray byte replaced; the UTF-8 e-acute kept. */
    assert_non_null(strstr(s, "\"args\":{\"name\":\"we\\\"ird\\\\\\u000a\\ufffd\xc3\xa9\"}"));
    free(s);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_arguments_are_refused),
        cmocka_unit_test(test_an_empty_trace_has_no_events),
        cmocka_unit_test(test_two_vms_record_into_one_trace_at_once),
        cmocka_unit_test(test_names_are_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
