// SPDX-License-Identifier: Apache-2.0
import FoundationEssentials
@_spi(Fuzzing) import WasmKit

/// A policy module, parsed and checked against ABI v1 once per configuration: what the master validates (so a
/// broken module is a configuration error and the old configuration keeps serving) and what workers instantiate.
/// Immutable and `Sendable`: one per module per process, shared by every instance.
///
/// Checking instantiates the module once in a throwaway store under the policy's limits (its start function and
/// data segments bounded by fuel and memory like any call), then checks the exports and calls `abi-version`.
public struct PolicyModule: Sendable {
    /// The module's name as the configuration gives it (its path), for every message.
    public let name: String
    /// The stages the module exports.
    public let stages: Set<PolicyStage>
    /// The minor ABI version the module was built for.
    public let abiMinor: UInt32
    /// The limits every instance of the module runs within.
    public let limits: PolicyLimits
    /// The parsed module, shared by every instance.
    let module: Module
    /// One engine per module: its configuration carries the fuel metering and the interpreter's stack size.
    let engine: Engine

    /// Reads and checks the module at `path`.
    public static func load(path: String, limits: PolicyLimits = PolicyLimits()) throws(PolicyLoadError) -> PolicyModule
    {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw PolicyLoadError(module: path, kind: .malformedModule, message: "cannot read the file: \(error)")
        }
        return try load(bytes: Array(data), name: path, limits: limits)
    }

    /// Parses and checks `bytes`, a module called `name`.
    public static func load(
        bytes: [UInt8],
        name: String,
        limits: PolicyLimits = PolicyLimits()
    ) throws(PolicyLoadError) -> PolicyModule {
        func fail(_ kind: PolicyLoadError.Kind, _ message: String) -> PolicyLoadError {
            PolicyLoadError(module: name, kind: kind, message: message)
        }
        let module = try parse(bytes, name: name)
        // Software bounds checks, not WasmKit's mprotect ones: those reserve 4 GiB and more of address space per
        // instance and install a process-wide SIGSEGV/SIGBUS handler, which a worker's own crash handling (and
        // Swift's backtracer) would have to be ordered around; a header-only policy makes few memory accesses.
        let engine = Engine(
            configuration: EngineConfiguration(
                stackSize: limits.stackBytes,
                memoryBoundsChecking: .software,
                fuelMetering: true
            )
        )
        let probe = try Live.make(
            module: module,
            engine: engine,
            name: name,
            limits: limits,
            host: PolicyHost(policyID: "", clock: { 0 })
        )
        let stages = Set(PolicyStage.allCases.filter { probe.stageFunctions[$0] != nil })
        guard !stages.isEmpty else {
            throw fail(.missingExport, "exports none of on-pre-route, on-pre-upstream, on-post-response")
        }
        let version: UInt32
        do {
            probe.store.fuel = Fuel(remaining: limits.fuelForInit)
            version = try probe.abiVersion.invoke([]).first?.i32 ?? 0
        } catch {
            throw fail(.abiVersion, "abi-version trapped: \(PolicyInstance.describe(error))")
        }
        let (major, minor) = (version >> 16, version & 0xFFFF)
        guard major == PolicyABI.major, minor <= PolicyABI.minor else {
            throw fail(
                .abiVersion,
                "built for policy ABI \(major).\(minor) (abi-version returned 0x\(String(version, radix: 16))); "
                    + "this Jester speaks \(PolicyABI.major).0 to \(PolicyABI.major).\(PolicyABI.minor)"
            )
        }
        return PolicyModule(name: name, stages: stages, abiMinor: minor, limits: limits, module: module, engine: engine)
    }
}

extension PolicyModule {
    /// Checks `bytes` as far as can be done without running any of its code: a valid module, importing nothing
    /// but v1's host functions, exporting a memory, `cabi_realloc`, `abi-version`, `init` and at least one stage;
    /// returns the stages it exports. For a process that should not run policies' code at all (the master, which
    /// runs as root): the exports' types and the ABI version are checked by `load`, which instantiates.
    public static func inspect(bytes: [UInt8], name: String) throws(PolicyLoadError) -> Set<PolicyStage> {
        let module = try parse(bytes, name: name)
        var functions: Set<String> = []
        var memories: Set<String> = []
        for export in module.exports {
            switch export.descriptor {
            case .function: functions.insert(export.name)
            case .memory: memories.insert(export.name)
            default: break
            }
        }
        guard memories.contains(PolicyABI.Export.memory) else {
            throw PolicyLoadError(module: name, kind: .missingExport, message: "exports no memory called \"memory\"")
        }
        for required in [PolicyABI.Export.realloc, PolicyABI.Export.abiVersion, PolicyABI.Export.initialize]
        where !functions.contains(required) {
            throw PolicyLoadError(
                module: name,
                kind: .missingExport,
                message: "missing export \(required) (a function)"
            )
        }
        let stages = Set(PolicyStage.allCases.filter { functions.contains($0.exportName) })
        guard !stages.isEmpty else {
            throw PolicyLoadError(
                module: name,
                kind: .missingExport,
                message: "exports none of on-pre-route, on-pre-upstream, on-post-response"
            )
        }
        return stages
    }

    /// Parses `bytes` and checks its imports (each must be one of v1's host functions).
    fileprivate static func parse(_ bytes: [UInt8], name: String) throws(PolicyLoadError) -> Module {
        let module: Module
        do {
            module = try parseWasm(bytes: bytes)
        } catch {
            throw PolicyLoadError(module: name, kind: .malformedModule, message: "not a valid Wasm module: \(error)")
        }
        for entry in module.imports {
            guard entry.module == PolicyABI.hostModule, PolicyHost.provides(entry.name) else {
                throw PolicyLoadError(
                    module: name,
                    kind: .unknownImport,
                    message: "imports \(entry.module).\(entry.name), which ABI v1 does not provide (it offers "
                        + "\(PolicyABI.hostModule): log, counter-add, metadata-get, metadata-set)"
                )
            }
        }
        return module
    }
}

