/*
 * prims_object.c -- the primitives of Object, Class, Array, Method/Primitive and System:
 * identity, reflection, allocation, indexed access, globals, class loading, output, time and
 * the collector.
 *
 * Invariants:
 *  - Every argument is checked before use; a wrong class or range fails the primitive with a
 *    message naming the argument (the interpreter turns it into an Error). Nothing here trusts
 *    the receiver either: invokeOn:with: and perform:inSuperclass: can hand any object to any
 *    primitive.
 *  - Slots the VM itself relies on are never writable from Smalltalk: the fixed slots of a
 *    class, the slots of a block closure, the inside of a method. instVarAt:put: is limited
 *    to the named fields a class file declared.
 *  - After an allocation, arguments are re-read from args[] (the value stack is a GC root and
 *    a collection may have moved them); C locals holding oops across an allocation are rooted.
 */
#include <stdio.h>
#include <stdlib.h>

#include "prims.h"

#define MAX_NEW_SLOTS ((intptr_t)INT32_MAX)  /* Array new: bound (uint32 header size) */
#define MAX_PATH_BYTES 4096

/* ---- Helpers ---------------------------------------------------------------------------- */

static inline hyi_oop boolean(hy_vm *vm, bool b) { return b ? vm->true_ : vm->false_; }

static inline bool is_bytes(hyi_oop o) { return hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_BYTES; }

static bool is_symbol(hy_vm *vm, hyi_oop o) { return hyi_is_ptr(o) && hyi_o(o)->cls == vm->cls.symbol; }

/* Whether o is a class or a metaclass made by the VM: the class of its class is Metaclass
 * (or its class is Metaclass itself), and its fixed slots have the shapes object.h gives. */
static bool is_class(hy_vm *vm, hyi_oop o) {
    if (!hyi_is_ptr(o) || hyi_fmt(o) != HYI_FMT_SLOTS || hyi_size(o) < HYI_CLASS_FIXED) return false;
    hyi_oop meta = hyi_o(o)->cls;
    if (!hyi_is_ptr(meta)) return false;
    if (meta != vm->cls.metaclass && hyi_o(meta)->cls != vm->cls.metaclass) return false;
    return hyi_is_smi(hyi_slots(o)[HYI_CLASS_INSTSPEC]) && is_symbol(vm, hyi_slots(o)[HYI_CLASS_NAME]);
}

/* Whether class cls is ancestor or one of its subclasses. */
static bool class_inherits(hy_vm *vm, hyi_oop cls, hyi_oop ancestor) {
    for (hyi_oop c = cls; hyi_is_ptr(c) && c != vm->nil; c = hyi_slots(c)[HYI_CLASS_SUPERCLASS])
        if (c == ancestor) return true;
    return false;
}

/* "an Integer", "a String": how messages name the class of an argument. */
typedef struct describe_buf { char text[160]; } describe_buf;

static const char *describe(hy_vm *vm, hyi_oop o, describe_buf *b) {
    hyi_oop cls = hyi_class_of(vm, o);
    hyi_oop name = hyi_is_ptr(cls) && hyi_fmt(cls) == HYI_FMT_SLOTS && hyi_size(cls) > HYI_CLASS_NAME
                       ? hyi_slots(cls)[HYI_CLASS_NAME] : 0;
    if (!name || !is_bytes(name) || hyi_size(name) == 0) {
        snprintf(b->text, sizeof b->text, "an object of unknown class");
        return b->text;
    }
    const char *s = (const char *)hyi_bytes(name);
    int n = (int)(hyi_size(name) > 120 ? 120 : hyi_size(name));
    bool vowel = strchr("AEIOUaeiou", s[0]) != NULL;
    snprintf(b->text, sizeof b->text, "%s %.*s", vowel ? "an" : "a", n, s);
    return b->text;
}

static hyi_prim_status bad_arg(hy_vm *vm, const char *sel, const char *want, hyi_oop arg) {
    describe_buf b;
    if (hyi_is_smi(arg)) return hyi_prim_fail(vm, "%s needs %s, got %ld", sel, want, (long)hyi_smi_val(arg));
    return hyi_prim_fail(vm, "%s needs %s, got %s", sel, want, describe(vm, arg, &b));
}

