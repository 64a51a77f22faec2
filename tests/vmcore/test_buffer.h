/*
 * test_buffer.h -- a growing text buffer for the cmocka tests that capture what a VM writes.
 * Include after cmocka.h (allocation failure fails the test).
 */
#ifndef HYDRA_TEST_BUFFER_H
#define HYDRA_TEST_BUFFER_H

#include <stdlib.h>
#include <string.h>

typedef struct buffer {
    char *data;
    size_t len, cap;
} buffer;

static inline void buffer_append(buffer *b, const char *bytes, size_t len) {
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1) cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    memcpy(b->data + b->len, bytes, len);
    b->len += len;
    b->data[b->len] = 0;
}

static inline const char *buffer_text(const buffer *b) { return b->data ? b->data : ""; }

static inline void buffer_clear(buffer *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

#endif
