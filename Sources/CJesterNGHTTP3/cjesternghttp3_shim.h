// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterNGHTTP3: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <nghttp3/nghttp3.h>
