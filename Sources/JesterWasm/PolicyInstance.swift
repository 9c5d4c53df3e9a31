import WasmKit

// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#endif

/// One policy's instance in one worker: it runs the policy's stages for one request at a time and turns whatever
/// the module does into a `PolicyOutcome`. A call never throws: a trap, running out of fuel or memory, the
/// deadline, a malformed action, all come back as `.failed`, and the caller refuses the request (fail closed).
///
/// The instance is kept between requests (one per policy per worker, like proxy-wasm's per-worker VM): making
/// one per request costs an instantiation, `init` and the interpreter's first translation every time (see the
/// benchmark in Tests/JesterWasmTests). Static state therefore persists between requests, which a policy may use
/// (a failure-rate circuit); request data does not: the context block is zeroed when each call returns. An
/// instance whose call was interrupted (trap, fuel, memory, deadline inside a host call) may hold half-updated
/// state, so it is thrown away and the next call makes a fresh one (instantiation and `init` again).
///
/// Not thread-safe: confined to its worker's event loop.
public final class PolicyInstance {
    /// The checked module this instance runs.
    public let module: PolicyModule
    /// The policy's id (its metadata namespace, and the tag of its log lines).
    public let policyID: String
    /// The JSON configuration `init` gets, again after a failed call.
    private let config: String
    private let host: PolicyHost
    private let clock: @Sendable () -> UInt64
    private var live: Live?
    /// The interpreter's stack, reused by every call (allocating it costs more than a small policy's call).
    private var stack: ExecutionStack

    /// Failed calls in a row; the caller marks the policy failed past its threshold.
    public private(set) var consecutiveFailures = 0
    /// Failed calls since the instance was made.
    public private(set) var failures = 0
    /// Times the module was instantiated again after a failed call.
    public private(set) var reinstantiations = 0
    /// What the last call logged (bounded), for the caller to write with the policy's id and the stage.
    public private(set) var lastLogs: [PolicyLogLine] = []

    /// Instantiates `module` and calls its `init` with `config` (the policy's JSON configuration). `clock` gives
    /// monotonic nanoseconds for the per-call deadline (tests pass a fake one).
    public init(
        module: PolicyModule,
        policyID: String,
        config: String,
        clock: @escaping @Sendable () -> UInt64 = PolicyInstance.monotonicNanoseconds
    ) throws(PolicyLoadError) {
        self.module = module
        self.policyID = policyID
        self.config = config
        self.clock = clock
        host = PolicyHost(policyID: policyID, clock: clock)
        stack = ExecutionStack(engine: module.engine)
        live = try instantiate()
    }

    /// The instance's linear memory now, in bytes (0 while none is made): what the policy holds per worker, for
    /// the metrics, and a way to see a policy that leaks memory across requests.
    public var memoryBytes: Int { live?.memory.byteCount ?? 0 }

    /// The counter totals the policy added since the last call of this (for the metrics), and the log lines and
    /// counter updates it lost to the bounds.
    public func takeCounters() -> (counters: [String: Int64], dropped: Int) {
        defer {
            host.counters = [:]
            host.dropped = 0
        }
        return (host.counters, host.dropped)
    }

    /// Runs the policy's `stage` on `context`; `metadata` is the request's bag, which the policy may read and
    /// add to.
    public func run(_ stage: PolicyStage, context: PolicyContext, metadata: inout PolicyMetadata) -> PolicyOutcome {
        lastLogs = []
        let outcome = call(stage, context: context, metadata: &metadata)
        if case .failed = outcome {
            consecutiveFailures += 1
            failures += 1
        } else {
            consecutiveFailures = 0
        }
        return outcome
    }

