// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterControl
import JesterLogging
import JesterMetrics
import JesterSystem
import JesterWasm
import Logging
import NIOCore

extension PolicyLimits {
    /// The bounds a policy's settings give (`[policies.NAME]`): fuel, memory, the wall-clock deadline and bodies.
    public init(_ settings: PolicySettings) {
        let (seconds, attoseconds) = settings.timeout.components
        self.init(
            fuelPerCall: UInt64(max(settings.fuel, 1)),
            memoryPages: Int(max(settings.memoryLimit / 65536, 1)),
            deadlineNanoseconds: UInt64(max(seconds, 0)) * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000),
            bodyBytes: Int(settings.bodyLimit),
            resultBytes: Int(settings.bodyLimit) + (1 << 20))
    }
}

/// One policy in one worker: its instance (one per worker, which runs a single event loop, so one per event loop),
/// its settings, and what its calls came to, for the log, the metrics and `jesterctl status`.
///
/// A call never throws and never lets a trap out (`PolicyInstance.run`); every failure comes back as
/// `.failed`, which the exchange turns into the policy's `error_status` (fail closed). A module that cannot be
/// instantiated in the worker (the master checked it, so only when memory is short) fails every call the same way.
/// Loop-confined.
final class WorkerPolicy: @unchecked Sendable {
    let settings: PolicySettings
    private let instance: PolicyInstance?
    /// Why the worker has no instance (every call fails closed with it).
    private let loadFailure: String?
    private let logger: Logger

    /// Calls per stage and outcome since the worker started (the metrics read them).
    private(set) var calls: [PolicyCallOutcome: Int] = [:]
    /// When the last failure was logged, to log at most one per second per policy (a trapping policy under load
    /// would otherwise write a line per request); failures in between are counted in the next line.
    private var lastFailureLog: NIODeadline?
    private var unloggedFailures = 0
    /// Where its calls are counted (`WorkerRuntime.attachMetrics`); nil: not counted.
    var metrics: (writer: MetricsWriter, ids: PolicyMetricIDs)? {
        didSet { reportedMemory = 0; reportMemory() }
    }
    /// What the policy counted (`counter-add`) since the worker started: the master turns the totals every worker
    /// reports into `jester_policy_counter_total`.
    private(set) var counterTotals: [String: Int64] = [:]
    /// The memory this worker last added to the policy's gauge.
    private var reportedMemory = 0

    var name: String { settings.name }
    /// The body the policy reads, at most; nil: it reads none.
    var bodyLimit: Int? { settings.readsBody ? Int(settings.bodyLimit) : nil }

    /// Instantiates the module (bytes from the configuration) and runs its `init`.
    init(settings: PolicySettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        do {
            let module = try PolicyModule.load(
                bytes: Array(settings.moduleBytes), name: settings.module, limits: PolicyLimits(settings))
            instance = try PolicyInstance(module: module, policyID: settings.name, config: settings.config)
            loadFailure = nil
            consecutiveFailures = 0
        } catch {
            instance = nil
            loadFailure = error.message
            consecutiveFailures = settings.failureThreshold
            logger.error(
                "policy cannot run in this worker: its requests are refused",
                metadata: ["policy": "\(settings.name)", "error": "\(error.message)"])
        }
    }

    /// Failed calls in a row: past `failure_threshold` the policy is reported failed.
    /// (Counted here rather than by the instance: an action the exchange refuses, a field Jester manages, is a
    /// failed call too.) A worker without an instance starts failed.
    private(set) var consecutiveFailures: Int
    var isFailed: Bool { consecutiveFailures >= settings.failureThreshold }
    /// The instance's linear memory, in bytes.
    var memoryBytes: Int { instance?.memoryBytes ?? 0 }

    /// What the worker reports of the policy to the master every second (`jesterctl status`).
    var stats: PolicyStats {
        let total = calls.values.reduce(0, +)
        let failures = calls.filter { $0.key.result == .failed }.values.reduce(0, +)
        return PolicyStats(
            name: name, calls: total, failures: failures, consecutiveFailures: consecutiveFailures, failed: isFailed,
            memoryBytes: memoryBytes, counters: counterTotals.isEmpty ? nil : counterTotals)
    }

