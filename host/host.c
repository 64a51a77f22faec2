/*
 * host.c -- libhydra-host: many VMs in one process (hydra.h).
 *
 * The host keeps one record per VM, by id, for its whole life. A started VM runs its program on
 * a thread of its own; when the program ends that thread records the exit status, frees the VM
 * (which waits for the VM's workers, some perhaps still inside foreign calls) and ends. The
 * record stays, so the VM's state, exit status and final counters can be read afterwards.
 *
 * Locking: host->lock guards the table and every record's state, exit status and vm pointer; a
 * record's vm pointer is only used under the lock or by the VM's own thread, which clears it
 * under the lock before freeing the VM. host->out_lock serialises output lines. No VM code runs
 * under host->lock (hy_vm_new and the programs run outside it).
 */
#include "hydra/hydra.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct line_buf {
    char *data;
    size_t len, cap;
} line_buf;

typedef struct vm_rec {
    hy_host *host;
    unsigned id;
    char *name;
    hy_spawn_config cfg;     /* with copied strings (below) */
    char *image, *main_class, *classpath;
    char **argv;
    hy_vm *vm;               /* NULL before it is made and after its thread freed it */
    hy_vm_state state;
    int exit_status;
    bool started;
    bool has_thread;         /* thread was created (and is joined by hy_host_free) */
    unsigned parent;         /* the VM that spawned it (VM spawn:), 0 for the embedder's */
    pthread_t thread;
    hy_thread_stats final_threads;
    hy_gc_stats final_gc;
    line_buf out[3];         /* partial output lines by stream 1, 2 (the owning thread only) */
} vm_rec;

struct hy_host {
    hy_host_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t changed;  /* a VM changed state */
    vm_rec **vms;            /* by id - 1 */
    size_t nvms, cap;
    _Atomic size_t count;    /* nvms, readable without the lock (output prefixing) */
    pthread_mutex_t out_lock;
    bool tty[3];             /* stdout / stderr are terminals */
    /* Images opened so far, by path: opened (read, checked) once, shared by every VM made
     * from them, closed with the host. Under lock. */
    struct open_image { char *path; hy_image *img; } *images;
    size_t nimages, capimages;
};

static const hy_host_ops host_ops;

/* ---- Configuration --------------------------------------------------------------------------- */

void hy_host_config_init(hy_host_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->prefix = HY_PREFIX_AUTO;
    cfg->colour = -1;
}

void hy_spawn_config_init(hy_spawn_config *cfg) {
    if (cfg) memset(cfg, 0, sizeof *cfg);
}

hy_err hy_host_new(const hy_host_config *cfg, hy_host **out) {
    if (!cfg || !out) return HY_EINVAL;
    hy_host *h = calloc(1, sizeof *h);
    if (!h) return HY_ENOMEM;
    h->cfg = *cfg;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->changed, NULL);
    pthread_mutex_init(&h->out_lock, NULL);
    h->tty[1] = isatty(1);
    h->tty[2] = isatty(2);
    *out = h;
    return HY_OK;
}

/* ---- Output: whole lines, prefixed with the VM's name once there are siblings ------------------ */

static void sink(hy_host *h, int stream, const char *bytes, size_t len) {
    if (h->cfg.write) {
        h->cfg.write(h->cfg.write_ctx, stream, bytes, len);
        return;
    }
    if (stream == 2) fflush(stdout);
    FILE *f = stream == 2 ? stderr : stdout;
    fwrite(bytes, 1, len, f);
    if (stream == 2) fflush(f);
}

static bool prefixing(hy_host *h) {
    switch (h->cfg.prefix) {
    case HY_PREFIX_ALWAYS: return true;
    case HY_PREFIX_NEVER: return false;
    default: return atomic_load_explicit(&h->count, memory_order_relaxed) > 1;
    }
}

