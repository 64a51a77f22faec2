/*
 * process.c -- Smalltalk processes, the scheduler, semaphores and delays (to be written).
 */
#include "prims.h"

const hyi_prim_def hyi_prims_process[] = {
    { NULL, NULL, NULL, 0 },
};
