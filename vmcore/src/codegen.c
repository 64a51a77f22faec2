/*
 * codegen.c -- from the syntax tree to classes and methods.
 *
 * Two passes per method:
 *  1. Analysis resolves every name to a variable, a field, a global or a pseudo-variable,
 *     decides which sends are inlined, and finds the variables that inner (real) blocks
 *     capture and the blocks that return non-locally.
 *  2. Emission writes the instructions of bytecode.h. A variable lives in its activation's
 *     frame (LOCAL) unless a real block captures it; then it lives in the activation's heap
 *     context (CTX). Arguments that are captured are copied into the context on entry.
 *
 * A block argument of ifTrue:, whileTrue:, to:do:... is inlined into the enclosing activation
 * when it is a literal block of the right arity and none of its own variables is captured by
 * a real block inside it (each activation of such a block must get fresh variables).
 *
 * Invariants: every heap object made here is old (it never moves) and is held by the rooted
 * `keep` array until it is reachable from the class, so a collection during compilation frees
 * nothing still needed. Errors unwind with longjmp; C memory is all in the arena.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bigint.h"
#include "bytecode.h"
#include "compiler.h"
#include "parser.h"
#include "prims.h"
#include "vm.h"

/* ---- Analysis structures -------------------------------------------------------------------- */

typedef struct scope scope;

typedef struct var {
    hyi_name name;
    scope *owner;         /* the real activation that holds it */
    uint32_t local;       /* LOCAL index in the owner's frame */
    uint32_t ctx_index;   /* index in the owner's context when captured */
    bool captured;
} var;

typedef struct lex {      /* one level of name visibility: a method, a block, an inlined block */
    struct lex *outer;
    scope *real;
    var **vars;
    uint32_t nvars;
} lex;

struct scope {            /* a real activation: the method or a non-inlined block */
    scope *outer;
    bool is_block;
    bool has_nlr;         /* method: some block inside returns non-locally */
    bool owns_ctx;
    uint32_t num_args, num_locals, num_ctx;
    var **vars;
    uint32_t nvars, cap_vars;
    /* Emission. */
    uint8_t *code;
    uint32_t code_len, code_cap;
    hyi_oop *lits;
    uint32_t nlits, cap_lits;
    hyi_ic *ics;
    uint32_t nics, cap_ics;
    uint32_t *lines;      /* pairs (pc, line) */
    uint32_t nlines, cap_lines;
    int depth, max_depth;
    uint32_t label_pc;    /* pc of the last jump target (no peephole across it) */
    int last_op_pc;       /* pc of the last instruction, -1 if none */
    int line;
};

typedef struct cg {
    hy_vm *vm;
    hyi_arena *arena;
    hyi_diag *diag;
    jmp_buf fail;
    hyi_oop cls;          /* the class (or metaclass) whose method is compiled */
    hyi_oop fields;       /* Array of field-name Symbols of instances of cls */
    hyi_oop keep;         /* rooted Array holding every object made so far */
    uint32_t nkeep;
    hyi_oop file;         /* String: file name for debug info */
    hyi_oop selector;     /* Symbol of the method being compiled */
    hyi_oop name;         /* hyi_compile_class: the class's name and its previous global value */
    hyi_oop prev;
    const char *class_name;
    uint32_t class_name_len;
    bool class_side;
} cg;

static void fail(cg *c, int line, int column, const char *fmt, ...) __attribute__((format(printf, 4, 5), noreturn));
static void fail(cg *c, int line, int column, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->diag->message, sizeof c->diag->message, fmt, ap);
    va_end(ap);
    c->diag->line = line;
    c->diag->column = column;
    longjmp(c->fail, 1);
}

static void *alloc(cg *c, size_t n) {
    void *p = hyi_arena_alloc(c->arena, n);
    if (!p) fail(c, 0, 0, "out of memory while compiling");
    return p;
}

/* Grow an arena array of elem-sized items to hold at least need items. */
static void *grow(cg *c, void *items, uint32_t n, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return items;
    uint32_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need) ncap *= 2;
    void *ni = alloc(c, ncap * elem);
    if (n) memcpy(ni, items, n * elem);
    *cap = ncap;
    return ni;
}

/* Keep obj alive for the rest of the compilation. */
static hyi_oop keep(cg *c, hyi_oop obj) {
    if (!obj) fail(c, 0, 0, "out of memory while compiling");
    if (c->nkeep == hyi_size(c->keep)) {
        hy_vm *vm = c->vm;
        HYI_ROOT(vm, &obj);
        hyi_oop bigger = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, c->nkeep * 2);
        HYI_UNROOT(vm, 1);
        if (!bigger) fail(c, 0, 0, "out of memory while compiling");
        for (uint32_t i = 0; i < c->nkeep; i++) hyi_slots(bigger)[i] = hyi_slots(c->keep)[i];
        c->keep = bigger;
    }
    hyi_slots(c->keep)[c->nkeep++] = obj;
    return obj;
}

static bool name_is(const char *s, uint32_t len, const char *lit) {
    return len == strlen(lit) && memcmp(s, lit, len) == 0;
}

static hyi_oop symbol(cg *c, const char *s, uint32_t len) {
    hyi_oop sym = hyi_symbol(c->vm, s, len);
    if (!sym) fail(c, 0, 0, "out of memory while compiling");
    return sym;
}

/* ---- Inlining decisions --------------------------------------------------------------------- */

enum inline_kind {
    INL_NONE, INL_IF_TRUE, INL_IF_FALSE, INL_IF_TRUE_FALSE, INL_IF_FALSE_TRUE, INL_AND, INL_OR,
    INL_WHILE_TRUE, INL_WHILE_FALSE, INL_IF_NIL, INL_IF_NOT_NIL, INL_IF_NIL_NOT_NIL,
    INL_IF_NOT_NIL_NIL, INL_TO_DO, INL_TIMES_REPEAT
};

static bool is_block(const hyi_node *n, uint32_t max_params) {
    return n->kind == HYI_N_BLOCK && n->nparams <= max_params;
}
static bool is_block0(const hyi_node *n) { return n->kind == HYI_N_BLOCK && n->nparams == 0; }

