// SPDX-License-Identifier: Apache-2.0
import WasmKit

/// The level of a policy's log line (ABI v1's `level`).
public enum PolicyLogLevel: UInt32, Sendable, Equatable {
    case debug = 0
    case info = 1
    case warn = 2
    case error = 3
}

/// One line a policy logged during a call; the caller writes it with the policy's id and the stage.
public struct PolicyLogLine: Sendable, Equatable {
    /// How severe the line is.
    public var level: PolicyLogLevel
    /// The text (cut at 1 KiB, invalid UTF-8 replaced).
    public var message: String

    /// A line at `level`.
    public init(level: PolicyLogLevel, message: String) {
        self.level = level
        self.message = message
    }
}

/// The host side of one instance: the four host functions of ABI v1 (`jester:policy/host@1.0.0`) and what they
/// touch during a call (its deadline, the request's metadata bag, the lines logged, the counters). Bounded
/// everywhere: a policy cannot make the host hold more than a few KiB for it.
final class PolicyHost {
    /// The most lines one call may log, and the most bytes of each (longer lines are cut).
    static let maxLogLines = 16
    /// The most bytes of one line kept.
    static let maxLogBytes = 1024
    /// The most counters one policy may have, and the longest name.
    static let maxCounters = 32
    /// The longest counter name.
    static let maxCounterName = 64

    /// The policy's id: its metadata namespace.
    let policyID: String
    private let clock: @Sendable () -> UInt64
    /// The instance's memory and allocator, set once it is made.
    var memory: Memory?
    /// The guest's `cabi_realloc`, through which `metadata-get` returns its string.
    var realloc: Function?

    /// The running call's deadline on `clock`.
    var deadline: UInt64 = .max
    /// The running call's request bag.
    var metadata = PolicyMetadata()
    /// Lines the running call logged.
    var logs: [PolicyLogLine] = []
    /// Counter totals since the caller last took them.
    var counters: [String: Int64] = [:]
    /// Log lines and counter updates dropped for going over the bounds (or, for counters, a bad name).
    var dropped = 0

    /// A host for policy `policyID`, its deadline on `clock`.
    init(policyID: String, clock: @escaping @Sendable () -> UInt64) {
        self.policyID = policyID
        self.clock = clock
    }

    /// The imports a v1 module may ask for, bound to this host.
    func imports(store: Store) -> Imports {
        var imports = Imports()
        imports.define(
            module: PolicyABI.hostModule,
            name: PolicyABI.Import.log,
            Function(store: store, parameters: [.i32, .i32, .i32], results: []) { [unowned self] _, args, _ in
                try self.log(level: args[0].i32, pointer: args[1].i32, count: args[2].i32)
            }
        )
        imports.define(
            module: PolicyABI.hostModule,
            name: PolicyABI.Import.counterAdd,
            Function(store: store, parameters: [.i32, .i32, .i64], results: []) { [unowned self] _, args, _ in
                try self.counterAdd(pointer: args[0].i32, count: args[1].i32, delta: Int64(bitPattern: args[2].i64))
            }
        )
        imports.define(
            module: PolicyABI.hostModule,
            name: PolicyABI.Import.metadataGet,
            Function(store: store, parameters: [.i32, .i32, .i32], results: []) { [unowned self] _, args, _ in
                try self.metadataGet(pointer: args[0].i32, count: args[1].i32, returnArea: args[2].i32)
            }
        )
        imports.define(
            module: PolicyABI.hostModule,
            name: PolicyABI.Import.metadataSet,
            Function(store: store, parameters: [.i32, .i32, .i32, .i32], results: [.i32]) {
                [unowned self] _, args, results in
                let stored = try self.metadataSet(key: (args[0].i32, args[1].i32), value: (args[2].i32, args[3].i32))
                results[0] = .i32(stored ? 1 : 0)
            }
        )
        return imports
    }

    /// Whether `name` is an import v1 provides.
    static func provides(_ name: String) -> Bool {
        [PolicyABI.Import.log, PolicyABI.Import.counterAdd, PolicyABI.Import.metadataGet, PolicyABI.Import.metadataSet]
            .contains(name)
    }

    /// `metadata-get` is inside the guest's `cabi_realloc`: a host call now would nest host and guest frames on
    /// the native stack without bound (a hostile allocator that calls `metadata-get` again), so it ends the call.
    private var inGuestAllocator = false

    /// Ends the call from inside a host function once its deadline passed: the only place the host gets control
    /// back while the guest runs, so a guest that calls the host is bounded by the deadline as well as by fuel.
    /// Also refuses host calls made from inside the guest's allocator.
    func checkDeadline() throws(HostAbort) {
        guard !inGuestAllocator else { throw abort("a host function was called from cabi_realloc") }
        if clock() > deadline {
            throw HostAbort(PolicyFailure(.deadline, "the call ran past its deadline"))
        }
    }