/* Write one line (without its newline) of rec under the output lock. */
static void emit_line(vm_rec *r, int stream, const char *line, size_t len) {
    hy_host *h = r->host;
    bool colour = h->cfg.colour == 1 || (h->cfg.colour < 0 && !h->cfg.write && h->tty[stream]);
    char prefix[128];
    int n = colour ? snprintf(prefix, sizeof prefix, "\033[%dm[%s]\033[0m ", 31 + (int)(r->id - 1) % 6, r->name)
                   : snprintf(prefix, sizeof prefix, "[%s] ", r->name);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof prefix) n = sizeof prefix - 1;
    /* One write per line, so lines of different VMs never mix. */
    char stackbuf[1024];
    size_t total = (size_t)n + len + 1;
    char *buf = total <= sizeof stackbuf ? stackbuf : malloc(total);
    pthread_mutex_lock(&h->out_lock);
    if (buf) {
        memcpy(buf, prefix, (size_t)n);
        memcpy(buf + n, line, len);
        buf[total - 1] = '\n';
        sink(h, stream, buf, total);
    } else {
        sink(h, stream, prefix, (size_t)n);
        sink(h, stream, line, len);
        sink(h, stream, "\n", 1);
    }
    pthread_mutex_unlock(&h->out_lock);
    if (buf && buf != stackbuf) free(buf);
}

static void flush_partial(vm_rec *r, int stream) {
    line_buf *b = &r->out[stream];
    if (b->len) emit_line(r, stream, b->data, b->len);
    b->len = 0;
}

static void vm_write(void *ctx, int stream, const char *bytes, size_t len) {
    vm_rec *r = ctx;
    hy_host *h = r->host;
    if (stream != 2) stream = 1;
    if (!prefixing(h)) {
        flush_partial(r, stream);   /* (left from a time with siblings) */
        pthread_mutex_lock(&h->out_lock);
        sink(h, stream, bytes, len);
        pthread_mutex_unlock(&h->out_lock);
        return;
    }
    line_buf *b = &r->out[stream];
    while (len) {
        const char *nl = memchr(bytes, '\n', len);
        size_t part = nl ? (size_t)(nl - bytes) : len;
        if (nl && b->len == 0) {
            emit_line(r, stream, bytes, part);
        } else {
            if (b->len + part > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + part) cap *= 2;
                char *d = realloc(b->data, cap);
                if (!d) {   /* out of memory: give the line out as it is */
                    flush_partial(r, stream);
                    emit_line(r, stream, bytes, part);
                    part = nl ? part : len;
                    goto next;
                }
                b->data = d;
                b->cap = cap;
            }
            memcpy(b->data + b->len, bytes, part);
            b->len += part;
            if (nl) flush_partial(r, stream);
        }
    next:
        if (!nl) break;
        bytes += part + 1;
        len -= part + 1;
    }
}

/* ---- Records ---------------------------------------------------------------------------------- */

static vm_rec *rec_of(hy_host *h, unsigned id) {
    return id >= 1 && id <= h->nvms ? h->vms[id - 1] : NULL;
}

static void rec_free(vm_rec *r) {
    if (!r) return;
    free(r->name);
    free(r->image);
    free(r->main_class);
    free(r->classpath);
    for (int i = 0; r->argv && i < r->cfg.argc; i++) free(r->argv[i]);
    free(r->argv);
    free(r->out[2].data);
    free(r->out[1].data);
    free(r);
}

static char *dup_or_null(const char *s, bool *ok) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *ok = false;
    return d;
}

/* The default name of a VM: its image's file name without .image, or its class's name. */
static void default_name(const hy_spawn_config *c, char *out, size_t cap) {
    const char *src = c->main_class ? c->main_class : c->image ? c->image : "vm";
    const char *slash = strrchr(src, '/');
    if (slash) src = slash + 1;
    size_t n = strlen(src);
    if (n > 6 && !strcmp(src + n - 6, ".image")) n -= 6;
    else if (n > 4 && !strcmp(src + n - 4, ".som")) n -= 4;
    snprintf(out, cap, "%.*s", (int)n, src);
}

