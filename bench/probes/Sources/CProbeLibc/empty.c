// SPDX-License-Identifier: Apache-2.0
// Headers only; see include/CProbeLibc.h.