/* Which inlinable form a send has by its shape alone. */
static enum inline_kind inline_shape(const hyi_node *n) {
    if (n->kind != HYI_N_SEND || n->is_super) return INL_NONE;
    const char *s = n->name;
    uint32_t l = n->len;
    hyi_node **k = n->kids;
    switch (n->nkids) {
    case 2:
        if (name_is(s, l, "ifTrue:") && is_block0(k[1])) return INL_IF_TRUE;
        if (name_is(s, l, "ifFalse:") && is_block0(k[1])) return INL_IF_FALSE;
        if ((name_is(s, l, "and:") || name_is(s, l, "&&")) && is_block0(k[1])) return INL_AND;
        if ((name_is(s, l, "or:") || name_is(s, l, "||")) && is_block0(k[1])) return INL_OR;
        if (name_is(s, l, "whileTrue:") && is_block0(k[0]) && is_block0(k[1])) return INL_WHILE_TRUE;
        if (name_is(s, l, "whileFalse:") && is_block0(k[0]) && is_block0(k[1])) return INL_WHILE_FALSE;
        if (name_is(s, l, "ifNil:") && is_block0(k[1])) return INL_IF_NIL;
        if (name_is(s, l, "ifNotNil:") && is_block(k[1], 1)) return INL_IF_NOT_NIL;
        if (name_is(s, l, "timesRepeat:") && is_block0(k[1])) return INL_TIMES_REPEAT;
        return INL_NONE;
    case 3:
        if (name_is(s, l, "ifTrue:ifFalse:") && is_block0(k[1]) && is_block0(k[2])) return INL_IF_TRUE_FALSE;
        if (name_is(s, l, "ifFalse:ifTrue:") && is_block0(k[1]) && is_block0(k[2])) return INL_IF_FALSE_TRUE;
        if (name_is(s, l, "ifNil:ifNotNil:") && is_block0(k[1]) && is_block(k[2], 1)) return INL_IF_NIL_NOT_NIL;
        if (name_is(s, l, "ifNotNil:ifNil:") && is_block(k[1], 1) && is_block0(k[2])) return INL_IF_NOT_NIL_NIL;
        if (name_is(s, l, "to:do:") && k[2]->kind == HYI_N_BLOCK && k[2]->nparams == 1) return INL_TO_DO;
        return INL_NONE;
    default:
        return INL_NONE;
    }
}

/* Is kid i of an inlinable send one of its inlined blocks? */
static bool inlined_kid(enum inline_kind k, uint32_t i) {
    switch (k) {
    case INL_WHILE_TRUE: case INL_WHILE_FALSE: return true;
    case INL_TO_DO: return i == 2;
    case INL_NONE: return false;
    default: return i >= 1;
    }
}

static bool is_inlined(hyi_node *send);

static bool names_contain(const hyi_node *blk, const char *s, uint32_t len) {
    for (uint32_t i = 0; i < blk->nparams; i++)
        if (blk->params[i].len == len && !memcmp(blk->params[i].s, s, len)) return true;
    for (uint32_t i = 0; i < blk->ntemps; i++)
        if (blk->temps[i].len == len && !memcmp(blk->temps[i].s, s, len)) return true;
    return false;
}

/* Does a real block inside n refer to a variable named in blk (conservatively, by name)? */
static bool refers_from_real_block(hyi_node *n, const hyi_node *blk, bool inside_real) {
    switch (n->kind) {
    case HYI_N_VAR:
        return inside_real && names_contain(blk, n->name, n->len);
    case HYI_N_ASSIGN:
        if (inside_real && names_contain(blk, n->name, n->len)) return true;
        return refers_from_real_block(n->kids[0], blk, inside_real);
    case HYI_N_RETURN:
        return refers_from_real_block(n->kids[0], blk, inside_real);
    case HYI_N_BLOCK:
        for (uint32_t i = 0; i < n->nkids; i++)
            if (refers_from_real_block(n->kids[i], blk, true)) return true;
        return false;
    case HYI_N_SEND: {
        bool inl = is_inlined(n);
        enum inline_kind k = inl ? inline_shape(n) : INL_NONE;
        for (uint32_t i = 0; i < n->nkids; i++) {
            hyi_node *kid = n->kids[i];
            if (inl && inlined_kid(k, i)) {
                for (uint32_t j = 0; j < kid->nkids; j++)
                    if (refers_from_real_block(kid->kids[j], blk, inside_real)) return true;
            } else if (refers_from_real_block(kid, blk, inside_real)) {
                return true;
            }
        }
        return false;
    }
    default:
        return false;
    }
}

static bool is_inlined(hyi_node *send) {
    if (send->inline_state >= 0) return send->inline_state == 1;
    send->inline_state = 0; /* provisional, guards against cycles */
    enum inline_kind k = inline_shape(send);
    bool ok = k != INL_NONE;
    for (uint32_t i = 0; ok && i < send->nkids; i++) {
        if (!inlined_kid(k, i)) continue;
        hyi_node *blk = send->kids[i];
        if (blk->nparams == 0 && blk->ntemps == 0) continue;
        for (uint32_t j = 0; ok && j < blk->nkids; j++)
            if (refers_from_real_block(blk->kids[j], blk, false)) ok = false;
    }
    send->inline_state = ok ? 1 : 0;
    return ok;
}

/* ---- Pass 1: analysis ----------------------------------------------------------------------- */

static scope *new_scope(cg *c, scope *outer, bool is_block) {
    scope *s = alloc(c, sizeof *s);
    s->outer = outer;
    s->is_block = is_block;
    s->last_op_pc = -1;
    return s;
}

static var *declare(cg *c, lex *l, const hyi_name *name) {
    scope *s = l->real;
    var *v = alloc(c, sizeof *v);
    v->name = *name;
    v->owner = s;
    v->local = s->num_locals++;
    if (s->num_locals > 255) fail(c, name->line, name->column, "too many arguments and temporaries (at most 255)");
    s->vars = grow(c, s->vars, s->nvars, &s->cap_vars, s->nvars + 1, sizeof *s->vars);
    s->vars[s->nvars++] = v;
    /* Visible in this lexical level. */
    var **nv = alloc(c, (l->nvars + 1) * sizeof *nv);
    if (l->nvars) memcpy(nv, l->vars, l->nvars * sizeof *nv);
    nv[l->nvars++] = v;
    l->vars = nv;
    return v;
}

static var *lookup_var(lex *l, const char *s, uint32_t len) {
    for (; l; l = l->outer)
        for (uint32_t i = l->nvars; i-- > 0;)
            if (l->vars[i]->name.len == len && !memcmp(l->vars[i]->name.s, s, len)) return l->vars[i];
    return NULL;
}

static bool is_pseudo(const char *s, uint32_t len) {
    return name_is(s, len, "self") || name_is(s, len, "super") || name_is(s, len, "nil") ||
           name_is(s, len, "true") || name_is(s, len, "false");
}

static void analyze(cg *c, lex *l, hyi_node *n);

static void analyze_stmts(cg *c, lex *l, hyi_node *blk) {
    for (uint32_t i = 0; i < blk->nkids; i++) analyze(c, l, blk->kids[i]);
}