static hyi_prim_status not_a_class(hy_vm *vm, const char *sel, hyi_oop rcv) {
    describe_buf b;
    return hyi_prim_fail(vm, "%s must be sent to a class, not to %s", sel, describe(vm, rcv, &b));
}

/* A new Array holding the elements of src (an Array) or empty when src is not one. */
static hyi_prim_status copy_array(hy_vm *vm, hyi_oop src, hyi_oop *result) {
    uint32_t n = hyi_is_ptr(src) && hyi_fmt(src) == HYI_FMT_INDEXED ? hyi_size(src) : 0;
    HYI_ROOT(vm, &src);
    hyi_oop a = hyi_array_new(vm, n);
    HYI_UNROOT(vm, 1);
    if (!a) return HYI_PRIM_OOM;
    for (uint32_t i = 0; i < n; i++) hyi_store(vm, a, i, hyi_slots(src)[i]);
    *result = a;
    return HYI_PRIM_OK;
}

/* ---- Named fields ------------------------------------------------------------------------ */

/* How many named fields of o Smalltalk may see: those of a SLOTS object that its class
 * declares (never more than the object has). Blocks, contexts, methods, arrays and byte
 * objects have none. */
static uint32_t named_fields(hy_vm *vm, hyi_oop o) {
    if (!hyi_is_ptr(o) || hyi_fmt(o) != HYI_FMT_SLOTS) return 0;
    hyi_oop cls = hyi_o(o)->cls;
    if (!hyi_is_ptr(cls) || hyi_fmt(cls) != HYI_FMT_SLOTS || hyi_size(cls) < HYI_CLASS_FIXED) return 0;
    if (class_inherits(vm, cls, vm->cls.block)) return 0;
    hyi_oop spec = hyi_slots(cls)[HYI_CLASS_INSTSPEC];
    if (!hyi_is_smi(spec)) return 0;
    uint32_t n = hyi_instspec_fields(spec);
    return n < hyi_size(o) ? n : hyi_size(o);
}

/* The 1-based field index in args[1] checked against o, or 0 after failing. */
static uint32_t field_index(hy_vm *vm, hyi_oop o, hyi_oop index, const char *sel, hyi_prim_status *st) {
    uint32_t n = named_fields(vm, o);
    if (!hyi_is_smi(index)) { *st = bad_arg(vm, sel, "an Integer index", index); return 0; }
    intptr_t i = hyi_smi_val(index);
    if (i < 1 || (uintptr_t)i > n) {
        *st = hyi_prim_fail(vm, "%s field index %ld out of bounds 1..%u", sel, (long)i, n);
        return 0;
    }
    return (uint32_t)i;
}

/* ---- Object ------------------------------------------------------------------------------ */

static hyi_prim_status object_class(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    *result = hyi_class_of(vm, args[0]);
    return HYI_PRIM_OK;
}

/* Bytes the receiver occupies in the heap; an immediate is one word. */
static hyi_prim_status object_size(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)vm; (void)nargs;
    hyi_oop o = args[0];
    *result = hyi_smi(hyi_is_smi(o) ? (intptr_t)sizeof(hyi_oop) : (intptr_t)hyi_obj_bytes(o));
    return HYI_PRIM_OK;
}

static hyi_prim_status object_identical(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    *result = boolean(vm, args[0] == args[1]);
    return HYI_PRIM_OK;
}

/* The identity hash: fixed in the header at allocation, so it survives collections. */
static hyi_prim_status object_hashcode(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)vm; (void)nargs;
    hyi_oop o = args[0];
    *result = hyi_is_smi(o) ? o : hyi_smi((intptr_t)hyi_o(o)->hash);
    return HYI_PRIM_OK;
}

