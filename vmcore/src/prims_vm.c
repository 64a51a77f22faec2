/*
 * prims_vm.c -- the primitives of class VM: this VM's identity and arguments, and its sibling
 * VMs in the same host (spawn, join, stop, kill, state).
 *
 * Sibling VMs belong to the host (libhydra-host); these primitives reach it through the
 * hy_host_ops of the VM's config. A VM made alone (hy_vm_new without a host) knows itself but
 * has no siblings: those primitives fail with a message saying so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prims.h"
#include "thread.h"
#include "trace.h"

/* A String or Symbol argument as a NUL-terminated copy in buf; false when it is not one or
 * does not fit. */
static bool c_string(hy_vm *vm, hyi_oop o, char *buf, size_t cap) {
    if (!hyi_is_ptr(o) || hyi_fmt(o) != HYI_FMT_BYTES ||
        (!hyi_is_kind(vm, o, vm->cls.string) && !hyi_is_kind(vm, o, vm->cls.symbol)))
        return false;
    size_t n = hyi_size(o);
    if (n >= cap || memchr(hyi_bytes(o), 0, n)) return false;
    memcpy(buf, hyi_bytes(o), n);
    buf[n] = 0;
    return true;
}

static bool has_host(hy_vm *vm) { return vm->config.host_ops != NULL; }

static hyi_prim_status no_host(hy_vm *vm, const char *what) {
    return hyi_prim_fail(vm, "%s: this VM has no host (it was made alone with hy_vm_new), so it has no sibling VMs",
                         what);
}

/* A sibling's id argument: a positive SmallInteger. */
static bool vm_id(hyi_oop o, unsigned *id) {
    if (!hyi_is_smi(o) || hyi_smi_val(o) <= 0 || hyi_smi_val(o) > (intptr_t)0x7fffffff) return false;
    *id = (unsigned)hyi_smi_val(o);
    return true;
}

