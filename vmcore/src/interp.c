/*
 * interp.c -- the bytecode interpreter.
 *
 * Invariants:
 *  - Registers: f (top frame record), ip, sp (last pushed value), fp (receiver slot of f).
 *    Whenever control may leave the loop's straight-line code -- an allocation (which may
 *    collect), a call from C, an unwind -- the registers are saved first (SAVE) so the GC
 *    sees the whole stack and frame records, and reloaded after (LOAD).
 *  - A value held only in a C local across an allocation is rooted or re-read from the stack.
 *  - A frame record is pushed for every Smalltalk method or block activation; primitives run
 *    in their caller's frame. Frames are never heap-allocated; only activations whose
 *    variables are captured by blocks get a heap context (MAKE_CTX).
 *  - Unwinding (non-local return, exception return/retry/resume, process end) runs the blocks
 *    of ensure:/ifCurtailed: frames it passes, innermost first, each exactly once.
 */
#include "interp.h"
#include "process.h"
#include "bigint.h"

#include <stdlib.h>
#include <sys/mman.h>

#include "bytecode.h"
#include "prims.h"

enum {
    CTL_VALUE = 1, CTL_PERFORM, CTL_PERFORM_ARGS, CTL_PERFORM_SUPER, CTL_PERFORM_ARGS_SUPER,
    CTL_INVOKE, CTL_RESTART, CTL_SIGNAL, CTL_RETURN, CTL_RETRY, CTL_RESUME, CTL_PASS,
    CTL_UNHANDLED, CTL_EXIT, CTL_VALUE_ARGS,
};

const hyi_prim_def hyi_prims_control[] = {
    { "Block", "value", NULL, CTL_VALUE },
    { "Block1", "value", NULL, CTL_VALUE },
    { "Block2", "value:", NULL, CTL_VALUE },
    { "Block3", "value:with:", NULL, CTL_VALUE },
    { "Block", "value:", NULL, CTL_VALUE },
    { "Block", "value:with:", NULL, CTL_VALUE },
    { "Block", "value:with:with:", NULL, CTL_VALUE },
    { "Block", "value:with:with:with:", NULL, CTL_VALUE },
    { "Block", "valueWithArguments:", NULL, CTL_VALUE_ARGS },
    { "Block", "restart", NULL, CTL_RESTART },
    { "Object", "perform:", NULL, CTL_PERFORM },
    { "Object", "perform:with:", NULL, CTL_PERFORM },
    { "Object", "perform:with:with:", NULL, CTL_PERFORM },
    { "Object", "perform:with:with:with:", NULL, CTL_PERFORM },
    { "Object", "perform:withArguments:", NULL, CTL_PERFORM_ARGS },
    { "Object", "perform:inSuperclass:", NULL, CTL_PERFORM_SUPER },
    { "Object", "perform:withArguments:inSuperclass:", NULL, CTL_PERFORM_ARGS_SUPER },
    { "Method", "invokeOn:with:", NULL, CTL_INVOKE },
    { "Primitive", "invokeOn:with:", NULL, CTL_INVOKE },
    { "Exception", "signal", NULL, CTL_SIGNAL },
    { "Exception", "return:", NULL, CTL_RETURN },
    { "Exception", "retry", NULL, CTL_RETRY },
    { "Exception", "resume:", NULL, CTL_RESUME },
    { "Exception", "pass", NULL, CTL_PASS },
    { "Exception", "unhandled:", NULL, CTL_UNHANDLED },
    { "System", "exit:", NULL, CTL_EXIT },
    { NULL, NULL, NULL, 0 },
};

/* Exception fields used by the VM (see images/core/Exception.som). */
enum { EXC_MESSAGE = 0, EXC_SIGNAL_FRAME = 1, EXC_HANDLER_FRAME = 2 };

/* What an unwind does when it reaches its target frame. */
enum { UNWIND_RETURN = 1, UNWIND_RESUME, UNWIND_RESTART, UNWIND_TERMINATE };

#define FRAME_RESERVE 2000u       /* frames kept for handling a stack overflow error */
#define SLOT_RESERVE (64u * 1024u) /* value-stack slots kept likewise */

/* ---- Stack setup ------------------------------------------------------------------------- */

bool hyi_interp_stack_init(hyi_stack *s, size_t slots) {
    if (slots < 4 * SLOT_RESERVE) slots = 4 * SLOT_RESERVE;
    size_t max_frames = slots / 4;
    size_t bytes = slots * sizeof(hyi_oop) + max_frames * sizeof(hyi_frame);
    bytes = (bytes + 4095) & ~(size_t)4095;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) return false;
    s->reserved_bytes = bytes;
    s->base = mem;
    s->limit = s->base + slots;
    s->sp = s->base - 1;
    s->frames = (hyi_frame *)(void *)s->limit;
    s->max_frames = (uint32_t)max_frames;
    s->nframes = 0;
    return true;
}

void hyi_interp_stack_fini(hyi_stack *s) {
    if (s->base) munmap(s->base, s->reserved_bytes);
    s->base = NULL;
}

bool hyi_interp_init(hy_vm *vm) {
    return hyi_interp_stack_init(&vm->stack, vm->config.stack_slots);
}

void hyi_interp_fini(hy_vm *vm) {
    hyi_interp_stack_fini(&vm->stack);
}

void hyi_interp_visit_stack(hy_vm *vm, hyi_stack *s, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg) {
    if (!s->base) return;
    for (hyi_oop *p = s->base; p <= s->sp; p++) visit(vm, p, arg);
    for (uint32_t i = 0; i < s->nframes; i++) {
        hyi_frame *fr = &s->frames[i];
        hyi_oop m = (hyi_oop)fr->method;
        visit(vm, &m, arg);
        if (fr->ctx) visit(vm, &fr->ctx, arg);
        if (fr->closure) visit(vm, &fr->closure, arg);
    }
}

void hyi_interp_visit_roots(hy_vm *vm, void (*visit)(hy_vm *vm, hyi_oop *slot, void *arg), void *arg) {
    hyi_interp_visit_stack(vm, &vm->stack, visit, arg);
    for (int i = 0; i < 8; i++) if (vm->trampolines[i]) visit(vm, &vm->trampolines[i], arg);
    if (vm->unwind_value) visit(vm, &vm->unwind_value, arg);
}

/* ---- Helpers ---------------------------------------------------------------------------- */

static uint32_t selector_arity(hyi_oop sel) {
    const uint8_t *b = hyi_bytes(sel);
    uint32_t n = hyi_size(sel), colons = 0;
    if (n == 0) return 0;
    for (uint32_t i = 0; i < n; i++) colons += b[i] == ':';
    if (colons) return colons;
    return (b[0] >= 'a' && b[0] <= 'z') || (b[0] >= 'A' && b[0] <= 'Z') || b[0] == '_' ? 0 : 1;
}

static hyi_oop block_class_for(hy_vm *vm, uint32_t nargs) {
    switch (nargs) {
    case 0: return vm->cls.block1;
    case 1: return vm->cls.block2;
    case 2: return vm->cls.block3;
    default: return vm->cls.block;
    }
}

static bool is_block(hy_vm *vm, hyi_oop o) {
    if (!hyi_is_ptr(o) || hyi_fmt(o) != HYI_FMT_SLOTS || hyi_size(o) < HYI_BLOCK_SLOTS) return false;
    hyi_oop c = hyi_o(o)->cls;
    if (c != vm->cls.block1 && c != vm->cls.block2 && c != vm->cls.block3 && c != vm->cls.block)
        return hyi_is_kind(vm, o, vm->cls.block) && hyi_is_ptr(hyi_slots(o)[HYI_BLOCK_METHOD]) &&
               hyi_fmt(hyi_slots(o)[HYI_BLOCK_METHOD]) == HYI_FMT_METHOD;
    return true;
}

