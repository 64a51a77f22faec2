/*
 * image.c -- snapshot images: writing a VM's heap to a file, validating a file into a
 * read-only hy_image, and making VMs from it. The format is described in image.h.
 *
 * Invariants:
 *  - A hy_image never changes after hy_image_open returns, so any number of threads may make
 *    VMs from it at once. It holds the payload already normalised (header GC bits clear, foreign
 *    handles zeroed, inline caches empty) and a bitmap of the payload words that hold
 *    references, so that making a VM is one copy into one old-space region and one relocation
 *    pass over the bitmap.
 *  - Nothing from a file is trusted before validation: every reference word must be a
 *    SmallInteger or point at an object header inside the payload, objects must tile the
 *    payload exactly, class words must point at classes, and method layouts and bytecode
 *    operands must be in range. A file that fails any check is refused with a message naming
 *    it and the problem; validation never reads outside the buffer.
 *  - What is not heap is rebuilt per VM: the symbol table (copied slot for slot: symbols hash
 *    by their bytes), the globals table (rehashed: cells hash by address), the method cache
 *    and trampolines (empty), the scheduler (no process), foreign handles (zeroed at save, and
 *    again at open).
 */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bigint.h"
#include "bytecode.h"
#include "foreign.h"
#include "prims.h"
#include "process.h"
#include "thread.h"
#include "trace.h"
#include "vm.h"

#define IMAGE_MAX_ENTRY 256
#define IMAGE_MAX_TABLE ((uint32_t)1 << 24)
#define IMAGE_FIXED_ROOTS 6   /* nil, true, false, system, undefined, special */
#define IMAGE_NROOTS (IMAGE_FIXED_ROOTS + HYI_NUM_CLASSES + HYI_NUM_SYMBOLS)

/* Fields of images/core classes that name things of one VM's scheduler (process.c keeps the same
 * layouts): a Process's id, a Semaphore's queue of waiting process ids. */
enum { IMAGE_PROC_ID = 0, IMAGE_SEM_FIRST = 1, IMAGE_SEM_LAST = 2, IMAGE_SEM_FIELDS = 3 };

struct hy_image {
    uint8_t *file;           /* the whole file (validated, normalised); owns the rest */
    const uint8_t *payload;
    size_t payload_bytes;
    const uint64_t *roots;   /* IMAGE_NROOTS image words */
    const uint64_t *symbols; /* symbols_cap image words */
    uint32_t symbols_cap, symbols_count;
    const uint64_t *globals;
    uint32_t nglobals;
    uint64_t *reloc;         /* bit i set: payload word i is a reference */
    char entry[IMAGE_MAX_ENTRY + 1];
};

/* ---- Checksums and the layout fingerprint ------------------------------------------------ */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * FNV_PRIME;
    return h;
}

uint64_t hyi_image_checksum(const void *file, size_t len) {
    size_t at = offsetof(hyi_image_header, checksum);
    if (len < at + 8) return fnv(FNV_OFFSET, file, len);
    static const uint8_t zero[8];
    uint64_t h = fnv(FNV_OFFSET, file, at);
    h = fnv(h, zero, 8);
    return fnv(h, (const uint8_t *)file + at + 8, len - at - 8);
}

/* Everything the payload's bytes mean depends on: header bit-fields, method and cache layouts,
 * the class and symbol roots, the opcodes and the numbering of primitives. */
static uint64_t layout_fingerprint(void) {
    uint64_t h = fnv(FNV_OFFSET, "hydra image layout", 18);
    hyi_obj probe;
    memset(&probe, 0, sizeof probe);
    probe.cls = 0x1122334455667788ull;
    probe.size = 0x99aabbccu;
    probe.format = 5;
    probe.pinned = 1;
    probe.old = 1;
    probe.hash = 0x12345;
    h = fnv(h, &probe, sizeof probe);
    uint32_t sizes[] = { sizeof(hyi_obj), sizeof(hyi_method), sizeof(hyi_ic), HYI_METHOD_OOPS,
                         HYI_CLASS_FIXED, (uint32_t)HYI_NUM_CLASSES, (uint32_t)HYI_NUM_SYMBOLS,
                         HYI_OP_COUNT, HYI_BLOCK_SLOTS, HYI_CELL_SLOTS };
    h = fnv(h, sizes, sizeof sizes);
    h = fnv(h, hyi_op_operands, sizeof hyi_op_operands);
    for (unsigned t = 0; t < HYI_PRIM_NUM_TABLES; t++) {
        for (const hyi_prim_def *d = hyi_prim_tables[t]; d->cls; d++) {
            h = fnv(h, d->cls, strlen(d->cls) + 1);
            h = fnv(h, d->selector, strlen(d->selector) + 1);
        }
        h = fnv(h, "|", 1);
    }
    return h;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static bool valid_class_name(const char *s, size_t n) {
    if (n == 0 || n > IMAGE_MAX_ENTRY) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
        if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
    }
    return true;
}

/* ==== Saving ================================================================================ */

/* The objects to save, in the order they are written, and their offsets (a hash map from
 * address to offset). */
typedef struct saver {
    hy_vm *vm;
    hyi_oop *keys;
    uint64_t *offs;
    size_t cap, count;
    hyi_oop *queue;
    size_t qlen, qcap;
    uint64_t bytes;        /* payload bytes so far */
    hyi_oop process_cls, address_cls, semaphore_cls;
    bool oom;
} saver;

static size_t map_slot(const saver *sv, hyi_oop o) {
    uint64_t x = (uint64_t)o * 0x9E3779B97F4A7C15ull;
    size_t i = (size_t)(x >> 20) & (sv->cap - 1);
    while (sv->keys[i] && sv->keys[i] != o) i = (i + 1) & (sv->cap - 1);
    return i;
}

static bool map_grow(saver *sv) {
    size_t ncap = sv->cap ? sv->cap * 2 : 65536;
    hyi_oop *ok = sv->keys;
    uint64_t *oo = sv->offs;
    size_t ocap = sv->cap;
    sv->keys = calloc(ncap, sizeof *sv->keys);
    sv->offs = malloc(ncap * sizeof *sv->offs);
    if (!sv->keys || !sv->offs) {
        free(sv->keys);
        free(sv->offs);
        sv->keys = ok;
        sv->offs = oo;
        return false;
    }
    sv->cap = ncap;
    for (size_t i = 0; i < ocap; i++) {
        if (!ok[i]) continue;
        size_t j = map_slot(sv, ok[i]);
        sv->keys[j] = ok[i];
        sv->offs[j] = oo[i];
    }
    free(ok);
    free(oo);
    return true;
}

/* Queue o (a heap object) for saving, once. */
static void save_enqueue(saver *sv, hyi_oop o) {
    if (!o || !hyi_is_ptr(o) || sv->oom) return;
    if ((sv->count + 1) * 2 > sv->cap && !map_grow(sv)) { sv->oom = true; return; }
    size_t i = map_slot(sv, o);
    if (sv->keys[i]) return;
    if (sv->qlen == sv->qcap) {
        size_t ncap = sv->qcap ? sv->qcap * 2 : 16384;
        hyi_oop *nq = realloc(sv->queue, ncap * sizeof *nq);
        if (!nq) { sv->oom = true; return; }
        sv->queue = nq;
        sv->qcap = ncap;
    }
    sv->keys[i] = o;
    sv->offs[i] = sv->bytes;
    sv->count++;
    sv->queue[sv->qlen++] = o;
    sv->bytes += hyi_obj_bytes(o);
}

/* The method's inline-cache table, or NULL when it has none that is well formed. */
static hyi_ic *method_ics(hyi_oop o) {
    size_t bytes = hyi_obj_bytes(o);
    if (bytes < sizeof(hyi_method)) return NULL;
    hyi_method *m = hyi_m(o);
    if (!m->num_ics || m->ic_offset < sizeof(hyi_method) || m->ic_offset % 8 ||
        m->ic_offset + (size_t)m->num_ics * sizeof(hyi_ic) > bytes)
        return NULL;
    return hyi_method_ics(m);
}

