/*
 * vm.c -- creating a VM: bootstrap of the class kernel, symbols, globals, classes, method
 * lookup, class loading from the class path, and the public hy_vm_* entry points.
 *
 * Invariants:
 *  - Symbols, classes, metaclasses and global cells are old and never move, so the symbol and
 *    global tables may hash them by address.
 *  - The global method cache holds (class, selector) -> method for classes whose method
 *    dictionaries have not changed since; any method change or full GC flushes it.
 *  - The kernel classes exist (empty) before any class file is compiled; compiling their
 *    files fills them in, so objects made during bootstrap already have the right class.
 */
#include "vm.h"
#include "thread.h"
#include "process.h"
#include "foreign.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

#include "compiler.h"
#include "interp.h"
#include "trace.h"

#define BOOT_SPARE_CLASS_SLOTS 4
#define DEFAULT_STACK_SLOTS (1u << 20)

/* ---- Small helpers -------------------------------------------------------------------- */

uint64_t hyi_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hyi_vm_set_error(hy_vm *vm, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(vm->error_buf);
    vm->error_buf = strdup(buf);
}

static void default_write(void *ctx, int stream, const char *bytes, size_t len) {
    (void)ctx;
    FILE *f = stream == 2 ? stderr : stdout;
    fwrite(bytes, 1, len, f);
    if (stream == 2) fflush(f);
}

void hyi_vm_write(hy_vm *vm, int stream, const char *bytes, size_t len) {
    if (stream == 2 && vm->config.write == default_write) fflush(stdout);
    vm->config.write(vm->config.write_ctx, stream, bytes, len);
}