static uint32_t line_of(hyi_method *m, const uint8_t *ip) {
    uint32_t line = m->line;
    if (!hyi_is_ptr(m->debug) || hyi_fmt(m->debug) != HYI_FMT_INDEXED || hyi_size(m->debug) < 2) return line;
    hyi_oop table = hyi_slots(m->debug)[1];
    if (!hyi_is_ptr(table) || hyi_fmt(table) != HYI_FMT_BYTES) return line;
    uint32_t pc = ip ? (uint32_t)(ip - hyi_method_code(m)) : 0;
    if (pc > 0) pc--;
    const uint8_t *b = hyi_bytes(table);
    for (uint32_t i = 0; i + 8 <= hyi_size(table); i += 8) {
        uint32_t p, l;
        memcpy(&p, b + i, 4);
        memcpy(&l, b + i + 4, 4);
        if (p > pc) break;
        line = l;
    }
    return line;
}

static void print_name(hy_vm *vm, int stream, hyi_oop sym) {
    if (hyi_is_ptr(sym) && hyi_fmt(sym) == HYI_FMT_BYTES) hyi_vm_write(vm, stream, (const char *)hyi_bytes(sym), hyi_size(sym));
    else hyi_vm_write(vm, stream, "?", 1);
}

void hyi_interp_print_backtrace(hy_vm *vm, int stream) {
    hyi_stack *s = &vm->stack;
    uint32_t shown = 0;
    for (uint32_t k = s->nframes; k-- > 0;) {
        hyi_frame *fr = &s->frames[k];
        hyi_method *m = fr->method;
        bool tramp = false;
        for (int i = 0; i < 8; i++) tramp |= vm->trampolines[i] && m == hyi_m(vm->trampolines[i]);
        tramp |= m->holder == vm->nil;   /* entry trampolines of processes */
        if (tramp) continue;
        if (++shown > 60 && k > 10) {
            if (shown == 61) hyi_vm_printf(vm, stream, "  ... %u more frames ...\n", k - 10);
            continue;
        }
        hyi_vm_write(vm, stream, "  ", 2);
        if (m->flags & HYI_MF_BLOCK) hyi_vm_write(vm, stream, "[] in ", 6);
        hyi_oop holder = m->holder;
        print_name(vm, stream, hyi_is_ptr(holder) && holder != vm->nil ? hyi_slots(holder)[HYI_CLASS_NAME] : vm->nil);
        hyi_vm_write(vm, stream, ">>", 2);
        print_name(vm, stream, m->signature);
        hyi_oop file = hyi_is_ptr(m->debug) && hyi_fmt(m->debug) == HYI_FMT_INDEXED && hyi_size(m->debug) >= 1
                           ? hyi_slots(m->debug)[0] : vm->nil;
        hyi_vm_write(vm, stream, " (", 2);
        print_name(vm, stream, file);
        hyi_vm_printf(vm, stream, ":%u)\n", line_of(m, fr->ip));
    }
}

hyi_oop hyi_interp_trampoline_new(hy_vm *vm, hyi_oop selector, uint32_t nargs) {
    size_t code_len = 4;
    size_t ic_off = (sizeof(hyi_method) + code_len + 7) & ~(size_t)7;
    size_t bytes = ic_off + sizeof(hyi_ic) - sizeof(hyi_obj);
    HYI_ROOT(vm, &selector);
    hyi_oop sig = selector != vm->nil ? selector : hyi_symbol_c(vm, "callFromC");
    HYI_ROOT(vm, &sig);
    hyi_oop mo = sig ? hyi_heap_alloc_old(vm, vm->cls.method, HYI_FMT_METHOD, (uint32_t)bytes) : 0;
    HYI_UNROOT(vm, 2);
    if (!mo) return 0;
    hyi_method *m = hyi_m(mo);
    m->signature = sig;
    m->holder = vm->nil;
    m->literals = vm->nil;
    m->debug = vm->nil;
    m->num_args = 0;
    m->num_temps = 0;
    m->max_stack = (uint16_t)(nargs + 2);
    m->num_ics = 1;
    m->code_len = (uint32_t)code_len;
    m->ic_offset = (uint32_t)ic_off;
    uint8_t *code = hyi_method_code(m);
    code[0] = HYI_OP_SEND; code[1] = 0; code[2] = 0; code[3] = HYI_OP_RETURN_TOP;
    hyi_ic *ic = hyi_method_ics(m);
    memset(ic, 0, sizeof *ic);
    ic->nargs = nargs;
    ic->selector = selector;
    return mo;
}

static hyi_oop trampoline(hy_vm *vm, uint32_t nargs) {
    if (nargs >= 8) return 0;
    if (!vm->trampolines[nargs]) vm->trampolines[nargs] = hyi_interp_trampoline_new(vm, vm->nil, nargs);
    return vm->trampolines[nargs];
}

/* ---- The loop ------------------------------------------------------------------------------ */

static hyi_run interpret(hy_vm *vm, hyi_oop *result, uint32_t base);

hyi_run hyi_interp_send(hy_vm *vm, hyi_oop receiver, hyi_oop selector, uint32_t nargs,
                        const hyi_oop *args, hyi_oop *result) {
    hyi_stack *s = &vm->stack;
    HYI_ROOT(vm, &receiver);
    HYI_ROOT(vm, &selector);
    hyi_oop tm = trampoline(vm, nargs);
    HYI_UNROOT(vm, 2);
    if (!tm) return HYI_RUN_EXIT;
    if (s->sp + nargs + 8 >= s->limit || s->nframes + 1 >= s->max_frames) {
        hyi_vm_printf(vm, 2, "ERROR: stack overflow calling into Smalltalk from C\n");
        vm->exit_code = 1;
        return HYI_RUN_EXIT;
    }
    hyi_method *m = hyi_m(tm);
    hyi_method_ics(m)->selector = selector;
    hyi_method_ics(m)->cls = 0;
    hyi_method_ics(m)->target = 0;
    hyi_oop *fp = s->sp + 1;
    fp[0] = vm->nil;
    fp[1] = receiver;
    for (uint32_t i = 0; i < nargs; i++) fp[2 + i] = args[i];
    s->sp = fp + 1 + nargs;
    hyi_frame *fr = &s->frames[s->nframes++];
    fr->method = m;
    fr->ip = hyi_method_code(m);
    fr->fp = fp;
    fr->sp = s->sp;
    fr->ctx = 0;
    fr->closure = 0;
    fr->serial = ++vm->next_serial;
    fr->flags = HYI_FRAME_BASE;
    fr->handler_for = 0;
    hyi_oop r = vm->nil;
    /* A C-level run inside a process: that process cannot be switched out until it returns. */
    hyi_process *cur = hyi_sched_proc(vm, hyi_sched_current(vm));
    uint32_t cur_id = hyi_sched_current(vm);
    if (cur) cur->nested++;
    hyi_run st = interpret(vm, &r, s->nframes - 1);
    cur = hyi_sched_proc(vm, cur_id);
    if (cur) cur->nested--;
    if (st == HYI_RUN_OK) {
        /* The base frame returned: its result sits at fp[0]. */
        s->sp = fp - 1;
        *result = r;
    }
    return st;
}

hyi_run hyi_interp_resume(hy_vm *vm, hyi_oop *result) {
    return interpret(vm, result, 0);
}

hy_err hyi_interp_run_main(hy_vm *vm, hyi_oop cls, hyi_oop args, int *exit_status) {
    (void)cls;
    vm->exit_code = 0;
    vm->exiting = false;
    hyi_oop result;
    hyi_oop sel = hyi_symbol_c(vm, "initialize:");
    if (!sel) return HY_ENOMEM;
    (void)result;
    hyi_run st = hyi_sched_run_main(vm, vm->system, sel, args);
    /* Normal end or System exit: give exit_code; an unhandled error leaves it non-zero. */
    *exit_status = st == HYI_RUN_OK || vm->exiting ? vm->exit_code : (vm->exit_code ? vm->exit_code : 1);
    vm->stack.nframes = 0;
    vm->stack.sp = vm->stack.base - 1;
    vm->exiting = false;
    vm->killing = false;
    /* A stop asked for this run is spent: a later run starts afresh. */
    atomic_store_explicit(&vm->stop_request, 0, memory_order_relaxed);
    return HY_OK;
}

/* Find a frame by its serial number, from the top; -1 when it no longer exists. */
static int64_t frame_by_serial(hy_vm *vm, uint64_t serial) {
    for (uint32_t i = vm->stack.nframes; i-- > 0;)
        if (vm->stack.frames[i].serial == serial) return i;
    return -1;
}