/* Queue everything o refers to (inline caches are weak: only their selectors). */
static void save_trace(saver *sv, hyi_oop o) {
    save_enqueue(sv, hyi_o(o)->cls);
    hyi_format f = hyi_fmt(o);
    if (hyi_fmt_has_slots(f)) {
        for (uint32_t i = 0; i < hyi_size(o); i++) save_enqueue(sv, hyi_slots(o)[i]);
    } else if (f == HYI_FMT_METHOD && hyi_obj_bytes(o) >= sizeof(hyi_obj) + HYI_METHOD_OOPS * sizeof(hyi_oop)) {
        for (uint32_t i = 0; i < HYI_METHOD_OOPS; i++) save_enqueue(sv, hyi_slots(o)[i]);
        hyi_ic *ics = method_ics(o);
        for (uint32_t i = 0; ics && i < hyi_m(o)->num_ics; i++) save_enqueue(sv, ics[i].selector);
    }
}

static uint64_t save_word(const saver *sv, hyi_oop o) {
    if (!o || hyi_is_smi(o)) return o;
    size_t i = map_slot(sv, o);
    return sv->keys[i] == o ? 8 + sv->offs[i] : 0;   /* every saved reference was traced */
}

/* A slot word: a missing value (0, only during bootstrap) is saved as nil. */
static uint64_t save_slot(const saver *sv, hyi_oop o) {
    return save_word(sv, o ? o : sv->vm->nil);
}

/* Copy object o to dst as an image object. false when o is a live process. */
static bool save_object(const saver *sv, hyi_oop o, uint8_t *dst) {
    hy_vm *vm = sv->vm;
    hyi_obj *src = hyi_o(o);
    size_t bytes = hyi_obj_bytes(o);
    memcpy(dst, src, bytes);
    hyi_obj hd = { .cls = save_word(sv, src->cls), .size = src->size, .format = src->format,
                   .pinned = src->pinned, .old = 1, .hash = src->hash };
    memcpy(dst, &hd, sizeof hd);
    uint64_t *w = (uint64_t *)(dst + sizeof(hyi_obj));
    hyi_format f = hyi_fmt(o);
    if (hyi_fmt_has_slots(f)) {
        for (uint32_t i = 0; i < src->size; i++) w[i] = save_slot(sv, hyi_slots(o)[i]);
        if (f == HYI_FMT_SLOTS && src->size >= 1 && sv->process_cls && hyi_is_kind(vm, o, sv->process_cls)) {
            /* A process id means nothing in another VM; a live one cannot be saved. */
            hyi_oop id = hyi_slots(o)[IMAGE_PROC_ID];
            if (hyi_is_smi(id) && hyi_sched_proc(vm, (uint32_t)hyi_smi_val(id))) return false;
            w[IMAGE_PROC_ID] = save_word(sv, vm->nil);
        }
        if (f == HYI_FMT_SLOTS && src->size >= HYI_EA_FIELDS && sv->address_cls &&
            hyi_is_kind(vm, o, sv->address_cls))
            w[HYI_EA_FREED] = save_word(sv, vm->true_);
        if (f == HYI_FMT_SLOTS && src->size >= IMAGE_SEM_FIELDS && sv->semaphore_cls &&
            hyi_is_kind(vm, o, sv->semaphore_cls)) {
            /* No process waits in a saved image. */
            w[IMAGE_SEM_FIRST] = save_word(sv, vm->nil);
            w[IMAGE_SEM_LAST] = save_word(sv, vm->nil);
        }
    } else if (f == HYI_FMT_EXTERNAL) {
        memset(w, 0, bytes - sizeof(hyi_obj));
    } else if (f == HYI_FMT_METHOD && bytes >= sizeof(hyi_obj) + HYI_METHOD_OOPS * sizeof(hyi_oop)) {
        for (uint32_t i = 0; i < HYI_METHOD_OOPS; i++) w[i] = save_slot(sv, hyi_slots(o)[i]);
        hyi_ic *ics = method_ics(o);
        if (ics) {
            hyi_ic *out = (hyi_ic *)(dst + hyi_m(o)->ic_offset);
            for (uint32_t i = 0; i < hyi_m(o)->num_ics; i++) {
                out[i].selector = save_slot(sv, ics[i].selector);
                out[i].cls = 0;
                out[i].target = 0;
                out[i].misses = 0;
            }
        }
    }
    return true;
}

static hyi_oop global_named(hy_vm *vm, const char *name) {
    hyi_oop sym = hyi_symbol_c(vm, name);
    return sym ? hyi_global_get(vm, sym) : 0;
}

/* The image of vm as one buffer (*len bytes), or NULL with an error recorded. */
static uint8_t *save_build(hy_vm *vm, const char *entry, size_t *len, hy_err *err) {
    saver sv;
    memset(&sv, 0, sizeof sv);
    sv.vm = vm;
    sv.process_cls = global_named(vm, "Process");
    sv.address_cls = global_named(vm, "ExternalAddress");
    sv.semaphore_cls = global_named(vm, "Semaphore");
    if (sv.semaphore_cls && (!hyi_is_ptr(sv.semaphore_cls) || hyi_fmt(sv.semaphore_cls) != HYI_FMT_SLOTS)) sv.semaphore_cls = 0;
    if (sv.process_cls && (!hyi_is_ptr(sv.process_cls) || hyi_fmt(sv.process_cls) != HYI_FMT_SLOTS)) sv.process_cls = 0;
    if (sv.address_cls && (!hyi_is_ptr(sv.address_cls) || hyi_fmt(sv.address_cls) != HYI_FMT_SLOTS)) sv.address_cls = 0;

    hyi_oop roots[IMAGE_NROOTS];
    hyi_oop fixed[IMAGE_FIXED_ROOTS] = { vm->nil, vm->true_, vm->false_, vm->system, vm->undefined,
                                         vm->special ? vm->special : vm->nil };
    memcpy(roots, fixed, sizeof fixed);
    memcpy(roots + IMAGE_FIXED_ROOTS, &vm->cls, sizeof vm->cls);
    memcpy(roots + IMAGE_FIXED_ROOTS + HYI_NUM_CLASSES, &vm->sym, sizeof vm->sym);
    for (size_t i = 0; i < IMAGE_NROOTS; i++) save_enqueue(&sv, roots[i]);
    for (uint32_t i = 0; i < vm->symbols.cap; i++) save_enqueue(&sv, vm->symbols.keys[i]);
    for (uint32_t i = 0; i < vm->globals.cap; i++) save_enqueue(&sv, vm->globals.keys[i]);
    for (size_t q = 0; q < sv.qlen && !sv.oom; q++) save_trace(&sv, sv.queue[q]);

    uint8_t *buf = NULL;
    if (sv.oom) { *err = HY_ENOMEM; goto out; }
    size_t entry_len = entry ? strlen(entry) : 0;
    size_t off_entry = sizeof(hyi_image_header);
    size_t off_roots = off_entry + align8(entry_len);
    size_t off_syms = off_roots + IMAGE_NROOTS * 8;
    size_t off_globals = off_syms + (size_t)vm->symbols.cap * 8;
    size_t off_payload = off_globals + (size_t)vm->globals.count * 8;
    size_t total = off_payload + sv.bytes;
    buf = calloc(1, total);
    if (!buf) { *err = HY_ENOMEM; goto out; }

    hyi_image_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, HYI_IMAGE_MAGIC, 8);
    hd.version = HYI_IMAGE_VERSION;
    hd.header_bytes = sizeof hd;
    hd.word_bytes = sizeof(void *);
    hd.endian = HYI_IMAGE_ENDIAN;
    hd.layout = layout_fingerprint();
    hd.file_bytes = total;
    hd.entry_len = (uint32_t)entry_len;
    hd.nroots = IMAGE_NROOTS;
    hd.symbols_cap = vm->symbols.cap;
    hd.nglobals = vm->globals.count;
    hd.payload_bytes = sv.bytes;
    hd.nobjects = sv.qlen;
    if (entry_len) memcpy(buf + off_entry, entry, entry_len);
    uint64_t *w = (uint64_t *)(buf + off_roots);
    for (size_t i = 0; i < IMAGE_NROOTS; i++) w[i] = save_word(&sv, roots[i]);
    w = (uint64_t *)(buf + off_syms);
    for (uint32_t i = 0; i < vm->symbols.cap; i++) w[i] = save_word(&sv, vm->symbols.keys[i]);
    w = (uint64_t *)(buf + off_globals);
    for (uint32_t i = 0, k = 0; i < vm->globals.cap; i++)
        if (vm->globals.keys[i]) w[k++] = save_word(&sv, vm->globals.keys[i]);
    uint8_t *p = buf + off_payload;
    for (size_t q = 0; q < sv.qlen; q++) {
        if (!save_object(&sv, sv.queue[q], p)) {
            hyi_vm_set_error(vm, "cannot save an image while a process is alive (in a foreign call)");
            *err = HY_EINVAL;
            free(buf);
            buf = NULL;
            goto out;
        }
        p += hyi_obj_bytes(sv.queue[q]);
    }
    memcpy(buf, &hd, sizeof hd);
    hd.checksum = hyi_image_checksum(buf, total);
    memcpy(buf + offsetof(hyi_image_header, checksum), &hd.checksum, 8);
    *len = total;
