/*
 * parser.h -- the syntax tree of a SOM class file.
 *
 * Invariants: every node, name and decoded string lives in one arena that the compiler frees
 * as a whole; the parser never allocates heap objects (literals become objects in codegen),
 * so parsing cannot trigger a GC. Nesting depth is bounded (HYI_PARSE_MAX_DEPTH) so hostile
 * input cannot exhaust the C stack.
 */
#ifndef HYDRA_PARSER_H
#define HYDRA_PARSER_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler.h"
#include "lexer.h"

#define HYI_PARSE_MAX_DEPTH 200

typedef enum hyi_node_kind {
    HYI_N_INT,      /* ival */
    HYI_N_BIGINT,   /* name = decimal digits with optional '-' */
    HYI_N_DOUBLE,   /* dval */
    HYI_N_STRING,   /* name/len = decoded bytes */
    HYI_N_SYMBOL,   /* name/len */
    HYI_N_ARRAY,    /* literal array: kids */
    HYI_N_VAR,      /* name; also self super nil true false */
    HYI_N_ASSIGN,   /* name := kids[0] */
    HYI_N_SEND,     /* kids[0] receiver, kids[1..] arguments; name = selector; is_super */
    HYI_N_BLOCK,    /* params, temps, kids = statements */
    HYI_N_RETURN,   /* ^ kids[0] */
} hyi_node_kind;

typedef struct hyi_name {
    const char *s;
    uint32_t len;
    int line, column;
} hyi_name;

typedef struct hyi_node hyi_node;
struct hyi_node {
    hyi_node_kind kind;
    int line, column;
    const char *name;
    uint32_t len;
    int64_t ival;
    double dval;
    hyi_node **kids;
    uint32_t nkids;
    bool is_super;
    /* Blocks. */
    hyi_name *params, *temps;
    uint32_t nparams, ntemps;
    /* Filled by code generation. */
    int8_t inline_state;    /* sends: -1 unknown, 0 real send, 1 inlined */
    void *var;              /* resolved variable of VAR/ASSIGN nodes (codegen's) */
};

typedef struct hyi_method_ast {
    hyi_name selector;      /* full selector, e.g. at:put: */
    hyi_name *params;
    uint32_t nparams;
    bool primitive;
    hyi_node *body;         /* a BLOCK node: temps and statements (NULL for a primitive) */
    int line;
} hyi_method_ast;

typedef struct hyi_class_ast {
    hyi_name name, super;   /* super.s == NULL: Object by default */
    hyi_name *fields, *class_fields;
    uint32_t nfields, nclass_fields;
    hyi_method_ast *methods, *class_methods;
    uint32_t nmethods, nclass_methods;
} hyi_class_ast;

/* A bump arena for the tree. */
typedef struct hyi_arena_chunk hyi_arena_chunk;
typedef struct hyi_arena {
    hyi_arena_chunk *head;
} hyi_arena;

void *hyi_arena_alloc(hyi_arena *a, size_t n);   /* zeroed; NULL when memory is short */
void hyi_arena_free(hyi_arena *a);

/* Parse a whole class file / one method definition. false with *diag filled on error. */
bool hyi_parse_class(hyi_arena *a, const char *src, size_t len, const char *file,
                     hyi_class_ast *out, hyi_diag *diag);
bool hyi_parse_method(hyi_arena *a, const char *src, size_t len, const char *file,
                      hyi_method_ast *out, hyi_diag *diag);

#endif