void hyi_vm_printf(hy_vm *vm, int stream, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    hyi_vm_write(vm, stream, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* ---- Public basics ---------------------------------------------------------------------- */

const char *hy_strerror(hy_err err) {
    switch (err) {
    case HY_OK: return "no error";
    case HY_ENOMEM: return "out of memory";
    case HY_EINVAL: return "invalid argument";
    case HY_ENOENT: return "not found";
    case HY_ESYNTAX: return "syntax error";
    case HY_ERUNTIME: return "unhandled error";
    case HY_EIMAGE: return "bad image file";
    }
    return "unknown error";
}

void hy_config_init(hy_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->stack_slots = DEFAULT_STACK_SLOTS;
#ifdef HYDRA_GC_STRESS
    cfg->gc_stress = true;
#endif
    const char *ts = getenv("HYDRA_TAKEOVER_STRESS");
    if (ts && *ts && strcmp(ts, "0") != 0) cfg->takeover_stress = true;
}

hy_err hy_vm_thread_stats(hy_vm *vm, hy_thread_stats *out) {
    if (!vm || !out) return HY_EINVAL;
    hyi_thread_stats st;
    hyi_thread_stats_get(vm, &st);
    out->callouts = st.callouts;
    out->takeovers = st.takeovers;
    out->handbacks = st.handbacks;
    out->waits = st.waits;
    out->wait_ns = st.wait_ns;
    out->heartbeats = st.heartbeats;
    out->workers = st.workers;
    return HY_OK;
}

void hy_vm_signal_semaphore(hy_vm *vm, unsigned index) {
    if (vm) hyi_sched_signal_external(vm, index);
}

const char *hy_vm_last_error(const hy_vm *vm) {
    return vm && vm->error_buf ? vm->error_buf : "";
}

hy_err hy_vm_gc_stats(const hy_vm *vm, hy_gc_stats *out) {
    if (!vm || !out) return HY_EINVAL;
    const hyi_gc_stats *s = &vm->heap.stats;
    out->scavenges = s->scavenges;
    out->full_gcs = s->full_gcs;
    out->bytes_allocated = s->bytes_allocated;
    out->bytes_promoted = s->bytes_promoted;
    out->total_pause_ns = s->scavenge_ns + s->full_gc_ns;
    out->max_pause_ns = s->max_pause_ns;
    out->heap_in_use = s->old_bytes + s->young_bytes;
    return HY_OK;
}

/* ---- Symbols ---------------------------------------------------------------------------- */

static uint32_t hash_bytes(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_ptr(hyi_oop p) {
    uint64_t x = (uint64_t)p >> 3;
    x *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(x >> 32);
}

static bool table_grow(hyi_table *t, uint32_t (*hash)(hyi_oop)) {
    uint32_t ncap = t->cap ? t->cap * 2 : 256;
    hyi_oop *nk = calloc(ncap, sizeof *nk);
    if (!nk) return false;
    for (uint32_t i = 0; i < t->cap; i++) {
        hyi_oop k = t->keys[i];
        if (!k) continue;
        uint32_t j = hash(k) & (ncap - 1);
        while (nk[j]) j = (j + 1) & (ncap - 1);
        nk[j] = k;
    }
    free(t->keys);
    t->keys = nk;
    t->cap = ncap;
    return true;
}

static uint32_t symbol_hash(hyi_oop sym) { return hash_bytes((const char *)hyi_bytes(sym), hyi_size(sym)); }

hyi_oop hyi_symbol(hy_vm *vm, const char *chars, size_t len) {
    if (len > UINT32_MAX - 16) return 0;
    hyi_table *t = &vm->symbols;
    if ((t->count + 1) * 4 >= t->cap * 3 && !table_grow(t, symbol_hash)) return 0;
    uint32_t mask = t->cap - 1, i = hash_bytes(chars, len) & mask;
    for (; t->keys[i]; i = (i + 1) & mask) {
        hyi_oop k = t->keys[i];
        if (hyi_size(k) == len && memcmp(hyi_bytes(k), chars, len) == 0) return k;
    }
    hyi_oop sym = hyi_heap_alloc_old(vm, vm->cls.symbol, HYI_FMT_BYTES, (uint32_t)len);
    if (!sym) return 0;
    memcpy(hyi_bytes(sym), chars, len);
    /* The allocation may have run a GC, but symbols are roots held in this table, which did
     * not change size, so slot i is still free. */
    t->keys[i] = sym;
    t->count++;
    return sym;
}

/* ---- Simple allocation helpers ---------------------------------------------------------- */

hyi_oop hyi_string_new(hy_vm *vm, const char *chars, size_t len) {
    if (len > UINT32_MAX - 16) return 0;
    hyi_oop s = hyi_heap_alloc_bytes_to_fill(vm, vm->cls.string, (uint32_t)len, (uint32_t)len);
    if (s && len) memcpy(hyi_bytes(s), chars, len);
    return s;
}

hyi_oop hyi_string_new_old(hy_vm *vm, const char *chars, size_t len) {
    if (len > UINT32_MAX - 16) return 0;
    hyi_oop s = hyi_heap_alloc_old(vm, vm->cls.string, HYI_FMT_BYTES, (uint32_t)len);
    if (s && len) memcpy(hyi_bytes(s), chars, len);
    return s;
}

hyi_oop hyi_double_new(hy_vm *vm, double d) {
    hyi_oop o = hyi_alloc_small(vm, vm->cls.double_, HYI_FMT_DOUBLE, 8);
    if (o) memcpy(hyi_bytes(o), &d, 8);
    return o;
}

hyi_oop hyi_array_new(hy_vm *vm, uint32_t n) {
    return hyi_heap_alloc(vm, vm->cls.array, HYI_FMT_INDEXED, n);
}

hyi_oop hyi_instantiate(hy_vm *vm, hyi_oop cls, uint32_t n) {
    hyi_oop spec = hyi_slots(cls)[HYI_CLASS_INSTSPEC];
    if (!hyi_is_smi(spec)) return 0;
    hyi_format f = hyi_instspec_format(spec);
    uint32_t fields = hyi_instspec_fields(spec);
    switch (f) {
    case HYI_FMT_SLOTS: return hyi_heap_alloc(vm, cls, f, fields);
    case HYI_FMT_INDEXED: case HYI_FMT_BYTES: return hyi_heap_alloc(vm, cls, f, n);
    case HYI_FMT_DOUBLE: return hyi_heap_alloc(vm, cls, f, 8);
    default: return hyi_heap_alloc(vm, cls, HYI_FMT_SLOTS, fields);
    }
}

/* ---- Globals ---------------------------------------------------------------------------- */

static uint32_t cell_hash(hyi_oop cell) { return hash_ptr(hyi_slots(cell)[HYI_CELL_KEY]); }

hyi_oop hyi_global_cell(hy_vm *vm, hyi_oop key) {
    hyi_table *t = &vm->globals;
    if ((t->count + 1) * 4 >= t->cap * 3 && !table_grow(t, cell_hash)) return 0;
    uint32_t mask = t->cap - 1, i = hash_ptr(key) & mask;
    for (; t->keys[i]; i = (i + 1) & mask)
        if (hyi_slots(t->keys[i])[HYI_CELL_KEY] == key) return t->keys[i];
    HYI_ROOT(vm, &key);
    hyi_oop cell = hyi_heap_alloc_old(vm, vm->cls.cell, HYI_FMT_SLOTS, HYI_CELL_SLOTS);
    HYI_UNROOT(vm, 1);
    if (!cell) return 0;
    hyi_slots(cell)[HYI_CELL_KEY] = key;
    hyi_slots(cell)[HYI_CELL_VALUE] = vm->undefined;
    t->keys[i] = cell;
    t->count++;
    return cell;
}

hyi_oop hyi_global_get(hy_vm *vm, hyi_oop key) {
    hyi_table *t = &vm->globals;
    if (!t->cap) return 0;
    uint32_t mask = t->cap - 1, i = hash_ptr(key) & mask;
    for (; t->keys[i]; i = (i + 1) & mask)
        if (hyi_slots(t->keys[i])[HYI_CELL_KEY] == key) {
            hyi_oop v = hyi_slots(t->keys[i])[HYI_CELL_VALUE];
            return v == vm->undefined ? 0 : v;
        }
    return 0;
}

bool hyi_global_adopt(hy_vm *vm, hyi_oop cell) {
    hyi_table *t = &vm->globals;
    if ((t->count + 1) * 4 >= t->cap * 3 && !table_grow(t, cell_hash)) return false;
    hyi_oop key = hyi_slots(cell)[HYI_CELL_KEY];
    uint32_t mask = t->cap - 1, i = hash_ptr(key) & mask;
    for (; t->keys[i]; i = (i + 1) & mask)
        if (hyi_slots(t->keys[i])[HYI_CELL_KEY] == key) {
            t->keys[i] = cell;
            return true;
        }
    t->keys[i] = cell;
    t->count++;
    return true;
}

bool hyi_global_set(hy_vm *vm, hyi_oop key, hyi_oop value) {
    HYI_ROOT(vm, &value);
    hyi_oop cell = hyi_global_cell(vm, key);
    HYI_UNROOT(vm, 1);
    if (!cell) return false;
    hyi_store(vm, cell, HYI_CELL_VALUE, value);
    return true;
}

/* ---- Method lookup ---------------------------------------------------------------------- */

void hyi_clear_method_cache(hy_vm *vm) {
    memset(vm->mcache, 0, sizeof vm->mcache);
    vm->mcache_filled = false;
}

/* Loading a class adds methods one by one, mostly before anything ran: a cache nothing has
 * filled since it was last cleared is left as it is. */
void hyi_flush_method_cache(hy_vm *vm) {
    if (vm->mcache_filled) hyi_clear_method_cache(vm);
}

static hyi_oop lookup_slow(hy_vm *vm, hyi_oop cls, hyi_oop selector) {
    for (hyi_oop c = cls; c && c != vm->nil; c = hyi_slots(c)[HYI_CLASS_SUPERCLASS]) {
        hyi_oop ms = hyi_slots(c)[HYI_CLASS_METHODS];
        if (!hyi_is_ptr(ms) || ms == vm->nil) continue;
        uint32_t n = hyi_size(ms);
        for (uint32_t i = 0; i < n; i++) {
            hyi_oop m = hyi_slots(ms)[i];
            if (hyi_m(m)->signature == selector) return m;
        }
    }
    return 0;
}

hyi_oop hyi_lookup(hy_vm *vm, hyi_oop cls, hyi_oop selector) {
    uint32_t i = (hash_ptr(cls) ^ hash_ptr(selector)) & (HYI_MCACHE_SIZE - 1);
    hyi_mcache_entry *e = &vm->mcache[i];
    if (e->cls == cls && e->selector == selector) return e->method;
    hyi_oop m = lookup_slow(vm, cls, selector);
    if (m) {
        e->cls = cls;
        e->selector = selector;
        e->method = m;
        vm->mcache_filled = true;
    }
    return m;
}

/* ---- Classes ---------------------------------------------------------------------------- */

static hyi_oop class_fields_of(hy_vm *vm, hyi_oop cls) {
    return cls == vm->nil ? 0 : hyi_slots(cls)[HYI_CLASS_FIELDS];
}

/* Concatenate the inherited field names of super (may be nil) and the declared ones. */
static hyi_oop merge_fields(hy_vm *vm, hyi_oop inherited, hyi_oop declared) {
    uint32_t ni = inherited && hyi_is_ptr(inherited) && inherited != vm->nil ? hyi_size(inherited) : 0;
    uint32_t nd = declared && hyi_is_ptr(declared) && declared != vm->nil ? hyi_size(declared) : 0;
    HYI_ROOT(vm, &inherited);
    HYI_ROOT(vm, &declared);
    hyi_oop a = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, ni + nd);
    HYI_UNROOT(vm, 2);
    if (!a) return 0;
    for (uint32_t i = 0; i < ni; i++) hyi_slots(a)[i] = hyi_slots(inherited)[i];
    for (uint32_t i = 0; i < nd; i++) hyi_slots(a)[ni + i] = hyi_slots(declared)[i];
    return a;
}

static hyi_oop metaclass_name(hy_vm *vm, hyi_oop name) {
    char buf[512];
    size_t n = hyi_size(name);
    if (n > sizeof buf - 8) n = sizeof buf - 8;
    memcpy(buf, hyi_bytes(name), n);
    memcpy(buf + n, " class", 6);
    return hyi_symbol(vm, buf, n + 6);
}

/* A bare class and its metaclass, old, with nil slots (bootstrap and new classes). */
static hyi_oop class_alloc(hy_vm *vm, uint32_t class_slots) {
    hyi_oop meta = hyi_heap_alloc_old(vm, vm->cls.metaclass, HYI_FMT_SLOTS, HYI_CLASS_FIXED);
    if (!meta) return 0;
    HYI_ROOT(vm, &meta);
    hyi_oop cls = hyi_heap_alloc_old(vm, meta, HYI_FMT_SLOTS, class_slots);
    HYI_UNROOT(vm, 1);
    return cls;
}

/* The names of the slots every class object starts with (object.h, HYI_CLASS_*). */
static hyi_oop fixed_class_fields(hy_vm *vm) {
    static const char *const names[HYI_CLASS_FIXED] = { "superClass", "name", "instanceFields",
                                                         "instanceInvokables", "instSpec" };
    hyi_oop a = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, HYI_CLASS_FIXED);
    if (!a) return 0;
    HYI_ROOT(vm, &a);
    for (int i = 0; i < HYI_CLASS_FIXED; i++) {
        hyi_oop sym = hyi_symbol_c(vm, names[i]);
        if (!sym) { HYI_UNROOT(vm, 1); return 0; }
        hyi_slots(a)[i] = sym;
    }
    HYI_UNROOT(vm, 1);
    return a;
}

hyi_oop hyi_class_define(hy_vm *vm, hyi_oop name, hyi_oop superclass, hyi_oop inst_fields,
                         hyi_oop class_fields) {
    if (!superclass) superclass = vm->nil;
    uint32_t roots = vm->num_temp_roots;
    HYI_ROOT(vm, &name);
    HYI_ROOT(vm, &superclass);
    HYI_ROOT(vm, &inst_fields);
    HYI_ROOT(vm, &class_fields);
    hyi_oop cls = hyi_global_get(vm, name);
    hyi_oop result = 0;
    HYI_ROOT(vm, &cls);

    /* The metaclass inherits from the superclass's metaclass; a root class's from Class. The
     * first HYI_CLASS_FIXED slots of every class are the VM's, whatever Class.som declares. */
    hyi_oop meta_super = superclass == vm->nil ? vm->cls.klass : hyi_o(superclass)->cls;
    hyi_oop inherited_class_fields = class_fields_of(vm, meta_super);
    if (!inherited_class_fields || !hyi_is_ptr(inherited_class_fields) || inherited_class_fields == vm->nil ||
        hyi_size(inherited_class_fields) < HYI_CLASS_FIXED) {
        inherited_class_fields = fixed_class_fields(vm);
        if (!inherited_class_fields) goto out;
    }
    hyi_oop all_class_fields = merge_fields(vm, inherited_class_fields, class_fields);
    if (!all_class_fields) goto out;
    HYI_ROOT(vm, &all_class_fields);
    uint32_t class_slots = hyi_size(all_class_fields);
    if (class_slots < HYI_CLASS_FIXED) class_slots = HYI_CLASS_FIXED;

    bool reuse = cls && hyi_is_ptr(cls) && hyi_o(cls)->cls && hyi_o(hyi_o(cls)->cls)->cls == vm->cls.metaclass;
    if (reuse && hyi_size(cls) < class_slots) {
        hyi_vm_set_error(vm, "class %.*s: too many class-side fields for a kernel class",
                         (int)hyi_size(name), (const char *)hyi_bytes(name));
        HYI_UNROOT(vm, 1);
        goto out;
    }
    if (!reuse) {
        cls = class_alloc(vm, class_slots);
        if (!cls) { HYI_UNROOT(vm, 1); goto out; }
        hyi_slots(cls)[HYI_CLASS_METHODS] = vm->nil;
        hyi_slots(hyi_o(cls)->cls)[HYI_CLASS_METHODS] = vm->nil;
    }
    hyi_oop meta = hyi_o(cls)->cls;
    hyi_oop inherited_fields = class_fields_of(vm, superclass);
    uint32_t declared = inst_fields && hyi_is_ptr(inst_fields) && inst_fields != vm->nil ? hyi_size(inst_fields) : 0;
    if (cls == vm->cls.klass && (inherited_fields ? hyi_size(inherited_fields) : 0) + declared < HYI_CLASS_FIXED) {
        /* Class itself: its instances (the classes) start with the VM's fixed slots. */
        inherited_fields = fixed_class_fields(vm);
        if (!inherited_fields) { HYI_UNROOT(vm, 1); goto out; }
    }
    hyi_oop all_fields = merge_fields(vm, inherited_fields, inst_fields);
    if (!all_fields) { HYI_UNROOT(vm, 1); goto out; }
    meta = hyi_o(cls)->cls;
    hyi_oop mname = metaclass_name(vm, name);
    if (!mname) { HYI_UNROOT(vm, 1); goto out; }
    meta = hyi_o(cls)->cls;

    /* Instances keep the kernel format (Array, String...) or inherit their superclass's. */
    hyi_format fmt = HYI_FMT_SLOTS;
    hyi_oop old_spec = hyi_slots(cls)[HYI_CLASS_INSTSPEC];
    if (hyi_is_smi(old_spec)) fmt = hyi_instspec_format(old_spec);
    else if (superclass != vm->nil && hyi_is_smi(hyi_slots(superclass)[HYI_CLASS_INSTSPEC]))
        fmt = hyi_instspec_format(hyi_slots(superclass)[HYI_CLASS_INSTSPEC]);
    if (fmt != HYI_FMT_SLOTS && hyi_size(all_fields) > 0 && fmt != HYI_FMT_CONTEXT) {
        hyi_vm_set_error(vm, "class %.*s: an indexable or byte class cannot have fields",
                         (int)hyi_size(name), (const char *)hyi_bytes(name));
        HYI_UNROOT(vm, 1);
        goto out;
    }

    hyi_store(vm, cls, HYI_CLASS_SUPERCLASS, superclass);
    hyi_store(vm, cls, HYI_CLASS_NAME, name);
    hyi_store(vm, cls, HYI_CLASS_FIELDS, all_fields);
    hyi_store(vm, cls, HYI_CLASS_INSTSPEC, hyi_class_instspec(fmt, hyi_size(all_fields)));
    hyi_store(vm, meta, HYI_CLASS_SUPERCLASS, meta_super);
    hyi_store(vm, meta, HYI_CLASS_NAME, mname);
    hyi_store(vm, meta, HYI_CLASS_FIELDS, all_class_fields);
    hyi_store(vm, meta, HYI_CLASS_INSTSPEC, hyi_class_instspec(HYI_FMT_SLOTS, hyi_size(all_class_fields)));
    if (!hyi_global_set(vm, name, cls)) { HYI_UNROOT(vm, 1); goto out; }
    hyi_flush_method_cache(vm);
    result = cls;
    HYI_UNROOT(vm, 1);
out:
    vm->num_temp_roots = roots;
    return result;
}

bool hyi_class_add_method(hy_vm *vm, hyi_oop cls, hyi_oop method) {
    hyi_oop ms = hyi_slots(cls)[HYI_CLASS_METHODS];
    hyi_oop sel = hyi_m(method)->signature;
    hyi_m(method)->holder = cls;
    if (hyi_is_ptr(ms) && ms != vm->nil) {
        for (uint32_t i = 0; i < hyi_size(ms); i++)
            if (hyi_m(hyi_slots(ms)[i])->signature == sel) {
                hyi_store(vm, ms, i, method);
                hyi_flush_method_cache(vm);
                return true;
            }
    }
    uint32_t n = hyi_is_ptr(ms) && ms != vm->nil ? hyi_size(ms) : 0;
    HYI_ROOT(vm, &cls);
    HYI_ROOT(vm, &method);
    HYI_ROOT(vm, &ms);
    hyi_oop nms = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, n + 1);
    HYI_UNROOT(vm, 3);
    if (!nms) return false;
    for (uint32_t i = 0; i < n; i++) hyi_slots(nms)[i] = hyi_slots(ms)[i];
    hyi_slots(nms)[n] = method;
    hyi_store(vm, cls, HYI_CLASS_METHODS, nms);
    hyi_flush_method_cache(vm);
    return true;
}