/* An inlined block: its variables become locals of the enclosing activation. */
static void analyze_inlined(cg *c, lex *outer, hyi_node *blk) {
    lex l = { outer, outer->real, NULL, 0 };
    for (uint32_t i = 0; i < blk->nparams; i++) declare(c, &l, &blk->params[i]);
    for (uint32_t i = 0; i < blk->ntemps; i++) declare(c, &l, &blk->temps[i]);
    analyze_stmts(c, &l, blk);
}

static void analyze_ref(cg *c, lex *l, hyi_node *n, bool assign) {
    var *v = lookup_var(l, n->name, n->len);
    if (v) {
        n->var = v;
        if (v->owner != l->real) v->captured = true;
        return;
    }
    if (assign) {
        if (is_pseudo(n->name, n->len))
            fail(c, n->line, n->column, "cannot assign to %.*s", (int)n->len, n->name);
        /* A field, checked in emission; otherwise an error there. */
    }
}

static void analyze(cg *c, lex *l, hyi_node *n) {
    switch (n->kind) {
    case HYI_N_VAR: analyze_ref(c, l, n, false); return;
    case HYI_N_ASSIGN:
        analyze(c, l, n->kids[0]);
        analyze_ref(c, l, n, true);
        return;
    case HYI_N_RETURN:
        analyze(c, l, n->kids[0]);
        if (l->real->is_block) {
            scope *home = l->real;
            while (home->outer) home = home->outer;
            home->has_nlr = true;
        }
        return;
    case HYI_N_BLOCK: {
        scope *s = new_scope(c, l->real, true);
        n->var = s;
        lex bl = { l, s, NULL, 0 };
        for (uint32_t i = 0; i < n->nparams; i++) declare(c, &bl, &n->params[i]);
        s->num_args = n->nparams;
        for (uint32_t i = 0; i < n->ntemps; i++) declare(c, &bl, &n->temps[i]);
        analyze_stmts(c, &bl, n);
        return;
    }
    case HYI_N_SEND: {
        if (!is_inlined(n)) {
            for (uint32_t i = 0; i < n->nkids; i++) analyze(c, l, n->kids[i]);
            return;
        }
        enum inline_kind k = inline_shape(n);
        for (uint32_t i = 0; i < n->nkids; i++) {
            if (inlined_kid(k, i)) analyze_inlined(c, l, n->kids[i]);
            else analyze(c, l, n->kids[i]);
        }
        /* Hidden locals: to:do: keeps its limit, timesRepeat: a counter and its limit. */
        if (k == INL_TO_DO || k == INL_TIMES_REPEAT) {
            scope *s = l->real;
            n->ival = s->num_locals;
            s->num_locals += k == INL_TO_DO ? 1 : 2;
            if (s->num_locals > 255) fail(c, n->line, n->column, "too many temporaries (at most 255)");
        }
        return;
    }
    case HYI_N_ARRAY:
    default:
        return;
    }
}

/* After analysis of a whole method: give captured variables their context slots. */
static void assign_contexts(scope *s) {
    for (uint32_t i = 0; i < s->nvars; i++)
        if (s->vars[i]->captured) s->vars[i]->ctx_index = s->num_ctx++;
    s->owns_ctx = s->num_ctx > 0 || (!s->is_block && s->has_nlr);
}

/* ---- Pass 2: emission ----------------------------------------------------------------------- */

static void emit_byte(cg *c, scope *s, uint8_t b) {
    s->code = grow(c, s->code, s->code_len, &s->code_cap, s->code_len + 1, 1);
    s->code[s->code_len++] = b;
}

static void note_line(cg *c, scope *s, int line) {
    if (line <= 0) return;
    if (s->nlines && s->lines[2 * s->nlines - 1] == (uint32_t)line) return;
    if (s->nlines && s->lines[2 * s->nlines - 2] == s->code_len) {
        s->lines[2 * s->nlines - 1] = (uint32_t)line;
        return;
    }
    uint32_t cap2 = s->cap_lines * 2, n2 = s->nlines * 2;
    s->lines = grow(c, s->lines, n2, &cap2, n2 + 2, sizeof *s->lines);
    s->cap_lines = cap2 / 2;
    s->lines[n2] = s->code_len;
    s->lines[n2 + 1] = (uint32_t)line;
    s->nlines++;
}

static void adjust(scope *s, int delta) {
    s->depth += delta;
    if (s->depth > s->max_depth) s->max_depth = s->depth;
}

/* Emit op with its operand bytes and stack effect. */
static void op(cg *c, scope *s, hyi_opcode o, int effect) {
    s->last_op_pc = (int)s->code_len;
    emit_byte(c, s, (uint8_t)o);
    adjust(s, effect);
}
static void op_u8(cg *c, scope *s, hyi_opcode o, uint32_t a, int effect) {
    op(c, s, o, effect);
    emit_byte(c, s, (uint8_t)a);
}
static void op_u16(cg *c, scope *s, hyi_opcode o, uint32_t a, int effect) {
    op(c, s, o, effect);
    emit_byte(c, s, (uint8_t)(a & 0xff));
    emit_byte(c, s, (uint8_t)(a >> 8));
}
static void op_u8u8(cg *c, scope *s, hyi_opcode o, uint32_t a, uint32_t b, int effect) {
    op(c, s, o, effect);
    emit_byte(c, s, (uint8_t)a);
    emit_byte(c, s, (uint8_t)b);
}

/* A forward jump with its offset to patch; returns the offset's position. */
static uint32_t jump_fwd(cg *c, scope *s, hyi_opcode o, int effect) {
    op_u16(c, s, o, 0, effect);
    return s->code_len - 2;
}
static void patch_here(cg *c, scope *s, uint32_t at, int line) {
    uint32_t after = at + 2;
    uint32_t off = s->code_len - after;
    if (off > 32767) fail(c, line, 0, "method too large: a jump spans more than 32 KiB of code");
    s->code[at] = (uint8_t)(off & 0xff);
    s->code[at + 1] = (uint8_t)(off >> 8);
    s->label_pc = s->code_len;
}
static void jump_back(cg *c, scope *s, uint32_t target, int line) {
    uint32_t after = s->code_len + 3;
    uint32_t off = after - target;
    if (off > 65535) fail(c, line, 0, "method too large: a loop spans more than 64 KiB of code");
    op_u16(c, s, HYI_OP_JUMP_BACK, off, 0);
}

static uint32_t add_literal(cg *c, scope *s, hyi_oop lit, bool dedup, int line) {
    if (dedup)
        for (uint32_t i = 0; i < s->nlits; i++)
            if (s->lits[i] == lit) return i;
    if (s->nlits >= 65535) fail(c, line, 0, "too many literals in one method");
    s->lits = grow(c, s->lits, s->nlits, &s->cap_lits, s->nlits + 1, sizeof *s->lits);
    s->lits[s->nlits] = lit;
    return s->nlits++;
}

