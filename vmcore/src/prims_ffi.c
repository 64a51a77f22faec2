/*
 * prims_ffi.c -- the foreign function interface on libffi (to be written).
 */
#include "prims.h"

const hyi_prim_def hyi_prims_ffi[] = {
    { NULL, NULL, NULL, 0 },
};