/* ---- Class loading ---------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) { free(buf); buf = NULL; break; }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf) *len = n;
    return buf;
}

/* Compile NAME.som from the first class-path folder that has it. Sets vm->load_failed when
 * the file exists but does not compile. */
static hyi_oop load_class_file(hy_vm *vm, hyi_oop name) {
    size_t nlen = hyi_size(name);
    if (nlen == 0 || nlen > 200 || memchr(hyi_bytes(name), '/', nlen) || memchr(hyi_bytes(name), 0, nlen))
        return 0;
    for (char **dir = vm->classpath; dir && *dir; dir++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%.*s.som", *dir, (int)nlen, (const char *)hyi_bytes(name));
        size_t len;
        char *src = read_file(path, &len);
        if (!src) continue;
        HYI_ROOT(vm, &name);
        hyi_oop cls = 0;
        hyi_diag diag;
        memset(&diag, 0, sizeof diag);
        bool ok = hyi_compile_class(vm, src, len, path, &cls, &diag);
        HYI_UNROOT(vm, 1);
        free(src);
        if (!ok) {
            hyi_vm_set_error(vm, "%s:%d:%d: %s", diag.file[0] ? diag.file : path, diag.line,
                             diag.column, diag.message);
            vm->load_failed = true;
            return 0;
        }
        if (hyi_slots(cls)[HYI_CLASS_NAME] != name) {
            hyi_vm_set_error(vm, "%s: defines class %.*s, expected %.*s", path,
                             (int)hyi_size(hyi_slots(cls)[HYI_CLASS_NAME]),
                             (const char *)hyi_bytes(hyi_slots(cls)[HYI_CLASS_NAME]), (int)nlen,
                             (const char *)hyi_bytes(name));
            vm->load_failed = true;
            return 0;
        }
        return cls;
    }
    return 0;
}