static uint32_t add_ic(cg *c, scope *s, hyi_oop selector, uint32_t nargs, int line) {
    if (s->nics >= 65535) fail(c, line, 0, "too many sends in one method");
    s->ics = grow(c, s->ics, s->nics, &s->cap_ics, s->nics + 1, sizeof *s->ics);
    hyi_ic *ic = &s->ics[s->nics];
    memset(ic, 0, sizeof *ic);
    ic->selector = selector;
    ic->nargs = nargs;
    return s->nics++;
}

/* ---- Literal objects ------------------------------------------------------------------------ */

static hyi_oop make_literal(cg *c, hyi_node *n) {
    hy_vm *vm = c->vm;
    switch (n->kind) {
    case HYI_N_INT:
        if (hyi_smi_fits((intptr_t)n->ival)) return hyi_smi((intptr_t)n->ival);
        {
            char buf[32];
            int len = snprintf(buf, sizeof buf, "%lld", (long long)n->ival);
            hyi_oop b = hyi_bigint_parse(vm, buf, (size_t)len, true);
            return hyi_is_smi(b) ? b : keep(c, b);
        }
    case HYI_N_BIGINT: {
        hyi_oop b = hyi_bigint_parse(vm, n->name, n->len, true);
        return hyi_is_smi(b) ? b : keep(c, b);
    }
    case HYI_N_DOUBLE: {
        hyi_oop d = keep(c, hyi_heap_alloc_old(vm, vm->cls.double_, HYI_FMT_DOUBLE, 8));
        memcpy(hyi_bytes(d), &n->dval, 8);
        return d;
    }
    case HYI_N_STRING: return keep(c, hyi_string_new_old(vm, n->name, n->len));
    case HYI_N_SYMBOL: return symbol(c, n->name, n->len);
    case HYI_N_VAR:
        if (name_is(n->name, n->len, "true")) return vm->true_;
        if (name_is(n->name, n->len, "false")) return vm->false_;
        return vm->nil;
    case HYI_N_ARRAY: {
        hyi_oop a = keep(c, hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, n->nkids));
        for (uint32_t i = 0; i < n->nkids; i++) {
            hyi_oop e = make_literal(c, n->kids[i]);
            hyi_slots(a)[i] = e;
        }
        return a;
    }
    default:
        fail(c, n->line, n->column, "not a literal");
    }
}

/* ---- Expressions ---------------------------------------------------------------------------- */

static void gen(cg *c, scope *s, hyi_node *n);

/* The context depth from the running activation s to the one that owns v's context. */
static uint32_t ctx_depth(cg *c, scope *s, var *v, hyi_node *n) {
    uint32_t d = 0;
    for (scope *t = s; t; t = t->outer) {
        if (!t->owns_ctx) continue;
        if (t == v->owner) {
            if (d > 255) fail(c, n->line, n->column, "blocks nested too deeply");
            return d;
        }
        d++;
    }
    fail(c, n->line, n->column, "internal: variable %.*s has no context", (int)n->len, n->name);
}

static int field_index(cg *c, const char *name, uint32_t len) {
    if (!hyi_is_ptr(c->fields) || c->fields == c->vm->nil) return -1;
    for (uint32_t i = hyi_size(c->fields); i-- > 0;) {
        hyi_oop f = hyi_slots(c->fields)[i];
        if (hyi_size(f) == len && !memcmp(hyi_bytes(f), name, len)) return (int)i;
    }
    return -1;
}

static void gen_var(cg *c, scope *s, hyi_node *n) {
    var *v = n->var;
    if (v) {
        if (v->captured) op_u8u8(c, s, HYI_OP_PUSH_CTX, ctx_depth(c, s, v, n), v->ctx_index, 1);
        else op_u8(c, s, HYI_OP_PUSH_LOCAL, v->local, 1);
        return;
    }
    const char *nm = n->name;
    uint32_t len = n->len;
    if (name_is(nm, len, "self") || name_is(nm, len, "super")) { op(c, s, HYI_OP_PUSH_SELF, 1); return; }
    if (name_is(nm, len, "nil")) { op(c, s, HYI_OP_PUSH_NIL, 1); return; }
    if (name_is(nm, len, "true")) { op(c, s, HYI_OP_PUSH_TRUE, 1); return; }
    if (name_is(nm, len, "false")) { op(c, s, HYI_OP_PUSH_FALSE, 1); return; }
    int f = field_index(c, nm, len);
    if (f >= 0) {
        if (f > 255) fail(c, n->line, n->column, "field %.*s: at most 256 fields are addressable", (int)len, nm);
        op_u8(c, s, HYI_OP_PUSH_FIELD, (uint32_t)f, 1);
        return;
    }
    hyi_oop cell = hyi_global_cell(c->vm, symbol(c, nm, len));
    if (!cell) fail(c, n->line, n->column, "out of memory while compiling");
    op_u16(c, s, HYI_OP_PUSH_GLOBAL, add_literal(c, s, cell, true, n->line), 1);
}

/* Store the top of stack into the target of an assignment node, keeping it. */
static void gen_store(cg *c, scope *s, hyi_node *n) {
    var *v = n->var;
    if (v) {
        if (v->captured) op_u8u8(c, s, HYI_OP_STORE_CTX, ctx_depth(c, s, v, n), v->ctx_index, 0);
        else op_u8(c, s, HYI_OP_STORE_LOCAL, v->local, 0);
        return;
    }
    int f = field_index(c, n->name, n->len);
    if (f < 0) fail(c, n->line, n->column, "cannot assign to %.*s: not a variable in scope", (int)n->len, n->name);
    if (f > 255) fail(c, n->line, n->column, "field %.*s: at most 256 fields are addressable", (int)n->len, n->name);
    op_u8(c, s, HYI_OP_STORE_FIELD, (uint32_t)f, 0);
}

/* Drop the top of stack; a store just before becomes a pop-store. */
static void gen_pop(cg *c, scope *s) {
    if (s->last_op_pc >= 0 && s->label_pc != s->code_len) {
        uint8_t *last = &s->code[s->last_op_pc];
        hyi_opcode repl = HYI_OP_COUNT;
        if (*last == HYI_OP_STORE_LOCAL) repl = HYI_OP_POP_LOCAL;
        else if (*last == HYI_OP_STORE_FIELD) repl = HYI_OP_POP_FIELD;
        else if (*last == HYI_OP_STORE_CTX) repl = HYI_OP_POP_CTX;
        if (repl != HYI_OP_COUNT) {
            *last = (uint8_t)repl;
            adjust(s, -1);
            return;
        }
    }
    op(c, s, HYI_OP_POP, -1);
}