static bool name_taken(hy_host *h, const char *name) {
    for (size_t i = 0; i < h->nvms; i++)
        if (!strcmp(h->vms[i]->name, name)) return true;
    return false;
}

/* ---- Spawning ---------------------------------------------------------------------------------- */

/* The opened image at path (opened now if it is not yet). */
static hy_err host_image(hy_host *h, const char *path, hy_image **out, char *errbuf, size_t errlen) {
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nimages; i++)
        if (!strcmp(h->images[i].path, path)) {
            *out = h->images[i].img;
            pthread_mutex_unlock(&h->lock);
            return HY_OK;
        }
    pthread_mutex_unlock(&h->lock);
    hy_image *img;
    hy_err err = hy_image_open(path, &img, errbuf, errlen);
    if (err != HY_OK) return err;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nimages; i++)
        if (!strcmp(h->images[i].path, path)) {   /* another thread opened it meanwhile */
            *out = h->images[i].img;
            pthread_mutex_unlock(&h->lock);
            hy_image_close(img);
            return HY_OK;
        }
    if (h->nimages == h->capimages) {
        size_t cap = h->capimages ? h->capimages * 2 : 4;
        struct open_image *v = realloc(h->images, cap * sizeof *v);
        if (!v) { pthread_mutex_unlock(&h->lock); hy_image_close(img); return HY_ENOMEM; }
        h->images = v;
        h->capimages = cap;
    }
    char *p = strdup(path);
    if (!p) { pthread_mutex_unlock(&h->lock); hy_image_close(img); return HY_ENOMEM; }
    h->images[h->nimages].path = p;
    h->images[h->nimages++].img = img;
    *out = img;
    pthread_mutex_unlock(&h->lock);
    return HY_OK;
}

static hy_err make_vm(vm_rec *r, char *errbuf, size_t errlen) {
    hy_config vc;
    hy_config_init(&vc);
    vc.name = r->name;
    vc.id = r->id;
    vc.classpath = r->classpath;
    vc.heap_limit = r->cfg.heap_limit;
    if (r->cfg.stack_slots) vc.stack_slots = r->cfg.stack_slots;
    vc.gc_stress = vc.gc_stress || r->cfg.gc_stress;
    vc.heartbeat_hz = r->cfg.heartbeat_hz;
    vc.max_workers = r->cfg.max_workers;
    vc.timeslice = r->cfg.timeslice;
    vc.takeover_stress = vc.takeover_stress || r->cfg.takeover_stress;
    vc.write = vm_write;
    vc.write_ctx = r;
    vc.host_ops = &host_ops;
    vc.host = r->host;
    vc.trace = r->host->cfg.trace;
    hy_vm *vm = NULL;
    hy_err err;
    if (r->image) {
        hy_image *img;
        err = host_image(r->host, r->image, &img, errbuf, errlen);
        if (err != HY_OK) return err;
        err = hy_vm_new_from_image(&vc, img, &vm);
        if (err != HY_OK) {
            snprintf(errbuf, errlen, "cannot create a VM from %s: %s", r->image, hy_strerror(err));
            return err;
        }
    } else {
        err = hy_vm_new(&vc, &vm);
        if (err != HY_OK) {
            snprintf(errbuf, errlen, "cannot create the VM: %s", hy_strerror(err));
            return err;
        }
    }
    r->vm = vm;
    return HY_OK;
}