hyi_oop hyi_vm_load_class(hy_vm *vm, hyi_oop name) {
    hyi_oop existing = hyi_global_get(vm, name);
    if (existing) return existing;
    return load_class_file(vm, name);
}

/* ---- Roots ------------------------------------------------------------------------------ */

void hyi_vm_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg) {
    visit(vm, &vm->nil, arg);
    visit(vm, &vm->true_, arg);
    visit(vm, &vm->false_, arg);
    visit(vm, &vm->system, arg);
    visit(vm, &vm->undefined, arg);
    visit(vm, &vm->special, arg);
    if (vm->program_args) visit(vm, &vm->program_args, arg);
    for (size_t i = 0; i < sizeof vm->ffi_classes / sizeof vm->ffi_classes[0]; i++)
        if (vm->ffi_classes[i]) visit(vm, &vm->ffi_classes[i], arg);
    for (size_t i = 0; i < HYI_FFI_KIND_CACHE; i++)
        if (vm->ffi_kind_syms[i]) visit(vm, &vm->ffi_kind_syms[i], arg);
    hyi_oop *c = (hyi_oop *)&vm->cls;
    for (size_t i = 0; i < HYI_NUM_CLASSES; i++) if (c[i]) visit(vm, &c[i], arg);
    hyi_oop *s = (hyi_oop *)&vm->sym;
    for (size_t i = 0; i < HYI_NUM_SYMBOLS; i++) if (s[i]) visit(vm, &s[i], arg);
    for (uint32_t i = 0; i < vm->symbols.cap; i++) if (vm->symbols.keys[i]) visit(vm, &vm->symbols.keys[i], arg);
    for (uint32_t i = 0; i < vm->globals.cap; i++) if (vm->globals.keys[i]) visit(vm, &vm->globals.keys[i], arg);
    for (uint32_t i = 0; i < vm->num_temp_roots; i++) visit(vm, vm->temp_roots[i], arg);
    hyi_interp_visit_roots(vm, visit, arg);
    hyi_sched_visit_roots(vm, visit, arg);
}

