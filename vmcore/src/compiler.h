/*
 * compiler.h -- SOM class files to classes and bytecode.
 *
 * The lexer (lexer.c) turns source into tokens, the parser (parser.c) builds an AST per
 * method, scope analysis decides which variables inner blocks capture (they go into a heap
 * context, everything else stays in the frame), and code generation (codegen.c) emits the
 * instructions of bytecode.h. ifTrue:/ifFalse:/ifTrue:ifFalse:/ifFalse:ifTrue:, whileTrue:/
 * whileFalse:, and:/or: (also && ||), ifNil:/ifNotNil:/ifNil:ifNotNil:, to:do: and
 * timesRepeat: with literal block arguments are inlined.
 *
 * Invariants: the compiler never aborts and never reads past its input; all it allocates is
 * old (classes, methods, literals). It holds no state between calls.
 */
#ifndef HYDRA_COMPILER_H
#define HYDRA_COMPILER_H

#include "object.h"

typedef struct hyi_diag {
    char file[256];
    int line, column;
    char message[256];   /* e.g. "expected ')' but found identifier 'foo'" */
} hyi_diag;

/* Compile one class file (the text of NAME.som) and define its class in vm (through
 * hyi_class_define / hyi_class_add_method; the superclass is found with hyi_vm_load_class).
 * file is used for diagnostics and debug info. On success stores the class in *out and
 * returns true. On a syntax or semantic error fills *diag and returns false; the VM is left
 * consistent (a partly compiled class is not defined). */
bool hyi_compile_class(hy_vm *vm, const char *src, size_t len, const char *file, hyi_oop *out,
                       hyi_diag *diag);

/* Compile a method body for an existing class (used by tests, tools and `System compile:`)
 * from the text of one method definition, e.g. "foo: x = ( ^ x + 1 )". */
bool hyi_compile_method(hy_vm *vm, hyi_oop cls, const char *src, size_t len, const char *file,
                        hyi_oop *out, hyi_diag *diag);

#endif