static hyi_opcode special_send(const char *s, uint32_t l, uint32_t nargs) {
    if (nargs == 1) {
        if (name_is(s, l, "+")) return HYI_OP_SEND_ADD;
        if (name_is(s, l, "-")) return HYI_OP_SEND_SUB;
        if (name_is(s, l, "*")) return HYI_OP_SEND_MUL;
        if (name_is(s, l, "<")) return HYI_OP_SEND_LT;
        if (name_is(s, l, ">")) return HYI_OP_SEND_GT;
        if (name_is(s, l, "<=")) return HYI_OP_SEND_LE;
        if (name_is(s, l, ">=")) return HYI_OP_SEND_GE;
        if (name_is(s, l, "=")) return HYI_OP_SEND_EQ;
        if (name_is(s, l, "~=") || name_is(s, l, "<>")) return HYI_OP_SEND_NE;
        if (name_is(s, l, "==")) return HYI_OP_SEND_EQEQ;
        if (name_is(s, l, "at:")) return HYI_OP_SEND_AT;
        if (name_is(s, l, "value:")) return HYI_OP_SEND_VALUE1;
    } else if (nargs == 0) {
        if (name_is(s, l, "value")) return HYI_OP_SEND_VALUE;
        if (name_is(s, l, "length")) return HYI_OP_SEND_LENGTH;
    } else if (nargs == 2) {
        if (name_is(s, l, "at:put:")) return HYI_OP_SEND_ATPUT;
    }
    return HYI_OP_SEND;
}

/* The statements of an inlined block, leaving the value of the last one (nil if none). */
static void gen_inlined(cg *c, scope *s, hyi_node *blk) {
    /* Each entry starts the block's own temporaries at nil, as a real activation would. */
    for (uint32_t i = 0; i < blk->ntemps; i++) {
        var *v = NULL;
        for (uint32_t k = 0; k < s->nvars; k++)
            if (s->vars[k]->name.s == blk->temps[i].s) { v = s->vars[k]; break; }
        if (v) {
            op(c, s, HYI_OP_PUSH_NIL, 1);
            op_u8(c, s, HYI_OP_POP_LOCAL, v->local, -1);
        }
    }
    if (blk->nkids == 0) { op(c, s, HYI_OP_PUSH_NIL, 1); return; }
    for (uint32_t i = 0; i < blk->nkids; i++) {
        note_line(c, s, blk->kids[i]->line);
        gen(c, s, blk->kids[i]);
        if (i + 1 < blk->nkids) gen_pop(c, s);
    }
}

/* The local index of an inlined block's parameter. */
static uint32_t param_local(cg *c, scope *s, hyi_node *blk, uint32_t i) {
    for (uint32_t k = 0; k < s->nvars; k++)
        if (s->vars[k]->name.s == blk->params[i].s) return s->vars[k]->local;
    fail(c, blk->line, blk->column, "internal: inlined parameter not found");
}

static void gen_inline(cg *c, scope *s, hyi_node *n) {
    enum inline_kind k = inline_shape(n);
    hyi_node **kid = n->kids;
    int base = s->depth;
    switch (k) {
    case INL_IF_TRUE: case INL_IF_FALSE: {
        gen(c, s, kid[0]);
        uint32_t j1 = jump_fwd(c, s, k == INL_IF_TRUE ? HYI_OP_JUMP_IF_FALSE : HYI_OP_JUMP_IF_TRUE, -1);
        gen_inlined(c, s, kid[1]);
        uint32_t j2 = jump_fwd(c, s, HYI_OP_JUMP, 0);
        patch_here(c, s, j1, n->line);
        s->depth = base;
        op(c, s, HYI_OP_PUSH_NIL, 1);
        patch_here(c, s, j2, n->line);
        break;
    }
    case INL_IF_TRUE_FALSE: case INL_IF_FALSE_TRUE: {
        gen(c, s, kid[0]);
        uint32_t j1 = jump_fwd(c, s, k == INL_IF_TRUE_FALSE ? HYI_OP_JUMP_IF_FALSE : HYI_OP_JUMP_IF_TRUE, -1);
        gen_inlined(c, s, kid[1]);
        uint32_t j2 = jump_fwd(c, s, HYI_OP_JUMP, 0);
        patch_here(c, s, j1, n->line);
        s->depth = base;
        gen_inlined(c, s, kid[2]);
        patch_here(c, s, j2, n->line);
        break;
    }
    case INL_AND: case INL_OR: {
        gen(c, s, kid[0]);
        uint32_t j1 = jump_fwd(c, s, k == INL_AND ? HYI_OP_JUMP_IF_FALSE : HYI_OP_JUMP_IF_TRUE, -1);
        gen_inlined(c, s, kid[1]);
        uint32_t j2 = jump_fwd(c, s, HYI_OP_JUMP, 0);
        patch_here(c, s, j1, n->line);
        s->depth = base;
        op(c, s, k == INL_AND ? HYI_OP_PUSH_FALSE : HYI_OP_PUSH_TRUE, 1);
        patch_here(c, s, j2, n->line);
        break;
    }
    case INL_WHILE_TRUE: case INL_WHILE_FALSE: {
        uint32_t top = s->code_len;
        s->label_pc = top;
        gen_inlined(c, s, kid[0]);
        uint32_t j = jump_fwd(c, s, k == INL_WHILE_TRUE ? HYI_OP_JUMP_IF_FALSE : HYI_OP_JUMP_IF_TRUE, -1);
        gen_inlined(c, s, kid[1]);
        gen_pop(c, s);
        jump_back(c, s, top, n->line);
        patch_here(c, s, j, n->line);
        s->depth = base;
        op(c, s, HYI_OP_PUSH_NIL, 1);
        break;
    }
    case INL_IF_NIL: {
        gen(c, s, kid[0]);
        op(c, s, HYI_OP_DUP, 1);
        uint32_t j = jump_fwd(c, s, HYI_OP_JUMP_IF_NOT_NIL, -1);
        op(c, s, HYI_OP_POP, -1);
        gen_inlined(c, s, kid[1]);
        patch_here(c, s, j, n->line);
        s->depth = base + 1;
        break;
    }
    case INL_IF_NOT_NIL: {
        gen(c, s, kid[0]);
        op(c, s, HYI_OP_DUP, 1);
        uint32_t j = jump_fwd(c, s, HYI_OP_JUMP_IF_NIL, -1);
        if (kid[1]->nparams) op_u8(c, s, HYI_OP_POP_LOCAL, param_local(c, s, kid[1], 0), -1);
        else op(c, s, HYI_OP_POP, -1);
        gen_inlined(c, s, kid[1]);
        patch_here(c, s, j, n->line);
        s->depth = base + 1;
        break;
    }
    case INL_IF_NIL_NOT_NIL: case INL_IF_NOT_NIL_NIL: {
        hyi_node *nil_blk = k == INL_IF_NIL_NOT_NIL ? kid[1] : kid[2];
        hyi_node *val_blk = k == INL_IF_NIL_NOT_NIL ? kid[2] : kid[1];
        gen(c, s, kid[0]);
        op(c, s, HYI_OP_DUP, 1);
        uint32_t j1 = jump_fwd(c, s, HYI_OP_JUMP_IF_NIL, -1);
        if (val_blk->nparams) op_u8(c, s, HYI_OP_POP_LOCAL, param_local(c, s, val_blk, 0), -1);
        else op(c, s, HYI_OP_POP, -1);
        gen_inlined(c, s, val_blk);
        uint32_t j2 = jump_fwd(c, s, HYI_OP_JUMP, 0);
        patch_here(c, s, j1, n->line);
        s->depth = base + 1;
        op(c, s, HYI_OP_POP, -1);
        gen_inlined(c, s, nil_blk);
        patch_here(c, s, j2, n->line);
        break;
    }
    case INL_TO_DO: case INL_TIMES_REPEAT: {
        uint32_t i_local, lim_local;
        hyi_node *body;
        if (k == INL_TO_DO) {
            body = kid[2];
            i_local = param_local(c, s, body, 0);
            lim_local = (uint32_t)n->ival;
            gen(c, s, kid[0]);
            op(c, s, HYI_OP_DUP, 1);
            op_u8(c, s, HYI_OP_POP_LOCAL, i_local, -1);
            gen(c, s, kid[1]);
            op_u8(c, s, HYI_OP_POP_LOCAL, lim_local, -1);
        } else {
            body = kid[1];
            i_local = (uint32_t)n->ival;
            lim_local = i_local + 1;
            gen(c, s, kid[0]);
            op(c, s, HYI_OP_DUP, 1);
            op_u8(c, s, HYI_OP_POP_LOCAL, lim_local, -1);
            op_u8(c, s, HYI_OP_PUSH_SMALLINT, 1, 1);
            op_u8(c, s, HYI_OP_POP_LOCAL, i_local, -1);
        }
        op(c, s, HYI_OP_FOR_ENTER, 0);
        emit_byte(c, s, (uint8_t)i_local);
        emit_byte(c, s, (uint8_t)lim_local);
        uint32_t skip_at = s->code_len;
        emit_byte(c, s, 0);
        emit_byte(c, s, 0);
        uint32_t body_pc = s->code_len;
        s->label_pc = body_pc;
        gen_inlined(c, s, body);
        gen_pop(c, s);
        op(c, s, HYI_OP_FOR_STEP, 0);
        emit_byte(c, s, (uint8_t)i_local);
        emit_byte(c, s, (uint8_t)lim_local);
        uint32_t back = s->code_len + 2 - body_pc;
        if (back > 65535) fail(c, n->line, n->column, "method too large: a loop spans more than 64 KiB of code");
        emit_byte(c, s, (uint8_t)(back & 0xff));
        emit_byte(c, s, (uint8_t)(back >> 8));
        uint32_t skip = s->code_len - (skip_at + 2);
        if (skip > 65535) fail(c, n->line, n->column, "method too large: a loop spans more than 64 KiB of code");
        s->code[skip_at] = (uint8_t)(skip & 0xff);
        s->code[skip_at + 1] = (uint8_t)(skip >> 8);
        s->label_pc = s->code_len;
        s->depth = base + 1;
        break;
    }
    case INL_NONE:
        fail(c, n->line, n->column, "internal: not an inlinable send");
    }
}