/* The exception handler frame for exc at or below frame index `from`, or -1. */
static int64_t find_handler(hy_vm *vm, hyi_oop exc, int64_t from) {
    for (int64_t i = from; i >= 0; i--) {
        hyi_frame *fr = &vm->stack.frames[i];
        if (!(fr->method->flags & HYI_MF_ON_DO) || (fr->flags & HYI_FRAME_HANDLING)) continue;
        hyi_oop cls = fr->fp[1];
        if (hyi_is_ptr(cls) && hyi_is_ptr(hyi_o(cls)->cls) && hyi_o(hyi_o(cls)->cls)->cls == vm->cls.metaclass &&
            hyi_is_kind(vm, exc, cls))
            return i;
    }
    return -1;
}

/* Compare two numbers (SmallInteger, large integer, Double): -1, 0, 1; 2 when either is not a
 * number. For inlined to:do: loops outside the SmallInteger fast path. */
static int number_compare(hy_vm *vm, hyi_oop a, hyi_oop b) {
    bool ai = hyi_is_int(a), bi = hyi_is_int(b);
    if (ai && bi) return hyi_bigint_cmp(a, b);
    bool ad = hyi_is_ptr(a) && hyi_o(a)->cls == vm->cls.double_, bd = hyi_is_ptr(b) && hyi_o(b)->cls == vm->cls.double_;
    /* A NaN bound ends the loop: it compares as greater. */
    if (ad && bd) { double x = hyi_double_val(a), y = hyi_double_val(b); return x < y ? -1 : x == y ? 0 : 1; }
    if (ai && bd) { int r = hyi_bigint_cmp_double(a, hyi_double_val(b)); return r == 2 ? 1 : r; }
    if (ad && bi) { int r = hyi_bigint_cmp_double(b, hyi_double_val(a)); return r == 2 ? 1 : -r; }
    return 2;
}

/* n + 1 for a loop counter: 0 when memory is short, 1 (not an oop) when n is not a number. */
static hyi_oop number_increment(hy_vm *vm, hyi_oop n) {
    if (hyi_is_int(n)) {
        hyi_oop r;
        return hyi_bigint_add(vm, n, hyi_smi(1), &r) == HYI_BIG_OK ? r : 0;
    }
    if (hyi_is_ptr(n) && hyi_o(n)->cls == vm->cls.double_) return hyi_double_new(vm, hyi_double_val(n) + 1);
    return 1;
}

static hyi_run interpret(hy_vm *vm, hyi_oop *result, uint32_t base) {
    static const void *const dispatch[HYI_OP_COUNT] = {
#define HYI_X_LABEL(name, nops, doc) &&op_##name,
        HYI_BYTECODES(HYI_X_LABEL)
#undef HYI_X_LABEL
    };
    hyi_stack *const stk = &vm->stack;
    hyi_frame *f;
    hyi_method *m;
    const uint8_t *ip;
    hyi_oop *sp, *fp, *lits;
    hyi_oop nil = vm->nil;

    /* Send state (shared by every path that sends). */
    hyi_oop s_sel = 0, s_cls = 0;
    uint32_t s_nargs = 0;
    hyi_ic *s_ic = NULL;
    hyi_oop s_method = 0;
    hyi_sched_act s_act = HYI_SCHED_CONTINUE;
    /* Unwind state. */
    uint32_t u_target = 0;
    int u_kind = 0;
    hyi_oop u_value = 0;

#define SAVE() (f->ip = ip, stk->sp = sp)
#define LOAD() do { f = &stk->frames[stk->nframes - 1]; m = f->method; ip = f->ip; fp = f->fp; \
                    sp = stk->sp; lits = m->literals != nil ? hyi_slots(m->literals) : NULL; } while (0)
#define NEXT() goto *dispatch[*ip++]
#define U8(k) (ip[k])
#define U16(k) ((uint16_t)(ip[k] | (ip[(k) + 1] << 8)))
#define I16(k) ((int16_t)U16(k))
#define PUSH(v) (*++sp = (v))
#define POP() (*sp--)
#define TOP() (*sp)
#define BOOL(c) ((c) ? vm->true_ : vm->false_)

    LOAD(); /* registers come from the base frame the caller pushed */
    /* A process resumed by the scheduler hears what it missed (a stop, a waiting thread) first. */
    if (base == 0 && atomic_load_explicit(&vm->attention, memory_order_relaxed)) goto poll;
    NEXT();

op_PUSH_SELF: PUSH(fp[0]); NEXT();
op_PUSH_NIL: PUSH(nil); NEXT();
op_PUSH_TRUE: PUSH(vm->true_); NEXT();
op_PUSH_FALSE: PUSH(vm->false_); NEXT();
op_PUSH_SMALLINT: {
    hyi_oop k = hyi_smi((int8_t)U8(0));
    /* x + k and x - k with a SmallInteger x: one dispatch instead of two. */
    if (hyi_is_smi(TOP())) {
        intptr_t r;
        if (ip[1] == HYI_OP_SEND_ADD && !__builtin_add_overflow((intptr_t)TOP(), (intptr_t)k - 1, &r)) { TOP() = (hyi_oop)r; ip += 4; NEXT(); }
        if (ip[1] == HYI_OP_SEND_SUB && !__builtin_sub_overflow((intptr_t)TOP(), (intptr_t)k - 1, &r)) { TOP() = (hyi_oop)r; ip += 4; NEXT(); }
    }
    PUSH(k); ip += 1; NEXT();
}
op_PUSH_LIT: PUSH(lits[U16(0)]); ip += 2; NEXT();
op_PUSH_GLOBAL: {
    hyi_oop cell = lits[U16(0)];
    hyi_oop v = hyi_slots(cell)[HYI_CELL_VALUE];
    ip += 2;
    if (v != vm->undefined) { PUSH(v); NEXT(); }
    /* Unknown global: try to load a class of that name, else self unknownGlobal: #name. */
    SAVE();
    hyi_oop cls = hyi_vm_load_class(vm, hyi_slots(cell)[HYI_CELL_KEY]);
    LOAD();
    if (cls) { PUSH(cls); NEXT(); }
    if (vm->load_failed) {
        vm->load_failed = false;
        hyi_vm_printf(vm, 2, "ERROR: %s\n", hy_vm_last_error(vm));
    }
    PUSH(fp[0]);
    PUSH(hyi_slots(cell)[HYI_CELL_KEY]);
    s_sel = vm->sym.unknown_global; s_nargs = 1; s_ic = NULL; s_cls = 0;
    goto send;
}
op_PUSH_LOCAL: PUSH(fp[1 + U8(0)]); ip += 1; NEXT();
op_STORE_LOCAL: fp[1 + U8(0)] = TOP(); ip += 1; NEXT();
op_POP_LOCAL: fp[1 + U8(0)] = POP(); ip += 1; NEXT();
op_PUSH_FIELD: PUSH(hyi_slots(fp[0])[U8(0)]); ip += 1; NEXT();
op_STORE_FIELD: hyi_store(vm, fp[0], U8(0), TOP()); ip += 1; NEXT();
op_POP_FIELD: hyi_store(vm, fp[0], U8(0), TOP()); sp--; ip += 1; NEXT();
op_PUSH_CTX: op_STORE_CTX: op_POP_CTX: {
    uint8_t op = ip[-1];
    hyi_oop e = f->ctx ? f->ctx : (f->closure ? hyi_slots(f->closure)[HYI_BLOCK_OUTER] : nil);
    for (uint32_t d = U8(0); d > 0 && e != nil; d--) e = hyi_slots(e)[HYI_CTX_OUTER];
    uint32_t idx = HYI_CTX_FIRST_VAR + U8(1);
    ip += 2;
    if (e == nil || !hyi_is_ptr(e) || idx >= hyi_size(e)) {
        SAVE();
        hyi_vm_printf(vm, 2, "ERROR: internal: bad context access\n");
        hyi_interp_print_backtrace(vm, 2);
        vm->exit_code = 1;
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    if (op == HYI_OP_PUSH_CTX) PUSH(hyi_slots(e)[idx]);
    else if (op == HYI_OP_STORE_CTX) hyi_store(vm, e, idx, TOP());
    else { hyi_store(vm, e, idx, TOP()); sp--; }
    NEXT();
}
op_MAKE_CTX: {
    uint32_t n = U8(0);
    ip += 1;
    SAVE();
    hyi_oop c = hyi_alloc_small(vm, vm->cls.context, HYI_FMT_CONTEXT, HYI_CTX_FIRST_VAR + n);
    LOAD();
    if (!c) goto out_of_memory;
    hyi_slots(c)[HYI_CTX_OUTER] = f->closure ? hyi_slots(f->closure)[HYI_BLOCK_OUTER] : nil;
    f->ctx = c;
    NEXT();
}
op_PUSH_BLOCK: {
    uint16_t li = U16(0);
    hyi_oop bm = lits[li];
    ip += 2;
    SAVE();
    hyi_oop c = hyi_alloc_small(vm, block_class_for(vm, hyi_m(bm)->num_args), HYI_FMT_SLOTS, HYI_BLOCK_SLOTS);
    LOAD();
    if (!c) goto out_of_memory;
    hyi_slots(c)[HYI_BLOCK_METHOD] = lits[li];
    hyi_slots(c)[HYI_BLOCK_RECEIVER] = fp[0];
    hyi_slots(c)[HYI_BLOCK_OUTER] = f->ctx ? f->ctx : (f->closure ? hyi_slots(f->closure)[HYI_BLOCK_OUTER] : nil);
    PUSH(c);
    NEXT();
}
op_POP: sp--; NEXT();
op_DUP: { hyi_oop t = TOP(); PUSH(t); NEXT(); }

op_SEND: {
    s_ic = &hyi_method_ics(m)[U16(0)];
    ip += 2;
    s_sel = s_ic->selector; s_nargs = s_ic->nargs; s_cls = 0;
    goto send;
}
op_SUPER_SEND: {
    s_ic = &hyi_method_ics(m)[U16(0)];
    ip += 2;
    s_sel = s_ic->selector; s_nargs = s_ic->nargs;
    s_cls = hyi_slots(m->holder)[HYI_CLASS_SUPERCLASS];
    if (s_cls == nil) s_cls = 0; /* no superclass: lookup fails below as DNU */
    goto super_send;
}

#define SPECIAL_SEND(nargs_) do { s_ic = &hyi_method_ics(m)[U16(0)]; ip += 2; \
    s_sel = s_ic->selector; s_nargs = (nargs_); s_cls = 0; goto send; } while (0)

