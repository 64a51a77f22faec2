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
    HY_EIMAGE,     /* an image file is corrupt, truncated, foreign or of another version */
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

/* A trace of the threaded VM (see "Tracing" below); NULL in hy_config = no tracing. */
typedef struct hy_trace hy_trace;

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
    unsigned max_workers;    /* worker threads that may take the VM over; 0 = default (16) */
    bool timeslice;          /* preempt processes of equal priority on heartbeat ticks */
    bool takeover_stress;    /* force a takeover at every callout (slow; for testing) */
    /* The host (libhydra-host sets these; NULL for a VM made alone). */
    const hy_host_ops *host_ops;
    void *host;
    hy_trace *trace;         /* record into this trace (not owned; must outlive the VM); NULL = none */
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
 * foreign call ends its part when the call returns. Lock-free but for waking idle threads.
 * A request made while no program runs applies to the next one; the end of a program clears
 * it. */
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

/* ---- Snapshot images -----------------------------------------------------------------------
 *
 * An image is a VM's heap written to a file: every class it had loaded (compiled methods,
 * symbols, globals, class-side state), and optionally the name of an entry class to run. A VM
 * made from an image parses no source; classes missing from the image still load from the
 * class path of its config.
 *
 * The file is versioned (magic "HYDRAIMG", format version, word size, byte order, and a
 * fingerprint of the VM's object layout and primitive table, so an image is only read by a
 * hydra built with the same layout) and checksummed (64-bit FNV-1a over the whole file). Opening
 * checks the structure too: every reference points at an object inside the image, classes are
 * classes, sizes, formats and method code are consistent. What an image cannot carry is reset:
 * no process runs in it; foreign handles (opened libraries, prepared functions, callbacks) are
 * cleared, so using them fails with a Smalltalk error instead of calling stale addresses, and
 * ExternalAddresses read as freed.
 *
 *     hy_image *img;
 *     char why[256];
 *     if (hy_image_open("app.image", &img, why, sizeof why) != HY_OK) { puts(why); return; }
 *     hy_vm *vm;
 *     if (hy_vm_new_from_image(&cfg, img, &vm) == HY_OK) {
 *         int status;
 *         hy_vm_run_entry(vm, argc, argv, &status);
 *         hy_vm_free(vm);
 *     }
 *     hy_image_close(img);
 */

/* A validated image in memory. Read-only once opened: any number of threads may make VMs from
 * one hy_image at the same time. */
typedef struct hy_image hy_image;

/* Read and validate the image file at path. On success *out owns the image (free it with
 * hy_image_close). On failure *out is untouched and, when errbuf is not NULL, errbuf (errlen
 * bytes, always NUL-terminated) says what is wrong, starting with the path:
 * "x.image: not a Hydra image", "x.image: truncated at byte N of M", "x.image: checksum
 * mismatch", "x.image: format version 7, this hydra reads version 1"...
 * Errors: HY_EINVAL (path or out NULL), HY_ENOENT (the file cannot be read), HY_EIMAGE (not a
 * valid image for this hydra), HY_ENOMEM. Any thread. */
hy_err hy_image_open(const char *path, hy_image **out, char *errbuf, size_t errlen);

/* The same for an image already in memory (len bytes at bytes, copied; the caller keeps
 * bytes). Messages name it "image". */
hy_err hy_image_open_bytes(const void *bytes, size_t len, hy_image **out, char *errbuf,
                           size_t errlen);

/* Free an image. Every VM made from it stays valid (they copied what they need). Safe on
 * NULL. Must not run while another thread makes a VM from img. */
void hy_image_close(hy_image *img);

/* The image's entry class name, or "" for an image without one (owned by img). */
const char *hy_image_entry(const hy_image *img);

/* Bytes of heap a VM made from img starts with. */
size_t hy_image_heap_bytes(const hy_image *img);

