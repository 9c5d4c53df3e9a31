// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterCrypt: libxcrypt (Debian's libcrypt1), the password hashing behind htpasswd files, plus what
// Swift should not import itself. Nothing else belongs here.
#pragma once
#include <stddef.h>
#include <crypt.h>

// The size crypt_rn wants for its scratch area. Returned from C so Swift never imports struct crypt_data, whose
// 30 KB char arrays would become tuples of thousands of elements.
static inline int cjester_crypt_data_size(void) { return (int)sizeof(struct crypt_data); }