/* Doubles: a op b when a is a Double and b a Double or SmallInteger, or a a SmallInteger and
 * b a Double. Falls through when neither is a Double. */
#define IS_DOUBLE(x) (hyi_is_ptr(x) && hyi_o(x)->cls == vm->cls.double_)
#define DOUBLE_ARITH(op) do { \
    double x_, y_; \
    if (IS_DOUBLE(a)) { x_ = hyi_double_val(a); \
        if (hyi_is_smi(b)) y_ = (double)hyi_smi_val(b); else if (IS_DOUBLE(b)) y_ = hyi_double_val(b); else break; } \
    else if (hyi_is_smi(a) && IS_DOUBLE(b)) { x_ = (double)hyi_smi_val(a); y_ = hyi_double_val(b); } \
    else break; \
    SAVE(); hyi_oop d_ = hyi_double_new(vm, x_ op y_); LOAD(); \
    if (!d_) goto out_of_memory; \
    *--sp = d_; ip += 2; NEXT(); } while (0)

op_SEND_ADD: {
    hyi_oop a = sp[-1], b = sp[0];
    intptr_t r;
    if (hyi_is_smi(a & b) && !__builtin_add_overflow((intptr_t)a, (intptr_t)b - 1, &r)) {
        *--sp = (hyi_oop)r; ip += 2; NEXT();
    }
    DOUBLE_ARITH(+);
    SPECIAL_SEND(1);
}
op_SEND_SUB: {
    hyi_oop a = sp[-1], b = sp[0];
    intptr_t r;
    if (hyi_is_smi(a & b) && !__builtin_sub_overflow((intptr_t)a, (intptr_t)b - 1, &r)) {
        *--sp = (hyi_oop)r; ip += 2; NEXT();
    }
    DOUBLE_ARITH(-);
    SPECIAL_SEND(1);
}
op_SEND_MUL: {
    hyi_oop a = sp[-1], b = sp[0];
    intptr_t r;
    if (hyi_is_smi(a & b) && !__builtin_mul_overflow(hyi_smi_val(a), hyi_smi_val(b), &r) && hyi_smi_fits(r)) {
        *--sp = hyi_smi(r); ip += 2; NEXT();
    }
    DOUBLE_ARITH(*);
    SPECIAL_SEND(1);
}
/* Comparisons of SmallIntegers and Doubles answer a Boolean, or, when a conditional jump
 * follows (the usual case in inlined loops and ifTrue:), take the jump at once. */
#define COMPARE(op) do { hyi_oop a = sp[-1], b = sp[0]; bool r_; \
    if (hyi_is_smi(a & b)) r_ = (intptr_t)a op (intptr_t)b; \
    else if (IS_DOUBLE(a) && IS_DOUBLE(b)) r_ = hyi_double_val(a) op hyi_double_val(b); \
    else if (IS_DOUBLE(a) && hyi_is_smi(b)) r_ = hyi_double_val(a) op (double)hyi_smi_val(b); \
    else if (hyi_is_smi(a) && IS_DOUBLE(b)) r_ = (double)hyi_smi_val(a) op hyi_double_val(b); \
    else SPECIAL_SEND(1); \
    sp -= 2; ip += 2; \
    if (*ip == HYI_OP_JUMP_IF_FALSE) { ip += r_ ? 3 : 3 + I16(1); NEXT(); } \
    if (*ip == HYI_OP_JUMP_IF_TRUE) { ip += r_ ? 3 + I16(1) : 3; NEXT(); } \
    PUSH(BOOL(r_)); NEXT(); } while (0)
op_SEND_LT: COMPARE(<);
op_SEND_GT: COMPARE(>);
op_SEND_LE: COMPARE(<=);
op_SEND_GE: COMPARE(>=);
op_SEND_EQ: {
    hyi_oop a = sp[-1], b = sp[0];
    if (hyi_is_smi(a & b)) { *--sp = BOOL(a == b); ip += 2; NEXT(); }
    SPECIAL_SEND(1);
}
op_SEND_NE: {
    hyi_oop a = sp[-1], b = sp[0];
    if (hyi_is_smi(a & b)) { *--sp = BOOL(a != b); ip += 2; NEXT(); }
    SPECIAL_SEND(1);
}
op_SEND_EQEQ: {
    hyi_oop a = sp[-1], b = sp[0];
    /* Identity, except for numbers, whose classes define == by value (large integers). */
    if (hyi_is_smi(a) || (hyi_o(a)->cls != vm->cls.integer && hyi_o(a)->cls != vm->cls.double_)) {
        *--sp = BOOL(a == b); ip += 2; NEXT();
    }
    SPECIAL_SEND(1);
}
op_SEND_AT: {
    hyi_oop a = sp[-1], i = sp[0];
    if (hyi_is_smi(i) && hyi_is_ptr(a) && hyi_o(a)->cls == vm->cls.array) {
        uintptr_t k = (uintptr_t)(hyi_smi_val(i) - 1);
        if (k < hyi_size(a)) { *--sp = hyi_slots(a)[k]; ip += 2; NEXT(); }
    }
    SPECIAL_SEND(1);
}
op_SEND_ATPUT: {
    hyi_oop a = sp[-2], i = sp[-1], v = sp[0];
    if (hyi_is_smi(i) && hyi_is_ptr(a) && hyi_o(a)->cls == vm->cls.array) {
        uintptr_t k = (uintptr_t)(hyi_smi_val(i) - 1);
        if (k < hyi_size(a)) { hyi_store(vm, a, (uint32_t)k, v); sp -= 2; *sp = v; ip += 2; NEXT(); }
    }
    SPECIAL_SEND(2);
}
op_SEND_LENGTH: {
    hyi_oop a = sp[0];
    if (hyi_is_ptr(a) && (hyi_o(a)->cls == vm->cls.array || hyi_o(a)->cls == vm->cls.string)) {
        *sp = hyi_smi(hyi_size(a)); ip += 2; NEXT();
    }
    SPECIAL_SEND(0);
}
op_SEND_VALUE: {
    hyi_oop b = sp[0];
    if (hyi_is_ptr(b) && hyi_o(b)->cls == vm->cls.block1) {
        s_nargs = 0; ip += 2; s_method = hyi_slots(b)[HYI_BLOCK_METHOD];
        goto activate_block;
    }
    SPECIAL_SEND(0);
}
op_SEND_VALUE1: {
    hyi_oop b = sp[-1];
    if (hyi_is_ptr(b) && hyi_o(b)->cls == vm->cls.block2) {
        s_nargs = 1; ip += 2; s_method = hyi_slots(b)[HYI_BLOCK_METHOD];
        goto activate_block;
    }
    SPECIAL_SEND(1);
}