    private func call(_ stage: PolicyStage, context: PolicyContext, metadata: inout PolicyMetadata) -> PolicyOutcome {
        guard module.stages.contains(stage) else {
            return .failed(PolicyFailure(.missingStage, "the module does not export \(stage.exportName)"))
        }
        if live == nil {
            do {
                live = try instantiate()
                reinstantiations += 1
            } catch {
                return .failed(PolicyFailure(.instantiation, error.message))
            }
        }
        guard let live, let function = live.stageFunctions[stage] else {
            return .failed(PolicyFailure(.missingStage, "the module does not export \(stage.exportName)"))
        }
        let limits = module.limits
        // The caller holds bodies to the policy's limit (answering 413 beyond it); one over it never goes in.
        let body = max(context.requestBody?.count ?? 0, context.responseBody?.count ?? 0)
        guard body <= limits.bodyBytes else {
            let message = "a body of \(body) bytes is over the limit of \(limits.bodyBytes)"
            return .failed(PolicyFailure(.memoryLimit, message))
        }
        let size = ContextEncoder.byteCount(of: context)
        guard size <= limits.memoryPages * 65536 / 2 else {
            return .failed(PolicyFailure(.memoryLimit, "a context of \(size) bytes does not fit the memory limit"))
        }
        host.deadline = clock() &+ limits.deadlineNanoseconds
        host.metadata = metadata
        host.logs = []
        live.limiter.denied = false
        live.store.fuel = Fuel(remaining: limits.fuelPerCall)
        var block: (start: Int, count: Int)?
        defer {
            lastLogs = host.logs
            metadata = host.metadata
            host.metadata = PolicyMetadata()
            // Nothing of this request stays in the module's memory for the next one.
            if let block, self.live != nil, block.start + block.count <= live.memory.byteCount {
                live.memory.withUnsafeMutableBufferPointer(offset: UInt(block.start), count: block.count) {
                    _ = $0.initializeMemory(as: UInt8.self, repeating: 0)
                }
            }
        }
        do {
            let pointer = Int(
                try live.realloc.invoke([.i32(0), .i32(0), .i32(8), .i32(UInt32(size))], on: &stack)[0].i32
            )
            guard pointer % 4 == 0, pointer + size <= live.memory.byteCount else {
                return .failed(PolicyFailure(.malformedResult, "cabi_realloc returned \(pointer), outside memory"))
            }
            block = (pointer, size)
            live.memory.withUnsafeMutableBufferPointer(offset: UInt(pointer), count: size) {
                ContextEncoder.encode(context, stage: stage, into: $0, base: UInt32(pointer))
            }
            let action = try function.invoke([.i32(UInt32(pointer))], on: &stack)[0].i32
            if clock() > host.deadline {
                return .failed(PolicyFailure(.deadline, "\(stage.exportName) returned after its deadline"))
            }
            return live.memory.withUnsafeBufferPointer(offset: 0, count: live.memory.byteCount) {
                ActionDecoder.decode(action, memory: $0, stage: stage, limits: limits)
            }
        } catch {
            // The guest stopped mid-way: its state may be half-updated. A fresh instance serves the next call.
            let failure = classify(error, limiter: live.limiter)
            self.live = nil
            return .failed(failure)
        }
    }

    /// Makes a fresh instance and runs `init` with the configuration.
    private func instantiate() throws(PolicyLoadError) -> Live {
        let live = try Live.make(
            module: module.module,
            engine: module.engine,
            name: module.name,
            limits: module.limits,
            host: host
        )
        let fail = { (message: String) in PolicyLoadError(module: self.module.name, kind: .initFailed, message: message)
        }
        host.deadline = clock() &+ module.limits.deadlineNanoseconds * 10
        live.store.fuel = Fuel(remaining: module.limits.fuelForInit)
        let utf8 = Array(config.utf8)
        do {
            let pointer = try live.realloc.invoke([.i32(0), .i32(0), .i32(1), .i32(UInt32(utf8.count))])[0].i32
            guard Int(pointer) + utf8.count <= live.memory.byteCount else {
                throw fail("cabi_realloc returned \(pointer), outside memory")
            }
            if !utf8.isEmpty {
                live.memory.withUnsafeMutableBufferPointer(offset: UInt(pointer), count: utf8.count) {
                    $0.copyBytes(from: utf8)
                }
            }
            let result = Int(try live.initialize.invoke([.i32(pointer), .i32(UInt32(utf8.count))])[0].i32)
            guard result % 4 == 0, result + PolicyABI.initResultByteCount <= live.memory.byteCount else {
                throw fail("init returned \(result), outside memory")
            }
            let refusal: String? = try live.memory.withUnsafeBufferPointer(offset: 0, count: live.memory.byteCount) {
                memory throws(PolicyLoadError) in
                guard memory[result] != 0 else { return nil }
                let start = Int(UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: result + 4, as: UInt32.self)))
                let count = Int(UInt32(littleEndian: memory.loadUnaligned(fromByteOffset: result + 8, as: UInt32.self)))
                guard count <= 4096, start + count <= memory.count else { throw fail("init's error is outside memory") }
                return String(decoding: UnsafeRawBufferPointer(rebasing: memory[start..<start + count]), as: UTF8.self)
            }
            if let refusal { throw fail("init refused the configuration: \(refusal)") }
        } catch let error as PolicyLoadError {
            throw error
        } catch {
            throw fail("init failed: \(classify(error, limiter: live.limiter))")
        }
        return live
    }

    /// What a thrown error means, as a failure.
    private func classify(_ error: any Error, limiter: PolicyResourceLimiter) -> PolicyFailure {
        if let abort = error as? HostAbort { return abort.failure }
        let text = Self.describe(error)
        if text == "out of fuel" {
            return PolicyFailure(.outOfFuel, "the call used up its fuel (\(module.limits.fuelPerCall))")
        }
        if limiter.denied {
            return PolicyFailure(.memoryLimit, "memory or table growth over the limit was refused, then: \(text)")
        }
        return PolicyFailure(.trap, text)
    }

    /// A trap's reason without its backtrace (one line for the log).
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        let firstLine = text.split(separator: "\n", maxSplits: 1).first.map(String.init) ?? text
        return firstLine.hasPrefix("Trap: ") ? String(firstLine.dropFirst(6)) : firstLine
    }

    /// Monotonic nanoseconds (CLOCK_MONOTONIC): the default clock of the per-call deadline.
    public static let monotonicNanoseconds: @Sendable () -> UInt64 = {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }
}
