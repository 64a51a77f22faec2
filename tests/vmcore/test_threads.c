/*
 * test_threads.c -- VMs share nothing: two VMs run their own programs on two threads at the
 * same time, allocating enough to collect garbage, and both get the right answers. Built with
 * -DHYDRA_SANITIZER=thread this is also the check that vmcore has no shared mutable state.
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

typedef struct job {
    const char *class_name;
    char classpath[4096];
    pthread_barrier_t *start;   /* both VMs begin running together */
    /* Results, written by the job's thread and read after pthread_join. */
    hy_err new_err, run_err;
    int status;
    char out[256];
    size_t out_len;
    hy_gc_stats stats;
} job;

static void capture(void *ctx, int stream, const char *bytes, size_t len) {
    job *j = ctx;
    if (stream != 1) {
        fwrite(bytes, 1, len, stderr);
        return;
    }
    size_t room = sizeof j->out - 1 - j->out_len;
    if (len > room) len = room;
    memcpy(j->out + j->out_len, bytes, len);
    j->out_len += len;
    j->out[j->out_len] = 0;
}

static void *run_job(void *arg) {
    job *j = arg;
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = j->classpath;
    cfg.write = capture;
    cfg.write_ctx = j;
    cfg.eden_size = 512u << 10;   /* small, so that both VMs collect often */
    hy_vm *vm = NULL;
    j->new_err = hy_vm_new(&cfg, &vm);
    pthread_barrier_wait(j->start);
    if (j->new_err != HY_OK) return NULL;
    j->run_err = hy_vm_run_main(vm, j->class_name, 0, NULL, &j->status);
    hy_vm_gc_stats(vm, &j->stats);
    hy_vm_free(vm);
    return NULL;
}

static void write_class(const char *dir, const char *name, const char *source) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.som", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_true(fputs(source, fp) >= 0);
    assert_int_equal(fclose(fp), 0);
}

static bool gc_stress_build(void) {
    hy_config cfg;
    hy_config_init(&cfg);
    return cfg.gc_stress;
}

static void test_two_vms_run_on_two_threads_at_once(void **state) {
    (void)state;
    char dir[] = "/tmp/hydra-test-threads-XXXXXX";
    assert_non_null(mkdtemp(dir));

    /* Smaller loops when every allocation collects; the answers are checked either way. */
    int n = gc_stress_build() ? 2000 : 200000;
    int churn = gc_stress_build() ? 500 : 200000;

    char src[2048];
    /* fib(25) = 75025, with garbage made alongside so that this VM collects too. */
    snprintf(src, sizeof src,
             "Fib = (\n"
             "    fib: n = ( n < 2 ifTrue: [ ^ n ]. ^ (self fib: n - 1) + (self fib: n - 2) )\n"
             "    run = (\n"
             "        | r junk |\n"
             "        1 to: %d do: [ :i | junk := Array new: 8. junk at: 1 put: i ].\n"
             "        r := self fib: 25.\n"
             "        r println.\n"
             "        system exit: (r = 75025 ifTrue: [ 11 ] ifFalse: [ 1 ])\n"
             "    )\n"
             ")\n",
             churn);
    write_class(dir, "Fib", src);

    /* n boxed elements, summed: 2 * (1 + ... + n) = n (n + 1). */
    snprintf(src, sizeof src,
             "Summer = (\n"
             "    run = (\n"
             "        | a sum |\n"
             "        a := Array new: %d.\n"
             "        1 to: a length do: [ :i | | box | box := Array new: 2. box at: 1 put: i * 2. a at: i put: box ].\n"
             "        sum := 0.\n"
             "        a do: [ :box | sum := sum + (box at: 1) ].\n"
             "        sum println.\n"
             "        system exit: (sum = %lld ifTrue: [ 12 ] ifFalse: [ 2 ])\n"
             "    )\n"
             ")\n",
             n, (long long)n * (n + 1));
    write_class(dir, "Summer", src);

    const char *core = getenv("HYDRA_CORE");
    if (!core || !*core) core = HYDRA_SOURCE_DIR "/images/core";

    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, 2), 0);
    job jobs[2];
    memset(jobs, 0, sizeof jobs);
    jobs[0].class_name = "Fib";
    jobs[1].class_name = "Summer";
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        snprintf(jobs[i].classpath, sizeof jobs[i].classpath, "%s:%s", core, dir);
        jobs[i].start = &start;
        jobs[i].status = -1;
        assert_int_equal(pthread_create(&threads[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(threads[i], NULL), 0);
    pthread_barrier_destroy(&start);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);

    char expected[64];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(jobs[i].new_err, HY_OK);
        assert_int_equal(jobs[i].run_err, HY_OK);
    }
    assert_int_equal(jobs[0].status, 11);
    assert_string_equal(jobs[0].out, "75025\n");
    assert_int_equal(jobs[1].status, 12);
    snprintf(expected, sizeof expected, "%lld\n", (long long)n * (n + 1));
    assert_string_equal(jobs[1].out, expected);
    /* Both VMs collected garbage while the other ran. */
    assert_true(jobs[0].stats.scavenges + jobs[0].stats.full_gcs > 0);
    assert_true(jobs[1].stats.scavenges + jobs[1].stats.full_gcs > 0);
}