    /// Runs `stage` on `context` with the request's `metadata` bag; logs what the policy logged, and failures.
    /// `check`: what the caller refuses in an action the module returned (a field Jester manages, a change the
    /// request cannot take), as a problem; such a call is a failure like a malformed action, counted and logged so.
    func run(
        _ stage: PolicyStage, context: PolicyContext, metadata: inout PolicyMetadata,
        check: (PolicyOutcome) -> String? = { _ in nil }
    ) -> PolicyOutcome {
        guard let instance else {
            let outcome = PolicyOutcome.failed(PolicyFailure(.instantiation, loadFailure ?? "no instance"))
            count(stage, outcome)
            return outcome
        }
        let started = metrics == nil ? nil : NIODeadline.now()
        var outcome = instance.run(stage, context: context, metadata: &metadata)
        if case .failed = outcome {
        } else if let problem = check(outcome) {
            outcome = .failed(PolicyFailure(.malformedResult, problem))
        }
        if let started, let metrics {
            metrics.writer.observe(
                metrics.ids.durations[stage.position], nanoseconds: (NIODeadline.now() - started).nanoseconds,
                bounds: HistogramBuckets.policyNanoseconds)
            reportMemory()
        }
        let counted = instance.takeCounters().counters
        if !counted.isEmpty { counterTotals.merge(counted, uniquingKeysWith: &+) }
        for line in instance.lastLogs {
            logger.log(
                level: line.level.swiftLogLevel, "\(line.message)",
                metadata: ["policy": "\(settings.name)", "stage": "\(stage)"])
        }
        count(stage, outcome)
        if case .failed(let failure) = outcome { logFailure(failure, stage: stage) }
        return outcome
    }

    private func count(_ stage: PolicyStage, _ outcome: PolicyOutcome) {
        let call = PolicyCallOutcome(stage: stage, outcome: outcome)
        consecutiveFailures = call.result == .failed ? consecutiveFailures + 1 : 0
        calls[call, default: 0] += 1
        guard let metrics else { return }
        metrics.writer.add(metrics.ids.calls[stage.position * PolicyDecision.allCases.count + call.result.position])
    }

    /// Brings the memory gauge up to date with the instance (which grows, or is made again after a trap).
    private func reportMemory() {
        guard let metrics, memoryBytes != reportedMemory else { return }
        metrics.writer.add(metrics.ids.memory, Int64(memoryBytes - reportedMemory))
        reportedMemory = memoryBytes
    }

    private func logFailure(_ failure: PolicyFailure, stage: PolicyStage) {
        let now = NIODeadline.now()
        if let last = lastFailureLog, now - last < .seconds(1) {
            unloggedFailures += 1
            return
        }
        var metadata: Logger.Metadata = [
            "policy": "\(settings.name)", "stage": "\(stage)", "kind": "\(failure.kind.rawValue)",
            "error": "\(failure.message)",
        ]
        if unloggedFailures > 0 { metadata["more_failures"] = "\(unloggedFailures)" }
        if isFailed { metadata["consecutive_failures"] = "\(consecutiveFailures)" }
        logger.warning("policy call failed: request refused", metadata: metadata)
        lastFailureLog = now
        unloggedFailures = 0
    }
}

/// A call's stage and how it ended, as the metrics count it.
struct PolicyCallOutcome: Hashable {
    let stage: PolicyStage
    let result: Result

    enum Result: String, Hashable, CaseIterable {
        case proceed, respond, deny
        case failed

        /// Its place in `PolicyDecision.allCases` (the metrics' columns).
        var position: Int {
            switch self {
            case .proceed: 0
            case .respond: 1
            case .deny: 2
            case .failed: 3
            }
        }
    }

    init(stage: PolicyStage, outcome: PolicyOutcome) {
        self.stage = stage
        switch outcome {
        case .proceed, .proceedResponse: result = .proceed
        case .respond: result = .respond
        case .deny: result = .deny
        case .failed: result = .failed
        }
    }
}

extension PolicyStage {
    /// Its place in `PolicyStageName.allCases` (the metrics' rows).
    var position: Int {
        switch self {
        case .preRoute: 0
        case .preUpstream: 1
        case .postResponse: 2
        }
    }
}

extension PolicyLogLevel {
    var swiftLogLevel: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warn: .warning
        case .error: .error
        }
    }
}

/// Field names as policies see them: lowercase, made straight from the bytes in one pass (a name of up to 15
/// bytes is a small string, no allocation), rather than `String.lowercased()`, which goes through Unicode case
/// mapping and allocates for every name: a policy's context is built on every request it meets.
enum PolicyFieldName {
    static func lowercase(_ bytes: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: bytes.count) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[index] = byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
            }
            return bytes.count
        }
    }
}
