/*
 * bytecode.h -- the instruction set, one X-macro list that generates the opcode enum, the
 * dispatch table (interp.c) and the disassembler (disasm.c).
 *
 * Encoding: one opcode byte followed by its operands; u8 is one byte, u16 and i16 are two
 * bytes little-endian. Jump offsets are relative to the address after the whole instruction.
 *
 * Variables of an activation:
 *  - LOCAL n: fp[1 + n]; arguments first (0 .. num_args-1), then temporaries (incl. the
 *    arguments and temporaries of inlined blocks). Temporaries start as nil.
 *  - FIELD n: instance variable n of self (fp[0]).
 *  - CTX d n: slot HYI_CTX_FIRST_VAR + n of a heap context. Start at E = this activation's
 *    context if the scope owns one (MAKE_CTX ran), otherwise the closure's outer context; then
 *    follow slot HYI_CTX_OUTER d times.
 *  - self is always fp[0]: a block activation finds its receiver in its closure and the
 *    interpreter stores it in fp[0] on entry.
 *
 * X(NAME, operand bytes, description)
 */
#ifndef HYDRA_BYTECODE_H
#define HYDRA_BYTECODE_H

#define HYI_BYTECODES(X) \
    X(PUSH_SELF, 0, "push fp[0]") \
    X(PUSH_NIL, 0, "push nil") \
    X(PUSH_TRUE, 0, "push true") \
    X(PUSH_FALSE, 0, "push false") \
    X(PUSH_SMALLINT, 1, "i8: push a SmallInteger -128..127") \
    X(PUSH_LIT, 2, "u16: push literals[u16]") \
    X(PUSH_GLOBAL, 2, "u16: literals[u16] is a global cell; push its value (unknownGlobal: if undefined)") \
    X(PUSH_LOCAL, 1, "u8: push LOCAL") \
    X(STORE_LOCAL, 1, "u8: LOCAL := top (keep top)") \
    X(POP_LOCAL, 1, "u8: LOCAL := pop") \
    X(PUSH_FIELD, 1, "u8: push FIELD of self") \
    X(STORE_FIELD, 1, "u8: FIELD := top (keep top)") \
    X(POP_FIELD, 1, "u8: FIELD := pop") \
    X(PUSH_CTX, 2, "u8 depth, u8 index: push CTX") \
    X(STORE_CTX, 2, "u8 depth, u8 index: CTX := top (keep top)") \
    X(POP_CTX, 2, "u8 depth, u8 index: CTX := pop") \
    X(MAKE_CTX, 1, "u8 n: give this activation a heap context of n variables (outer = closure's outer or nil); must run before any CTX access of depth 0") \
    X(PUSH_BLOCK, 2, "u16: literals[u16] is a block method; push a closure {method, self, E} where E = this activation's context if it has one, else the closure's outer context, else nil") \
    X(POP, 0, "drop top") \
    X(DUP, 0, "push top again") \
    X(SEND, 2, "u16 ic: send ics[ic].selector with ics[ic].nargs arguments (receiver below them)") \
    X(SUPER_SEND, 2, "u16 ic: as SEND, lookup starts in the superclass of method->holder") \
    X(SEND_ADD, 2, "u16 ic: + (SmallInteger/Double fast path, else SEND)") \
    X(SEND_SUB, 2, "u16 ic: -") \
    X(SEND_MUL, 2, "u16 ic: *") \
    X(SEND_LT, 2, "u16 ic: <") \
    X(SEND_GT, 2, "u16 ic: >") \
    X(SEND_LE, 2, "u16 ic: <=") \
    X(SEND_GE, 2, "u16 ic: >=") \
    X(SEND_EQ, 2, "u16 ic: =") \
    X(SEND_NE, 2, "u16 ic: ~= and <>") \
    X(SEND_EQEQ, 2, "u16 ic: == (identity unless the receiver's class overrides ==)") \
    X(SEND_AT, 2, "u16 ic: at: (Array fast path)") \
    X(SEND_ATPUT, 2, "u16 ic: at:put: (Array fast path)") \
    X(SEND_VALUE, 2, "u16 ic: value (block fast path)") \
    X(SEND_VALUE1, 2, "u16 ic: value: (block fast path)") \
    X(SEND_LENGTH, 2, "u16 ic: length") \
    X(RETURN_TOP, 0, "return top from this activation to its caller") \
    X(RETURN_SELF, 0, "return fp[0] from this activation") \
    X(RETURN_NONLOCAL, 0, "return top from the home method of this block (escapedBlock: if it has returned)") \
    X(JUMP, 2, "i16: jump") \
    X(JUMP_BACK, 2, "u16: jump backwards by u16 (polls attention)") \
    X(JUMP_IF_TRUE, 2, "i16: pop; jump if true; false falls through; else mustBeBoolean") \
    X(JUMP_IF_FALSE, 2, "i16: pop; jump if false; true falls through; else mustBeBoolean") \
    X(JUMP_IF_NIL, 2, "i16: pop; jump if nil") \
    X(JUMP_IF_NOT_NIL, 2, "i16: pop; jump if not nil") \
    X(FOR_STEP, 4, "u8 i, u8 limit, u16 back: LOCAL i := LOCAL i + 1; if <= LOCAL limit jump back (SmallInteger fast path; other numbers by sends)") \
    X(FOR_ENTER, 4, "u8 i, u8 limit, u16 skip: if not (LOCAL i <= LOCAL limit) jump forward by u16")

typedef enum hyi_opcode {
#define HYI_X_ENUM(name, nops, doc) HYI_OP_##name,
    HYI_BYTECODES(HYI_X_ENUM)
#undef HYI_X_ENUM
    HYI_OP_COUNT
} hyi_opcode;

/* Operand bytes of each opcode. */
static const unsigned char hyi_op_operands[HYI_OP_COUNT] = {
#define HYI_X_LEN(name, nops, doc) nops,
    HYI_BYTECODES(HYI_X_LEN)
#undef HYI_X_LEN
};

/* Print a method's bytecode, one instruction a line, to f (disasm.c). */
#include <stdio.h>
struct hy_vm;
void hyi_disasm(struct hy_vm *vm, const void *method, FILE *f);

#endif
