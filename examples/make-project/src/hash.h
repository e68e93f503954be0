/* Small deterministic hash functions. */
#ifndef HASH_H
#define HASH_H

#include <stddef.h>
#include <stdint.h>

/* Mixes the bits of x (no loop). */
uint32_t hash_u32(uint32_t x);

/* 32-bit FNV-1a over n bytes: one loop back-edge per byte. */
uint32_t hash_bytes(const void *data, size_t n);

#endif
