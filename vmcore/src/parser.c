/*
 * parser.c -- recursive descent from tokens to the syntax tree of parser.h.
 *
 * Errors unwind with longjmp to the entry point: every allocation is in the arena, so there
 * is nothing to clean up on the way.
 */
#include "parser.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Arena -------------------------------------------------------------------------------- */

struct hyi_arena_chunk {
    hyi_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *hyi_arena_alloc(hyi_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    hyi_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void hyi_arena_free(hyi_arena *a) {
    while (a->head) {
        hyi_arena_chunk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

/* ---- Parser state --------------------------------------------------------------------------- */

typedef struct parser {
    hyi_lexer lx;
    hyi_token tok, ahead;
    bool has_ahead;
    hyi_arena *arena;
    hyi_diag *diag;
    jmp_buf fail;
    int depth;
} parser;

static void fail_at(parser *p, int line, int column, const char *fmt, ...) __attribute__((format(printf, 4, 5), noreturn));
static void fail_at(parser *p, int line, int column, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->diag->message, sizeof p->diag->message, fmt, ap);
    va_end(ap);
    p->diag->line = line;
    p->diag->column = column;
    longjmp(p->fail, 1);
}

static void describe(const hyi_token *t, char *buf, size_t n) {
    if (t->kind == HYI_TOK_EOF) snprintf(buf, n, "end of file");
    else snprintf(buf, n, "%s '%.*s'", hyi_tok_name(t->kind), (int)(t->len > 40 ? 40 : t->len), t->text);
}

static void fail_expected(parser *p, const char *what) __attribute__((noreturn));
static void fail_expected(parser *p, const char *what) {
    char found[96];
    if (p->tok.kind == HYI_TOK_ERROR)
        fail_at(p, p->tok.line, p->tok.column, "%s", p->lx.error ? p->lx.error : "invalid token");
    describe(&p->tok, found, sizeof found);
    fail_at(p, p->tok.line, p->tok.column, "expected %s but found %s", what, found);
}

static void *alloc(parser *p, size_t n) {
    void *r = hyi_arena_alloc(p->arena, n);
    if (!r) fail_at(p, p->tok.line, p->tok.column, "out of memory while parsing");
    return r;
}

static void advance(parser *p) {
    if (p->has_ahead) { p->tok = p->ahead; p->has_ahead = false; }
    else p->tok = hyi_lexer_next(&p->lx, p->tok.kind == HYI_TOK_POUND);
    if (p->tok.kind == HYI_TOK_ERROR)
        fail_at(p, p->tok.line, p->tok.column, "%s", p->lx.error ? p->lx.error : "invalid token");
}

static const hyi_token *peek_ahead(parser *p) {
    if (!p->has_ahead) {
        p->ahead = hyi_lexer_next(&p->lx, p->tok.kind == HYI_TOK_POUND);
        p->has_ahead = true;
    }
    return &p->ahead;
}

static bool is_bin(const hyi_token *t, const char *s) {
    return t->kind == HYI_TOK_BINARY && t->len == strlen(s) && memcmp(t->text, s, t->len) == 0;
}

/* A '|' may arrive glued to other bars ("||"): take one bar off the front of the token. */
static bool take_bar(parser *p) {
    if (p->tok.kind != HYI_TOK_BINARY || p->tok.text[0] != '|') return false;
    for (uint32_t i = 0; i < p->tok.len; i++) if (p->tok.text[i] != '|') return false;
    if (p->tok.len == 1) { advance(p); return true; }
    p->tok.text++; p->tok.len--; p->tok.column++;
    return true;
}

static void expect_bar(parser *p) { if (!take_bar(p)) fail_expected(p, "'|'"); }

static void expect(parser *p, hyi_tok_kind kind) {
    if (p->tok.kind != kind) fail_expected(p, hyi_tok_name(kind));
    advance(p);
}

static hyi_name name_of(const hyi_token *t) {
    hyi_name n = { t->text, t->len, t->line, t->column };
    return n;
}

static void enter(parser *p) {
    if (++p->depth > HYI_PARSE_MAX_DEPTH)
        fail_at(p, p->tok.line, p->tok.column, "nesting deeper than %d levels", HYI_PARSE_MAX_DEPTH);
}

/* Growable arrays in the arena (doubling, old copies abandoned). */
typedef struct vec { void **items; uint32_t n, cap; } vec;
static void vec_push(parser *p, vec *v, void *item) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 8;
        void **items = alloc(p, cap * sizeof *items);
        if (v->n) memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
}
typedef struct nvec { hyi_name *items; uint32_t n, cap; } nvec;
static void nvec_push(parser *p, nvec *v, hyi_name item) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 8;
        hyi_name *items = alloc(p, cap * sizeof *items);
        if (v->n) memcpy(items, v->items, v->n * sizeof *items);
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = item;
}

static hyi_node *node(parser *p, hyi_node_kind kind, int line, int column) {
    hyi_node *n = alloc(p, sizeof *n);
    n->kind = kind;
    n->line = line;
    n->column = column;
    n->inline_state = -1;
    return n;
}

/* ---- Literals ------------------------------------------------------------------------------- */

static hyi_node *number(parser *p, bool negative, int line, int column) {
    const hyi_token t = p->tok;
    if (t.kind == HYI_TOK_DOUBLE) {
        char buf[128];
        if (t.len >= sizeof buf - 2) fail_at(p, t.line, t.column, "double literal too long");
        size_t k = 0;
        if (negative) buf[k++] = '-';
        memcpy(buf + k, t.text, t.len);
        buf[k + t.len] = 0;
        hyi_node *n = node(p, HYI_N_DOUBLE, line, column);
        n->dval = strtod(buf, NULL);
        advance(p);
        return n;
    }
    if (t.kind != HYI_TOK_INTEGER) fail_expected(p, "a number");
    /* Small enough for a 64-bit value? Otherwise keep the digits for a large integer. */
    uint64_t v = 0;
    bool big = false;
    for (uint32_t i = 0; i < t.len; i++) {
        unsigned d = (unsigned)(t.text[i] - '0');
        if (v > (UINT64_MAX - d) / 10) { big = true; break; }
        v = v * 10 + d;
    }
    if (!big && v > (uint64_t)INT64_MAX) big = true;
    hyi_node *n;
    if (big) {
        n = node(p, HYI_N_BIGINT, line, column);
        char *digits = alloc(p, t.len + 2);
        size_t k = 0;
        if (negative) digits[k++] = '-';
        memcpy(digits + k, t.text, t.len);
        n->name = digits;
        n->len = (uint32_t)(k + t.len);
    } else {
        n = node(p, HYI_N_INT, line, column);
        n->ival = negative ? -(int64_t)v : (int64_t)v;
    }
    advance(p);
    return n;
}

/* Decode a string token's escapes into the arena. */
static hyi_node *string_literal(parser *p, hyi_node_kind kind) {
    const hyi_token t = p->tok;
    char *out = alloc(p, t.len + 1);
    uint32_t k = 0;
    for (uint32_t i = 1; i + 1 < t.len; i++) {
        char c = t.text[i];
        if (c == '\\' && i + 2 < t.len) {
            char e = t.text[++i];
            switch (e) {
            case 't': c = '\t'; break;
            case 'b': c = '\b'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 'f': c = '\f'; break;
            case '0': c = '\0'; break;
            case '\'': c = '\''; break;
            case '\\': c = '\\'; break;
            default: out[k++] = '\\'; c = e; break;
            }
        }
        out[k++] = c;
    }
    hyi_node *n = node(p, kind, t.line, t.column);
    n->name = out;
    n->len = k;
    advance(p);
    return n;
}

static hyi_node *literal_array(parser *p, int line, int column);

/* After '#': a symbol or a literal array. */
static hyi_node *pound_literal(parser *p) {
    int line = p->tok.line, column = p->tok.column;
    expect(p, HYI_TOK_POUND);
    hyi_node *n;
    switch (p->tok.kind) {
    case HYI_TOK_STRING: n = string_literal(p, HYI_N_SYMBOL); n->line = line; n->column = column; return n;
    case HYI_TOK_IDENT: case HYI_TOK_KEYWORD: case HYI_TOK_KEYWORDS: case HYI_TOK_BINARY:
        n = node(p, HYI_N_SYMBOL, line, column);
        n->name = p->tok.text;
        n->len = p->tok.len;
        advance(p);
        return n;
    case HYI_TOK_LPAREN:
        return literal_array(p, line, column);
    default:
        fail_expected(p, "a symbol or '(' after '#'");
    }
}

static hyi_node *array_element(parser *p) {
    hyi_node *n;
    switch (p->tok.kind) {
    case HYI_TOK_INTEGER: case HYI_TOK_DOUBLE: return number(p, false, p->tok.line, p->tok.column);
    case HYI_TOK_BINARY:
        if (is_bin(&p->tok, "-")) {
            const hyi_token *a = peek_ahead(p);
            if (a->kind == HYI_TOK_INTEGER || a->kind == HYI_TOK_DOUBLE) {
                int line = p->tok.line, column = p->tok.column;
                advance(p);
                return number(p, true, line, column);
            }
        }
        /* a binary selector is a symbol */
        __attribute__((fallthrough));
    case HYI_TOK_KEYWORD: case HYI_TOK_KEYWORDS:
        n = node(p, HYI_N_SYMBOL, p->tok.line, p->tok.column);
        n->name = p->tok.text;
        n->len = p->tok.len;
        advance(p);
        return n;
    case HYI_TOK_IDENT:
        /* true, false and nil are themselves; other bare words are symbols. */
        if ((p->tok.len == 4 && !memcmp(p->tok.text, "true", 4)) ||
            (p->tok.len == 5 && !memcmp(p->tok.text, "false", 5)) ||
            (p->tok.len == 3 && !memcmp(p->tok.text, "nil", 3)))
            n = node(p, HYI_N_VAR, p->tok.line, p->tok.column);
        else
            n = node(p, HYI_N_SYMBOL, p->tok.line, p->tok.column);
        n->name = p->tok.text;
        n->len = p->tok.len;
        advance(p);
        return n;
    case HYI_TOK_STRING: return string_literal(p, HYI_N_STRING);
    case HYI_TOK_POUND: return pound_literal(p);
    case HYI_TOK_LPAREN: return literal_array(p, p->tok.line, p->tok.column);
    default:
        fail_expected(p, "a literal or ')'");
    }
}

static hyi_node *literal_array(parser *p, int line, int column) {
    enter(p);
    expect(p, HYI_TOK_LPAREN);
    vec items = { 0 };
    while (p->tok.kind != HYI_TOK_RPAREN) vec_push(p, &items, array_element(p));
    advance(p);
    hyi_node *n = node(p, HYI_N_ARRAY, line, column);
    n->kids = (hyi_node **)items.items;
    n->nkids = items.n;
    p->depth--;
    return n;
}

/* ---- Expressions ---------------------------------------------------------------------------- */

static hyi_node *expression(parser *p);
static hyi_node *block_body(parser *p, hyi_node *blk, hyi_tok_kind end);

static hyi_node *variable(parser *p) {
    hyi_node *n = node(p, HYI_N_VAR, p->tok.line, p->tok.column);
    n->name = p->tok.text;
    n->len = p->tok.len;
    advance(p);
    return n;
}

static hyi_node *block(parser *p) {
    hyi_node *blk = node(p, HYI_N_BLOCK, p->tok.line, p->tok.column);
    expect(p, HYI_TOK_LBRACK);
    nvec params = { 0 };
    if (p->tok.kind == HYI_TOK_COLON) {
        while (p->tok.kind == HYI_TOK_COLON) {
            advance(p);
            if (p->tok.kind != HYI_TOK_IDENT) fail_expected(p, "a block parameter name");
            nvec_push(p, &params, name_of(&p->tok));
            advance(p);
        }
        /* "[:a | ...]", or "[:a || t | ...]" where the bar of the temps follows at once. */
        if (!take_bar(p)) {
            if (p->tok.kind == HYI_TOK_RBRACK) { /* [:a] is a block that answers nil */ }
            else fail_expected(p, "'|' after the block parameters");
        }
    }
    blk->params = params.items;
    blk->nparams = params.n;
    return block_body(p, blk, HYI_TOK_RBRACK);
}

static hyi_node *primary(parser *p) {
    switch (p->tok.kind) {
    case HYI_TOK_IDENT: return variable(p);
    case HYI_TOK_LPAREN: {
        enter(p);
        advance(p);
        hyi_node *e = expression(p);
        expect(p, HYI_TOK_RPAREN);
        p->depth--;
        return e;
    }
    case HYI_TOK_LBRACK: {
        enter(p);
        hyi_node *b = block(p);
        p->depth--;
        return b;
    }
    case HYI_TOK_INTEGER: case HYI_TOK_DOUBLE: return number(p, false, p->tok.line, p->tok.column);
    case HYI_TOK_STRING: return string_literal(p, HYI_N_STRING);
    case HYI_TOK_POUND: return pound_literal(p);
    case HYI_TOK_BINARY:
        if (is_bin(&p->tok, "-")) {
            const hyi_token *a = peek_ahead(p);
            if (a->kind == HYI_TOK_INTEGER || a->kind == HYI_TOK_DOUBLE) {
                int line = p->tok.line, column = p->tok.column;
                advance(p);
                return number(p, true, line, column);
            }
        }
        fail_expected(p, "an expression");
    default:
        fail_expected(p, "an expression");
    }
}

static hyi_node *send(parser *p, hyi_node *rcv, const char *sel, uint32_t len, hyi_node **args,
                      uint32_t nargs, int line, int column) {
    hyi_node *n = node(p, HYI_N_SEND, line, column);
    n->name = sel;
    n->len = len;
    n->nkids = nargs + 1;
    n->kids = alloc(p, n->nkids * sizeof *n->kids);
    n->kids[0] = rcv;
    for (uint32_t i = 0; i < nargs; i++) n->kids[1 + i] = args[i];
    n->is_super = rcv->kind == HYI_N_VAR && rcv->len == 5 && !memcmp(rcv->name, "super", 5);
    return n;
}

static hyi_node *unary_sends(parser *p, hyi_node *rcv) {
    while (p->tok.kind == HYI_TOK_IDENT) {
        rcv = send(p, rcv, p->tok.text, p->tok.len, NULL, 0, p->tok.line, p->tok.column);
        advance(p);
    }
    return rcv;
}

static bool is_binary_op(parser *p) {
    return p->tok.kind == HYI_TOK_BINARY;
}

static hyi_node *binary_sends(parser *p, hyi_node *rcv) {
    while (is_binary_op(p)) {
        hyi_token op = p->tok;
        advance(p);
        enter(p);
        hyi_node *arg = unary_sends(p, primary(p));
        p->depth--;
        rcv = send(p, rcv, op.text, op.len, &arg, 1, op.line, op.column);
    }
    return rcv;
}

static hyi_node *keyword_send(parser *p, hyi_node *rcv) {
    if (p->tok.kind != HYI_TOK_KEYWORD) return rcv;
    int line = p->tok.line, column = p->tok.column;
    char *sel = NULL;
    size_t sel_len = 0, sel_cap = 0;
    vec args = { 0 };
    while (p->tok.kind == HYI_TOK_KEYWORD) {
        if (sel_len + p->tok.len + 1 > sel_cap) {
            size_t cap = (sel_len + p->tok.len + 1) * 2;
            char *ns = alloc(p, cap);
            if (sel_len) memcpy(ns, sel, sel_len);
            sel = ns;
            sel_cap = cap;
        }
        memcpy(sel + sel_len, p->tok.text, p->tok.len);
        sel_len += p->tok.len;
        advance(p);
        enter(p);
        hyi_node *arg = binary_sends(p, unary_sends(p, primary(p)));
        p->depth--;
        vec_push(p, &args, arg);
        if (args.n > 255) fail_at(p, line, column, "too many arguments in a message");
    }
    return send(p, rcv, sel, (uint32_t)sel_len, (hyi_node **)args.items, args.n, line, column);
}

static hyi_node *expression(parser *p) {
    enter(p);
    hyi_node *e;
    if (p->tok.kind == HYI_TOK_IDENT && peek_ahead(p)->kind == HYI_TOK_ASSIGN) {
        hyi_node *a = node(p, HYI_N_ASSIGN, p->tok.line, p->tok.column);
        a->name = p->tok.text;
        a->len = p->tok.len;
        advance(p);
        advance(p);
        a->nkids = 1;
        a->kids = alloc(p, sizeof *a->kids);
        a->kids[0] = expression(p);
        e = a;
    } else {
        e = keyword_send(p, binary_sends(p, unary_sends(p, primary(p))));
    }
    p->depth--;
    return e;
}

/* "| temps |" then statements up to the closing token; fills blk. */
static hyi_node *block_body(parser *p, hyi_node *blk, hyi_tok_kind end) {
    nvec temps = { 0 };
    if (take_bar(p)) {
        while (p->tok.kind == HYI_TOK_IDENT) {
            nvec_push(p, &temps, name_of(&p->tok));
            advance(p);
        }
        expect_bar(p);
    }
    blk->temps = temps.items;
    blk->ntemps = temps.n;
    vec stmts = { 0 };
    while (p->tok.kind != end) {
        if (p->tok.kind == HYI_TOK_CARET) {
            hyi_node *r = node(p, HYI_N_RETURN, p->tok.line, p->tok.column);
            advance(p);
            r->nkids = 1;
            r->kids = alloc(p, sizeof *r->kids);
            r->kids[0] = expression(p);
            vec_push(p, &stmts, r);
            if (p->tok.kind == HYI_TOK_PERIOD) advance(p);
            if (p->tok.kind != end) {
                char what[32];
                snprintf(what, sizeof what, "%s after a return", hyi_tok_name(end));
                fail_expected(p, what);
            }
            break;
        }
        vec_push(p, &stmts, expression(p));
        if (p->tok.kind == HYI_TOK_PERIOD) { advance(p); continue; }
        if (p->tok.kind != end) {
            char what[48];
            snprintf(what, sizeof what, "'.' or %s", hyi_tok_name(end));
            fail_expected(p, what);
        }
    }
    advance(p);
    blk->kids = (hyi_node **)stmts.items;
    blk->nkids = stmts.n;
    return blk;
}

/* ---- Classes and methods -------------------------------------------------------------------- */

static void method(parser *p, hyi_method_ast *m) {
    memset(m, 0, sizeof *m);
    m->line = p->tok.line;
    nvec params = { 0 };
    if (p->tok.kind == HYI_TOK_IDENT) {
        m->selector = name_of(&p->tok);
        advance(p);
    } else if (p->tok.kind == HYI_TOK_BINARY) {
        m->selector = name_of(&p->tok);
        advance(p);
        if (p->tok.kind != HYI_TOK_IDENT) fail_expected(p, "an argument name");
        nvec_push(p, &params, name_of(&p->tok));
        advance(p);
    } else if (p->tok.kind == HYI_TOK_KEYWORD) {
        m->selector = name_of(&p->tok);
        char *sel = NULL;
        size_t len = 0;
        while (p->tok.kind == HYI_TOK_KEYWORD) {
            char *ns = alloc(p, len + p->tok.len + 1);
            if (len) memcpy(ns, sel, len);
            memcpy(ns + len, p->tok.text, p->tok.len);
            sel = ns;
            len += p->tok.len;
            advance(p);
            if (p->tok.kind != HYI_TOK_IDENT) fail_expected(p, "an argument name");
            nvec_push(p, &params, name_of(&p->tok));
            advance(p);
            if (params.n > 255) fail_at(p, m->line, 1, "too many arguments");
        }
        m->selector.s = sel;
        m->selector.len = (uint32_t)len;
    } else {
        fail_expected(p, "a method definition");
    }
    m->params = params.items;
    m->nparams = params.n;
    if (!is_bin(&p->tok, "=")) fail_expected(p, "'=' after the method pattern");
    advance(p);
    if (p->tok.kind == HYI_TOK_IDENT && p->tok.len == 9 && !memcmp(p->tok.text, "primitive", 9)) {
        m->primitive = true;
        advance(p);
        return;
    }
    hyi_node *body = node(p, HYI_N_BLOCK, p->tok.line, p->tok.column);
    expect(p, HYI_TOK_LPAREN);
    m->body = block_body(p, body, HYI_TOK_RPAREN);
}

static void fields(parser *p, hyi_name **out, uint32_t *n) {
    nvec v = { 0 };
    if (take_bar(p)) {
        while (p->tok.kind == HYI_TOK_IDENT) {
            nvec_push(p, &v, name_of(&p->tok));
            advance(p);
        }
        expect_bar(p);
    }
    *out = v.items;
    *n = v.n;
}

static void methods(parser *p, hyi_method_ast **out, uint32_t *n) {
    hyi_method_ast *ms = NULL;
    uint32_t count = 0, cap = 0;
    while (p->tok.kind == HYI_TOK_IDENT || p->tok.kind == HYI_TOK_KEYWORD || p->tok.kind == HYI_TOK_BINARY) {
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            hyi_method_ast *nm = alloc(p, cap * sizeof *nm);
            if (count) memcpy(nm, ms, count * sizeof *nm);
            ms = nm;
        }
        method(p, &ms[count++]);
    }
    *out = ms;
    *n = count;
}

