// SPDX-License-Identifier: Apache-2.0

/// The bounds one policy runs within, per call and per instance: configurable per policy, with safe defaults.
///
/// Fuel is the primary bound on CPU (one unit is about one Wasm operator, so a budget is the same on every
/// machine and every load); the wall-clock deadline is a second, coarser bound checked whenever the guest calls
/// the host and once the call returns, because the interpreter cannot be interrupted from outside a call.
public struct PolicyLimits: Sendable, Equatable {
    /// Fuel for one stage call (about one unit per Wasm operator executed).
    public var fuelPerCall: UInt64
    /// Fuel for instantiation (data segments, a start function) and `init`.
    public var fuelForInit: UInt64
    /// The most linear memory the instance may have, in 64 KiB pages (initial size included).
    public var memoryPages: Int
    /// The most elements any table may have.
    public var tableElements: Int
    /// The wall-clock bound on one call, in nanoseconds.
    public var deadlineNanoseconds: UInt64
    /// The most request or response body handed to the policy, and the most body it may answer with.
    public var bodyBytes: Int
    /// The most bytes the guest's result record may point at in total (headers, body, strings).
    public var resultBytes: Int
    /// The interpreter's own stack, which bounds the guest's recursion depth (bytes).
    public var stackBytes: Int

    /// Creates limits; every default is the safe one.
    public init(
        fuelPerCall: UInt64 = 10_000_000,
        fuelForInit: UInt64 = 100_000_000,
        memoryPages: Int = 256,
        tableElements: Int = 10_000,
        deadlineNanoseconds: UInt64 = 50_000_000,
        bodyBytes: Int = 1 << 20,
        resultBytes: Int = 2 << 20,
        stackBytes: Int = 256 << 10
    ) {
        self.fuelPerCall = fuelPerCall
        self.fuelForInit = fuelForInit
        self.memoryPages = memoryPages
        self.tableElements = tableElements
        self.deadlineNanoseconds = deadlineNanoseconds
        self.bodyBytes = bodyBytes
        self.resultBytes = resultBytes
        self.stackBytes = stackBytes
    }
}
