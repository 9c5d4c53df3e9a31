// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterNGTCP2: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
