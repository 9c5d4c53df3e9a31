// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterZlib: zlib (gzip and deflate content codings), plus static inline wrappers for what Swift cannot
// import. Nothing else belongs here.
#pragma once
#include <zlib.h>

// deflateInit2 and inflateInit2 are function-like macros that pass zlib's version and sizeof(z_stream), so the
// library can refuse a header that does not match it; Swift imports neither macro.
static inline int cjester_deflate_init2(z_streamp stream, int level, int window_bits, int mem_level) {
    return deflateInit2(stream, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY);
}

static inline int cjester_inflate_init2(z_streamp stream, int window_bits) {
    return inflateInit2(stream, window_bits);
}
