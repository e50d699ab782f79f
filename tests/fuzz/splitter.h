/* Read sizes for fuzz targets that feed a stream in pieces: max 1 means one
 * byte per read (the slowest client); otherwise sizes 1..max from a
 * xorshift32 PRNG seeded from the input. */
#ifndef SOCKS5D_FUZZ_SPLITTER_H
#define SOCKS5D_FUZZ_SPLITTER_H

#include <stddef.h>
#include <stdint.h>

struct splitter {
    uint32_t state;
    uint32_t max;
};

static inline size_t next_read(struct splitter *sp, size_t left)
{
    size_t n = 1;
    if (sp->max > 1) {
        sp->state ^= sp->state << 13; /* xorshift32 */
        sp->state ^= sp->state >> 17;
        sp->state ^= sp->state << 5;
        n = 1 + sp->state % sp->max;
    }
    return n < left ? n : left;
}

#endif