/* Create a VM whose heap is a copy of the image's (cfg as for hy_vm_new: copied; its class
 * path serves classes the image does not hold). Nothing is parsed; the VM runs with
 * hy_vm_run_entry or hy_vm_run_main. Errors: HY_EINVAL (an argument NULL), HY_ENOMEM (out of
 * memory, or the image is larger than cfg->heap_limit). Any thread, concurrently with others
 * on the same image. */
hy_err hy_vm_new_from_image(const hy_config *cfg, const hy_image *img, hy_vm **out);

/* Load every class file (NAME.som) of every folder on vm's class path that is not loaded yet,
 * in folder order and by name within a folder, so that an image saved afterwards holds them
 * all. Errors: HY_ESYNTAX (a file does not compile, or defines another class than its name
 * says; hy_vm_last_error has file:line:column), HY_ENOENT (a class-path folder cannot be
 * read), HY_ENOMEM. Not while the VM runs a program; any thread. */
hy_err hy_vm_load_all_classes(hy_vm *vm);

/* Write vm's heap to the image file path, after a full garbage collection, with entry_class
 * (NULL or "" for none; it must be loaded or loadable from the class path) as the class that
 * hy_vm_run_entry runs. The file is written to a temporary file next to path and renamed, so
 * path is never half-written. Only what the VM's globals and symbols reach is saved.
 * Errors: HY_EINVAL (vm or path NULL, or a program is running, or a process is still alive
 * in a foreign call), HY_ENOENT (entry_class not found; hy_vm_last_error says why), HY_ESYNTAX
 * (entry_class does not compile), HY_EIMAGE (the file cannot be written; hy_vm_last_error
 * has the system's reason), HY_ENOMEM. Not while the VM runs a program; any thread. */
hy_err hy_vm_save_image(hy_vm *vm, const char *entry_class, const char *path);

/* Run the entry class of the image vm was made from, like hy_vm_run_main(vm, entry, argc,
 * argv, exit_status). For an image without entry (or a VM made from sources), argv[0] names
 * the class to run (from the image or the class path) and argv[1..] are its arguments, as
 * `hydra run CLASS ARGS` does. Errors: those of hy_vm_run_main, and HY_EINVAL when there is
 * no entry and argc is 0. */
hy_err hy_vm_run_entry(hy_vm *vm, int argc, const char *const *argv, int *exit_status);

/* ---- Tracing ------------------------------------------------------------------------------
 * A hy_trace records, for every VM whose config names it and every OS thread of those VMs, when
 * the thread owns the VM, its foreign calls (callouts) and callbacks, takeovers of a VM left in a
 * callout by a worker, garbage collections (with bytes in use before and after) and which
 * Smalltalk process runs. hy_trace_write_json writes it in the Chrome trace-event format ("JSON
 * object format", a "traceEvents" array), which ui.perfetto.dev and chrome://tracing open: one
 * process per VM (pid = hy_config.id, named hy_config.name), one track per OS thread (tid = the
 * kernel's thread id, named "main", "worker N", "heartbeat", "foreign" (a C thread that called
 * back) or "host" (a thread of the embedder that made, freed or saved the VM)). Timestamps are
 * CLOCK_MONOTONIC in microseconds.
 *
 * Several VMs, on any threads, may record into one trace at once; recording takes no lock.
 * A trace keeps at most about two million events (some 180 MB); later events are counted as
 * dropped (the file says how many) instead of recorded. */

/* A new, empty trace. Errors: HY_EINVAL (out NULL), HY_ENOMEM. Any thread. */
hy_err hy_trace_new(hy_trace **out);

/* Write everything recorded so far to the file at path (created or replaced), events in time
 * order. Call it when the VMs recording into t have ended (hy_vm_run_main returned, or the VM
 * was freed): events of calls still in flight may be incomplete. Errors: HY_EINVAL (t or path
 * NULL), HY_ENOMEM, HY_ENOENT (the file cannot be created or written; errno says why). */
hy_err hy_trace_write_json(hy_trace *t, const char *path);

/* Free a trace and all it recorded. Only after every VM recording into it has been freed
 * (hy_vm_free). Safe on NULL. */
void hy_trace_free(hy_trace *t);

#ifdef __cplusplus
}
#endif
#endif