out:
    free(sv.keys);
    free(sv.offs);
    free(sv.queue);
    return buf;
}

static hy_err write_file(hy_vm *vm, const char *path, const uint8_t *buf, size_t len) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return HY_ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        hyi_vm_set_error(vm, "cannot write %s: %s", path, strerror(errno));
        free(tmp);
        return HY_EIMAGE;
    }
    size_t done = 0;
    int e = 0;
    while (done < len) {
        ssize_t n = write(fd, buf + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { e = n < 0 ? errno : EIO; break; }
        done += (size_t)n;
    }
    if (!e && fchmod(fd, 0644) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && rename(tmp, path) != 0) e = errno;
    if (e) {
        unlink(tmp);
        hyi_vm_set_error(vm, "cannot write %s: %s", path, strerror(e));
    }
    free(tmp);
    return e ? HY_EIMAGE : HY_OK;
}

hy_err hy_vm_save_image(hy_vm *vm, const char *entry_class, const char *path) {
    if (!vm || !path) return HY_EINVAL;
    if (!hyi_thread_attach(vm)) return HY_ENOMEM;
    if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_ATTACH, false);
    hy_err err = HY_OK;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (vm->stack.nframes || vm->current_process) {
        hyi_vm_set_error(vm, "cannot save an image while a program runs");
        err = HY_EINVAL;
        goto out;
    }
    if (entry_class && *entry_class) {
        if (!valid_class_name(entry_class, strlen(entry_class))) {
            hyi_vm_set_error(vm, "'%.300s' is not a class name", entry_class);
            err = HY_ENOENT;
            goto out;
        }
        vm->load_failed = false;
        hyi_oop name = hyi_symbol_c(vm, entry_class);
        if (!name) { err = HY_ENOMEM; goto out; }
        if (!hyi_vm_load_class(vm, name)) {
            if (vm->load_failed) { err = HY_ESYNTAX; goto out; }
            hyi_vm_set_error(vm, "class %s not found on the class path", entry_class);
            err = HY_ENOENT;
            goto out;
        }
    }
    /* Names the saver looks up exist before the collection, so that it allocates nothing. */
    if (!hyi_symbol_c(vm, "Process") || !hyi_symbol_c(vm, "ExternalAddress") || !hyi_symbol_c(vm, "Semaphore")) { err = HY_ENOMEM; goto out; }
    hyi_gc_full(vm);
    buf = save_build(vm, entry_class, &len, &err);
    if (buf) err = write_file(vm, path, buf, len);
out:
    free(buf);
    if (hyi_tracing(vm)) hyi_trace_own_end(vm);
    hyi_thread_detach(vm);
    return err;
}

/* ==== Loading all classes =================================================================== */

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The class names (NAME of NAME.som) in dir, sorted; NULL with errno set on failure. */
static char **class_files(const char *dir, size_t *n) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 64, k = 0;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    while (names && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len <= 4 || strcmp(e->d_name + len - 4, ".som") != 0) continue;
        if (!valid_class_name(e->d_name, len - 4)) continue;
        if (k == cap) {
            char **nn = realloc(names, cap * 2 * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap *= 2;
        }
        names[k] = strndup(e->d_name, len - 4);
        if (!names[k]) break;
        k++;
    }
    closedir(d);
    if (!names || e) {
        for (size_t i = 0; names && i < k; i++) free(names[i]);
        free(names);
        errno = ENOMEM;
        return NULL;
    }
    qsort(names, k, sizeof *names, compare_names);
    *n = k;
    return names;
}

hy_err hy_vm_load_all_classes(hy_vm *vm) {
    if (!vm) return HY_EINVAL;
    if (!hyi_thread_attach(vm)) return HY_ENOMEM;
    if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_ATTACH, false);
    hy_err err = HY_OK;
    for (char **dir = vm->classpath; dir && *dir && err == HY_OK; dir++) {
        size_t n = 0;
        char **names = class_files(*dir, &n);
        if (!names) {
            hyi_vm_set_error(vm, "cannot read the class-path folder %s: %s", *dir, strerror(errno));
            err = errno == ENOMEM ? HY_ENOMEM : HY_ENOENT;
            break;
        }
        for (size_t i = 0; i < n && err == HY_OK; i++) {
            vm->load_failed = false;
            hyi_oop name = hyi_symbol_c(vm, names[i]);
            if (!name) { err = HY_ENOMEM; break; }
            if (hyi_vm_load_class(vm, name)) continue;
            if (vm->load_failed) {
                err = HY_ESYNTAX;
            } else {
                /* The file is there but an earlier folder has no such class and this one
                 * could not be read (or memory ran out). */
                hyi_vm_set_error(vm, "%s/%s.som: cannot be loaded", *dir, names[i]);
                err = HY_ENOENT;
            }
        }
        for (size_t i = 0; i < n; i++) free(names[i]);
        free(names);
    }
    if (hyi_tracing(vm)) hyi_trace_own_end(vm);
    hyi_thread_detach(vm);
    return err;
}

/* ==== Validating ============================================================================= */

typedef struct checker {
    const char *name;
    char *errbuf;
    size_t errlen;
    const uint8_t *payload;
    size_t pbytes;         /* payload bytes */
    size_t pstart;         /* file offset of the payload (for messages) */
    uint64_t *starts;      /* bit per payload word: an object header starts there */
    uint64_t *reloc;       /* bit per payload word: a reference */
    const uint64_t *roots;
    uint64_t nil;
    size_t prim_counts[HYI_PRIM_NUM_TABLES];
    uint64_t *classes;     /* bit per payload word: a class already checked in depth */
    uint8_t *targets;      /* scratch: per code byte, 1 = instruction start, 2 = jump target */
    int32_t *depth;        /* scratch: per code byte, operand stack depth before it (-1 = unseen) */
    uint32_t *work;        /* scratch: instructions still to visit */
    size_t targets_cap;
} checker;