op_RETURN_TOP: {
    hyi_oop v = TOP();
    u_value = v;
    goto do_return;
}
op_RETURN_SELF: {
    u_value = fp[0];
    goto do_return;
}
op_RETURN_NONLOCAL: {
    hyi_oop v = TOP();
    /* The home context: the outermost context of this block's chain (a method's has no outer). */
    hyi_oop e = f->ctx ? f->ctx : (f->closure ? hyi_slots(f->closure)[HYI_BLOCK_OUTER] : nil);
    while (e != nil && hyi_slots(e)[HYI_CTX_OUTER] != nil) e = hyi_slots(e)[HYI_CTX_OUTER];
    int64_t home = -1;
    if (e != nil)
        for (uint32_t i = stk->nframes - 1; i-- > 0;)
            if (stk->frames[i].ctx == e && !(stk->frames[i].method->flags & HYI_MF_BLOCK)) { home = i; break; }
    if (home < 0) {
        /* The home method has returned: the block returns to its caller the answer of
         * `self escapedBlock: theBlock`, sent from the caller's frame. */
        hyi_oop blk = f->closure ? f->closure : nil, self = fp[0];
        if (f->flags & HYI_FRAME_BASE) { u_value = nil; goto do_return; }
        hyi_oop *rfp = fp;
        stk->nframes--;
        LOAD();
        sp = rfp;
        *sp = self;
        PUSH(blk);
        s_sel = vm->sym.escaped_block; s_nargs = 1; s_ic = NULL; s_cls = 0;
        goto send;
    }
    u_target = (uint32_t)home; u_kind = UNWIND_RETURN; u_value = v;
    SAVE();
    goto unwind;
}

op_JUMP: ip += 2 + I16(0); NEXT();
op_JUMP_BACK: {
    ip = ip + 2 - U16(0);
    if (__builtin_expect(atomic_load_explicit(&vm->attention, memory_order_relaxed), 0)) goto poll;
    NEXT();
}
op_JUMP_IF_TRUE: {
    hyi_oop c = POP();
    if (c == vm->true_) { ip += 2 + I16(0); NEXT(); }
    if (c == vm->false_) { ip += 2; NEXT(); }
    PUSH(c); ip += 2;
    goto non_boolean;
}
op_JUMP_IF_FALSE: {
    hyi_oop c = POP();
    if (c == vm->false_) { ip += 2 + I16(0); NEXT(); }
    if (c == vm->true_) { ip += 2; NEXT(); }
    PUSH(c); ip += 2;
    goto non_boolean;
}
op_JUMP_IF_NIL: {
    hyi_oop c = POP();
    ip += c == nil ? 2 + I16(0) : 2;
    NEXT();
}
op_JUMP_IF_NOT_NIL: {
    hyi_oop c = POP();
    ip += c != nil ? 2 + I16(0) : 2;
    NEXT();
}
op_FOR_ENTER: {
    hyi_oop i = fp[1 + U8(0)], lim = fp[1 + U8(1)];
    bool go;
    if (hyi_is_smi(i & lim)) go = (intptr_t)i <= (intptr_t)lim;
    else {
        int c = number_compare(vm, i, lim);
        if (c == 2) goto for_type_error;
        go = c <= 0;
    }
    ip += go ? 4 : 4 + U16(2);
    NEXT();
}
op_FOR_STEP: {
    hyi_oop *pi = &fp[1 + U8(0)];
    hyi_oop i = *pi, lim = fp[1 + U8(1)];
    if (hyi_is_smi(i & lim)) {
        intptr_t r;
        if (!__builtin_add_overflow((intptr_t)i, 2, &r)) {
            *pi = (hyi_oop)r;
            ip = (intptr_t)r <= (intptr_t)lim ? ip + 4 - U16(2) : ip + 4;
            if (__builtin_expect(atomic_load_explicit(&vm->attention, memory_order_relaxed), 0)) goto poll;
            NEXT();
        }
        ip += 4; /* counter would overflow: it reached the SmallInteger limit */
        NEXT();
    }
    /* Large integers and doubles: step by one, then compare. */
    SAVE();
    hyi_oop next = number_increment(vm, i);
    LOAD();
    if (next == 1) goto for_type_error;
    if (!next) goto out_of_memory;
    pi = &fp[1 + U8(0)];
    *pi = next;
    int c = number_compare(vm, next, fp[1 + U8(1)]);
    if (c == 2) goto for_type_error;
    ip = c <= 0 ? ip + 4 - U16(2) : ip + 4;
    NEXT();
}

for_type_error:
    ip += 4;
    SAVE();
    snprintf(vm->prim_message, sizeof vm->prim_message, "to:do: needs numbers for its bounds");
    PUSH(fp[0]);
    goto raise_message;

non_boolean: {
    /* An inlined ifTrue:/whileTrue:/and: got a non-Boolean: signal an Error naming its class. */
    hyi_oop c = TOP();
    hyi_oop cls = hyi_class_of(vm, c);
    hyi_oop name = hyi_slots(cls)[HYI_CLASS_NAME];
    snprintf(vm->prim_message, sizeof vm->prim_message, "a conditional needs a Boolean, got an instance of %.*s",
             (int)hyi_size(name), (const char *)hyi_bytes(name));
    goto raise_message;
}