/* One line for a value: its number, its text (strings), or its class. */
static void print_value(hy_vm *vm, hyi_oop v) {
    describe_buf b;
    if (hyi_is_smi(v)) hyi_vm_printf(vm, 1, "%ld", (long)hyi_smi_val(v));
    else if (v == vm->nil) hyi_vm_printf(vm, 1, "nil");
    else if (v == vm->true_) hyi_vm_printf(vm, 1, "true");
    else if (v == vm->false_) hyi_vm_printf(vm, 1, "false");
    else if (hyi_fmt(v) == HYI_FMT_DOUBLE) hyi_vm_printf(vm, 1, "%.17g", hyi_double_val(v));
    else if (hyi_o(v)->cls == vm->cls.string || hyi_o(v)->cls == vm->cls.symbol)
        hyi_vm_printf(vm, 1, "%s'%.*s%s'", hyi_o(v)->cls == vm->cls.symbol ? "#" : "",
                      (int)(hyi_size(v) > 60 ? 60 : hyi_size(v)), (const char *)hyi_bytes(v),
                      hyi_size(v) > 60 ? "..." : "");
    else if (is_class(vm, v))
        hyi_vm_printf(vm, 1, "%.*s", (int)hyi_size(hyi_slots(v)[HYI_CLASS_NAME]),
                      (const char *)hyi_bytes(hyi_slots(v)[HYI_CLASS_NAME]));
    else hyi_vm_printf(vm, 1, "%s", describe(vm, v, &b));
}

/* Print the receiver, then each named field (or the first elements of an Array). */
static hyi_prim_status object_inspect(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop o = args[0];
    print_value(vm, o);
    hyi_vm_write(vm, 1, "\n", 1);
    uint32_t n = named_fields(vm, o);
    hyi_oop cls = hyi_class_of(vm, o);
    hyi_oop names = hyi_slots(cls)[HYI_CLASS_FIELDS];
    for (uint32_t i = 0; i < n; i++) {
        hyi_oop name = hyi_is_ptr(names) && hyi_fmt(names) == HYI_FMT_INDEXED && i < hyi_size(names)
                           ? hyi_slots(names)[i] : 0;
        if (name && is_bytes(name)) hyi_vm_printf(vm, 1, "  %.*s: ", (int)hyi_size(name), (const char *)hyi_bytes(name));
        else hyi_vm_printf(vm, 1, "  %u: ", i + 1);
        print_value(vm, hyi_slots(o)[i]);
        hyi_vm_write(vm, 1, "\n", 1);
    }
    if (hyi_is_ptr(o) && hyi_fmt(o) == HYI_FMT_INDEXED) {
        uint32_t shown = hyi_size(o) > 20 ? 20 : hyi_size(o);
        for (uint32_t i = 0; i < shown; i++) {
            hyi_vm_printf(vm, 1, "  [%u]: ", i + 1);
            print_value(vm, hyi_slots(o)[i]);
            hyi_vm_write(vm, 1, "\n", 1);
        }
        if (shown < hyi_size(o)) hyi_vm_printf(vm, 1, "  ... %u more\n", hyi_size(o) - shown);
    }
    *result = o;
    return HYI_PRIM_OK;
}

