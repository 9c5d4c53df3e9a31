// SPDX-License-Identifier: Apache-2.0
// Shim for CJesterSystemd: the system headers, plus static inline wrappers for what Swift cannot import
// (function-like macros, variadic functions). Nothing else belongs here.
#pragma once
#include <systemd/sd-daemon.h>
