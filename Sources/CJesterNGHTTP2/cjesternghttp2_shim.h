// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterNGHTTP2: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <nghttp2/nghttp2.h>