static hyi_oop compile_block(cg *c, scope *s, hyi_node *blk);

static void gen(cg *c, scope *s, hyi_node *n) {
    switch (n->kind) {
    case HYI_N_INT:
        if (n->ival >= -128 && n->ival <= 127) { op_u8(c, s, HYI_OP_PUSH_SMALLINT, (uint32_t)(n->ival & 0xff), 1); return; }
        /* fall through */
    case HYI_N_BIGINT: case HYI_N_DOUBLE: case HYI_N_STRING: case HYI_N_SYMBOL: case HYI_N_ARRAY: {
        hyi_oop lit = make_literal(c, n);
        bool dedup = n->kind == HYI_N_SYMBOL || n->kind == HYI_N_INT;
        op_u16(c, s, HYI_OP_PUSH_LIT, add_literal(c, s, lit, dedup, n->line), 1);
        return;
    }
    case HYI_N_VAR: gen_var(c, s, n); return;
    case HYI_N_ASSIGN:
        gen(c, s, n->kids[0]);
        gen_store(c, s, n);
        return;
    case HYI_N_RETURN: {
        hyi_node *e = n->kids[0];
        note_line(c, s, n->line);
        if (!s->is_block && e->kind == HYI_N_VAR && !e->var && name_is(e->name, e->len, "self")) {
            op(c, s, HYI_OP_RETURN_SELF, 1);
            return;
        }
        gen(c, s, e);
        op(c, s, s->is_block ? HYI_OP_RETURN_NONLOCAL : HYI_OP_RETURN_TOP, 0);
        return;
    }
    case HYI_N_BLOCK: {
        hyi_oop bm = compile_block(c, s, n);
        op_u16(c, s, HYI_OP_PUSH_BLOCK, add_literal(c, s, bm, false, n->line), 1);
        return;
    }
    case HYI_N_SEND: {
        if (is_inlined(n)) { gen_inline(c, s, n); return; }
        uint32_t nargs = n->nkids - 1;
        for (uint32_t i = 0; i < n->nkids; i++) gen(c, s, n->kids[i]);
        note_line(c, s, n->line);
        hyi_oop sel = symbol(c, n->name, n->len);
        uint32_t ic = add_ic(c, s, sel, nargs, n->line);
        hyi_opcode o = n->is_super ? HYI_OP_SUPER_SEND : special_send(n->name, n->len, nargs);
        op_u16(c, s, o, ic, -(int)nargs);
        return;
    }
    }
}

/* ---- Methods and blocks --------------------------------------------------------------------- */

/* Entry code of an activation: its context, and captured arguments copied into it. */
static void gen_prologue(cg *c, scope *s) {
    if (!s->owns_ctx) return;
    if (s->num_ctx > 255) fail(c, s->line, 0, "too many captured variables (at most 255)");
    op_u8(c, s, HYI_OP_MAKE_CTX, s->num_ctx, 0);
    for (uint32_t i = 0; i < s->nvars; i++) {
        var *v = s->vars[i];
        if (v->captured && v->local < s->num_args) {
            op_u8(c, s, HYI_OP_PUSH_LOCAL, v->local, 1);
            op_u8u8(c, s, HYI_OP_POP_CTX, 0, v->ctx_index, -1);
        }
    }
}