/* There is no debugger: say where the program stopped to think, and carry on. */
static hyi_prim_status object_halt(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_vm_printf(vm, 2, "halt\n");
    hyi_interp_print_backtrace(vm, 2);
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status object_inst_var_at(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    uint32_t i = field_index(vm, args[0], args[1], "instVarAt:", &st);
    if (!i) return st;
    *result = hyi_slots(args[0])[i - 1];
    return HYI_PRIM_OK;
}

static hyi_prim_status object_inst_var_at_put(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    hyi_oop o = args[0];
    uint32_t i = field_index(vm, o, args[1], "instVarAt:put:", &st);
    if (!i) return st;
    if (is_class(vm, o) && i <= HYI_CLASS_FIXED)
        return hyi_prim_fail(vm, "instVarAt:put: cannot change field %u of a class: the VM owns it", i);
    hyi_store(vm, o, i - 1, args[2]);
    *result = args[2];
    return HYI_PRIM_OK;
}

static hyi_prim_status object_inst_var_named(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop o = args[0], name = args[1];
    if (!is_bytes(name)) return bad_arg(vm, "instVarNamed:", "a Symbol", name);
    uint32_t n = named_fields(vm, o);
    hyi_oop names = hyi_slots(hyi_class_of(vm, o))[HYI_CLASS_FIELDS];
    if (hyi_is_ptr(names) && hyi_fmt(names) == HYI_FMT_INDEXED) {
        for (uint32_t i = 0; i < n && i < hyi_size(names); i++) {
            hyi_oop f = hyi_slots(names)[i];
            if (is_bytes(f) && hyi_size(f) == hyi_size(name) && memcmp(hyi_bytes(f), hyi_bytes(name), hyi_size(f)) == 0) {
                *result = hyi_slots(o)[i];
                return HYI_PRIM_OK;
            }
        }
    }
    describe_buf b;
    return hyi_prim_fail(vm, "instVarNamed: %s has no field named %.*s", describe(vm, o, &b),
                         (int)(hyi_size(name) > 100 ? 100 : hyi_size(name)), (const char *)hyi_bytes(name));
}

/* ---- Class -------------------------------------------------------------------------------- */

static hyi_prim_status class_name(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_class(vm, args[0])) return not_a_class(vm, "name", args[0]);
    *result = hyi_slots(args[0])[HYI_CLASS_NAME];
    return HYI_PRIM_OK;
}

static hyi_prim_status class_superclass(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_class(vm, args[0])) return not_a_class(vm, "superclass", args[0]);
    *result = hyi_slots(args[0])[HYI_CLASS_SUPERCLASS];
    return HYI_PRIM_OK;
}

static hyi_prim_status class_fields(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_class(vm, args[0])) return not_a_class(vm, "fields", args[0]);
    return copy_array(vm, hyi_slots(args[0])[HYI_CLASS_FIELDS], result);
}

/* A copy, so that Smalltalk code cannot put a non-method into a method dictionary. */
static hyi_prim_status class_methods(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    if (!is_class(vm, args[0])) return not_a_class(vm, "methods", args[0]);
    return copy_array(vm, hyi_slots(args[0])[HYI_CLASS_METHODS], result);
}

/* Why instances of cls cannot be made with new (NULL when they can). Classes, blocks,
 * methods and numbers have layouts only the VM may create. */
static const char *cannot_instantiate(hy_vm *vm, hyi_oop cls) {
    /* One walk up the chain (every new: and new takes it): no chain holds two of these. */
    for (hyi_oop c = cls; hyi_is_ptr(c) && c != vm->nil; c = hyi_slots(c)[HYI_CLASS_SUPERCLASS]) {
        if (c == vm->cls.klass) return "classes are made by compiling class files";
        if (c == vm->cls.block) return "blocks are made by evaluating block literals";
        if (c == vm->cls.method || c == vm->cls.primitive) return "methods are made by the compiler";
        if (c == vm->cls.integer) return "Integers are made by arithmetic and literals";
        if (c == vm->cls.symbol) return "Symbols are made by asSymbol";
    }
    switch (hyi_instspec_format(hyi_slots(cls)[HYI_CLASS_INSTSPEC])) {
    case HYI_FMT_SLOTS: case HYI_FMT_INDEXED: case HYI_FMT_BYTES: case HYI_FMT_DOUBLE: return NULL;
    default: return "its instances are made by the VM";
    }
}

static hyi_prim_status class_new(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop cls = args[0];
    if (!is_class(vm, cls)) return not_a_class(vm, "new", cls);
    const char *why = cannot_instantiate(vm, cls);
    if (why) {
        hyi_oop n = hyi_slots(cls)[HYI_CLASS_NAME];
        return hyi_prim_fail(vm, "%.*s new: %s", (int)hyi_size(n), (const char *)hyi_bytes(n), why);
    }
    hyi_oop o = hyi_instantiate(vm, cls, 0);
    if (!o) return HYI_PRIM_OOM;
    *result = o;
    return HYI_PRIM_OK;
}

