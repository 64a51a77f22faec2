/*
 * hy_vm.h -- embedding one Hydra VM.
 *
 * A hy_vm is one Smalltalk (SOM dialect) virtual machine with its own heap, classes and
 * globals. VMs share nothing, so a process may run many of them on different threads. A VM
 * itself is used by one thread at a time: the thread that calls into it.
 *
 * All functions return a hy_err (HY_OK = 0) and deliver results through out-parameters, which
 * are left untouched on failure. hy_strerror names an error; hy_vm_last_error gives the
 * detailed message of the last failure of a VM (file:line:column of a syntax error, the text
 * of an unhandled Smalltalk error...).
 */
#ifndef HYDRA_HY_VM_H
#define HYDRA_HY_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hy_vm hy_vm;

typedef enum hy_err {
    HY_OK = 0,
    HY_ENOMEM,     /* out of memory, or the VM's heap limit was reached */
    HY_EINVAL,     /* an argument is invalid (NULL, malformed) */
    HY_ENOENT,     /* a class or file was not found */
    HY_ESYNTAX,    /* a class file does not compile */
    HY_ERUNTIME,   /* the program ended with an unhandled error */
} hy_err;

/* A static, human-readable name for err. */
const char *hy_strerror(hy_err err);

/* Where a VM's output goes: stream is 1 (standard output) or 2 (standard error). Called on
 * the thread running the VM. The default writes to the process's stdout/stderr. */
typedef void (*hy_write_fn)(void *ctx, int stream, const char *bytes, size_t len);

/* What a VM asks of the host that made it: the primitives behind `VM spawn:`, `join`, `stop`,
 * `kill` and `state` call these (libhydra-host provides them; a VM made alone has none and
 * those primitives fail with a clear message). `host` is the context given in hy_config.
 * Called on a thread of the VM; join blocks (the VM calls it as a blocking threaded callout, so
 * the VM's other processes go on). `what` is an image file (NAME.image) or a class name run
 * from the spawning VM's image or class path. errbuf receives a message on failure. */
typedef struct hy_host_ops {
    hy_err (*spawn)(void *host, unsigned parent, const char *what, const char *name, int argc,
                    const char *const *argv, unsigned *id, char *errbuf, size_t errlen);
    hy_err (*join)(void *host, unsigned id, int *exit_status);
    hy_err (*stop)(void *host, unsigned id);
    hy_err (*kill)(void *host, unsigned id);
    /* state: 0 created, 1 running, 2 exited, 3 failed, 4 killed (hy_vm_state in hydra.h);
     * exit_status is meaningful from 2 on. name: the VM's name (static until the host ends). */
    hy_err (*info)(void *host, unsigned id, int *state, int *exit_status, const char **name);
} hy_host_ops;

typedef struct hy_config {
    const char *name;        /* the VM's name (output prefixes, traces); copied; NULL = "vm" */
    unsigned id;             /* the VM's number in its host (0 for a VM made alone) */
    const char *classpath;   /* folders separated by ':', searched for NAME.som; copied */
    size_t heap_limit;       /* bytes of heap (old + new space) the VM may use; 0 = no limit */
    size_t eden_size;        /* bytes of the allocation area; 0 = default */
    size_t stack_slots;      /* value-stack slots per process (bounds recursion depth) */
    bool gc_stress;          /* collect at every allocation (slow; for testing) */
    hy_write_fn write;       /* output sink; NULL = stdout/stderr */
    void *write_ctx;
    /* The threaded VM. */
    unsigned heartbeat_hz;   /* heartbeat rate; 0 = default (1000) */
    unsigned max_workers;    /* worker threads that may take the VM over; 0 = default (4) */
    bool timeslice;          /* preempt processes of equal priority on heartbeat ticks */
    bool takeover_stress;    /* force a takeover at every callout (slow; for testing) */
    /* The host (libhydra-host sets these; NULL for a VM made alone). */
    const hy_host_ops *host_ops;
    void *host;
} hy_config;

/* Fill cfg with the defaults: no class path, no heap limit, default eden and stack, no stress,
 * output to stdout/stderr. gc_stress defaults to true in HYDRA_GC_STRESS builds. */
void hy_config_init(hy_config *cfg);

/* Counters of the threaded VM: foreign calls, takeovers by workers, hand-backs to returning
 * threads, waits for ownership and their total time, heartbeat ticks, workers started. Safe
 * from any thread. */
typedef struct hy_thread_stats {
    uint64_t callouts, takeovers, handbacks, waits, wait_ns, heartbeats, workers;
} hy_thread_stats;
hy_err hy_vm_thread_stats(hy_vm *vm, hy_thread_stats *out);

/* Signal the external semaphore `index` (from Semaphore>>registerExternal) of vm. Safe from any
 * thread, lock-free; the waiting Smalltalk process runs when the VM next polls. */
void hy_vm_signal_semaphore(hy_vm *vm, unsigned index);

/* Create a VM from cfg (copied; cfg may be freed afterwards). The core classes are loaded
 * from the class path. Errors: HY_EINVAL (cfg NULL), HY_ENOMEM, HY_ENOENT (a core class file
 * is missing), HY_ESYNTAX (a core class does not compile; hy_vm_last_error is not available
 * since no VM is returned, so the message is written to the VM's error stream). */
hy_err hy_vm_new(const hy_config *cfg, hy_vm **out);

/* Free a VM and everything it allocated. Safe on NULL. */
void hy_vm_free(hy_vm *vm);

/* Run a program the way SOM implementations do: load class_name from the class path, and
 * send it `initialize:` semantics of System: an instance gets #run: with the arguments array
 * (class name first, then argv) if it understands it, else #run.
 * *exit_status receives 0, the value given to `System exit:`, or 1 after an unhandled error.
 * Returns HY_OK when the program ran (whatever its exit status), HY_ENOENT when the class
 * cannot be found, HY_ESYNTAX when it does not compile. */
hy_err hy_vm_run_main(hy_vm *vm, const char *class_name, int argc, const char *const *argv,
                      int *exit_status);

/* Ask a running program to end, from any thread: at its next poll every process is unwound
 * and hy_vm_run_main returns with exit_status. kill: ensure: blocks are skipped and nothing more
 * of the program runs; otherwise (stop) they run as for `System exit:`. A thread inside a
 * foreign call ends its part when the call returns. Lock-free but for waking idle threads. */
void hy_vm_request_stop(hy_vm *vm, int exit_status, bool kill);

/* The message of the last failure in vm, or "" (owned by vm, valid until the next call). */
const char *hy_vm_last_error(const hy_vm *vm);

typedef struct hy_gc_stats {
    uint64_t scavenges, full_gcs;
    uint64_t bytes_allocated, bytes_promoted;
    uint64_t total_pause_ns, max_pause_ns;
    uint64_t heap_in_use;    /* bytes in old + new space now */
} hy_gc_stats;

/* Copy the VM's GC statistics into *out. */
hy_err hy_vm_gc_stats(const hy_vm *vm, hy_gc_stats *out);

#ifdef __cplusplus
}
#endif
#endif