hy_err hy_host_spawn(hy_host *h, const hy_spawn_config *cfg, unsigned *id, char *errbuf, size_t errlen) {
    char scratch[8];
    if (!errbuf) { errbuf = scratch; errlen = sizeof scratch; }
    if (errlen) errbuf[0] = 0;
    if (!h || !cfg || !id || cfg->argc < 0 || (cfg->argc > 0 && !cfg->argv)) return HY_EINVAL;
    if (!cfg->image && !cfg->main_class) {
        snprintf(errbuf, errlen, "a VM needs an image or a main class");
        return HY_EINVAL;
    }
    vm_rec *r = calloc(1, sizeof *r);
    if (!r) return HY_ENOMEM;
    bool ok = true;
    r->host = h;
    r->cfg = *cfg;
    r->image = dup_or_null(cfg->image, &ok);
    r->main_class = dup_or_null(cfg->main_class, &ok);
    r->classpath = dup_or_null(cfg->classpath, &ok);
    r->argv = calloc((size_t)cfg->argc + 1, sizeof *r->argv);
    if (!r->argv) ok = false;
    for (int i = 0; ok && i < cfg->argc; i++) r->argv[i] = dup_or_null(cfg->argv[i], &ok);
    r->cfg.name = r->cfg.image = r->cfg.main_class = r->cfg.classpath = NULL;
    r->cfg.argv = NULL;
    char name[64];
    if (cfg->name) snprintf(name, sizeof name, "%s", cfg->name);
    else default_name(cfg, name, sizeof name);

    /* A place in the table (and the id) first; the VM is made outside the lock. */
    pthread_mutex_lock(&h->lock);
    if (ok && h->nvms == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        vm_rec **v = realloc(h->vms, cap * sizeof *v);
        if (v) { h->vms = v; h->cap = cap; } else ok = false;
    }
    if (ok) {
        r->id = (unsigned)h->nvms + 1;
        if (!cfg->name && name_taken(h, name)) {
            char unique[64];
            snprintf(unique, sizeof unique, "%.40s-%u", name, r->id);
            memcpy(name, unique, sizeof name);
        }
        r->name = strdup(name);
        if (!r->name) ok = false;
    }
    if (ok) {
        r->state = HY_VM_CREATED;
        h->vms[h->nvms++] = r;
        atomic_store(&h->count, h->nvms);
    }
    pthread_mutex_unlock(&h->lock);
    if (!ok) {
        rec_free(r);
        return HY_ENOMEM;
    }
    hy_err err = make_vm(r, errbuf, errlen);
    if (err != HY_OK) {
        /* The id stays taken (ids are never reused): the record says the VM failed. */
        pthread_mutex_lock(&h->lock);
        r->state = HY_VM_FAILED;
        r->exit_status = 1;
        r->started = true;
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
        return err;
    }
    *id = r->id;
    return HY_OK;
}

/* ---- Running ----------------------------------------------------------------------------------- */

static void *vm_thread(void *arg) {
    vm_rec *r = arg;
    hy_host *h = r->host;
    hy_vm *vm = r->vm;   /* (ours: nobody frees it but this thread) */
    int status = 1;
    hy_err err = r->main_class
        ? hy_vm_run_main(vm, r->main_class, r->cfg.argc, (const char *const *)r->argv, &status)
        : hy_vm_run_entry(vm, r->cfg.argc, (const char *const *)r->argv, &status);
    if (err != HY_OK) {
        char msg[1200];
        const char *why = *hy_vm_last_error(vm) ? hy_vm_last_error(vm) : hy_strerror(err);
        int n = snprintf(msg, sizeof msg, "hydra: %s\n", why);
        vm_write(r, 2, msg, n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
        status = 1;
    }
    hy_thread_stats ts;
    hy_gc_stats gs;
    hy_vm_thread_stats(vm, &ts);
    hy_vm_gc_stats(vm, &gs);
    pthread_mutex_lock(&h->lock);
    r->final_threads = ts;
    r->final_gc = gs;
    if (r->state != HY_VM_KILLED) {
        r->exit_status = status;
        r->state = status == 0 ? HY_VM_EXITED : HY_VM_FAILED;
    }
    r->vm = NULL;
    pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
    /* Waits for the VM's workers and heartbeat (a worker inside a foreign call leaves when the
     * call returns), then frees the heap and everything else. */
    hy_vm_free(vm);
    flush_partial(r, 1);
    flush_partial(r, 2);
    return NULL;
}

hy_err hy_host_start(hy_host *h, unsigned id) {
    if (!h) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    vm_rec *r = rec_of(h, id);
    hy_err err = HY_OK;
    if (!r || r->started || !r->vm || r->state != HY_VM_CREATED) {
        err = HY_EINVAL;
    } else {
        r->started = true;
        r->state = HY_VM_RUNNING;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8u << 20);
        if (pthread_create(&r->thread, &attr, vm_thread, r) != 0) {
            r->started = false;
            r->state = HY_VM_CREATED;
            err = HY_ENOMEM;
        } else {
            r->has_thread = true;
        }
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_unlock(&h->lock);
    return err;
}

hy_err hy_host_join(hy_host *h, unsigned id, int *exit_status) {
    if (!h || !exit_status) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    vm_rec *r = rec_of(h, id);
    if (!r || !r->started) {
        pthread_mutex_unlock(&h->lock);
        return HY_EINVAL;
    }
    while (r->state == HY_VM_RUNNING) pthread_cond_wait(&h->changed, &h->lock);
    *exit_status = r->exit_status;
    pthread_mutex_unlock(&h->lock);
    return HY_OK;
}

hy_err hy_host_join_all(hy_host *h, int *worst_status) {
    if (!h || !worst_status) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        bool running = false;
        for (size_t i = 0; i < h->nvms; i++) running |= h->vms[i]->state == HY_VM_RUNNING;
        if (!running) break;
        pthread_cond_wait(&h->changed, &h->lock);
    }
    *worst_status = 0;
    for (size_t i = 0; i < h->nvms && !*worst_status; i++)
        if (h->vms[i]->started && !h->vms[i]->parent) *worst_status = h->vms[i]->exit_status;
    pthread_mutex_unlock(&h->lock);
    return HY_OK;
}