/* ---- Sends ---------------------------------------------------------------------------- */
send: {
    hyi_oop rcv = sp[-(intptr_t)s_nargs];
    s_cls = hyi_class_of(vm, rcv);
    if (s_ic && s_ic->cls == s_cls) { s_method = s_ic->target; goto invoke; }
    s_method = hyi_lookup(vm, s_cls, s_sel);
    if (s_ic && s_method) { s_ic->cls = s_cls; s_ic->target = s_method; }
    if (!s_method) goto dnu;
    goto invoke;
}
super_send: {
    if (s_ic && s_ic->cls == s_cls && s_cls) { s_method = s_ic->target; goto invoke; }
    s_method = s_cls ? hyi_lookup(vm, s_cls, s_sel) : 0;
    if (s_ic && s_method) { s_ic->cls = s_cls; s_ic->target = s_method; }
    if (!s_method) goto dnu;
    goto invoke;
}
invoke: {
    hyi_method *nm = hyi_m(s_method);
    if (nm->flags & (HYI_MF_PRIMITIVE | HYI_MF_GETTER | HYI_MF_SETTER)) {
        if (nm->flags & HYI_MF_PRIMITIVE) goto primitive;
        /* Accessors: the field of a pointer object (the compiler checked the shape). */
        hyi_oop rcv = sp[-(intptr_t)s_nargs];
        if (hyi_is_ptr(rcv) && hyi_fmt(rcv) == HYI_FMT_SLOTS && nm->prim < hyi_size(rcv) && nm->num_args == s_nargs) {
            if (nm->flags & HYI_MF_GETTER) { *sp = hyi_slots(rcv)[nm->prim]; NEXT(); }
            hyi_store(vm, rcv, nm->prim, sp[0]);
            sp--;
            NEXT();
        }
    }
    if (__builtin_expect(nm->num_args != s_nargs, 0)) {
        snprintf(vm->prim_message, sizeof vm->prim_message, "wrong number of arguments for %.*s",
                 (int)hyi_size(s_sel), (const char *)hyi_bytes(s_sel));
        sp -= s_nargs;
        goto raise_message;
    }
    hyi_oop *nfp = sp - s_nargs;
    if (__builtin_expect(nfp + 1 + nm->num_args + nm->num_temps + nm->max_stack + 4 >= stk->limit - (vm->overflow_active ? 0 : SLOT_RESERVE) ||
                         stk->nframes + 1 >= stk->max_frames - (vm->overflow_active ? 0 : FRAME_RESERVE), 0))
        goto stack_overflow;
    f->ip = ip;
    f = &stk->frames[stk->nframes++];
    f->method = nm;
    f->fp = fp = nfp;
    f->ctx = 0;
    f->closure = 0;
    f->serial = ++vm->next_serial;
    f->flags = 0;
    sp = fp + nm->num_args;
    for (uint32_t t = nm->num_temps; t > 0; t--) *++sp = nil;
    m = nm;
    ip = hyi_method_code(m);
    lits = m->literals != nil ? hyi_slots(m->literals) : NULL;
    if (__builtin_expect(atomic_load_explicit(&vm->attention, memory_order_relaxed), 0)) goto poll;
    NEXT();
}
activate_block: {
    /* sp[-s_nargs] is a closure whose method is s_method. */
    hyi_method *nm = hyi_m(s_method);
    hyi_oop *nfp = sp - s_nargs;
    if (nm->num_args != s_nargs) {
        snprintf(vm->prim_message, sizeof vm->prim_message,
                 "a block of %u arguments was called with %u", nm->num_args, s_nargs);
        sp -= s_nargs;
        goto raise_message;
    }
    if (__builtin_expect(nfp + 1 + nm->num_args + nm->num_temps + nm->max_stack + 4 >= stk->limit - (vm->overflow_active ? 0 : SLOT_RESERVE) ||
                         stk->nframes + 1 >= stk->max_frames - (vm->overflow_active ? 0 : FRAME_RESERVE), 0))
        goto stack_overflow;
    hyi_oop closure = nfp[0];
    /* ensure: evaluating its own argument: the block has run, unwinding must not run it again. */
    if (__builtin_expect(m->flags & HYI_MF_ENSURE, 0) && closure == fp[1]) f->flags |= HYI_FRAME_UNWOUND;
    f->ip = ip;
    f = &stk->frames[stk->nframes++];
    f->method = nm;
    f->fp = fp = nfp;
    f->ctx = 0;
    f->closure = closure;
    f->serial = ++vm->next_serial;
    f->flags = 0;
    fp[0] = hyi_slots(closure)[HYI_BLOCK_RECEIVER];
    sp = fp + nm->num_args;
    for (uint32_t t = nm->num_temps; t > 0; t--) *++sp = nil;
    m = nm;
    ip = hyi_method_code(m);
    lits = m->literals != nil ? hyi_slots(m->literals) : NULL;
    NEXT();
}
dnu: {
    /* receiver doesNotUnderstand: selector arguments: anArray */
    SAVE();
    hyi_oop args = hyi_array_new(vm, s_nargs);
    LOAD();
    if (!args) goto out_of_memory;
    for (uint32_t i = 0; i < s_nargs; i++) hyi_slots(args)[i] = sp[-(intptr_t)s_nargs + 1 + i];
    sp -= s_nargs;
    PUSH(s_sel);
    PUSH(args);
    hyi_oop cls = hyi_class_of(vm, sp[-2]);
    s_method = hyi_lookup(vm, cls, vm->sym.dnu);
    if (!s_method) {
        SAVE();
        hyi_vm_printf(vm, 2, "ERROR: %.*s not understood, and no doesNotUnderstand:arguments:\n",
                      (int)hyi_size(s_sel), (const char *)hyi_bytes(s_sel));
        hyi_interp_print_backtrace(vm, 2);
        vm->exit_code = 1;
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    s_sel = vm->sym.dnu; s_nargs = 2; s_ic = NULL;
    goto invoke;
}
primitive: {
    hyi_method *pm = hyi_m(s_method);
    const hyi_prim_def *def = hyi_prim_def_of(pm->prim);
    if (!def) {
        hyi_oop hn = hyi_slots(pm->holder)[HYI_CLASS_NAME];
        snprintf(vm->prim_message, sizeof vm->prim_message, "primitive %.*s>>%.*s is not implemented",
                 (int)hyi_size(hn), (const char *)hyi_bytes(hn), (int)hyi_size(s_sel), (const char *)hyi_bytes(s_sel));
        sp -= s_nargs;
        goto raise_message;
    }
    if (def->fn) {
        hyi_oop *args = sp - s_nargs;
        hyi_oop r = nil;
        SAVE();
        hyi_prim_status st = def->fn(vm, args, s_nargs, &r);
        LOAD();
        if (st == HYI_PRIM_OK) {
            sp -= s_nargs;
            *sp = r;
            if (__builtin_expect(vm->exiting, 0)) goto exit_now;
            NEXT();
        }
        sp -= s_nargs;
        if (st == HYI_PRIM_OOM) goto out_of_memory;
        goto raise_message;
    }
    switch (def->control) {
    case CTL_VALUE: {
        hyi_oop b = sp[-(intptr_t)s_nargs];
        if (!is_block(vm, b)) { sp -= s_nargs; snprintf(vm->prim_message, sizeof vm->prim_message, "value sent to a non-block"); goto raise_message; }
        s_method = hyi_slots(b)[HYI_BLOCK_METHOD];
        goto activate_block;
    }
    case CTL_VALUE_ARGS: {
        hyi_oop b = sp[-1], a = sp[0];
        if (!is_block(vm, b) || !hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_INDEXED) {
            sp -= 1; snprintf(vm->prim_message, sizeof vm->prim_message, "valueWithArguments: needs an Array"); goto raise_message;
        }
        uint32_t n = hyi_size(a);
        if (sp + n + 16 >= stk->limit) goto stack_overflow;
        sp--;
        for (uint32_t i = 0; i < n; i++) PUSH(hyi_slots(a)[i]);
        s_nargs = n;
        s_method = hyi_slots(b)[HYI_BLOCK_METHOD];
        goto activate_block;
    }
    case CTL_RESTART:
        /* Restart the activation that sent restart (whileTrue: style loops). */
        sp -= s_nargs + 1;
        ip = hyi_method_code(m);
        sp = fp + m->num_args + m->num_temps;
        if (__builtin_expect(atomic_load_explicit(&vm->attention, memory_order_relaxed), 0)) goto poll;
        NEXT();
    case CTL_PERFORM: case CTL_PERFORM_ARGS: case CTL_PERFORM_SUPER: case CTL_PERFORM_ARGS_SUPER: {
        int ctl = def->control;
        hyi_oop *base_args = sp - s_nargs;   /* base_args[0] = receiver, [1] = selector */
        hyi_oop sel = base_args[1];
        if (!hyi_is_ptr(sel) || hyi_o(sel)->cls != vm->cls.symbol) {
            sp -= s_nargs; snprintf(vm->prim_message, sizeof vm->prim_message, "perform: needs a Symbol"); goto raise_message;
        }
        hyi_oop lookup_cls = 0;
        if (ctl == CTL_PERFORM_SUPER || ctl == CTL_PERFORM_ARGS_SUPER) {
            lookup_cls = *sp;
            sp--;
            if (!hyi_is_ptr(lookup_cls) || !hyi_is_ptr(hyi_o(lookup_cls)->cls) ||
                hyi_o(hyi_o(lookup_cls)->cls)->cls != vm->cls.metaclass) {
                sp = base_args; snprintf(vm->prim_message, sizeof vm->prim_message, "perform:inSuperclass: needs a class"); goto raise_message;
            }
        }
        uint32_t n;
        if (ctl == CTL_PERFORM_ARGS || ctl == CTL_PERFORM_ARGS_SUPER) {
            hyi_oop a = *sp;
            if (!hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_INDEXED) {
                sp = base_args; snprintf(vm->prim_message, sizeof vm->prim_message, "perform:withArguments: needs an Array"); goto raise_message;
            }
            n = hyi_size(a);
            if (sp + n + 16 >= stk->limit) goto stack_overflow;
            sp = base_args;          /* receiver on top */
            for (uint32_t i = 0; i < n; i++) PUSH(hyi_slots(a)[i]);
        } else {
            n = (uint32_t)(sp - base_args) - 1;
            for (uint32_t i = 0; i < n; i++) base_args[1 + i] = base_args[2 + i];
            sp--;
        }
        if (selector_arity(sel) != n) {
            sp -= n;
            snprintf(vm->prim_message, sizeof vm->prim_message, "perform: of %.*s with %u arguments",
                     (int)hyi_size(sel), (const char *)hyi_bytes(sel), n);
            goto raise_message;
        }
        s_sel = sel; s_nargs = n; s_ic = NULL;
        if (lookup_cls) { s_cls = lookup_cls; goto super_send; }
        goto send;
    }
    case CTL_INVOKE: {
        /* aMethod invokeOn: receiver with: argsArray */
        hyi_oop meth = sp[-2], rcv = sp[-1], a = sp[0];
        if (!hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_INDEXED || hyi_fmt(meth) != HYI_FMT_METHOD) {
            sp -= 2; snprintf(vm->prim_message, sizeof vm->prim_message, "invokeOn:with: needs an Array"); goto raise_message;
        }
        uint32_t n = hyi_size(a);
        if (sp + n + 16 >= stk->limit) goto stack_overflow;
        sp -= 2;
        *sp = rcv;
        for (uint32_t i = 0; i < n; i++) PUSH(hyi_slots(a)[i]);
        s_method = meth; s_nargs = n; s_sel = hyi_m(meth)->signature;
        goto invoke;
    }
    case CTL_SIGNAL: case CTL_PASS: {
        hyi_oop exc = sp[0];
        int64_t from = (int64_t)stk->nframes - 1;
        if (def->control == CTL_PASS) {
            hyi_oop hs = hyi_slots(exc)[EXC_HANDLER_FRAME];
            int64_t h = hyi_is_smi(hs) ? frame_by_serial(vm, (uint64_t)hyi_smi_val(hs)) : -1;
            if (h < 0) { snprintf(vm->prim_message, sizeof vm->prim_message, "pass outside of a handler"); goto raise_message; }
            from = h - 1;
        } else {
            hyi_store(vm, exc, EXC_SIGNAL_FRAME, hyi_smi((intptr_t)f->serial));
        }
        int64_t h = find_handler(vm, exc, from);
        if (h < 0) {
            /* No handler: the exception's defaultAction answers the value of signal. */
            s_sel = vm->sym.unhandled; s_nargs = 0; s_ic = NULL;
            goto send;
        }
        hyi_frame *hf = &stk->frames[h];
        hf->flags |= HYI_FRAME_HANDLING;
        hyi_store(vm, exc, EXC_HANDLER_FRAME, hyi_smi((intptr_t)hf->serial));
        hyi_oop blk = hf->fp[2];
        if (!is_block(vm, blk)) { snprintf(vm->prim_message, sizeof vm->prim_message, "on:do: needs a block as handler"); goto raise_message; }
        hyi_method *bm = hyi_m(hyi_slots(blk)[HYI_BLOCK_METHOD]);
        /* Run the handler on top of the signalling frames: [handler exc] value: */
        *sp = blk;
        if (bm->num_args == 1) PUSH(exc);
        s_nargs = bm->num_args;
        s_method = (hyi_oop)bm;
        if (bm->num_args > 1) { sp--; snprintf(vm->prim_message, sizeof vm->prim_message, "a handler block takes at most one argument"); goto raise_message; }
        {
            /* Activate it as a handler frame: when it returns, frame h returns its value. */
            if (sp + bm->num_temps + bm->max_stack + 8 >= stk->limit || stk->nframes + 1 >= stk->max_frames) goto stack_overflow;
            hyi_oop closure = sp[-(intptr_t)s_nargs];
            f->ip = ip;
            f = &stk->frames[stk->nframes++];
            f->method = bm;
            f->fp = fp = sp - s_nargs;
            f->ctx = 0;
            f->closure = closure;
            f->serial = ++vm->next_serial;
            f->flags = HYI_FRAME_HANDLER;
            f->handler_for = (uint32_t)h;
            fp[0] = hyi_slots(closure)[HYI_BLOCK_RECEIVER];
            sp = fp + bm->num_args;
            for (uint32_t t = bm->num_temps; t > 0; t--) *++sp = nil;
            m = bm;
            ip = hyi_method_code(m);
            lits = m->literals != nil ? hyi_slots(m->literals) : NULL;
            NEXT();
        }
    }
    case CTL_RETURN: case CTL_RETRY: {
        hyi_oop exc = sp[-(intptr_t)s_nargs];
        hyi_oop hs = hyi_slots(exc)[EXC_HANDLER_FRAME];
        int64_t h = hyi_is_smi(hs) ? frame_by_serial(vm, (uint64_t)hyi_smi_val(hs)) : -1;
        if (h < 0) {
            sp -= s_nargs;
            snprintf(vm->prim_message, sizeof vm->prim_message, "the handler of this exception is no longer active");
            goto raise_message;
        }
        u_value = def->control == CTL_RETURN ? sp[0] : nil;
        u_target = (uint32_t)h;
        u_kind = def->control == CTL_RETURN ? UNWIND_RETURN : UNWIND_RESTART;
        SAVE();
        goto unwind;
    }
    case CTL_RESUME: {
        hyi_oop exc = sp[-1];
        hyi_oop ss = hyi_slots(exc)[EXC_SIGNAL_FRAME], hs = hyi_slots(exc)[EXC_HANDLER_FRAME];
        int64_t s = hyi_is_smi(ss) ? frame_by_serial(vm, (uint64_t)hyi_smi_val(ss)) : -1;
        int64_t h = hyi_is_smi(hs) ? frame_by_serial(vm, (uint64_t)hyi_smi_val(hs)) : -1;
        if (s < 0 || h < 0 || s + 1 >= stk->nframes) {
            sp -= 1;
            snprintf(vm->prim_message, sizeof vm->prim_message, "this exception cannot be resumed here");
            goto raise_message;
        }
        if (hyi_is_kind(vm, exc, vm->cls.error)) {
            sp -= 1;
            snprintf(vm->prim_message, sizeof vm->prim_message, "an Error is not resumable");
            goto raise_message;
        }
        stk->frames[h].flags &= ~(uint32_t)HYI_FRAME_HANDLING;
        u_value = sp[0];
        u_target = (uint32_t)s;
        u_kind = UNWIND_RESUME;
        SAVE();
        goto unwind;
    }
    case CTL_UNHANDLED: {
        hyi_oop text = sp[0];
        SAVE();
        hyi_vm_write(vm, 2, "ERROR: ", 7);
        if (hyi_is_ptr(text) && hyi_fmt(text) == HYI_FMT_BYTES)
            hyi_vm_write(vm, 2, (const char *)hyi_bytes(text), hyi_size(text));
        else
            hyi_vm_write(vm, 2, "(no description)", 16);
        hyi_vm_write(vm, 2, "\n", 1);
        /* The frames of the exception machinery itself are noise: skip those of the exception. */
        {
            hyi_oop exc = sp[-1];
            uint32_t keep = stk->nframes;
            while (stk->nframes > 1 && stk->frames[stk->nframes - 1].fp[0] == exc) stk->nframes--;
            hyi_interp_print_backtrace(vm, 2);
            stk->nframes = keep;
        }
        vm->exit_code = 1;
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    case CTL_EXIT: {
        hyi_oop code = sp[0];
        vm->exit_code = hyi_is_smi(code) ? (int)hyi_smi_val(code) : 1;
        vm->exiting = true;
        SAVE();
        goto exit_now;
    }
    case HYI_CTL_YIELD: case HYI_CTL_SEM_WAIT: case HYI_CTL_SEM_SIGNAL: case HYI_CTL_DELAY_WAIT:
    case HYI_CTL_PROCESS_RESUME: case HYI_CTL_PROCESS_SUSPEND: case HYI_CTL_PROCESS_TERMINATE: {
        static const int ops[] = { HYI_SCHED_OP_YIELD, HYI_SCHED_OP_WAIT, HYI_SCHED_OP_SIGNAL, HYI_SCHED_OP_DELAY,
                                   HYI_SCHED_OP_RESUME, HYI_SCHED_OP_SUSPEND, HYI_SCHED_OP_TERMINATE };
        hyi_oop r = nil;
        SAVE();
        hyi_sched_act a = hyi_sched_control(vm, ops[def->control - HYI_CTL_YIELD], sp - s_nargs, s_nargs, &r);
        LOAD();
        sp -= s_nargs;
        if (a == HYI_SCHED_FAIL) goto raise_message;
        *sp = r;
        s_act = a;
        goto sched_act;
    }
    default:
        sp -= s_nargs;
        snprintf(vm->prim_message, sizeof vm->prim_message, "unknown control primitive");
        goto raise_message;
    }
}

/* ---- Processes ------------------------------------------------------------------------------ */
poll: {
    SAVE();
    s_act = hyi_sched_poll(vm);
    LOAD();
    goto sched_act;
}
sched_act: {
    /* Only a process at top level (this run is the scheduler's) can leave the thread. */
    hyi_process *cur = hyi_sched_proc(vm, hyi_sched_current(vm));
    bool top = base == 0 && cur && cur->nested == 0;
    switch (s_act) {
    case HYI_SCHED_CONTINUE: case HYI_SCHED_FAIL:
        NEXT();
    case HYI_SCHED_SWITCH:
        if (!top) NEXT();
        SAVE();
        hyi_sched_switch_out(vm, true);
        return HYI_RUN_SWITCH;
    case HYI_SCHED_HANDBACK:
        if (!top) NEXT();
        SAVE();
        return HYI_RUN_HANDBACK;
    case HYI_SCHED_BLOCK:
        SAVE();
        if (top) {
            hyi_sched_switch_out(vm, false);
            return HYI_RUN_SWITCH;
        } else {
            hyi_run st = hyi_sched_block_nested(vm);
            LOAD();
            if (st != HYI_RUN_OK) goto exit_now;
            NEXT();
        }
    case HYI_SCHED_TERMINATE:
        SAVE();
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    NEXT();
}

/* Signal an Error whose text is vm->prim_message, with the receiver on top of the stack:
 * receiver error: 'text'. */
raise_message: {
    SAVE();
    hyi_oop msg = hyi_string_new(vm, vm->prim_message, strlen(vm->prim_message));
    LOAD();
    if (!msg) goto out_of_memory;
    PUSH(msg);
    s_sel = vm->sym.error_; s_nargs = 1; s_ic = NULL;
    goto send;
}
out_of_memory: {
    /* Signal OutOfMemory: its instance is tiny, and a full GC has just run. */
    SAVE();
    hyi_oop oom = vm->cls.oom_error ? hyi_instantiate(vm, vm->cls.oom_error, 0) : 0;
    LOAD();
    if (!oom) {
        hyi_vm_printf(vm, 2, "ERROR: out of memory (heap limit reached)\n");
        hyi_interp_print_backtrace(vm, 2);
        vm->exit_code = 1;
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    PUSH(oom);
    s_sel = vm->sym.signal; s_nargs = 0; s_ic = NULL;
    goto send;
}
stack_overflow: {
    SAVE();
    if (vm->overflow_active) {
        hyi_vm_printf(vm, 2, "ERROR: stack overflow while handling a stack overflow\n");
        vm->exit_code = 1;
        u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
        goto unwind;
    }
    vm->overflow_active = true;
    snprintf(vm->prim_message, sizeof vm->prim_message, "stack overflow (%u frames deep)", stk->nframes);
    sp -= s_nargs;
    goto raise_message;
}

/* ---- Returns and unwinding -------------------------------------------------------------- */
do_return: {
    if (__builtin_expect(f->flags & (HYI_FRAME_BASE | HYI_FRAME_HANDLER), 0)) {
        if (f->flags & HYI_FRAME_HANDLER) {
            /* A handler block fell off its end: its value returns from the on:do: frame. */
            u_target = f->handler_for; u_kind = UNWIND_RETURN;
            SAVE();
            goto unwind;
        }
        if (f->flags & HYI_FRAME_BASE) {
            *fp = u_value;
            stk->nframes--;
            stk->sp = fp;
            *result = u_value;
            return HYI_RUN_OK;
        }
    }
    hyi_oop *rfp = fp;
    stk->nframes--;
    f = &stk->frames[stk->nframes - 1];
    m = f->method;
    ip = f->ip;
    fp = f->fp;
    lits = m->literals != nil ? hyi_slots(m->literals) : NULL;
    *rfp = u_value;
    sp = rfp;
    NEXT();
}

exit_now:
    u_kind = UNWIND_TERMINATE; u_target = 0; u_value = nil;
    /* fall into unwind */
unwind: {
    /* Registers are saved. Remove frames above the target (for TERMINATE: everything down to
     * this run's base), running each pending ensure:/ifCurtailed: block on the way. */
    HYI_ROOT(vm, &u_value);
    for (;;) {
        uint32_t lowest = u_kind == UNWIND_TERMINATE || u_target < base ? base : u_target + 1;
        int64_t found = -1;
        for (int64_t i = (int64_t)stk->nframes - 1; i >= (int64_t)lowest; i--) {
            hyi_frame *fr = &stk->frames[i];
            if ((fr->method->flags & (HYI_MF_ENSURE | HYI_MF_IFCURTAILED)) && !(fr->flags & HYI_FRAME_UNWOUND) &&
                !vm->killing) {
                found = i;
                break;
            }
        }
        if (found < 0) break;
        hyi_frame *fr = &stk->frames[found];
        fr->flags |= HYI_FRAME_UNWOUND;
        hyi_oop blk = fr->fp[1];
        /* Drop the frames above it, then evaluate the block on top. */
        if ((uint32_t)found + 1 < stk->nframes) stk->sp = stk->frames[found + 1].fp;
        stk->nframes = (uint32_t)found + 1;
        hyi_oop ignored;
        bool was_exiting = vm->exiting;
        vm->exiting = false;
        hyi_run st = hyi_interp_send(vm, blk, vm->sym.value, 0, NULL, &ignored);
        vm->exiting = was_exiting || vm->exiting;
        if (st == HYI_RUN_UNWIND) {
            /* The ensure block itself returned non-locally: that unwind replaces ours. */
            u_target = vm->unwind_target; u_kind = vm->unwind_kind; u_value = vm->unwind_value;
            vm->unwind_value = 0;
        } else if (st == HYI_RUN_EXIT) {
            u_kind = UNWIND_TERMINATE;
        }
    }
    HYI_UNROOT(vm, 1);
    vm->overflow_active = false;
    if (u_kind == UNWIND_TERMINATE || u_target < base) {
        /* Leave this run entirely: pop down to and including the base frame. */
        hyi_oop *bfp = stk->frames[base].fp;
        stk->nframes = base;
        stk->sp = bfp - 1;
        if (u_kind == UNWIND_TERMINATE) return HYI_RUN_EXIT;
        vm->unwind_target = u_target; vm->unwind_kind = u_kind; vm->unwind_value = u_value;
        return HYI_RUN_UNWIND;
    }
    hyi_frame *tf = &stk->frames[u_target];
    switch (u_kind) {
    case UNWIND_RETURN: {
        if (tf->flags & HYI_FRAME_BASE) {
            *tf->fp = u_value;
            stk->nframes = u_target;
            stk->sp = tf->fp;
            *result = u_value;
            return HYI_RUN_OK;
        }
        hyi_oop *rfp = tf->fp;
        stk->nframes = u_target;
        stk->sp = rfp;
        *rfp = u_value;
        LOAD();
        NEXT();
    }
    case UNWIND_RESUME: {
        hyi_oop *top = stk->frames[u_target + 1].fp;
        stk->nframes = u_target + 1;
        stk->sp = top;
        *top = u_value;
        LOAD();
        NEXT();
    }
    case UNWIND_RESTART: {
        stk->nframes = u_target + 1;
        tf->flags &= ~(uint32_t)HYI_FRAME_HANDLING;
        hyi_method *tm = tf->method;
        hyi_oop *tsp = tf->fp + tm->num_args;
        for (uint32_t t = tm->num_temps; t > 0; t--) *++tsp = nil;
        stk->sp = tsp;
        tf->ip = hyi_method_code(tm);
        tf->ctx = 0;
        LOAD();
        NEXT();
    }
    }
    return HYI_RUN_EXIT;
}
#undef SAVE
#undef LOAD
#undef NEXT
}