static hy_err fail(checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static hy_err fail(checker *c, const char *fmt, ...) {
    if (c->errbuf && c->errlen) {
        int n = snprintf(c->errbuf, c->errlen, "%s: ", c->name);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->errbuf + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return HY_EIMAGE;
}

static bool bit(const uint64_t *bits, size_t i) { return (bits[i >> 6] >> (i & 63)) & 1; }
static void set_bit(uint64_t *bits, size_t i) { bits[i >> 6] |= (uint64_t)1 << (i & 63); }

static hyi_obj *obj_at(const checker *c, uint64_t w) { return (hyi_obj *)(c->payload + (w - 8)); }

/* w is a reference to an object of the payload. */
static bool is_obj(const checker *c, uint64_t w) {
    return w && !(w & 7) && w - 8 < c->pbytes && bit(c->starts, (w - 8) / 8);
}

/* w is a SmallInteger or a reference. */
static bool is_value(const checker *c, uint64_t w) { return (w & 1) || is_obj(c, w); }

static uint64_t *obj_words(const checker *c, uint64_t w) { return (uint64_t *)(obj_at(c, w) + 1); }

static bool is_fmt(const checker *c, uint64_t w, hyi_format f) {
    return is_obj(c, w) && obj_at(c, w)->format == f;
}

/* A class: fixed class slots, an instance spec naming a real format. */
static bool is_class(const checker *c, uint64_t w) {
    if (!is_fmt(c, w, HYI_FMT_SLOTS) || obj_at(c, w)->size < HYI_CLASS_FIXED) return false;
    uint64_t spec = obj_words(c, w)[HYI_CLASS_INSTSPEC];
    if (!(spec & 1)) return false;
    hyi_format f = hyi_instspec_format(spec);
    return f <= HYI_FMT_EXTERNAL && f != HYI_FMT_FREE && hyi_smi_val(spec) >= 0;
}

static uint32_t class_fields(const checker *c, uint64_t cls) {
    return hyi_instspec_fields(obj_words(c, cls)[HYI_CLASS_INSTSPEC]);
}

static size_t file_off(const checker *c, uint64_t w) { return c->pstart + (size_t)(w - 8); }

static hy_err check_value(checker *c, uint64_t obj, uint64_t *slot, const char *what) {
    if (!is_value(c, *slot))
        return fail(c, "object at byte %zu: %s holds a bad reference 0x%llx", file_off(c, obj), what,
                    (unsigned long long)*slot);
    if (!(*slot & 1)) set_bit(c->reloc, (size_t)(slot - (uint64_t *)c->payload));
    return HY_OK;
}

static bool is_symbol(const checker *c, uint64_t w) { return is_fmt(c, w, HYI_FMT_BYTES); }

static uint32_t selector_arity(const uint8_t *b, uint32_t n) {
    if (n == 0) return 0;
    uint32_t colons = 0;
    for (uint32_t i = 0; i < n; i++) colons += b[i] == ':';
    if (colons) return colons;
    return (b[0] >= 'a' && b[0] <= 'z') || (b[0] >= 'A' && b[0] <= 'Z') || b[0] == '_' ? 0 : 1;
}

#define IMAGE_MAX_DEPTH 4096

/* What method lookup, class loading and error messages read of a class: its name a Symbol,
 * its field names an Array, its methods an Array of methods, and a superclass chain of classes
 * that ends at nil. */
static hy_err check_class(checker *c, uint64_t cls) {
    size_t at = file_off(c, cls);
    uint32_t depth = 0;
    for (uint64_t k = cls; k != c->nil; k = obj_words(c, k)[HYI_CLASS_SUPERCLASS]) {
        if (!is_class(c, k)) return fail(c, "class at byte %zu: a superclass is not a class", at);
        if (bit(c->classes, (k - 8) / 8)) break;
        if (++depth > IMAGE_MAX_DEPTH) return fail(c, "class at byte %zu: its superclass chain is circular", at);
    }
    for (uint64_t k = cls; k != c->nil && !bit(c->classes, (k - 8) / 8); k = obj_words(c, k)[HYI_CLASS_SUPERCLASS]) {
        const uint64_t *s = obj_words(c, k);
        size_t kat = file_off(c, k);
        if (!is_symbol(c, s[HYI_CLASS_NAME])) return fail(c, "class at byte %zu: its name is not a Symbol", kat);
        if (s[HYI_CLASS_FIELDS] != c->nil && !is_fmt(c, s[HYI_CLASS_FIELDS], HYI_FMT_INDEXED))
            return fail(c, "class at byte %zu: its field names are not an Array", kat);
        uint64_t ms = s[HYI_CLASS_METHODS];
        if (ms != c->nil) {
            if (!is_fmt(c, ms, HYI_FMT_INDEXED)) return fail(c, "class at byte %zu: its methods are not an Array", kat);
            const uint64_t *m = obj_words(c, ms);
            for (uint32_t i = 0; i < obj_at(c, ms)->size; i++)
                if (!is_fmt(c, m[i], HYI_FMT_METHOD)) return fail(c, "class at byte %zu: method %u is not a method", kat, i);
        }
        set_bit(c->classes, (k - 8) / 8);
    }
    return HY_OK;
}

#define NO_JUMP INT64_MIN

/* Where the instruction op at pc (operands a) may jump, or NO_JUMP. */
static int64_t jump_target(uint8_t op, uint32_t pc, const uint8_t *a) {
    switch (op) {
    case HYI_OP_JUMP: case HYI_OP_JUMP_IF_TRUE: case HYI_OP_JUMP_IF_FALSE: case HYI_OP_JUMP_IF_NIL:
    case HYI_OP_JUMP_IF_NOT_NIL:
        return (int64_t)pc + 3 + (int16_t)(a[0] | a[1] << 8);
    case HYI_OP_JUMP_BACK: return (int64_t)pc + 3 - (int64_t)(a[0] | a[1] << 8);
    case HYI_OP_FOR_STEP: return (int64_t)pc + 5 - (int64_t)(a[2] | a[3] << 8);
    case HYI_OP_FOR_ENTER: return (int64_t)pc + 5 + (int64_t)(a[2] | a[3] << 8);
    default: return NO_JUMP;
    }
}

/* The operand stack along every path through the code (already decoded by check_code): it
 * never goes below empty or above max_stack, holds what each instruction takes, and has one
 * depth wherever paths meet. */
static hy_err check_stack(checker *c, size_t at, hyi_method *m) {
    const uint8_t *code = hyi_method_code(m);
    const hyi_ic *ics = m->num_ics ? hyi_method_ics(m) : NULL;
    uint32_t n = m->code_len, nwork = 0;
    for (uint32_t i = 0; i < n; i++) c->depth[i] = -1;
    c->depth[0] = 0;
    c->work[nwork++] = 0;
    while (nwork) {
        uint32_t pc = c->work[--nwork];
        int32_t d = c->depth[pc];
        uint8_t op = code[pc];
        const uint8_t *a = code + pc + 1;
        int32_t need = 0, delta = 0;
        bool falls = true;
        switch (op) {
        case HYI_OP_PUSH_SELF: case HYI_OP_PUSH_NIL: case HYI_OP_PUSH_TRUE: case HYI_OP_PUSH_FALSE:
        case HYI_OP_PUSH_SMALLINT: case HYI_OP_PUSH_LIT: case HYI_OP_PUSH_GLOBAL: case HYI_OP_PUSH_LOCAL:
        case HYI_OP_PUSH_FIELD: case HYI_OP_PUSH_CTX: case HYI_OP_PUSH_BLOCK:
            delta = 1;
            break;
        case HYI_OP_DUP: need = 1; delta = 1; break;
        case HYI_OP_STORE_LOCAL: case HYI_OP_STORE_FIELD: case HYI_OP_STORE_CTX: need = 1; break;
        case HYI_OP_POP_LOCAL: case HYI_OP_POP_FIELD: case HYI_OP_POP_CTX: case HYI_OP_POP:
        case HYI_OP_JUMP_IF_TRUE: case HYI_OP_JUMP_IF_FALSE: case HYI_OP_JUMP_IF_NIL: case HYI_OP_JUMP_IF_NOT_NIL:
            need = 1;
            delta = -1;
            break;
        case HYI_OP_RETURN_TOP: case HYI_OP_RETURN_NONLOCAL: need = 1; falls = false; break;
        case HYI_OP_RETURN_SELF: case HYI_OP_JUMP: case HYI_OP_JUMP_BACK: falls = false; break;
        default:
            if (op >= HYI_OP_SEND && op <= HYI_OP_SEND_LENGTH) {
                uint32_t nargs = ics[a[0] | a[1] << 8].nargs;
                need = (int32_t)nargs + 1;
                delta = -(int32_t)nargs;
            }
        }
        if (d < need) return fail(c, "method at byte %zu: the operand stack underflows at pc %u", at, pc);
        int32_t nd = d + delta;
        if (nd > m->max_stack) return fail(c, "method at byte %zu: the operand stack outgrows max_stack at pc %u", at, pc);
        int64_t succ[2] = { falls ? (int64_t)pc + 1 + hyi_op_operands[op] : NO_JUMP, jump_target(op, pc, a) };
        for (int k = 0; k < 2; k++) {
            if (succ[k] == NO_JUMP) continue;
            if (succ[k] >= n) return fail(c, "method at byte %zu: execution runs off the code after pc %u", at, pc);
            int32_t *sd = &c->depth[succ[k]];
            if (*sd == -1) {
                *sd = nd;
                c->work[nwork++] = (uint32_t)succ[k];
            } else if (*sd != nd) {
                return fail(c, "method at byte %zu: paths meet at pc %u with different stack depths", at, (unsigned)succ[k]);
            }
        }
    }
    return HY_OK;
}

/* The bytecode of a method: known opcodes, operands inside the code, literal, cache, local
 * and field indices in range, jumps to instruction starts, no falling off the end. */
static hy_err check_code(checker *c, uint64_t w, hyi_method *m, uint32_t nlits, const uint64_t *lits,
                         uint32_t nfields) {
    const uint8_t *code = hyi_method_code(m);
    uint32_t n = m->code_len, nlocals = (uint32_t)m->num_args + m->num_temps;
    size_t at = file_off(c, w);
    if (n == 0) return fail(c, "method at byte %zu: no code", at);
    if (n > c->targets_cap) {
        free(c->targets);
        free(c->depth);
        free(c->work);
        c->targets = malloc(n);
        c->depth = malloc(n * sizeof *c->depth);
        c->work = malloc(n * sizeof *c->work);
        c->targets_cap = c->targets && c->depth && c->work ? n : 0;
        if (!c->targets_cap) return HY_ENOMEM;
    }
    memset(c->targets, 0, n);
    uint8_t last = 0;
    for (uint32_t pc = 0; pc < n;) {
        uint8_t op = code[pc];
        if (op >= HYI_OP_COUNT) return fail(c, "method at byte %zu: unknown opcode %u at pc %u", at, op, pc);
        uint32_t len = 1 + hyi_op_operands[op];
        if (pc + len > n) return fail(c, "method at byte %zu: instruction at pc %u runs past the code", at, pc);
        c->targets[pc] |= 1;
        const uint8_t *a = code + pc + 1;
        uint32_t u16 = len >= 3 ? (uint32_t)(a[0] | a[1] << 8) : 0;
        bool bad = false;
        switch (op) {
        case HYI_OP_PUSH_LIT:
            bad = u16 >= nlits;
            break;
        case HYI_OP_PUSH_GLOBAL:
            bad = u16 >= nlits || !is_fmt(c, lits[u16], HYI_FMT_SLOTS) || obj_at(c, lits[u16])->size < HYI_CELL_SLOTS;
            break;
        case HYI_OP_PUSH_BLOCK:
            bad = u16 >= nlits || !is_fmt(c, lits[u16], HYI_FMT_METHOD) ||
                  obj_at(c, lits[u16])->size + sizeof(hyi_obj) < sizeof(hyi_method) ||
                  !(((hyi_method *)obj_at(c, lits[u16]))->flags & HYI_MF_BLOCK);
            break;
        case HYI_OP_PUSH_LOCAL: case HYI_OP_STORE_LOCAL: case HYI_OP_POP_LOCAL:
            bad = a[0] >= nlocals;
            break;
        case HYI_OP_PUSH_FIELD: case HYI_OP_STORE_FIELD: case HYI_OP_POP_FIELD:
            bad = a[0] >= nfields;
            break;
        case HYI_OP_FOR_STEP: case HYI_OP_FOR_ENTER:
            bad = a[0] >= nlocals || a[1] >= nlocals;
            break;
        default:
            if (op >= HYI_OP_SEND && op <= HYI_OP_SEND_LENGTH) bad = u16 >= m->num_ics;
        }
        int64_t target = jump_target(op, pc, a);
        if (bad) return fail(c, "method at byte %zu: operand out of range at pc %u", at, pc);
        if (target != NO_JUMP) {
            if (target < 0 || target >= n)
                return fail(c, "method at byte %zu: jump out of the code at pc %u", at, pc);
            c->targets[target] |= 2;
        }
        last = op;
        pc += len;
    }
    for (uint32_t pc = 0; pc < n; pc++)
        if (c->targets[pc] == 2) return fail(c, "method at byte %zu: jump into an instruction at pc %u", at, pc);
    if (last != HYI_OP_RETURN_TOP && last != HYI_OP_RETURN_SELF && last != HYI_OP_RETURN_NONLOCAL &&
        last != HYI_OP_JUMP && last != HYI_OP_JUMP_BACK)
        return fail(c, "method at byte %zu: the code does not end with a return or a jump", at);
    return check_stack(c, at, m);
}

static hy_err check_method(checker *c, uint64_t w) {
    hyi_obj *o = obj_at(c, w);
    size_t at = file_off(c, w), bytes = sizeof(hyi_obj) + hyi_payload_bytes(HYI_FMT_METHOD, o->size);
    if (bytes < sizeof(hyi_method)) return fail(c, "method at byte %zu: too small (%u bytes)", at, o->size);
    hyi_method *m = (hyi_method *)o;
    uint64_t *s = obj_words(c, w);
    static const char *const names[HYI_METHOD_OOPS] = { "its selector", "its holder", "its literals", "its debug info" };
    for (int i = 0; i < HYI_METHOD_OOPS; i++) {
        hy_err e = check_value(c, w, &s[i], names[i]);
        if (e) return e;
    }
    if (!is_symbol(c, m->signature)) return fail(c, "method at byte %zu: its selector is not a Symbol", at);
    if (!is_class(c, m->holder)) return fail(c, "method at byte %zu: its holder is not a class", at);
    if (!bit(c->classes, (m->holder - 8) / 8)) {
        hy_err e = check_class(c, m->holder);
        if (e) return e;
    }
    if (m->literals != c->nil && !is_fmt(c, m->literals, HYI_FMT_INDEXED))
        return fail(c, "method at byte %zu: its literals are not an Array", at);
    if (m->debug != c->nil) {
        if (!is_fmt(c, m->debug, HYI_FMT_INDEXED) || obj_at(c, m->debug)->size < 2 ||
            !is_fmt(c, obj_words(c, m->debug)[0], HYI_FMT_BYTES) || !is_fmt(c, obj_words(c, m->debug)[1], HYI_FMT_BYTES))
            return fail(c, "method at byte %zu: malformed debug info", at);
    }
    if (sizeof(hyi_method) + (size_t)m->code_len > bytes)
        return fail(c, "method at byte %zu: code runs past the object", at);
    if (m->num_ics) {
        if (m->ic_offset % 8 || m->ic_offset < sizeof(hyi_method) + (size_t)m->code_len ||
            m->ic_offset + (size_t)m->num_ics * sizeof(hyi_ic) > bytes)
            return fail(c, "method at byte %zu: inline caches outside the object", at);
        hyi_ic *ics = hyi_method_ics(m);
        for (uint32_t i = 0; i < m->num_ics; i++) {
            hy_err e = check_value(c, w, &ics[i].selector, "a send's selector");
            if (e) return e;
            if (!is_symbol(c, ics[i].selector)) return fail(c, "method at byte %zu: a send's selector is not a Symbol", at);
            hyi_obj *sel = obj_at(c, ics[i].selector);
            if (ics[i].nargs != selector_arity((const uint8_t *)(sel + 1), sel->size))
                return fail(c, "method at byte %zu: a send's argument count does not match its selector", at);
            ics[i].cls = 0;
            ics[i].target = 0;
            ics[i].misses = 0;
        }
    }
    uint32_t nfields = 0;
    uint64_t holder_spec = obj_words(c, m->holder)[HYI_CLASS_INSTSPEC];
    if (hyi_instspec_format(holder_spec) == HYI_FMT_SLOTS) nfields = hyi_instspec_fields(holder_spec);
    if (m->flags & HYI_MF_PRIMITIVE) {
        unsigned t = m->prim >> 10, i = m->prim & 1023u;
        if (m->prim && (t >= HYI_PRIM_NUM_TABLES || i == 0 || i > c->prim_counts[t]))
            return fail(c, "method at byte %zu: unknown primitive %u", at, m->prim);
    }
    if (m->flags & (HYI_MF_GETTER | HYI_MF_SETTER)) {
        if (m->prim >= nfields) return fail(c, "method at byte %zu: accessor of a field the class lacks", at);
    }
    if (m->code_len || !(m->flags & (HYI_MF_PRIMITIVE | HYI_MF_GETTER | HYI_MF_SETTER))) {
        uint32_t nlits = 0;
        const uint64_t *lits = NULL;
        if (m->literals != c->nil) {
            nlits = obj_at(c, m->literals)->size;
            lits = obj_words(c, m->literals);
        }
        return check_code(c, w, m, nlits, lits, nfields);
    }
    return HY_OK;
}

/* Payload of a non-pointer object: sizes its format requires. */
static hy_err check_raw(checker *c, uint64_t w) {
    hyi_obj *o = obj_at(c, w);
    size_t at = file_off(c, w);
    if (o->format == HYI_FMT_DOUBLE && o->size != 8) return fail(c, "object at byte %zu: a Double of %u bytes", at, o->size);
    if (o->format == HYI_FMT_LARGEINT) {
        uint32_t *p = (uint32_t *)(o + 1);
        if (o->size < 12 || o->size % 4) return fail(c, "object at byte %zu: a LargeInteger of %u bytes", at, o->size);
        size_t n = (o->size - 4) / 4;
        if (p[0] > 1 || p[n] == 0 || n * 32 > HYI_BIGINT_MAX_BITS + 32)
            return fail(c, "object at byte %zu: a malformed LargeInteger", at);
    }
    return HY_OK;
}

static hy_err check_object(checker *c, uint64_t w) {
    hyi_obj *o = obj_at(c, w);
    size_t at = file_off(c, w);
    hy_err e = check_value(c, w, &o->cls, "its class");
    if (e) return e;
    if (!is_class(c, o->cls)) return fail(c, "object at byte %zu: its class is not a class", at);
    if (!bit(c->classes, (o->cls - 8) / 8) && (e = check_class(c, o->cls))) return e;
    hyi_format f = (hyi_format)o->format;
    hyi_format cf = hyi_instspec_format(obj_words(c, o->cls)[HYI_CLASS_INSTSPEC]);
    if (hyi_fmt_has_slots(f)) {
        if (f != cf) return fail(c, "object at byte %zu: format %u, its class says %u", at, f, cf);
        uint64_t *s = obj_words(c, w);
        for (uint32_t i = 0; i < o->size; i++) {
            e = check_value(c, w, &s[i], "a slot");
            if (e) return e;
        }
        if (f == HYI_FMT_SLOTS && o->size < class_fields(c, o->cls))
            return fail(c, "object at byte %zu: %u slots, its class says %u", at, o->size, class_fields(c, o->cls));
        return HY_OK;
    }
    /* Instances have their class's format, except the VM's own objects of "plain" classes:
     * methods (Method, Primitive), large integers (Integer) and handles (Object). */
    bool plain_ok = cf == HYI_FMT_SLOTS && (f == HYI_FMT_METHOD || f == HYI_FMT_LARGEINT || f == HYI_FMT_EXTERNAL);
    if (f != cf && !plain_ok) return fail(c, "object at byte %zu: format %u, its class says %u", at, f, cf);
    if (f == HYI_FMT_METHOD) return check_method(c, w);
    return check_raw(c, w);
}

/* The classes whose instances normalise() resets (0 when the image lacks one). */
typedef struct reset_classes {
    uint64_t process, semaphore, address;
} reset_classes;

static bool is_kind(const checker *c, uint64_t obj, uint64_t cls) {
    if (!cls) return false;
    for (uint64_t k = obj_at(c, obj)->cls; k != c->nil; k = obj_words(c, k)[HYI_CLASS_SUPERCLASS])
        if (k == cls) return true;
    return false;
}

/* The value of the global named name (a class), or 0. */
static uint64_t global_class(const checker *c, const uint64_t *globals, uint32_t ng, const char *name) {
    size_t n = strlen(name);
    for (uint32_t i = 0; i < ng; i++) {
        const uint64_t *cell = obj_words(c, globals[i]);
        hyi_obj *key = obj_at(c, cell[HYI_CELL_KEY]);
        if (key->size == n && memcmp(key + 1, name, n) == 0)
            return is_class(c, cell[HYI_CELL_VALUE]) ? cell[HYI_CELL_VALUE] : 0;
    }
    return 0;
}

/* Normalise o for copying into a heap: GC bits clear, old, foreign handles zeroed; no process
 * ids (a Process's, a Semaphore's waiters) and no live ExternalAddress survive. */
static void normalise(checker *c, const reset_classes *rc, const uint64_t *true_, uint64_t w) {
    hyi_obj *o = obj_at(c, w);
    o->age = 0;
    o->marked = 0;
    o->remembered = 0;
    o->forwarded = 0;
    o->old = 1;
    if (o->format == HYI_FMT_EXTERNAL) memset(o + 1, 0, hyi_payload_bytes(HYI_FMT_EXTERNAL, o->size));
    if (o->format != HYI_FMT_SLOTS) return;
    uint64_t *s = obj_words(c, w);
    /* The words written are references already counted in the relocation bitmap, or nil/true,
     * which are references too: mark them. */
    if (o->size > IMAGE_PROC_ID && is_kind(c, w, rc->process)) {
        s[IMAGE_PROC_ID] = c->nil;
        set_bit(c->reloc, (size_t)(&s[IMAGE_PROC_ID] - (uint64_t *)c->payload));
    }
    if (o->size >= IMAGE_SEM_FIELDS && is_kind(c, w, rc->semaphore)) {
        s[IMAGE_SEM_FIRST] = s[IMAGE_SEM_LAST] = c->nil;
        set_bit(c->reloc, (size_t)(&s[IMAGE_SEM_FIRST] - (uint64_t *)c->payload));
        set_bit(c->reloc, (size_t)(&s[IMAGE_SEM_LAST] - (uint64_t *)c->payload));
    }
    if (o->size >= HYI_EA_FIELDS && is_kind(c, w, rc->address)) {
        s[HYI_EA_FREED] = *true_;
        set_bit(c->reloc, (size_t)(&s[HYI_EA_FREED] - (uint64_t *)c->payload));
    }
}

static hy_err check_roots(checker *c) {
    const uint64_t *r = c->roots;
    static const char *const fixed[IMAGE_FIXED_ROOTS] = { "nil", "true", "false", "system", "undefined", "special" };
    /* Every root is set once a VM has bootstrapped, except the Vector class (unused yet). */
    size_t optional = IMAGE_FIXED_ROOTS + offsetof(hyi_classes, vector) / sizeof(hyi_oop);
    for (size_t i = 0; i < IMAGE_NROOTS; i++) {
        bool ok;
        if (i < IMAGE_FIXED_ROOTS) ok = is_obj(c, r[i]);
        else if (i < IMAGE_FIXED_ROOTS + HYI_NUM_CLASSES) ok = is_class(c, r[i]) || (i == optional && !r[i]);
        else ok = is_symbol(c, r[i]);
        if (!ok) {
            if (i < IMAGE_FIXED_ROOTS) return fail(c, "the root object %s is missing or bad", fixed[i]);
            if (i < IMAGE_FIXED_ROOTS + HYI_NUM_CLASSES)
                return fail(c, "kernel class %zu is missing or not a class", i - IMAGE_FIXED_ROOTS);
            return fail(c, "well-known symbol %zu is missing or not a Symbol", i - IMAGE_FIXED_ROOTS - HYI_NUM_CLASSES);
        }
    }
    const hyi_classes *k = (const hyi_classes *)(r + IMAGE_FIXED_ROOTS);
    if (obj_at(c, r[0])->cls != k->nil || obj_at(c, r[1])->cls != k->true_ || obj_at(c, r[2])->cls != k->false_)
        return fail(c, "nil, true or false is not an instance of its class");
    c->nil = r[0];
    /* The VM makes instances of these kernel classes in their format without asking. */
    static const struct { size_t off; hyi_format f; } formats[] = {
        { offsetof(hyi_classes, array), HYI_FMT_INDEXED }, { offsetof(hyi_classes, string), HYI_FMT_BYTES },
        { offsetof(hyi_classes, symbol), HYI_FMT_BYTES }, { offsetof(hyi_classes, bytearray), HYI_FMT_BYTES },
        { offsetof(hyi_classes, double_), HYI_FMT_DOUBLE }, { offsetof(hyi_classes, context), HYI_FMT_CONTEXT },
        { offsetof(hyi_classes, cell), HYI_FMT_SLOTS }, { offsetof(hyi_classes, integer), HYI_FMT_SLOTS },
        { offsetof(hyi_classes, method), HYI_FMT_SLOTS }, { offsetof(hyi_classes, object), HYI_FMT_SLOTS },
    };
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        uint64_t cls = r[IMAGE_FIXED_ROOTS + formats[i].off / sizeof(hyi_oop)];
        if (hyi_instspec_format(obj_words(c, cls)[HYI_CLASS_INSTSPEC]) != formats[i].f)
            return fail(c, "kernel class %zu has the wrong instance format", formats[i].off / sizeof(hyi_oop));
    }
    for (size_t i = 0; i < HYI_NUM_CLASSES; i++) {
        hy_err e = r[IMAGE_FIXED_ROOTS + i] ? check_class(c, r[IMAGE_FIXED_ROOTS + i]) : HY_OK;
        if (e) return e;
    }
    return HY_OK;
}

static hy_err check_tables(checker *c, const uint64_t *syms, uint32_t cap, uint32_t *count,
                           const uint64_t *globals, uint32_t ng) {
    const hyi_classes *k = (const hyi_classes *)(c->roots + IMAGE_FIXED_ROOTS);
    uint32_t n = 0;
    for (uint32_t i = 0; i < cap; i++) {
        if (!syms[i]) continue;
        if (!is_symbol(c, syms[i]) || obj_at(c, syms[i])->cls != k->symbol)
            return fail(c, "symbol table entry %u is not a Symbol", i);
        n++;
    }
    if (cap && (uint64_t)n * 4 >= (uint64_t)cap * 3) return fail(c, "the symbol table is overfull");
    *count = n;
    for (uint32_t i = 0; i < ng; i++) {
        uint64_t g = globals[i];
        if (!is_fmt(c, g, HYI_FMT_SLOTS) || obj_at(c, g)->cls != k->cell || obj_at(c, g)->size < HYI_CELL_SLOTS ||
            !is_symbol(c, obj_words(c, g)[HYI_CELL_KEY]))
            return fail(c, "global %u is not a global cell", i);
    }
    return HY_OK;
}

/* Validate the file in buf (len bytes, 8-aligned, owned by the image on success) and fill img. */
static hy_err validate(checker *c, uint8_t *buf, size_t len, hy_image *img) {
    if (len == 0) return fail(c, "empty file, not a Hydra image");
    if (len < 8 || memcmp(buf, HYI_IMAGE_MAGIC, 8) != 0) return fail(c, "not a Hydra image");
    if (len < sizeof(hyi_image_header))
        return fail(c, "truncated at byte %zu (the header alone has %zu)", len, sizeof(hyi_image_header));
    hyi_image_header hd;
    memcpy(&hd, buf, sizeof hd);
    if (hd.version != HYI_IMAGE_VERSION)
        return fail(c, "format version %u, this hydra reads version %u", hd.version, HYI_IMAGE_VERSION);
    if (hd.header_bytes != sizeof hd) return fail(c, "corrupt header (header size %u)", hd.header_bytes);
    if (hd.word_bytes != sizeof(void *))
        return fail(c, "built for %u-bit words, this hydra uses %zu-bit words", hd.word_bytes * 8, sizeof(void *) * 8);
    if (hd.endian != HYI_IMAGE_ENDIAN) return fail(c, "built on a machine of the other byte order");
    if (hd.layout != layout_fingerprint())
        return fail(c, "built by a hydra with another object layout or set of primitives (rebuild the image)");
    if (hd.file_bytes > len) return fail(c, "truncated at byte %zu of %llu", len, (unsigned long long)hd.file_bytes);
    if (hd.file_bytes < len)
        return fail(c, "%zu bytes of trailing data after byte %llu", len - (size_t)hd.file_bytes,
                    (unsigned long long)hd.file_bytes);
    if (hyi_image_checksum(buf, len) != hd.checksum) return fail(c, "checksum mismatch");

    if (hd.entry_len > IMAGE_MAX_ENTRY || hd.nroots != IMAGE_NROOTS || hd.symbols_cap > IMAGE_MAX_TABLE ||
        (hd.symbols_cap & (hd.symbols_cap - 1)) || hd.nglobals > IMAGE_MAX_TABLE || hd.payload_bytes % 8 ||
        hd.payload_bytes > len || hd.payload_bytes / 16 < hd.nobjects)
        return fail(c, "corrupt header (impossible section sizes)");
    size_t off_roots = sizeof hd + align8(hd.entry_len);
    size_t off_syms = off_roots + IMAGE_NROOTS * 8;
    size_t off_globals = off_syms + (size_t)hd.symbols_cap * 8;
    size_t off_payload = off_globals + (size_t)hd.nglobals * 8;
    if (off_payload + hd.payload_bytes != len)
        return fail(c, "corrupt header (the sections do not add up to the file size)");
    const char *entry = (const char *)buf + sizeof hd;
    if (hd.entry_len && !valid_class_name(entry, hd.entry_len))
        return fail(c, "the entry '%.*s' is not a class name", (int)(hd.entry_len > 64 ? 64 : hd.entry_len), entry);

    c->payload = buf + off_payload;
    c->pbytes = (size_t)hd.payload_bytes;
    c->pstart = off_payload;
    size_t nwords = c->pbytes / 8, nbits = (nwords + 63) / 64;
    c->starts = calloc(nbits ? nbits : 1, 8);
    c->reloc = calloc(nbits ? nbits : 1, 8);
    c->classes = calloc(nbits ? nbits : 1, 8);
    if (!c->starts || !c->reloc || !c->classes) return HY_ENOMEM;

    /* 1. Objects tile the payload exactly. */
    uint64_t nobj = 0;
    for (size_t off = 0; off < c->pbytes;) {
        if (c->pbytes - off < sizeof(hyi_obj))
            return fail(c, "object at byte %zu: its header runs past the end", c->pstart + off);
        hyi_obj *o = (hyi_obj *)(c->payload + off);
        if (o->format > HYI_FMT_EXTERNAL || o->format == HYI_FMT_FREE)
            return fail(c, "object at byte %zu: unknown format %u", c->pstart + off, o->format);
        size_t bytes = sizeof(hyi_obj) + hyi_payload_bytes((hyi_format)o->format, o->size);
        if (bytes > c->pbytes - off)
            return fail(c, "object at byte %zu: %zu bytes run past the end", c->pstart + off, bytes);
        set_bit(c->starts, off / 8);
        off += bytes;
        nobj++;
    }
    if (nobj != hd.nobjects)
        return fail(c, "%llu objects, the header says %llu", (unsigned long long)nobj, (unsigned long long)hd.nobjects);

    /* 2. Roots, then every object's references, then the tables. */
    c->roots = (const uint64_t *)(buf + off_roots);
    hy_err e = check_roots(c);
    if (e) return e;
    for (unsigned t = 0; t < HYI_PRIM_NUM_TABLES; t++)
        for (const hyi_prim_def *d = hyi_prim_tables[t]; d->cls; d++) c->prim_counts[t]++;
    for (size_t off = 0; off < c->pbytes;) {
        uint64_t w = 8 + off;
        e = check_object(c, w);
        if (e) return e;
        off += sizeof(hyi_obj) + hyi_payload_bytes((hyi_format)obj_at(c, w)->format, obj_at(c, w)->size);
    }
    uint32_t nsyms = 0;
    e = check_tables(c, (const uint64_t *)(buf + off_syms), hd.symbols_cap, &nsyms,
                     (const uint64_t *)(buf + off_globals), hd.nglobals);
    if (e) return e;
    const uint64_t *globals = (const uint64_t *)(buf + off_globals);
    reset_classes rc = { global_class(c, globals, hd.nglobals, "Process"),
                         global_class(c, globals, hd.nglobals, "Semaphore"),
                         global_class(c, globals, hd.nglobals, "ExternalAddress") };
    for (size_t off = 0; off < c->pbytes;) {
        uint64_t w = 8 + off;
        normalise(c, &rc, &c->roots[1], w);
        off += sizeof(hyi_obj) + hyi_payload_bytes((hyi_format)obj_at(c, w)->format, obj_at(c, w)->size);
    }

    img->file = buf;
    img->payload = c->payload;
    img->payload_bytes = c->pbytes;
    img->roots = c->roots;
    img->symbols = (const uint64_t *)(buf + off_syms);
    img->symbols_cap = hd.symbols_cap;
    img->symbols_count = nsyms;
    img->globals = (const uint64_t *)(buf + off_globals);
    img->nglobals = hd.nglobals;
    img->reloc = c->reloc;
    c->reloc = NULL;
    memcpy(img->entry, entry, hd.entry_len);
    img->entry[hd.entry_len] = 0;
    return HY_OK;
}

/* Take buf (len bytes, malloc'ed, 8-aligned): validate it into a new image. */
static hy_err open_buffer(const char *name, uint8_t *buf, size_t len, hy_image **out, char *errbuf, size_t errlen) {
    checker c;
    memset(&c, 0, sizeof c);
    c.name = name;
    c.errbuf = errbuf;
    c.errlen = errlen;
    if (errbuf && errlen) errbuf[0] = 0;
    hy_image *img = calloc(1, sizeof *img);
    hy_err e = img ? validate(&c, buf, len, img) : HY_ENOMEM;
    free(c.starts);
    free(c.reloc);
    free(c.classes);
    free(c.depth);
    free(c.work);
    free(c.targets);
    if (e) {
        if (e == HY_ENOMEM && errbuf && errlen) snprintf(errbuf, errlen, "%s: out of memory", name);
        free(img);
        free(buf);
        return e;
    }
    *out = img;
    return HY_OK;
}

hy_err hy_image_open_bytes(const void *bytes, size_t len, hy_image **out, char *errbuf, size_t errlen) {
    if ((!bytes && len) || !out) return HY_EINVAL;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return HY_ENOMEM;
    if (len) memcpy(buf, bytes, len);
    return open_buffer("image", buf, len, out, errbuf, errlen);
}

hy_err hy_image_open(const char *path, hy_image **out, char *errbuf, size_t errlen) {
    if (!path || !out) return HY_EINVAL;
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        int e = f ? (S_ISREG(st.st_mode) ? errno : EISDIR) : errno;
        if (f) fclose(f);
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s: %s", path, strerror(e));
        return HY_ENOENT;
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s: out of memory", path);
        return HY_ENOMEM;
    }
    size_t got = fread(buf, 1, len, f);
    fclose(f);
    if (got != len) {
        if (errbuf && errlen) snprintf(errbuf, errlen, "%s: read error", path);
        free(buf);
        return HY_ENOENT;
    }
    return open_buffer(path, buf, len, out, errbuf, errlen);
}

