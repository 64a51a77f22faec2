/*
 * disasm.c -- a readable listing of a method's bytecode, for tests and debugging.
 */
#include "bytecode.h"
#include "vm.h"

static const char *const op_names[HYI_OP_COUNT] = {
#define HYI_X_NAME(name, nops, doc) #name,
    HYI_BYTECODES(HYI_X_NAME)
#undef HYI_X_NAME
};

static void print_sym(FILE *f, hyi_oop s) {
    if (hyi_is_ptr(s) && hyi_fmt(s) == HYI_FMT_BYTES) fprintf(f, "%.*s", (int)hyi_size(s), (const char *)hyi_bytes(s));
    else fprintf(f, "?");
}

void hyi_disasm(struct hy_vm *vm, const void *method, FILE *f) {
    const hyi_method *m = method;
    const uint8_t *code = hyi_method_code((hyi_method *)m);
    const hyi_ic *ics = hyi_method_ics((hyi_method *)m);
    (void)vm;
    fprintf(f, "; ");
    print_sym(f, m->signature);
    fprintf(f, " args=%u temps=%u stack=%u flags=%#x prim=%u\n", m->num_args, m->num_temps, m->max_stack,
            m->flags, m->prim);
    for (uint32_t pc = 0; pc < m->code_len;) {
        uint8_t o = code[pc];
        if (o >= HYI_OP_COUNT) { fprintf(f, "%4u  ??? %u\n", pc, o); pc++; continue; }
        uint32_t n = hyi_op_operands[o];
        fprintf(f, "%4u  %s", pc, op_names[o]);
        if (pc + 1 + n > m->code_len) { fprintf(f, " <truncated>\n"); break; }
        const uint8_t *a = code + pc + 1;
        uint32_t u16 = n >= 2 ? (uint32_t)(a[0] | a[1] << 8) : 0;
        switch (o) {
        case HYI_OP_PUSH_SMALLINT: fprintf(f, " %d", (int8_t)a[0]); break;
        case HYI_OP_JUMP: case HYI_OP_JUMP_IF_TRUE: case HYI_OP_JUMP_IF_FALSE: case HYI_OP_JUMP_IF_NIL:
        case HYI_OP_JUMP_IF_NOT_NIL:
            fprintf(f, " -> %d", (int)(pc + 3) + (int16_t)u16); break;
        case HYI_OP_JUMP_BACK: fprintf(f, " -> %d", (int)(pc + 3) - (int)u16); break;
        case HYI_OP_FOR_STEP: fprintf(f, " i=%u lim=%u -> %d", a[0], a[1], (int)(pc + 5) - (int)(a[2] | a[3] << 8)); break;
        case HYI_OP_FOR_ENTER: fprintf(f, " i=%u lim=%u exit -> %d", a[0], a[1], (int)(pc + 5) + (a[2] | a[3] << 8)); break;
        case HYI_OP_PUSH_CTX: case HYI_OP_STORE_CTX: case HYI_OP_POP_CTX: fprintf(f, " depth=%u index=%u", a[0], a[1]); break;
        default:
            if (o >= HYI_OP_SEND && o <= HYI_OP_SEND_LENGTH && u16 < m->num_ics) {
                fprintf(f, " #");
                print_sym(f, ics[u16].selector);
                fprintf(f, " (%u args)", ics[u16].nargs);
            } else if (n == 1) fprintf(f, " %u", a[0]);
            else if (n == 2) fprintf(f, " %u", u16);
        }
        fprintf(f, "\n");
        pc += 1 + n;
    }
}