/* ---- Bootstrap -------------------------------------------------------------------------- */

static bool set_classpath(hy_vm *vm, const char *cp) {
    size_t n = 1;
    for (const char *p = cp; p && *p; p++) n += *p == ':';
    vm->classpath = calloc(n + 1, sizeof(char *));
    if (!vm->classpath) return false;
    size_t k = 0;
    while (cp && *cp) {
        const char *end = strchr(cp, ':');
        size_t len = end ? (size_t)(end - cp) : strlen(cp);
        if (len) {
            vm->classpath[k] = strndup(cp, len);
            if (!vm->classpath[k++]) return false;
        }
        cp = end ? end + 1 : cp + len;
    }
    return true;
}

typedef struct kernel_class {
    const char *name;
    size_t offset;        /* into hyi_classes */
    hyi_format format;
} kernel_class;

#define K(n, field, fmt) { n, offsetof(hyi_classes, field), fmt }
static const kernel_class kernel[] = {
    K("Object", object, HYI_FMT_SLOTS),       K("Class", klass, HYI_FMT_SLOTS),
    K("Metaclass", metaclass, HYI_FMT_SLOTS), K("Nil", nil, HYI_FMT_SLOTS),
    K("Boolean", boolean, HYI_FMT_SLOTS),     K("True", true_, HYI_FMT_SLOTS),
    K("False", false_, HYI_FMT_SLOTS),        K("Integer", integer, HYI_FMT_SLOTS),
    K("Double", double_, HYI_FMT_DOUBLE),     K("String", string, HYI_FMT_BYTES),
    K("Symbol", symbol, HYI_FMT_BYTES),       K("Array", array, HYI_FMT_INDEXED),
    K("Method", method, HYI_FMT_SLOTS),       K("Primitive", primitive, HYI_FMT_SLOTS),
    K("Block", block, HYI_FMT_SLOTS),         K("Block1", block1, HYI_FMT_SLOTS),
    K("Block2", block2, HYI_FMT_SLOTS),       K("Block3", block3, HYI_FMT_SLOTS),
    K("System", system, HYI_FMT_SLOTS),       K("ByteArray", bytearray, HYI_FMT_BYTES),
};
#undef K