    private func log(level: UInt32, pointer: UInt32, count: UInt32) throws(HostAbort) {
        try checkDeadline()
        guard let level = PolicyLogLevel(rawValue: level) else { throw abort("log: level \(level) is not 0-3") }
        let bytes = try read(pointer, count, what: "log message")
        guard logs.count < Self.maxLogLines else {
            dropped += 1
            return
        }
        // Lossy on purpose: a log line is for people; the logger escapes it.
        logs.append(
            PolicyLogLine(level: level, message: String(decoding: bytes.prefix(Self.maxLogBytes), as: UTF8.self))
        )
    }

    private func counterAdd(pointer: UInt32, count: UInt32, delta: Int64) throws(HostAbort) {
        try checkDeadline()
        let bytes = try read(pointer, count, what: "counter name")
        let valid =
            !bytes.isEmpty && bytes.count <= Self.maxCounterName
            && bytes.allSatisfy { (0x61...0x7A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x5F }
        let name = String(decoding: bytes, as: UTF8.self)
        guard valid, counters[name] != nil || counters.count < Self.maxCounters else {
            dropped += 1
            return
        }
        counters[name, default: 0] &+= delta
    }

    private func metadataGet(pointer: UInt32, count: UInt32, returnArea: UInt32) throws(HostAbort) {
        try checkDeadline()
        let key = try text(pointer, count, what: "metadata key")
        guard let memory, let realloc else { throw abort("metadata-get before the instance was made") }
        let area = Int(returnArea)
        guard area % 4 == 0, area + 12 <= memory.byteCount else {
            throw abort("metadata-get: return area at \(returnArea) is outside memory")
        }
        guard let value = metadata.lookup(key, from: policyID) else {
            memory.withUnsafeMutableBufferPointer(offset: UInt(area), count: 12) {
                _ = $0.initializeMemory(as: UInt8.self, repeating: 0)
            }
            return
        }
        let utf8 = Array(value.utf8)
        var target: UInt32 = 0
        if !utf8.isEmpty {
            // The canonical ABI's way to return a string: in the guest's memory, from the guest's allocator.
            let allocated: [Value]
            inGuestAllocator = true
            defer { inGuestAllocator = false }
            do {
                allocated = try realloc.invoke([.i32(0), .i32(0), .i32(1), .i32(UInt32(utf8.count))])
            } catch let error as HostAbort {
                throw error
            } catch {
                throw abort("metadata-get: cabi_realloc failed: \(error)")
            }
            target = allocated.first?.i32 ?? 0
            guard Int(target) + utf8.count <= memory.byteCount else {
                throw abort("metadata-get: cabi_realloc returned memory outside memory")
            }
            memory.withUnsafeMutableBufferPointer(offset: UInt(target), count: utf8.count) {
                $0.copyBytes(from: utf8)
            }
        }
        memory.withUnsafeMutableBufferPointer(offset: UInt(area), count: 12) { area in
            area.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 0, as: UInt32.self)
            area.storeBytes(of: target.littleEndian, toByteOffset: 4, as: UInt32.self)
            area.storeBytes(of: UInt32(utf8.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        }
    }

    private func metadataSet(key: (UInt32, UInt32), value: (UInt32, UInt32)) throws(HostAbort) -> Bool {
        try checkDeadline()
        let name = try text(key.0, key.1, what: "metadata key")
        guard !name.isEmpty, !name.contains("/") else {
            throw abort("metadata-set: a key must be non-empty, without '/'")
        }
        return metadata.set(policy: policyID, key: name, value: try text(value.0, value.1, what: "metadata value"))
    }

    /// A copy of guest bytes, after checking they lie in memory (a bad pointer ends the call, never the worker).
    private func read(_ pointer: UInt32, _ count: UInt32, what: String) throws(HostAbort) -> [UInt8] {
        guard let memory else { throw abort("\(what) read before the instance was made") }
        guard Int(pointer) + Int(count) <= memory.byteCount else {
            throw abort("\(what) at \(pointer) (\(count) bytes) is outside memory")
        }
        guard count > 0 else { return [] }
        return memory.withUnsafeBufferPointer(offset: UInt(pointer), count: Int(count)) { Array($0) }
    }

    private func text(_ pointer: UInt32, _ count: UInt32, what: String) throws(HostAbort) -> String {
        let bytes = try read(pointer, count, what: what)
        guard let text = String(validating: bytes, as: UTF8.self) else { throw abort("\(what) is not valid UTF-8") }
        return text
    }

    private func abort(_ message: String) -> HostAbort {
        HostAbort(PolicyFailure(.trap, message))
    }
}

/// A host function's way to end the running call with a failure of its choosing (a deadline, a bad pointer).
struct HostAbort: Error {
    /// What the call fails with.
    let failure: PolicyFailure

    /// Ends the call with `failure`.
    init(_ failure: PolicyFailure) {
        self.failure = failure
    }
}