/// One instantiation of a module: its store (fuel, limits), the instance and the exports the host calls.
final class Live {
    /// The instance's store: its fuel, its limiter, its entities.
    let store: Store
    /// The host the imports call: held here because the store's host functions hold it unowned (the host holds
    /// the store's memory, so a strong reference there would be a cycle).
    let host: PolicyHost
    /// The store's memory and table limits.
    let limiter: PolicyResourceLimiter
    /// The exported memory.
    let memory: Memory
    /// `cabi_realloc`.
    let realloc: Function
    /// `abi-version`.
    let abiVersion: Function
    /// `init`.
    let initialize: Function
    /// The stage exports the module has.
    let stageFunctions: [PolicyStage: Function]

    private init(
        store: Store,
        host: PolicyHost,
        limiter: PolicyResourceLimiter,
        memory: Memory,
        realloc: Function,
        abiVersion: Function,
        initialize: Function,
        stageFunctions: [PolicyStage: Function]
    ) {
        self.store = store
        self.host = host
        self.limiter = limiter
        self.memory = memory
        self.realloc = realloc
        self.abiVersion = abiVersion
        self.initialize = initialize
        self.stageFunctions = stageFunctions
    }

    /// Instantiates `module` under `limits` (its start function bounded by `fuelForInit`) and finds the exports
    /// ABI v1 needs, with their types.
    static func make(
        module: Module,
        engine: Engine,
        name: String,
        limits: PolicyLimits,
        host: PolicyHost
    ) throws(PolicyLoadError) -> Live {
        func fail(_ kind: PolicyLoadError.Kind, _ message: String) -> PolicyLoadError {
            PolicyLoadError(module: name, kind: kind, message: message)
        }
        let store = Store(engine: engine)
        let limiter = PolicyResourceLimiter(
            memoryBytes: limits.memoryPages * 65536,
            tableElements: limits.tableElements
        )
        store.resourceLimiter = limiter
        store.fuel = Fuel(remaining: limits.fuelForInit)
        let instance: Instance
        do {
            instance = try module.instantiate(store: store, imports: host.imports(store: store))
        } catch {
            let detail =
                limiter.denied
                ? "over its limit of \(limits.memoryPages) memory pages or "
                    + "\(limits.tableElements) table elements (\(PolicyInstance.describe(error)))"
                : PolicyInstance.describe(error)
            throw fail(.instantiation, "cannot be instantiated: \(detail)")
        }
        guard let memory = instance.exports[memory: PolicyABI.Export.memory] else {
            throw fail(.missingExport, "exports no memory called \"memory\"")
        }
        func function(
            _ export: String,
            _ parameters: [ValueType],
            _ results: [ValueType]
        ) throws(PolicyLoadError)
            -> Function?
        {
            guard let value = instance.exports[export] else { return nil }
            let expected = FunctionType(parameters: parameters, results: results)
            guard case .function(let function) = value, function.type == expected else {
                throw fail(.wrongSignature, "export \(export) is not a function \(describe(expected))")
            }
            return function
        }
        func required(
            _ export: String,
            _ parameters: [ValueType],
            _ results: [ValueType]
        ) throws(PolicyLoadError)
            -> Function
        {
            guard let found = try function(export, parameters, results) else {
                let type = describe(FunctionType(parameters: parameters, results: results))
                throw fail(.missingExport, "missing export \(export) (a function \(type))")
            }
            return found
        }
        let realloc = try required(PolicyABI.Export.realloc, [.i32, .i32, .i32, .i32], [.i32])
        let abiVersion = try required(PolicyABI.Export.abiVersion, [], [.i32])
        let initialize = try required(PolicyABI.Export.initialize, [.i32, .i32], [.i32])
        var stageFunctions: [PolicyStage: Function] = [:]
        for stage in PolicyStage.allCases {
            stageFunctions[stage] = try function(stage.exportName, [.i32], [.i32])
        }
        host.memory = memory
        host.realloc = realloc
        return Live(
            store: store,
            host: host,
            limiter: limiter,
            memory: memory,
            realloc: realloc,
            abiVersion: abiVersion,
            initialize: initialize,
            stageFunctions: stageFunctions
        )
    }

    private static func describe(_ type: FunctionType) -> String {
        "(\(type.parameters.map { "\($0)" }.joined(separator: ", "))) -> "
            + "(\(type.results.map { "\($0)" }.joined(separator: ", ")))"
    }
}

/// Enforces an instance's memory and table limits, and remembers a refusal so that the trap a refused
/// `memory.grow` usually ends in is reported as the memory limit. Used by one store, on one thread at a time.
final class PolicyResourceLimiter: ResourceLimiter, @unchecked Sendable {
    /// The most bytes of linear memory.
    let memoryBytes: Int
    /// The most elements of any table.
    let tableElements: Int
    /// A growth was refused (since the last `reset`).
    var denied = false

    /// A limiter with these bounds.
    init(memoryBytes: Int, tableElements: Int) {
        self.memoryBytes = memoryBytes
        self.tableElements = tableElements
    }

    /// Allows growth up to `memoryBytes`.
    func limitMemoryGrowth(to desired: Int) throws -> Bool {
        guard desired <= memoryBytes else {
            denied = true
            return false
        }
        return true
    }

    /// Allows growth up to `tableElements`.
    func limitTableGrowth(to desired: Int) throws -> Bool {
        guard desired <= tableElements else {
            denied = true
            return false
        }
        return true
    }
}