static hy_err end_vm(hy_host *h, unsigned id, bool kill) {
    if (!h) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    vm_rec *r = rec_of(h, id);
    hy_err err = HY_OK;
    if (!r) {
        err = HY_EINVAL;
    } else if (r->state == HY_VM_RUNNING && r->vm) {
        hy_vm_request_stop(r->vm, kill ? HY_EXIT_KILLED : HY_EXIT_STOPPED, kill);
        if (kill) {
            r->state = HY_VM_KILLED;
            r->exit_status = HY_EXIT_KILLED;
            pthread_cond_broadcast(&h->changed);
        }
    } else if (r->state == HY_VM_CREATED) {
        /* Never started: it ends here. */
        hy_vm *vm = r->vm;
        r->vm = NULL;
        r->started = true;
        r->state = kill ? HY_VM_KILLED : HY_VM_FAILED;
        r->exit_status = kill ? HY_EXIT_KILLED : HY_EXIT_STOPPED;
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
        hy_vm_free(vm);
        return HY_OK;
    }
    pthread_mutex_unlock(&h->lock);
    return err;
}

hy_err hy_host_stop(hy_host *h, unsigned id) { return end_vm(h, id, false); }
hy_err hy_host_kill(hy_host *h, unsigned id) { return end_vm(h, id, true); }

/* ---- Looking ---------------------------------------------------------------------------------- */

static void fill_info(vm_rec *r, hy_vm_info *out) {
    memset(out, 0, sizeof *out);
    out->id = r->id;
    snprintf(out->name, sizeof out->name, "%s", r->name);
    out->state = r->state;
    out->exit_status = r->state >= HY_VM_EXITED ? r->exit_status : 0;
    if (r->vm && r->state == HY_VM_RUNNING) {
        hy_vm_thread_stats(r->vm, &out->threads);   /* atomics: safe from any thread */
    } else {
        out->threads = r->final_threads;
        out->gc = r->final_gc;
    }
}

hy_err hy_host_list(hy_host *h, hy_vm_info *out, size_t cap, size_t *count) {
    if (!h || !count || (cap && !out)) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nvms && i < cap; i++) fill_info(h->vms[i], &out[i]);
    *count = h->nvms;
    pthread_mutex_unlock(&h->lock);
    return HY_OK;
}