/* Classes the VM makes itself (no class file): contexts and global cells. */
static hyi_oop internal_class(hy_vm *vm, const char *name, hyi_format fmt, uint32_t nfields) {
    hyi_oop cls = hyi_class_define(vm, hyi_symbol_c(vm, name), vm->cls.object, 0, 0);
    if (cls) hyi_slots(cls)[HYI_CLASS_INSTSPEC] = hyi_class_instspec(fmt, nfields);
    return cls;
}

static hy_err bootstrap(hy_vm *vm) {
    /* 1. Objects with no class yet: the kernel classes and nil. */
    hyi_oop metaclass_meta = hyi_heap_alloc_old(vm, 0, HYI_FMT_SLOTS, HYI_CLASS_FIXED);
    if (!metaclass_meta) return HY_ENOMEM;
    vm->cls.metaclass = hyi_heap_alloc_old(vm, metaclass_meta, HYI_FMT_SLOTS, HYI_CLASS_FIXED + BOOT_SPARE_CLASS_SLOTS);
    if (!vm->cls.metaclass) return HY_ENOMEM;
    hyi_o(metaclass_meta)->cls = vm->cls.metaclass;
    for (size_t i = 0; i < sizeof kernel / sizeof kernel[0]; i++) {
        hyi_oop *slot = (hyi_oop *)((char *)&vm->cls + kernel[i].offset);
        if (!*slot) {
            hyi_oop cls = class_alloc(vm, HYI_CLASS_FIXED + BOOT_SPARE_CLASS_SLOTS);
            if (!cls) return HY_ENOMEM;
            *slot = cls;
        }
        hyi_slots(*slot)[HYI_CLASS_INSTSPEC] = hyi_class_instspec(kernel[i].format, 0);
    }
    vm->nil = hyi_heap_alloc_old(vm, vm->cls.nil, HYI_FMT_SLOTS, 0);
    if (!vm->nil) return HY_ENOMEM;
    /* Slots allocated before nil existed hold 0: make them nil. */
    for (size_t i = 0; i < sizeof kernel / sizeof kernel[0]; i++) {
        hyi_oop cls = *(hyi_oop *)((char *)&vm->cls + kernel[i].offset);
        for (hyi_oop o = cls; ; o = hyi_o(o)->cls) {
            for (uint32_t s = 0; s < hyi_size(o); s++)
                if (hyi_slots(o)[s] == 0) hyi_slots(o)[s] = vm->nil;
            if (o == hyi_o(cls)->cls) break;
        }
    }
    vm->undefined = hyi_heap_alloc_old(vm, vm->cls.object, HYI_FMT_SLOTS, 0);
    vm->true_ = hyi_heap_alloc_old(vm, vm->cls.true_, HYI_FMT_SLOTS, 0);
    vm->false_ = hyi_heap_alloc_old(vm, vm->cls.false_, HYI_FMT_SLOTS, 0);
    vm->system = hyi_heap_alloc_old(vm, vm->cls.system, HYI_FMT_SLOTS, 0);
    if (!vm->undefined || !vm->true_ || !vm->false_ || !vm->system) return HY_ENOMEM;

    /* 2. Names and globals of the kernel, so class files find them. */
    for (size_t i = 0; i < sizeof kernel / sizeof kernel[0]; i++) {
        hyi_oop cls = *(hyi_oop *)((char *)&vm->cls + kernel[i].offset);
        hyi_oop name = hyi_symbol_c(vm, kernel[i].name);
        if (!name) return HY_ENOMEM;
        hyi_slots(cls)[HYI_CLASS_NAME] = name;
        if (!hyi_global_set(vm, name, cls)) return HY_ENOMEM;
    }
    if (!hyi_global_set(vm, hyi_symbol_c(vm, "nil"), vm->nil) ||
        !hyi_global_set(vm, hyi_symbol_c(vm, "true"), vm->true_) ||
        !hyi_global_set(vm, hyi_symbol_c(vm, "false"), vm->false_) ||
        !hyi_global_set(vm, hyi_symbol_c(vm, "system"), vm->system))
        return HY_ENOMEM;

    /* 3. Well-known selectors. */
    static const struct { size_t off; const char *name; } syms[] = {
        { offsetof(hyi_symbols, dnu), "doesNotUnderstand:arguments:" },
        { offsetof(hyi_symbols, escaped_block), "escapedBlock:" },
        { offsetof(hyi_symbols, unknown_global), "unknownGlobal:" },
        { offsetof(hyi_symbols, run), "run" },
        { offsetof(hyi_symbols, run_), "run:" },
        { offsetof(hyi_symbols, initialize_), "initialize:" },
        { offsetof(hyi_symbols, value), "value" },
        { offsetof(hyi_symbols, value_), "value:" },
        { offsetof(hyi_symbols, value_value_), "value:with:" },
        { offsetof(hyi_symbols, must_be_boolean), "mustBeBoolean" },
        { offsetof(hyi_symbols, signal), "signal" },
        { offsetof(hyi_symbols, unhandled), "defaultAction" },
        { offsetof(hyi_symbols, error_), "error:" },
        { offsetof(hyi_symbols, call_stack), "callStack" },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        hyi_oop s = hyi_symbol_c(vm, syms[i].name);
        if (!s) return HY_ENOMEM;
        *(hyi_oop *)((char *)&vm->sym + syms[i].off) = s;
    }

    /* 4. Internal classes, then the kernel's class files (superclasses load on demand). */
    vm->cls.cell = internal_class(vm, "GlobalCell", HYI_FMT_SLOTS, HYI_CELL_SLOTS);
    if (!vm->cls.cell) return HY_ENOMEM;
    /* Cells made before GlobalCell existed get their class now. */
    for (uint32_t i = 0; i < vm->globals.cap; i++)
        if (vm->globals.keys[i]) hyi_o(vm->globals.keys[i])->cls = vm->cls.cell;
    vm->cls.context = internal_class(vm, "Context", HYI_FMT_CONTEXT, 0);
    if (!vm->cls.context) return HY_ENOMEM;

    for (size_t i = 0; i < sizeof kernel / sizeof kernel[0]; i++) {
        /* The kernel class exists already as a global; its file fills it in. */
        hyi_oop cls = load_class_file(vm, hyi_symbol_c(vm, kernel[i].name));
        if (!cls) {
            if (vm->load_failed) return HY_ESYNTAX;
            hyi_vm_set_error(vm, "core class %s not found on the class path", kernel[i].name);
            return HY_ENOENT;
        }
    }
    static const struct { size_t off; const char *name; } needed[] = {
        { offsetof(hyi_classes, exception), "Exception" },
        { offsetof(hyi_classes, error), "Error" },
        { offsetof(hyi_classes, dnu_error), "MessageNotUnderstood" },
        { offsetof(hyi_classes, oom_error), "OutOfMemory" },
    };
    for (size_t i = 0; i < sizeof needed / sizeof needed[0]; i++) {
        hyi_oop cls = hyi_vm_load_class(vm, hyi_symbol_c(vm, needed[i].name));
        if (!cls) {
            if (vm->load_failed) return HY_ESYNTAX;
            hyi_vm_set_error(vm, "core class %s not found on the class path", needed[i].name);
            return HY_ENOENT;
        }
        *(hyi_oop *)((char *)&vm->cls + needed[i].off) = cls;
    }
    return HY_OK;
}

