/*
 * image.h -- the snapshot image file format (image.c), for the loader's tests and fuzz target.
 *
 * A file is a header, then sections each starting 8-aligned:
 *   entry     entry_len bytes of the entry class name (no NUL), padded with zeros
 *   roots     nroots words: the VM's well-known objects (nil, true, false, system, undefined,
 *             special, the hyi_classes, the hyi_symbols, in that order)
 *   symbols   symbols_cap words: the symbol table slot by slot (0 = empty); symbols hash by
 *             their bytes, so the slots stay valid wherever the heap lands
 *   globals   nglobals words: the global cells (they hash by address: rehashed at load)
 *   payload   payload_bytes of objects back to back, each a hyi_obj header and its payload,
 *             exactly as in a heap, except that every reference is an image word
 * An image word is a SmallInteger (low bit 1) as is, 0 (no object: only in an inline cache), or
 * 8 + the byte offset of an object's header in the payload.
 *
 * checksum is the 64-bit FNV-1a of the whole file with the checksum field taken as zero. layout
 * is a fingerprint of everything the payload's bytes depend on in this build (header bit
 * layout, method layout, opcodes, primitive numbering).
 */
#ifndef HYDRA_IMAGE_H
#define HYDRA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define HYI_IMAGE_MAGIC "HYDRAIMG"
#define HYI_IMAGE_VERSION 1u
#define HYI_IMAGE_ENDIAN 0x01020304u

typedef struct hyi_image_header {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;   /* sizeof(hyi_image_header) */
    uint32_t word_bytes;     /* sizeof(void *) of the writer */
    uint32_t endian;         /* HYI_IMAGE_ENDIAN as the writer stores it */
    uint64_t layout;
    uint64_t file_bytes;     /* the whole file */
    uint64_t checksum;
    uint32_t entry_len;
    uint32_t nroots;
    uint32_t symbols_cap;    /* a power of two, or 0 */
    uint32_t nglobals;
    uint64_t payload_bytes;
    uint64_t nobjects;
} hyi_image_header;

_Static_assert(sizeof(hyi_image_header) == 80, "image header has no padding");

/* The checksum of a whole image file of len bytes (its checksum field counted as zero). */
uint64_t hyi_image_checksum(const void *file, size_t len);

#endif