/* ---- Array -------------------------------------------------------------------------------- */

static hyi_prim_status array_class_new(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop cls = args[0], n = args[1];
    if (!is_class(vm, cls)) return not_a_class(vm, "new:", cls);
    if (hyi_instspec_format(hyi_slots(cls)[HYI_CLASS_INSTSPEC]) != HYI_FMT_INDEXED || cannot_instantiate(vm, cls))
        return hyi_prim_fail(vm, "new: makes Arrays, and instances of this class are not Arrays");
    if (!hyi_is_smi(n) || hyi_smi_val(n) < 0) return bad_arg(vm, "Array new:", "a non-negative Integer", n);
    if (hyi_smi_val(n) > MAX_NEW_SLOTS) return hyi_prim_fail(vm, "Array new: %ld is too large", (long)hyi_smi_val(n));
    hyi_oop a = hyi_instantiate(vm, cls, (uint32_t)hyi_smi_val(n));
    if (!a) return HYI_PRIM_OOM;
    *result = a;
    return HYI_PRIM_OK;
}

/* The 0-based index for a 1-based index argument of an Array, or fails. */
static bool array_index(hy_vm *vm, hyi_oop a, hyi_oop index, const char *sel, uint32_t *out, hyi_prim_status *st) {
    if (!hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_INDEXED) {
        describe_buf b;
        *st = hyi_prim_fail(vm, "%s must be sent to an Array, not to %s", sel, describe(vm, a, &b));
        return false;
    }
    if (!hyi_is_smi(index)) {
        *st = hyi_is_ptr(index) && hyi_o(index)->cls == vm->cls.integer ? hyi_prim_fail(vm, "%s index out of bounds 1..%u", sel, hyi_size(a))
                                : bad_arg(vm, sel, "an Integer index", index);
        return false;
    }
    intptr_t i = hyi_smi_val(index);
    if (i < 1 || (uintptr_t)i > hyi_size(a)) {
        *st = hyi_prim_fail(vm, "index %ld out of bounds 1..%u", (long)i, hyi_size(a));
        return false;
    }
    *out = (uint32_t)(i - 1);
    return true;
}

static hyi_prim_status array_at(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    uint32_t i;
    hyi_prim_status st = HYI_PRIM_OK;
    if (!array_index(vm, args[0], args[1], "at:", &i, &st)) return st;
    *result = hyi_slots(args[0])[i];
    return HYI_PRIM_OK;
}

static hyi_prim_status array_at_put(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    uint32_t i;
    hyi_prim_status st = HYI_PRIM_OK;
    if (!array_index(vm, args[0], args[1], "at:put:", &i, &st)) return st;
    hyi_store(vm, args[0], i, args[2]);
    *result = args[2];
    return HYI_PRIM_OK;
}

static hyi_prim_status array_length(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop a = args[0];
    if (!hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_INDEXED) {
        describe_buf b;
        return hyi_prim_fail(vm, "length must be sent to an Array, not to %s", describe(vm, a, &b));
    }
    *result = hyi_smi(hyi_size(a));
    return HYI_PRIM_OK;
}

/* ---- Method and Primitive ---------------------------------------------------------------- */

static hyi_prim_status method_signature(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop m = args[0];
    if (!hyi_is_ptr(m) || hyi_fmt(m) != HYI_FMT_METHOD) return hyi_prim_fail(vm, "signature: not a compiled method");
    *result = hyi_m(m)->signature;
    return HYI_PRIM_OK;
}

static hyi_prim_status method_holder(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop m = args[0];
    if (!hyi_is_ptr(m) || hyi_fmt(m) != HYI_FMT_METHOD) return hyi_prim_fail(vm, "holder: not a compiled method");
    *result = hyi_m(m)->holder;
    return HYI_PRIM_OK;
}

/* ---- System: globals and loading --------------------------------------------------------- */

/* The Symbol named by a Symbol or String argument (interned; may allocate), or 0 after
 * failing (*st says how). */