hy_vm *hyi_vm_alloc(const hy_config *cfg) {
    hy_vm *vm = calloc(1, sizeof *vm);
    if (!vm) return NULL;
    vm->config = *cfg;
    vm->config.classpath = NULL;
    vm->config.name = strdup(cfg->name ? cfg->name : "vm");
    if (!vm->config.name) { free(vm); return NULL; }
    if (!vm->config.write) vm->config.write = default_write;
    if (!vm->config.stack_slots) vm->config.stack_slots = DEFAULT_STACK_SLOTS;
    vm->start_ns = hyi_now_ns();
    if (!hyi_trace_vm_init(vm)) { free((char *)vm->config.name); free(vm); return NULL; }
    hyi_heap_config hc = { .limit = cfg->heap_limit, .eden_size = cfg->eden_size, .gc_stress = false };
    if (!set_classpath(vm, cfg->classpath) || !hyi_threads_init(vm) || !hyi_thread_attach(vm)) {
        hy_vm_free(vm);
        return NULL;
    }
    if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_ATTACH, false);
    if (!hyi_heap_init(vm, &hc) || !hyi_interp_init(vm) || !hyi_sched_init(vm)) {
        hy_vm_free(vm);
        return NULL;
    }
    return vm;
}

hy_err hy_vm_new(const hy_config *cfg, hy_vm **out) {
    if (!cfg || !out) return HY_EINVAL;
    hy_vm *vm = hyi_vm_alloc(cfg);
    if (!vm) return HY_ENOMEM;
    hy_err err = bootstrap(vm);
    if (err != HY_OK) {
        hyi_vm_printf(vm, 2, "hydra: cannot start the VM: %s\n", hy_vm_last_error(vm));
        hy_vm_free(vm);
        return err;
    }
    /* Stress starts after bootstrap: the kernel is old and never moves anyway. */
    vm->heap.stress = cfg->gc_stress;
    if (hyi_tracing(vm)) hyi_trace_own_end(vm);
    hyi_thread_detach(vm);   /* the thread that runs the VM owns it then */
    *out = vm;
    return HY_OK;
}

