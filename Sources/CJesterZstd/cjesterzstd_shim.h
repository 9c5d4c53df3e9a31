// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterZstd: libzstd (the zstd content coding, RFC 8878). Its header imports into Swift as it is;
// nothing else belongs here.
#pragma once
#include <zstd.h>