/* A new VM on the core library and dir, its output captured in *j (which must outlive it). */
static hy_vm *new_vm_on(job *j, const char *dir, bool timeslice) {
    memset(j, 0, sizeof *j);
    snprintf(j->classpath, sizeof j->classpath, "%s/images/core:%s", HYDRA_SOURCE_DIR, dir);
    hy_config cfg;
    hy_config_init(&cfg);
    cfg.classpath = j->classpath;
    cfg.write = capture;
    cfg.write_ctx = j;
    cfg.timeslice = timeslice;
    hy_vm *vm = NULL;
    assert_int_equal(hy_vm_new(&cfg, &vm), HY_OK);
    return vm;
}

/* ---- External semaphores and the threaded VM's counters, from C ---------------------------- */

typedef struct signaller {
    hy_vm *vm;
    int times;
} signaller;

static void *signal_later(void *arg) {
    signaller *sg = arg;
    for (int i = 0; i < sg->times; i++) {
        usleep(20000);
        hy_vm_signal_semaphore(sg->vm, 1);   /* from a thread that never owns the VM */
    }
    return NULL;
}

/* Run class `name` (in dir) on a new VM while a C thread signals its external semaphore 1
 * `signals` times, 20 ms apart; the program's exit status, and the VM's counters in *ts. */
static int run_signalled(const char *dir, const char *name, int signals, hy_thread_stats *ts) {
    job j;
    hy_vm *vm = new_vm_on(&j, dir, false);
    signaller sg = { vm, signals };
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, signal_later, &sg), 0);
    int status = -1;
    assert_int_equal(hy_vm_run_main(vm, name, 0, NULL, &status), HY_OK);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(hy_vm_thread_stats(vm, ts), HY_OK);
    assert_int_equal(hy_vm_thread_stats(NULL, ts + 1), HY_EINVAL);
    hy_vm_free(vm);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return status;
}

static void test_c_thread_signals_an_external_semaphore(void **state) {
    (void)state;
    char dir[] = "/tmp/hydra-test-extsem-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* Three waits, each released by one signal from the C thread; meanwhile another process
     * counts, so the VM is busy when the signals arrive. exit: 3 + the number of waits that
     * returned. */
    write_class(dir, "ExtSem",
                "ExtSem = (\n"
                "  run = ( | s n done stop |\n"
                "    s := Semaphore new. s registerExternal = 1 ifFalse: [ system exit: 90 ].\n"
                "    n := 0. stop := false. done := Semaphore new.\n"
                "    [ [ stop ] whileFalse: [ Processor yield ]. done signal ] fork.\n"
                "    3 timesRepeat: [ s wait. n := n + 1 ].\n"
                "    stop := true. done wait.\n"
                "    system exit: 3 + n )\n"
                ")\n");
    hy_thread_stats ts[2];
    assert_int_equal(run_signalled(dir, "ExtSem", 3, ts), 6);
    /* No foreign call was made: the scheduler's own idle waits are not counted as callouts,
     * and nothing was taken over. */
    assert_int_equal(ts[0].callouts, 0);
    assert_int_equal(ts[0].takeovers, 0);
}

