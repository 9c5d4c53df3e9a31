// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterSystem

/// GCRA decides on the shared `RateLimitTable`: declared here because this module is the first to see both
/// (JesterSystem does not import JesterCore, so jesterctl, which links JesterSystem, stays small).
extension GCRA: RateLimitAlgorithm {}