hy_err hy_host_info(hy_host *h, unsigned id, hy_vm_info *out) {
    if (!h || !out) return HY_EINVAL;
    pthread_mutex_lock(&h->lock);
    vm_rec *r = rec_of(h, id);
    if (r) fill_info(r, out);
    pthread_mutex_unlock(&h->lock);
    return r ? HY_OK : HY_EINVAL;
}

void hy_host_free(hy_host *h) {
    if (!h) return;
    pthread_mutex_lock(&h->lock);
    size_t n = h->nvms;
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < n; i++) hy_host_kill(h, (unsigned)i + 1);
    /* VMs spawned meanwhile (by a VM that was still running) are killed too. */
    for (;;) {
        pthread_mutex_lock(&h->lock);
        size_t now = h->nvms;
        pthread_mutex_unlock(&h->lock);
        if (now == n) break;
        for (size_t i = n; i < now; i++) hy_host_kill(h, (unsigned)i + 1);
        n = now;
    }
    for (size_t i = 0; i < n; i++)
        if (h->vms[i]->has_thread) pthread_join(h->vms[i]->thread, NULL);
    for (size_t i = 0; i < n; i++) {
        if (h->vms[i]->vm) hy_vm_free(h->vms[i]->vm);
        rec_free(h->vms[i]);
    }
    free(h->vms);
    for (size_t i = 0; i < h->nimages; i++) {
        hy_image_close(h->images[i].img);
        free(h->images[i].path);
    }
    free(h->images);
    pthread_mutex_destroy(&h->out_lock);
    pthread_cond_destroy(&h->changed);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* ---- What VMs ask of their host (VM spawn: and friends) ---------------------------------------- */

static hy_err op_spawn(void *host, unsigned parent, const char *what, const char *name, int argc,
                       const char *const *argv, unsigned *id, char *errbuf, size_t errlen) {
    hy_host *h = host;
    hy_spawn_config c;
    pthread_mutex_lock(&h->lock);
    vm_rec *p = rec_of(h, parent);
    if (!p) {
        pthread_mutex_unlock(&h->lock);
        return HY_EINVAL;
    }
    /* A sibling inherits its parent's options, class path and (for a class) image. */
    c = p->cfg;
    char *image = NULL, *cls = NULL, *cp = p->classpath ? strdup(p->classpath) : NULL;
    size_t wl = strlen(what);
    if (wl > 6 && !strcmp(what + wl - 6, ".image")) {
        image = strdup(what);
    } else {
        cls = strdup(what);
        image = p->image ? strdup(p->image) : NULL;
    }
    pthread_mutex_unlock(&h->lock);
    c.name = name;
    c.image = image;
    c.main_class = cls;
    c.classpath = cp;
    c.argc = argc;
    c.argv = argv;
    hy_err err = (image || cls) ? hy_host_spawn(h, &c, id, errbuf, errlen) : HY_ENOMEM;
    if (err == HY_OK) {
        pthread_mutex_lock(&h->lock);
        rec_of(h, *id)->parent = parent;
        pthread_mutex_unlock(&h->lock);
        err = hy_host_start(h, *id);
    }
    free(image);
    free(cls);
    free(cp);
    return err;
}

static hy_err op_join(void *host, unsigned id, int *exit_status) { return hy_host_join(host, id, exit_status); }
static hy_err op_stop(void *host, unsigned id) { return hy_host_stop(host, id); }
static hy_err op_kill(void *host, unsigned id) { return hy_host_kill(host, id); }

static hy_err op_info(void *host, unsigned id, int *state, int *exit_status, const char **name) {
    hy_host *h = host;
    pthread_mutex_lock(&h->lock);
    vm_rec *r = rec_of(h, id);
    if (r) {
        *state = (int)r->state;
        *exit_status = r->exit_status;
        *name = r->name;
    }
    pthread_mutex_unlock(&h->lock);
    return r ? HY_OK : HY_EINVAL;
}

static const hy_host_ops host_ops = { op_spawn, op_join, op_stop, op_kill, op_info };