static hyi_oop symbol_arg(hy_vm *vm, hyi_oop *arg, const char *sel, hyi_prim_status *st) {
    if (is_symbol(vm, *arg)) return *arg;
    if (!hyi_is_ptr(*arg) || hyi_o(*arg)->cls != vm->cls.string) {
        *st = bad_arg(vm, sel, "a Symbol", *arg);
        return 0;
    }
    hyi_oop s = hyi_symbol(vm, (const char *)hyi_bytes(*arg), hyi_size(*arg));
    if (!s) *st = HYI_PRIM_OOM;
    return s;
}

static hyi_prim_status system_global(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    hyi_oop key = symbol_arg(vm, &args[1], "global:", &st);
    if (!key) return st;
    hyi_oop v = hyi_global_get(vm, key);
    *result = v ? v : vm->nil;
    return HYI_PRIM_OK;
}

static hyi_prim_status system_global_put(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    hyi_oop key = symbol_arg(vm, &args[1], "global:put:", &st);
    if (!key) return st;
    if (!hyi_global_set(vm, key, args[2])) return HYI_PRIM_OOM;
    *result = args[2];
    return HYI_PRIM_OK;
}

static hyi_prim_status system_has_global(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    hyi_oop key = symbol_arg(vm, &args[1], "hasGlobal:", &st);
    if (!key) return st;
    *result = boolean(vm, hyi_global_get(vm, key) != 0);
    return HYI_PRIM_OK;
}

/* The class named by the argument, compiling NAME.som from the class path if it is not
 * defined yet; nil when there is no such file. A file that does not compile fails with the
 * compiler's message. */
static hyi_prim_status system_load(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_prim_status st = HYI_PRIM_OK;
    hyi_oop key = symbol_arg(vm, &args[1], "load:", &st);
    if (!key) return st;
    vm->load_failed = false;
    hyi_oop cls = hyi_vm_load_class(vm, key);
    if (!cls && vm->load_failed) {
        vm->load_failed = false;
        return hyi_prim_fail(vm, "%s", hy_vm_last_error(vm));
    }
    *result = cls ? cls : vm->nil;
    return HYI_PRIM_OK;
}

/* The contents of the file at a path (a String), or nil when it cannot be read. */
static hyi_prim_status system_load_file(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_oop p = args[1];
    if (!is_bytes(p)) return bad_arg(vm, "loadFile:", "a String", p);
    if (hyi_size(p) == 0 || hyi_size(p) >= MAX_PATH_BYTES || memchr(hyi_bytes(p), 0, hyi_size(p))) {
        *result = vm->nil;
        return HYI_PRIM_OK;
    }
    char path[MAX_PATH_BYTES];
    memcpy(path, hyi_bytes(p), hyi_size(p));
    path[hyi_size(p)] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) { *result = vm->nil; return HYI_PRIM_OK; }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    bool ok = buf != NULL;
    while (ok) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) { ok = !ferror(f); break; }
        if (cap >= (size_t)UINT32_MAX / 2) { ok = false; break; }
        char *nb = realloc(buf, cap * 2);
        if (!nb) { ok = false; break; }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!ok) {
        free(buf);
        return hyi_prim_fail(vm, "loadFile: cannot read %s", path);
    }
    hyi_oop s = hyi_string_new(vm, buf, len);
    free(buf);
    if (!s) return HYI_PRIM_OOM;
    *result = s;
    return HYI_PRIM_OK;
}

/* ---- System: output ------------------------------------------------------------------------ */