/* Make the method object of scope s. */
static hyi_oop finish(cg *c, scope *s, uint16_t flags, uint16_t prim, int line) {
    hy_vm *vm = c->vm;
    hyi_oop lits = vm->nil;
    if (s->nlits) {
        lits = keep(c, hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, s->nlits));
        for (uint32_t i = 0; i < s->nlits; i++) hyi_slots(lits)[i] = s->lits[i];
    }
    hyi_oop debug = keep(c, hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, 2));
    hyi_slots(debug)[0] = c->file;
    hyi_oop bytes_cls = vm->cls.bytearray ? vm->cls.bytearray : vm->cls.string;
    hyi_oop table = keep(c, hyi_heap_alloc_old(vm, bytes_cls, HYI_FMT_BYTES, s->nlines * 8));
    for (uint32_t i = 0; i < s->nlines * 2; i++) memcpy(hyi_bytes(table) + 4 * i, &s->lines[i], 4);
    hyi_slots(debug)[1] = table;

    size_t ic_off = (sizeof(hyi_method) + s->code_len + 7) & ~(size_t)7;
    size_t bytes = ic_off + (size_t)s->nics * sizeof(hyi_ic) - sizeof(hyi_obj);
    if (bytes > (size_t)1 << 28) fail(c, line, 0, "method too large");
    hyi_oop mcls = (flags & HYI_MF_PRIMITIVE) && vm->cls.primitive ? vm->cls.primitive : vm->cls.method;
    hyi_oop mo = keep(c, hyi_heap_alloc_old(vm, mcls, HYI_FMT_METHOD, (uint32_t)bytes));
    hyi_method *m = hyi_m(mo);
    m->signature = c->selector;
    m->holder = c->cls;
    m->literals = lits;
    m->debug = debug;
    m->num_args = (uint16_t)s->num_args;
    m->num_temps = (uint16_t)(s->num_locals - s->num_args);
    m->max_stack = (uint16_t)(s->max_depth + 2);
    m->num_ics = (uint16_t)s->nics;
    m->flags = flags;
    m->prim = prim;
    m->code_len = s->code_len;
    m->ic_offset = (uint32_t)ic_off;
    m->line = (uint32_t)(line > 0 ? line : 0);
    if (s->code_len) memcpy(hyi_method_code(m), s->code, s->code_len);
    if (s->nics) memcpy(hyi_method_ics(m), s->ics, s->nics * sizeof(hyi_ic));
    return mo;
}

static hyi_oop compile_block(cg *c, scope *outer, hyi_node *blk) {
    scope *s = blk->var;
    (void)outer;
    s->line = blk->line;
    note_line(c, s, blk->line);
    gen_prologue(c, s);
    if (blk->nkids == 0) {
        op(c, s, HYI_OP_PUSH_NIL, 1);
        op(c, s, HYI_OP_RETURN_TOP, 0);
    } else {
        for (uint32_t i = 0; i < blk->nkids; i++) {
            hyi_node *st = blk->kids[i];
            note_line(c, s, st->line);
            gen(c, s, st);
            if (st->kind == HYI_N_RETURN) break;
            if (i + 1 < blk->nkids) gen_pop(c, s);
            else op(c, s, HYI_OP_RETURN_TOP, 0);
        }
    }
    return finish(c, s, HYI_MF_BLOCK, 0, blk->line);
}

/* Every real scope below the method, in the order analysis met them. */
static void assign_all(scope *s, hyi_node *n) {
    if (!n) return;
    if (n->kind == HYI_N_BLOCK && n->var && n->var != s) {
        assign_contexts(n->var);
        s = n->var;
    }
    for (uint32_t i = 0; i < n->nkids; i++) assign_all(s, n->kids[i]);
}

static hyi_oop compile_method(cg *c, hyi_method_ast *ma) {
    hy_vm *vm = c->vm;
    c->selector = symbol(c, ma->selector.s, ma->selector.len);
    uint16_t flags = 0;
    /* Block>>on:do:, ensure: and ifCurtailed: are where the VM finds handlers and unwind blocks. */
    if (!c->class_side && name_is(c->class_name, c->class_name_len, "Block")) {
        if (name_is(ma->selector.s, ma->selector.len, "on:do:")) flags |= HYI_MF_ON_DO;
        else if (name_is(ma->selector.s, ma->selector.len, "ensure:")) flags |= HYI_MF_ENSURE;
        else if (name_is(ma->selector.s, ma->selector.len, "ifCurtailed:")) flags |= HYI_MF_IFCURTAILED;
    }
    if (ma->primitive) {
        char cname[300];
        int cl = snprintf(cname, sizeof cname, "%.*s%s", (int)c->class_name_len, c->class_name,
                          c->class_side ? " class" : "");
        uint16_t prim = hyi_prim_find(cname, (size_t)cl, ma->selector.s, ma->selector.len);
        scope *s = new_scope(c, NULL, false);
        s->num_args = s->num_locals = ma->nparams;
        return finish(c, s, (uint16_t)(flags | HYI_MF_PRIMITIVE), prim, ma->line);
    }
    (void)vm;
    scope *s = new_scope(c, NULL, false);
    s->line = ma->line;
    lex l = { NULL, s, NULL, 0 };
    for (uint32_t i = 0; i < ma->nparams; i++) declare(c, &l, &ma->params[i]);
    s->num_args = ma->nparams;
    hyi_node *body = ma->body;
    for (uint32_t i = 0; i < body->ntemps; i++) declare(c, &l, &body->temps[i]);
    analyze_stmts(c, &l, body);
    assign_contexts(s);
    for (uint32_t i = 0; i < body->nkids; i++) assign_all(s, body->kids[i]);
    if (s->has_nlr) flags |= HYI_MF_HAS_NLR;

    note_line(c, s, ma->line);
    gen_prologue(c, s);
    bool returned = false;
    for (uint32_t i = 0; i < body->nkids; i++) {
        hyi_node *st = body->kids[i];
        note_line(c, s, st->line);
        gen(c, s, st);
        if (st->kind == HYI_N_RETURN) { returned = true; break; }
        gen_pop(c, s);
    }
    if (!returned) op(c, s, HYI_OP_RETURN_SELF, 1);
    /* Accessors run without a frame: the interpreter reads or writes the field in place. */
    uint16_t field = 0;
    if (!s->owns_ctx && s->num_locals == s->num_args) {
        const uint8_t *k = s->code;
        if (s->num_args == 0 && s->code_len == 3 && k[0] == HYI_OP_PUSH_FIELD && k[2] == HYI_OP_RETURN_TOP) {
            flags |= HYI_MF_GETTER;
            field = k[1];
        } else if (s->num_args == 1 && s->code_len == 5 && k[0] == HYI_OP_PUSH_LOCAL && k[1] == 0 &&
                   k[2] == HYI_OP_POP_FIELD && k[4] == HYI_OP_RETURN_SELF) {
            flags |= HYI_MF_SETTER;
            field = k[3];
        }
    }
    return finish(c, s, flags, field, ma->line);
}