static void init(parser *p, hyi_arena *a, const char *src, size_t len, const char *file, hyi_diag *diag) {
    memset(p, 0, sizeof *p);
    hyi_lexer_init(&p->lx, src, len);
    p->arena = a;
    p->diag = diag;
    memset(diag, 0, sizeof *diag);
    snprintf(diag->file, sizeof diag->file, "%s", file ? file : "");
    p->tok.kind = HYI_TOK_EOF;
}

bool hyi_parse_class(hyi_arena *a, const char *src, size_t len, const char *file,
                     hyi_class_ast *out, hyi_diag *diag) {
    parser p;
    init(&p, a, src, len, file, diag);
    memset(out, 0, sizeof *out);
    if (setjmp(p.fail)) return false;
    advance(&p);
    if (p.tok.kind != HYI_TOK_IDENT) fail_expected(&p, "a class name");
    out->name = name_of(&p.tok);
    advance(&p);
    if (!is_bin(&p.tok, "=")) fail_expected(&p, "'=' after the class name");
    advance(&p);
    if (p.tok.kind == HYI_TOK_IDENT) {
        out->super = name_of(&p.tok);
        advance(&p);
    }
    expect(&p, HYI_TOK_LPAREN);
    fields(&p, &out->fields, &out->nfields);
    methods(&p, &out->methods, &out->nmethods);
    if (p.tok.kind == HYI_TOK_SEPARATOR) {
        advance(&p);
        fields(&p, &out->class_fields, &out->nclass_fields);
        methods(&p, &out->class_methods, &out->nclass_methods);
    }
    if (p.tok.kind != HYI_TOK_RPAREN) fail_expected(&p, "a method definition or ')' at the end of the class");
    advance(&p);
    if (p.tok.kind != HYI_TOK_EOF) fail_expected(&p, "end of file after the class");
    return true;
}

bool hyi_parse_method(hyi_arena *a, const char *src, size_t len, const char *file,
                      hyi_method_ast *out, hyi_diag *diag) {
    parser p;
    init(&p, a, src, len, file, diag);
    if (setjmp(p.fail)) return false;
    advance(&p);
    method(&p, out);
    if (p.tok.kind != HYI_TOK_EOF) fail_expected(&p, "end of input after the method");
    return true;
}