/* A blocking call made while no other process can run keeps the VM reserved for its thread;
 * an external signal that arrives meanwhile must still bring a worker to run the process it
 * wakes, while the call goes on. */
static void test_external_signal_during_a_blocking_call(void **state) {
    (void)state;
    char dir[] = "/tmp/hydra-test-extblock-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* exit: 40 when the woken process ran before the 400 ms call returned, 41 after it, 42 never;
     * 91 or 92 when Processor hasReadyProcess is wrong before or after the fork has run. */
    write_class(dir, "ExtBlock",
                "ExtBlock = (\n"
                "  run = ( | s woke sleep t1 |\n"
                "    s := Semaphore new. s registerExternal = 1 ifFalse: [ system exit: 90 ].\n"
                "    Processor hasReadyProcess ifTrue: [ system exit: 91 ].\n"
                "    [ s wait. woke := system ticks ] fork.\n"
                "    Processor hasReadyProcess ifFalse: [ system exit: 92 ].\n"
                "    Processor yield.\n"
                "    Processor hasReadyProcess ifTrue: [ system exit: 91 ].\n"
                "    sleep := (ExternalLibrary named: 'libc.so.6') lookup: 'usleep' returns: #int arguments: #( #uint32 ).\n"
                "    sleep beBlocking.\n"
                "    sleep callWith: 400000.\n"
                "    t1 := system ticks.\n"
                "    woke isNil ifTrue: [ system exit: 42 ].\n"
                "    system exit: (woke < t1 ifTrue: [ 40 ] ifFalse: [ 41 ]) )\n"
                ")\n");
    hy_thread_stats ts[2];
    assert_int_equal(run_signalled(dir, "ExtBlock", 1, ts), 40);
    assert_true(ts[0].takeovers >= 1);   /* a worker took the VM over from the waiting call */
}

/* ---- Time slicing among equal priorities (hy_config.timeslice) ------------------------------- */

static int run_slice(const char *dir, bool timeslice) {
    job j;
    hy_vm *vm = new_vm_on(&j, dir, timeslice);
    int status = -1;
    assert_int_equal(hy_vm_run_main(vm, "Slice", 0, NULL, &status), HY_OK);
    hy_vm_free(vm);
    return status;
}

static void test_timeslice_preempts_equal_priorities(void **state) {
    (void)state;
    char dir[] = "/tmp/hydra-test-slice-XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* The main process spins for 50 ms without yielding; a forked process of the same priority
     * counts. It gets the CPU only if the heartbeat's ticks preempt the main process. */
    write_class(dir, "Slice",
                "Slice = (\n"
                "  run = ( | count stop t |\n"
                "    count := 0. stop := false.\n"
                "    [ [ stop ] whileFalse: [ count := count + 1 ] ] fork.\n"
                "    t := system ticks.\n"
                "    [ system ticks - t < 50000 ] whileTrue: [ ].\n"
                "    stop := true.\n"
                "    system exit: (count > 0 ifTrue: [ 21 ] ifFalse: [ 20 ]) )\n"
                ")\n");
    assert_int_equal(run_slice(dir, false), 20);
    assert_int_equal(run_slice(dir, true), 21);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeslice_preempts_equal_priorities),
        cmocka_unit_test(test_two_vms_run_on_two_threads_at_once),
        cmocka_unit_test(test_c_thread_signals_an_external_semaphore),
        cmocka_unit_test(test_external_signal_during_a_blocking_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