/* ---- Classes -------------------------------------------------------------------------------- */

static hyi_oop name_array(cg *c, hyi_name *names, uint32_t n) {
    hy_vm *vm = c->vm;
    hyi_oop a = keep(c, hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, n));
    for (uint32_t i = 0; i < n; i++) hyi_slots(a)[i] = symbol(c, names[i].s, names[i].len);
    return a;
}

static void cg_init(cg *c, hy_vm *vm, hyi_arena *arena, hyi_diag *diag) {
    memset(c, 0, sizeof *c);
    c->vm = vm;
    c->arena = arena;
    c->diag = diag;
}

static void compile_methods(cg *c, hyi_oop cls, bool class_side, hyi_method_ast *ms, uint32_t n) {
    c->cls = cls;
    c->class_side = class_side;
    c->fields = hyi_slots(cls)[HYI_CLASS_FIELDS];
    for (uint32_t i = 0; i < n; i++) {
        hyi_oop m = compile_method(c, &ms[i]);
        if (!hyi_class_add_method(c->vm, cls, m)) fail(c, ms[i].line, 1, "out of memory while compiling");
    }
}

bool hyi_compile_class(hy_vm *vm, const char *src, size_t len, const char *file, hyi_oop *out,
                       hyi_diag *diag) {
    hyi_arena arena = { 0 };
    hyi_class_ast ast;
    if (!hyi_parse_class(&arena, src, len, file, &ast, diag)) {
        hyi_arena_free(&arena);
        return false;
    }
    cg c;
    cg_init(&c, vm, &arena, diag);
    uint32_t roots = vm->num_temp_roots;
    hyi_oop cls = 0, superclass = 0;
    c.keep = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, 64);
    HYI_ROOT(vm, &c.keep);
    HYI_ROOT(vm, &c.file);
    HYI_ROOT(vm, &c.prev);
    volatile bool defined = false;
    if (setjmp(c.fail)) {
        if (defined) hyi_global_set(vm, c.name, c.prev ? c.prev : vm->undefined);
        vm->num_temp_roots = roots;
        hyi_arena_free(&arena);
        return false;
    }
    if (!c.keep) fail(&c, 1, 1, "out of memory while compiling");
    c.file = keep(&c, hyi_string_new_old(vm, file ? file : "", file ? strlen(file) : 0));
    c.name = symbol(&c, ast.name.s, ast.name.len);
    c.class_name = ast.name.s;
    c.class_name_len = ast.name.len;

    /* The superclass: named, nil for a root class, Object by default. */
    if (ast.super.s && name_is(ast.super.s, ast.super.len, "nil")) {
        superclass = vm->nil;
    } else if (!ast.super.s) {
        superclass = name_is(ast.name.s, ast.name.len, "Object") ? vm->nil : vm->cls.object;
    } else {
        if (ast.super.len == ast.name.len && !memcmp(ast.super.s, ast.name.s, ast.name.len))
            fail(&c, ast.super.line, ast.super.column, "class %.*s cannot be its own superclass", (int)ast.name.len, ast.name.s);
        hyi_oop sname = symbol(&c, ast.super.s, ast.super.len);
        superclass = hyi_vm_load_class(vm, sname);
        if (!superclass) {
            if (vm->load_failed)
                fail(&c, ast.super.line, ast.super.column, "superclass %.*s does not compile: %s",
                     (int)ast.super.len, ast.super.s, hy_vm_last_error(vm));
            fail(&c, ast.super.line, ast.super.column, "superclass %.*s not found on the class path",
                 (int)ast.super.len, ast.super.s);
        }
        hyi_oop sc = hyi_o(superclass)->cls;
        if (!hyi_is_ptr(sc) || hyi_o(sc)->cls != vm->cls.metaclass)
            fail(&c, ast.super.line, ast.super.column, "superclass %.*s is not a class",
                 (int)ast.super.len, ast.super.s);
        keep(&c, superclass);
    }
    hyi_oop fields = name_array(&c, ast.fields, ast.nfields);
    hyi_oop class_fields = name_array(&c, ast.class_fields, ast.nclass_fields);
    c.prev = hyi_global_get(vm, c.name);
    cls = hyi_class_define(vm, c.name, superclass, fields, class_fields);
    if (!cls) fail(&c, ast.name.line, ast.name.column, "cannot define class %.*s: %s", (int)ast.name.len,
                   ast.name.s, hy_vm_last_error(vm));
    defined = true;
    keep(&c, cls);
    compile_methods(&c, cls, false, ast.methods, ast.nmethods);
    compile_methods(&c, hyi_o(cls)->cls, true, ast.class_methods, ast.nclass_methods);
    vm->num_temp_roots = roots;
    hyi_arena_free(&arena);
    *out = cls;
    return true;
}

bool hyi_compile_method(hy_vm *vm, hyi_oop cls, const char *src, size_t len, const char *file,
                        hyi_oop *out, hyi_diag *diag) {
    hyi_arena arena = { 0 };
    hyi_method_ast ma;
    if (!hyi_parse_method(&arena, src, len, file, &ma, diag)) {
        hyi_arena_free(&arena);
        return false;
    }
    cg c;
    cg_init(&c, vm, &arena, diag);
    uint32_t roots = vm->num_temp_roots;
    c.keep = hyi_heap_alloc_old(vm, vm->cls.array, HYI_FMT_INDEXED, 64);
    HYI_ROOT(vm, &c.keep);
    HYI_ROOT(vm, &c.file);
    HYI_ROOT(vm, &cls);
    if (setjmp(c.fail)) {
        vm->num_temp_roots = roots;
        hyi_arena_free(&arena);
        return false;
    }
    if (!c.keep) fail(&c, 1, 1, "out of memory while compiling");
    c.file = keep(&c, hyi_string_new_old(vm, file ? file : "", file ? strlen(file) : 0));
    bool meta = hyi_o(cls)->cls == vm->cls.metaclass;
    hyi_oop cname = hyi_slots(cls)[HYI_CLASS_NAME];
    c.class_side = false;
    c.class_name = (const char *)hyi_bytes(cname);
    c.class_name_len = hyi_size(cname);
    if (meta && c.class_name_len > 6 && !memcmp(c.class_name + c.class_name_len - 6, " class", 6)) {
        c.class_name_len -= 6;
        c.class_side = true;
    }
    c.cls = cls;
    c.fields = hyi_slots(cls)[HYI_CLASS_FIELDS];
    hyi_oop m = compile_method(&c, &ma);
    if (!hyi_class_add_method(vm, cls, m)) fail(&c, ma.line, 1, "out of memory while compiling");
    vm->num_temp_roots = roots;
    hyi_arena_free(&arena);
    *out = m;
    return true;
}