static hyi_prim_status vm_current_id(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    *result = hyi_smi(vm->config.id);
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_current_name(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)args; (void)nargs;
    const char *name = vm->config.name ? vm->config.name : "vm";
    hyi_oop s = hyi_string_new(vm, name, strlen(name));
    if (!s) return HYI_PRIM_OOM;
    *result = s;
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_program_arguments(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* The program's arguments after its class name (a fresh Array of the same Strings). */
    (void)args; (void)nargs;
    uint32_t n = vm->program_args ? hyi_size(vm->program_args) : 0;
    hyi_oop a = hyi_array_new(vm, n ? n - 1 : 0);
    if (!a) return HYI_PRIM_OOM;
    for (uint32_t i = 1; i < n; i++) hyi_store(vm, a, i - 1, hyi_slots(vm->program_args)[i]);
    *result = a;
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_spawn(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* VM class>>primSpawn: what name: nameOrNil args: anArray -- the new VM's id. */
    (void)nargs;
    if (!has_host(vm)) return no_host(vm, "VM spawn");
    char what[1024], name[128];
    if (!c_string(vm, args[1], what, sizeof what))
        return hyi_prim_fail(vm, "VM spawn: the first argument must be an image file name or a class name (a String)");
    bool named = args[2] != vm->nil;
    if (named && !c_string(vm, args[2], name, sizeof name))
        return hyi_prim_fail(vm, "VM spawn: the name must be a String of at most %zu bytes", sizeof name - 1);
    hyi_oop list = args[3];
    if (!hyi_is_ptr(list) || hyi_o(list)->cls != vm->cls.array)
        return hyi_prim_fail(vm, "VM spawn: the arguments must be an Array of Strings");
    uint32_t argc = hyi_size(list);
    if (argc > 4096) return hyi_prim_fail(vm, "VM spawn: %u arguments are too many (at most 4096)", argc);
    char **argv = calloc(argc + 1, sizeof *argv);
    if (!argv) return HYI_PRIM_OOM;
    hyi_prim_status st = HYI_PRIM_OK;
    for (uint32_t i = 0; i < argc && st == HYI_PRIM_OK; i++) {
        hyi_oop a = hyi_slots(list)[i];
        if (!hyi_is_ptr(a) || hyi_fmt(a) != HYI_FMT_BYTES ||
            (!hyi_is_kind(vm, a, vm->cls.string) && !hyi_is_kind(vm, a, vm->cls.symbol))) {
            st = hyi_prim_fail(vm, "VM spawn: argument %u is not a String", i + 1);
            break;
        }
        argv[i] = strndup((const char *)hyi_bytes(a), hyi_size(a));
        if (!argv[i]) st = HYI_PRIM_OOM;
    }
    if (st == HYI_PRIM_OK) {
        unsigned id = 0;
        char err[512] = "";
        /* Making a VM takes a while (an image's heap is copied in; from sources, the core
         * library is compiled): a threaded call, so a long one lets the others run. */
        const hy_host_ops *ops = vm->config.host_ops;
        void *host = vm->config.host;
        unsigned self = vm->config.id;
        hyi_callout c;
        if (hyi_tracing(vm)) hyi_trace_callout_begin(vm, "VM spawn", 8, HYI_TRACE_THREADED);
        hyi_callout_begin(vm, &c, false);
        hy_err e = ops->spawn(host, self, what, named ? name : NULL, (int)argc, (const char *const *)argv, &id,
                              err, sizeof err);
        if (hyi_tracing(vm)) hyi_trace_callout_end(vm);
        hyi_callout_end(vm, &c);
        if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_CALLOUT_RETURN, true);
        if (e != HY_OK)
            st = hyi_prim_fail(vm, "VM spawn: %s: %s", what, *err ? err : hy_strerror(e));
        else
            *result = hyi_smi(id);
    }
    for (uint32_t i = 0; i < argc; i++) free(argv[i]);
    free(argv);
    return st;
}

static hyi_prim_status vm_join(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* VM class>>primJoin: id -- wait for the VM to end (a blocking threaded callout: the other
     * processes of this VM go on); its exit status. */
    (void)nargs;
    unsigned id;
    if (!has_host(vm)) return no_host(vm, "VM join");
    if (!vm_id(args[1], &id)) return hyi_prim_fail(vm, "VM join: not a VM id");
    if (id == vm->config.id) return hyi_prim_fail(vm, "VM join: a VM cannot wait for its own end");
    int status = 0;
    hyi_callout c;
    if (hyi_tracing(vm)) hyi_trace_callout_begin(vm, "VM join", 7, HYI_TRACE_BLOCKING);
    hyi_callout_begin(vm, &c, true);
    hy_err e = vm->config.host_ops->join(vm->config.host, id, &status);
    if (hyi_tracing(vm)) hyi_trace_callout_end(vm);
    hyi_callout_end(vm, &c);
    if (hyi_tracing(vm)) hyi_trace_own_begin(vm, HYI_TRACE_CALLOUT_RETURN, true);
    if (e != HY_OK) return hyi_prim_fail(vm, "VM join: no VM %u in this host", id);
    *result = hyi_smi(status);
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_stop_or_kill(hy_vm *vm, hyi_oop *args, bool kill, hyi_oop *result) {
    unsigned id;
    const char *what = kill ? "VM kill" : "VM stop";
    if (!has_host(vm)) return no_host(vm, what);
    if (!vm_id(args[1], &id)) return hyi_prim_fail(vm, "%s: not a VM id", what);
    const hy_host_ops *ops = vm->config.host_ops;
    hy_err e = kill ? ops->kill(vm->config.host, id) : ops->stop(vm->config.host, id);
    if (e != HY_OK) return hyi_prim_fail(vm, "%s: no VM %u in this host", what, id);
    *result = args[0];
    return HYI_PRIM_OK;
}

static hyi_prim_status vm_stop(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return vm_stop_or_kill(vm, args, false, result);
}

static hyi_prim_status vm_kill(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    (void)nargs;
    return vm_stop_or_kill(vm, args, true, result);
}

static hyi_prim_status vm_info(hy_vm *vm, hyi_oop *args, uint32_t nargs, hyi_oop *result) {
    /* VM class>>primInfo: id -- an Array: state (0 created, 1 running, 2 exited, 3 failed,
     * 4 killed), exit status (nil while it runs), name. */
    (void)nargs;
    unsigned id;
    if (!has_host(vm)) return no_host(vm, "VM info");
    if (!vm_id(args[1], &id)) return hyi_prim_fail(vm, "VM info: not a VM id");
    int state = 0, status = 0;
    const char *name = NULL;
    if (vm->config.host_ops->info(vm->config.host, id, &state, &status, &name) != HY_OK)
        return hyi_prim_fail(vm, "VM info: no VM %u in this host", id);
    hyi_oop s = hyi_string_new(vm, name ? name : "", name ? strlen(name) : 0);
    if (!s) return HYI_PRIM_OOM;
    HYI_ROOT(vm, &s);
    hyi_oop a = hyi_array_new(vm, 3);
    HYI_UNROOT(vm, 1);
    if (!a) return HYI_PRIM_OOM;
    hyi_slots(a)[0] = hyi_smi(state);
    hyi_slots(a)[1] = state >= 2 ? hyi_smi(status) : vm->nil;
    hyi_store(vm, a, 2, s);
    *result = a;
    return HYI_PRIM_OK;
}

const hyi_prim_def hyi_prims_vm[] = {
    { "VM class", "primCurrentId", vm_current_id, 0 },
    { "VM class", "primCurrentName", vm_current_name, 0 },
    { "VM class", "primArguments", vm_program_arguments, 0 },
    { "VM class", "primSpawn:name:args:", vm_spawn, 0 },
    { "VM class", "primJoin:", vm_join, 0 },
    { "VM class", "primStop:", vm_stop, 0 },
    { "VM class", "primKill:", vm_kill, 0 },
    { "VM class", "primInfo:", vm_info, 0 },
    { NULL, NULL, NULL, 0 },
};