void hy_vm_free(hy_vm *vm) {
    if (!vm) return;
    hyi_sched_fini(vm);
    if (vm->threads && vm->nil && hyi_thread_attach(vm)) {
        if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_ATTACH, false);
        hyi_ffi_run_exit_calls(vm);   /* none unless no program ran to its end */
        hyi_ffi_release_all(vm);   /* callbacks the program never freed */
        if (hyi_tracing(vm)) hyi_trace_own_end(vm);
        hyi_thread_detach(vm);
    }
    hyi_interp_fini(vm);
    hyi_heap_fini(vm);
    hyi_threads_fini(vm);
    free(vm->symbols.keys);
    free(vm->globals.keys);
    for (char **p = vm->classpath; p && *p; p++) free(*p);
    free(vm->classpath);
    free(vm->error_buf);
    free(vm->image_entry);
    free((char *)vm->config.name);
    hyi_trace_vm_fini(vm);
    free(vm);
}

static hy_err run_main(hy_vm *vm, const char *class_name, int argc, const char *const *argv,
                       int *exit_status);

hy_err hy_vm_run_main(hy_vm *vm, const char *class_name, int argc, const char *const *argv,
                      int *exit_status) {
    if (!vm || !class_name || !exit_status || argc < 0 || (argc > 0 && !argv)) return HY_EINVAL;
    if (!hyi_thread_attach(vm)) return HY_ENOMEM;
    if (hyi_tracing(vm)) {
        hyi_trace_role_set(vm, HYI_TRACE_MAIN);
        hyi_trace_own_begin(vm, HYI_TRACE_ATTACH, false);
    }
    hy_err err = run_main(vm, class_name, argc, argv, exit_status);
    if (hyi_tracing(vm)) hyi_trace_own_end(vm);
    hyi_thread_detach(vm);
    return err;
}

static hy_err run_main(hy_vm *vm, const char *class_name, int argc, const char *const *argv,
                       int *exit_status) {
    vm->load_failed = false;
    hyi_oop name = hyi_symbol_c(vm, class_name);
    if (!name) return HY_ENOMEM;
    hyi_oop cls = hyi_vm_load_class(vm, name);
    if (!cls) {
        if (vm->load_failed) return HY_ESYNTAX;
        hyi_vm_set_error(vm, "class %s not found on the class path", class_name);
        return HY_ENOENT;
    }
    HYI_ROOT(vm, &cls);
    hyi_oop args = hyi_array_new(vm, (uint32_t)argc + 1);
    HYI_ROOT(vm, &args);
    hy_err err = HY_OK;
    if (!args) { err = HY_ENOMEM; goto out; }
    hyi_oop s = hyi_string_new(vm, class_name, strlen(class_name));
    if (!s) { err = HY_ENOMEM; goto out; }
    hyi_store(vm, args, 0, s);
    for (int i = 0; i < argc; i++) {
        s = hyi_string_new(vm, argv[i], strlen(argv[i]));
        if (!s) { err = HY_ENOMEM; goto out; }
        hyi_store(vm, args, (uint32_t)i + 1, s);
    }
    vm->program_args = args;
    err = hyi_interp_run_main(vm, cls, args, exit_status);
    vm->program_args = 0;
out:
    HYI_UNROOT(vm, 2);
    return err;
}
