/*
 * hydra.h -- the Hydra host: many Smalltalk VMs in one process. This header is the whole
 * embedding API; it includes hy_vm.h for the types it shares with a single VM.
 *
 * A hy_host holds VMs. Each VM has its own heap, classes, processes, threads (the thread that
 * runs its program, a heartbeat, workers that take it over during long foreign calls) and its
 * own limits; VMs share nothing and talk through channels (channels/). A VM that fails -- an
 * unhandled error, its heap limit, its stack limit, `VM exit: n`, a kill -- ends alone: the host
 * and the other VMs go on.
 *
 * Life of a VM:
 *
 *     hy_host *host;
 *     hy_host_config hc;
 *     hy_host_config_init(&hc);
 *     if (hy_host_new(&hc, &host) != HY_OK) ...;
 *
 *     hy_spawn_config sc;
 *     hy_spawn_config_init(&sc);
 *     sc.name = "worker";
 *     sc.image = "build/images/core.image";     (or sc.classpath + sc.main_class)
 *     sc.argc = 1; sc.argv = (const char *[]){ "Hello" };
 *     unsigned id;
 *     char err[256];
 *     if (hy_host_spawn(host, &sc, &id, err, sizeof err) != HY_OK) puts(err);
 *     hy_host_start(host, id);                   the program runs on a thread of its own
 *     int status;
 *     hy_host_join(host, id, &status);           0, the value given to `VM exit:`, 1 after an
 *                                                unhandled error, 137 killed, 143 stopped
 *     hy_host_free(host);                        kills what still runs, joins every thread
 *
 * Every function is thread-safe: any thread may spawn, start, join, stop, kill and list VMs of a
 * host at any time, including threads of its VMs (that is how `VM spawn:` works). VM ids are
 * never reused within a host. Functions return HY_OK or an error (hy_strerror names it).
 *
 * Output: a VM's output goes to the host's sink (stdout/stderr by default). While a host holds
 * one VM its lines are passed on as they are; from the moment it holds two, every line carries
 * its VM's name, "[name] line", coloured when the stream is a terminal (hy_host_config).
 */
#ifndef HYDRA_HYDRA_H
#define HYDRA_HYDRA_H

#include "hydra/hy_vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hy_host hy_host;

/* The exit status of a killed VM (as after SIGKILL) and of a stopped one (as after SIGTERM). */
#define HY_EXIT_KILLED 137
#define HY_EXIT_STOPPED 143

typedef enum hy_prefix_mode {
    HY_PREFIX_AUTO,     /* prefix lines once the host holds more than one VM */
    HY_PREFIX_ALWAYS,
    HY_PREFIX_NEVER,
} hy_prefix_mode;

typedef struct hy_host_config {
    hy_prefix_mode prefix;   /* "[name] " before each output line */
    int colour;              /* colour the prefixes: 1 yes, 0 no, -1 when the stream is a terminal */
    hy_write_fn write;       /* where output goes (whole lines when prefixing); NULL = stdout/stderr */
    void *write_ctx;
    hy_trace *trace;         /* every VM of the host records into it (hy_vm.h, "Tracing"); not
                                owned, must outlive the host; NULL = no tracing */
} hy_host_config;

void hy_host_config_init(hy_host_config *cfg);
hy_err hy_host_new(const hy_host_config *cfg, hy_host **out);
/* Kill every VM still running, wait for all their threads, free everything. A VM whose thread
 * is inside a foreign call that never returns keeps this waiting. Safe on NULL. */
void hy_host_free(hy_host *host);

/* How to make one VM. Strings are copied. */
typedef struct hy_spawn_config {
    const char *name;        /* the VM's name; NULL = the image's or class's name */
    const char *image;       /* an image file (hydra build-image); NULL = start from sources */
    const char *main_class;  /* without image: the class to run, found on classpath. With an
                                image: a class to run instead of the image's entry */
    const char *classpath;   /* folders searched for NAME.som (the core library first when
                                there is no image) */
    int argc;                /* the program's arguments */
    const char *const *argv;
    size_t heap_limit;       /* bytes; 0 = none */
    size_t stack_slots;      /* 0 = default */
    unsigned heartbeat_hz;   /* 0 = default (1000) */
    unsigned max_workers;    /* 0 = default */
    bool timeslice, gc_stress, takeover_stress;
} hy_spawn_config;

void hy_spawn_config_init(hy_spawn_config *cfg);

/* Make a VM (created, not yet running); *id names it from now on. On failure errbuf (when not
 * NULL) says why: a missing or corrupt image, a class that does not compile... */
hy_err hy_host_spawn(hy_host *host, const hy_spawn_config *cfg, unsigned *id, char *errbuf, size_t errlen);
/* Start its program on a thread of its own. HY_EINVAL when it was started before. */
hy_err hy_host_start(hy_host *host, unsigned id);
/* Wait until it ends; its exit status. A killed VM counts as ended at once, even while some of
 * its threads are still inside foreign calls (they leave, and are reclaimed, when those return). */
hy_err hy_host_join(hy_host *host, unsigned id, int *exit_status);
/* Ask it to end (exit status HY_EXIT_STOPPED): its processes unwind, ensure: blocks run. */
hy_err hy_host_stop(hy_host *host, unsigned id);
/* End it at once (exit status HY_EXIT_KILLED). */
hy_err hy_host_kill(hy_host *host, unsigned id);
/* Wait until every VM started so far (and every VM those spawned) has ended; *worst_status is
 * the exit status of the first (by id) that ended non-zero among the VMs the embedder spawned,
 * or 0. (A VM spawned by another with `VM spawn:` is its parent's to judge, through join.) */
hy_err hy_host_join_all(hy_host *host, int *worst_status);

typedef enum hy_vm_state {
    HY_VM_CREATED = 0,   /* spawned, not started */
    HY_VM_RUNNING = 1,
    HY_VM_EXITED = 2,    /* ended with exit status 0 */
    HY_VM_FAILED = 3,    /* ended with a non-zero status */
    HY_VM_KILLED = 4,
} hy_vm_state;

typedef struct hy_vm_info {
    unsigned id;
    char name[64];
    hy_vm_state state;
    int exit_status;         /* from HY_VM_EXITED on */
    hy_thread_stats threads; /* counters of the threaded VM (final ones once it ended) */
    hy_gc_stats gc;
} hy_vm_info;

/* Up to cap VMs (all spawned so far, by id) into out; *count receives how many there are. */
hy_err hy_host_list(hy_host *host, hy_vm_info *out, size_t cap, size_t *count);
/* One VM. */
hy_err hy_host_info(hy_host *host, unsigned id, hy_vm_info *out);

#ifdef __cplusplus
}
#endif
#endif