void hy_image_close(hy_image *img) {
    if (!img) return;
    free(img->file);
    free(img->reloc);
    free(img);
}

const char *hy_image_entry(const hy_image *img) { return img ? img->entry : ""; }

size_t hy_image_heap_bytes(const hy_image *img) { return img ? img->payload_bytes : 0; }

/* ==== Making a VM from an image ============================================================== */

static uint32_t pow2_at_least(uint32_t n) {
    uint32_t c = 256;
    while (c < n) c *= 2;
    return c;
}

hy_err hy_vm_new_from_image(const hy_config *cfg, const hy_image *img, hy_vm **out) {
    if (!cfg || !img || !out) return HY_EINVAL;
    if (cfg->heap_limit && img->payload_bytes > cfg->heap_limit) return HY_ENOMEM;
    hy_vm *vm = hyi_vm_alloc(cfg);
    if (!vm) return HY_ENOMEM;
    uint8_t *base = hyi_heap_adopt_old(vm, img->payload_bytes);
    vm->symbols.keys = calloc(img->symbols_cap ? img->symbols_cap : 1, sizeof(hyi_oop));
    uint32_t gcap = pow2_at_least(img->nglobals * 2 + 2);
    vm->globals.keys = calloc(gcap, sizeof(hyi_oop));
    vm->image_entry = strdup(img->entry);
    if (!base || !vm->symbols.keys || !vm->globals.keys || !vm->image_entry) {
        hy_vm_free(vm);
        return HY_ENOMEM;
    }
    vm->globals.cap = gcap;

    /* One copy, then one pass over the reference words. */
    memcpy(base, img->payload, img->payload_bytes);
    uintptr_t delta = (uintptr_t)base - 8;
    uint64_t *w = (uint64_t *)base;
    size_t nbits = (img->payload_bytes / 8 + 63) / 64;
    for (size_t i = 0; i < nbits; i++) {
        for (uint64_t b = img->reloc[i]; b; b &= b - 1) w[i * 64 + (size_t)__builtin_ctzll(b)] += delta;
    }

    /* Roots are references or 0 (an unset kernel class), never SmallIntegers. */
#define RELOC(w) ((w) ? (hyi_oop)(w) + delta : 0)
    hyi_oop *fixed[IMAGE_FIXED_ROOTS] = { &vm->nil, &vm->true_, &vm->false_, &vm->system, &vm->undefined, &vm->special };
    for (size_t i = 0; i < IMAGE_FIXED_ROOTS; i++) *fixed[i] = RELOC(img->roots[i]);
    hyi_oop *cls = (hyi_oop *)&vm->cls;
    for (size_t i = 0; i < HYI_NUM_CLASSES; i++) cls[i] = RELOC(img->roots[IMAGE_FIXED_ROOTS + i]);
    hyi_oop *sym = (hyi_oop *)&vm->sym;
    for (size_t i = 0; i < HYI_NUM_SYMBOLS; i++) sym[i] = RELOC(img->roots[IMAGE_FIXED_ROOTS + HYI_NUM_CLASSES + i]);
#undef RELOC
    for (uint32_t i = 0; i < img->symbols_cap; i++)
        if (img->symbols[i]) vm->symbols.keys[i] = img->symbols[i] + delta;
    vm->symbols.cap = img->symbols_cap;
    vm->symbols.count = img->symbols_count;
    for (uint32_t i = 0; i < img->nglobals; i++)
        if (!hyi_global_adopt(vm, img->globals[i] + delta)) {
            hy_vm_free(vm);
            return HY_ENOMEM;
        }

    vm->heap.stress = cfg->gc_stress;
    if (hyi_tracing(vm)) hyi_trace_own_end(vm);
    hyi_thread_detach(vm);
    *out = vm;
    return HY_OK;
}

/* ==== Running =============================================================================== */

hy_err hy_vm_run_entry(hy_vm *vm, int argc, const char *const *argv, int *exit_status) {
    if (!vm || !exit_status || argc < 0 || (argc > 0 && !argv)) return HY_EINVAL;
    if (vm->image_entry && *vm->image_entry) return hy_vm_run_main(vm, vm->image_entry, argc, argv, exit_status);
    if (argc == 0 || !argv[0]) {
        hyi_vm_set_error(vm, "the image has no entry class: name the class to run");
        return HY_EINVAL;
    }
    return hy_vm_run_main(vm, argv[0], argc - 1, argv + 1, exit_status);
}
