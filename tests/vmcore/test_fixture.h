/*
 * test_fixture.h -- the fixture of the cmocka tests that run programs: a fresh temporary class
 * folder that follows the core library on the class path (HYDRA_CORE, else images/core of the
 * source tree), and what the VM writes, captured. Include after cmocka.h.
 */
#ifndef HYDRA_TEST_FIXTURE_H
#define HYDRA_TEST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_buffer.h"

#ifndef HYDRA_SOURCE_DIR
#define HYDRA_SOURCE_DIR "."
#endif

typedef struct fixture {
    char dir[64];          /* the temporary class folder */
    char classpath[4096];  /* core:dir */
    char image[128];       /* dir/test.image, for the tests that save one */
    buffer out, err;       /* what the VM wrote to its streams 1 and 2 (adjacent: a pair) */
} fixture;

/* A hy_config write callback; ctx is two adjacent buffers: [0] takes stream 1, [1] stream 2
 * (a fixture's &f->out). */
static inline void capture(void *ctx, int stream, const char *bytes, size_t len) {
    buffer *pair = ctx;
    buffer_append(stream == 2 ? &pair[1] : &pair[0], bytes, len);
}

static inline const char *core_dir(void) {
    const char *core = getenv("HYDRA_CORE");
    return core && *core ? core : HYDRA_SOURCE_DIR "/images/core";
}

/* A cmocka setup: a new fixture whose folder is /tmp/hydra-test-WHAT-XXXXXX. */
static inline int fixture_setup(void **state, const char *what) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/hydra-test-%s-XXXXXX", what);
    if (!mkdtemp(f->dir)) { free(f); return -1; }
    snprintf(f->classpath, sizeof f->classpath, "%s:%s", core_dir(), f->dir);
    snprintf(f->image, sizeof f->image, "%s/test.image", f->dir);
    *state = f;
    return 0;
}

static inline int fixture_teardown(void **state) {
    fixture *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f->out.data);
    free(f->err.data);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Write the class file NAME.som into the fixture's folder. */
static inline void write_class(fixture *f, const char *name, const char *source) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.som", f->dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fputs(source, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

#endif