static hyi_prim_status write_string(hy_vm *vm, hyi_oop *args, int stream, bool newline, const char *sel,
                                    hyi_oop *result) {
    hyi_oop s = args[1];
    if (!is_bytes(s)) return bad_arg(vm, sel, "a String", s);
    hyi_vm_write(vm, stream, (const char *)hyi_bytes(s), hyi_size(s));
    if (newline) hyi_vm_write(vm, stream, "\n", 1);
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status system_print_string(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return write_string(vm, args, 1, false, "printString:", result);
}

static hyi_prim_status system_print_newline(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_vm_write(vm, 1, "\n", 1);
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status system_error_print(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return write_string(vm, args, 2, false, "errorPrint:", result);
}

static hyi_prim_status system_error_println(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return write_string(vm, args, 2, true, "errorPrintln:", result);
}

static hyi_prim_status system_print_stack_trace(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    hyi_interp_print_backtrace(vm, 2);
    *result = args[0];
    return HYI_PRIM_OK;
}

/* ---- System: time and memory ----------------------------------------------------------- */

static hyi_prim_status system_time(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    *result = hyi_smi((intptr_t)((hyi_now_ns() - vm->start_ns) / 1000000u));
    return HYI_PRIM_OK;
}

static hyi_prim_status system_ticks(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    *result = hyi_smi((intptr_t)((hyi_now_ns() - vm->start_ns) / 1000u));
    return HYI_PRIM_OK;
}

static hyi_prim_status system_full_gc(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    hyi_gc_full(vm);
    *result = vm->true_;
    return HYI_PRIM_OK;
}

static hyi_oop counter(uint64_t v) { return hyi_smi(v > (uint64_t)HYI_SMI_MAX ? HYI_SMI_MAX : (intptr_t)v); }

static hyi_prim_status system_gc_stats(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    hyi_oop a = hyi_array_new(vm, 10);
    if (!a) return HYI_PRIM_OOM;
    /* Read the statistics after the allocation, which may itself have collected. */
    const hyi_gc_stats *s = &vm->heap.stats;
    const uint64_t v[10] = {
        s->scavenges, s->full_gcs, s->bytes_allocated, s->bytes_promoted, s->bytes_freed_old,
        s->scavenge_ns, s->full_gc_ns, s->max_pause_ns, s->old_bytes, s->young_bytes,
    };
    for (int i = 0; i < 10; i++) hyi_slots(a)[i] = counter(v[i]);
    *result = a;
    return HYI_PRIM_OK;
}

/* ---- The table ------------------------------------------------------------------------------ */

const hyi_prim_def hyi_prims_object[] = {
    { "Object", "class", object_class, 0 },
    { "Object", "objectSize", object_size, 0 },
    { "Object", "==", object_identical, 0 },
    { "Object", "hashcode", object_hashcode, 0 },
    { "Object", "inspect", object_inspect, 0 },
    { "Object", "halt", object_halt, 0 },
    { "Object", "instVarAt:", object_inst_var_at, 0 },
    { "Object", "instVarAt:put:", object_inst_var_at_put, 0 },
    { "Object", "instVarNamed:", object_inst_var_named, 0 },

    { "Class", "name", class_name, 0 },
    { "Class", "new", class_new, 0 },
    { "Class", "superclass", class_superclass, 0 },
    { "Class", "fields", class_fields, 0 },
    { "Class", "methods", class_methods, 0 },

    { "Array class", "new:", array_class_new, 0 },
    { "Array", "at:", array_at, 0 },
    { "Array", "at:put:", array_at_put, 0 },
    { "Array", "length", array_length, 0 },

    { "Method", "signature", method_signature, 0 },
    { "Method", "holder", method_holder, 0 },
    { "Primitive", "signature", method_signature, 0 },
    { "Primitive", "holder", method_holder, 0 },

    { "System", "global:", system_global, 0 },
    { "System", "global:put:", system_global_put, 0 },
    { "System", "hasGlobal:", system_has_global, 0 },
    { "System", "load:", system_load, 0 },
    { "System", "loadFile:", system_load_file, 0 },
    { "System", "printString:", system_print_string, 0 },
    { "System", "printNewline", system_print_newline, 0 },
    { "System", "errorPrint:", system_error_print, 0 },
    { "System", "errorPrintln:", system_error_println, 0 },
    { "System", "printStackTrace", system_print_stack_trace, 0 },
    { "System", "time", system_time, 0 },
    { "System", "ticks", system_ticks, 0 },
    { "System", "fullGC", system_full_gc, 0 },
    { "System", "gcStats", system_gc_stats, 0 },
    { NULL, NULL, NULL, 0 },
};
