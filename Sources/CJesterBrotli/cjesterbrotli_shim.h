// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterBrotli: libbrotlienc and libbrotlidec (the br content coding). Both headers import into Swift as
// they are; nothing else belongs here.
#pragma once
#include <brotli/encode.h>
#include <brotli/decode.h>
