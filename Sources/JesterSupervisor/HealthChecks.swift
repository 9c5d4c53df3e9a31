// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import Logging
import NIOCore
import NIOPosix

/// A target's health as active checks see it: rise and fall thresholds over consecutive results. Pure.
///
/// A target starts `unknown`, which counts as usable; its first result decides at once (so a dead target is
/// out after one check when Jester starts), and after that it takes `rise` successes or `fall` failures in a
/// row to change.
public struct TargetHealth: Sendable, Equatable {
    public enum State: String, Sendable {
        case unknown, healthy, unhealthy
    }

    public private(set) var state = State.unknown
    public let rise: Int
    public let fall: Int
    /// Checks passed in a row (0 after a failure): with `failures`, what a health-change line says was behind
    /// the decision.
    public private(set) var successes = 0
    /// Checks failed in a row (0 after a success).
    public private(set) var failures = 0

    public init(rise: Int, fall: Int) {
        self.rise = max(1, rise)
        self.fall = max(1, fall)
    }

    /// Records one check; true when the state changed.
    public mutating func record(success: Bool) -> Bool {
        if success {
            successes += 1
            failures = 0
            if state != .healthy, state == .unknown || successes >= rise {
                state = .healthy
                return true
            }
        } else {
            failures += 1
            successes = 0
            if state != .unhealthy, state == .unknown || failures >= fall {
                state = .unhealthy
                return true
            }
        }
        return false
    }
}

/// Runs every pool's active health checks once per instance, in the master, and reports changes; the master
/// passes them to every worker. Loop-confined to the master's event loop.
final class HealthChecker: @unchecked Sendable {
    private struct Key: Hashable {
        var upstream: String
        var target: String
    }

    private final class Checked {
        let settings: HealthCheckSettings
        var address: SocketAddress?
        let host: String
        var health: TargetHealth
        var task: Scheduled<Void>?

        init(settings: HealthCheckSettings, address: SocketAddress?, host: String) {
            self.settings = settings
            self.address = address
            self.host = host
            health = TargetHealth(rise: settings.rise, fall: settings.fall)
        }
    }

    private let eventLoop: any EventLoop
    private var checked: [Key: Checked] = [:]
    private let logger = Logger(component: .health)
    /// Called on the event loop when a target's state changes.
    var onChange: () -> Void = {}
    /// The pools failing open (every serving target unhealthy), as last seen by `noteTargetStates`.
    private(set) var failOpen = FailOpenTracker()

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// The health of a target: "healthy", "unhealthy" or "unknown" (also for targets without checks).
    func health(upstream: String, target: String) -> String {
        checked[Key(upstream: upstream, target: target)]?.health.state.rawValue ?? TargetHealth.State.unknown.rawValue
    }

    /// Whether pool `upstream` fails open now (its targets all fail their checks and get requests anyway).
    func failsOpen(_ upstream: String) -> Bool { failOpen.pools.contains(upstream) }

    /// Takes the picture of target states the master sends its workers and logs pools entering and leaving the
    /// fail-open state, once each way.
    func noteTargetStates(_ states: [TargetState]) {
        for change in failOpen.update(states) {
            switch change {
            case .entered(let upstream, let targets):
                logger.error(
                    "every target of the upstream fails its health checks; failing open: requests go to all of them",
                    metadata: [
                        "upstream": .string(upstream), "targets": .stringConvertible(targets),
                        "fail_open": .stringConvertible(true),
                    ])
            case .left(let upstream):
                logger.notice("upstream no longer fails open: requests go to its healthy targets only", metadata: [
                    "upstream": .string(upstream), "fail_open": .stringConvertible(false),
                ])
            }
        }
    }

    /// Checks what `configuration` asks for: targets that stay (same pool, address and check) keep their state
    /// and schedule; new ones start with a first check soon; removed ones stop.
    func update(_ configuration: Configuration) {
        var wanted: [Key: (HealthCheckSettings, UpstreamTarget)] = [:]
        for upstream in configuration.upstreams {
            guard let check = upstream.healthCheck else { continue }
            for target in upstream.targets {
                wanted[Key(upstream: upstream.name, target: target.description)] = (check, target)
            }
        }
        for (key, entry) in checked where wanted[key]?.0 != entry.settings {
            entry.task?.cancel()
            checked[key] = nil
        }
        for (key, (settings, target)) in wanted where checked[key] == nil {
            let address = try? SocketAddress.makeAddressResolvingHost(target.address.host, port: target.address.port)
            let entry = Checked(settings: settings, address: address, host: target.description)
            checked[key] = entry
            schedule(key, entry, after: Double.random(in: 0...0.2))
        }
    }

    /// Follows the master's lookups of target host names: checks probe the new address from their next round.
    func updateAddresses(_ addresses: [String: String]) {
        for entry in checked.values {
            guard let spec = SocketAddressSpec(parsing: entry.host), let ip = addresses[spec.host],
                let address = try? SocketAddress(ipAddress: ip, port: spec.port)
            else { continue }
            entry.address = address
        }
    }

    private func schedule(_ key: Key, _ entry: Checked, after seconds: Double) {
        entry.task = eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) { [self] in
            guard checked[key] === entry else { return }
            probe(entry) { outcome in
                guard self.checked[key] === entry else { return }
                let previous = entry.health.state
                if entry.health.record(success: outcome.passed) {
                    self.logChange(key, entry.health, from: previous, outcome: outcome)
                    self.onChange()
                }
                let interval = Self.seconds(entry.settings.interval)
                self.schedule(key, entry, after: interval * Double.random(in: 0.9...1.1))
            }
        }
    }

    /// "upstream target health changed", with why (the last check's outcome) and the run of results behind it.
    private func logChange(
        _ key: Key, _ health: TargetHealth, from previous: TargetHealth.State, outcome: ProbeOutcome
    ) {
        var metadata: Logger.Metadata = [
            "upstream": .string(key.upstream), "target": .string(key.target), "health": .string(health.state.rawValue),
            "previous": .string(previous.rawValue), "reason": .string(outcome.description),
            "passes": .stringConvertible(health.successes), "fails": .stringConvertible(health.failures),
        ]
        // The threshold that decided, unless it was the first check (which decides alone).
        if previous != .unknown {
            metadata[health.state == .healthy ? "rise" : "fall"] = .stringConvertible(
                health.state == .healthy ? health.rise : health.fall)
        }
        let level: Logger.Level = health.state == .unhealthy ? .warning : .notice
        logger.log(level: level, "upstream target health changed", metadata: metadata)
    }

    /// One check: a TCP connection, and for http a GET whose status line must carry an expected status.
    private func probe(_ entry: Checked, _ completion: @escaping (ProbeOutcome) -> Void) {
        guard let address = entry.address else {
            completion(.unresolved)
            return
        }
        var finished = false
        let finish = { (outcome: ProbeOutcome) in
            guard !finished else { return }
            finished = true
            completion(outcome)
        }
        let timeout = TimeAmount.nanoseconds(Int64(Self.seconds(entry.settings.timeout) * 1e9))
        let request = entry.settings.type == "tcp" ? nil
            : "GET \(entry.settings.path) HTTP/1.1\r\nHost: \(entry.host)\r\nUser-Agent: jester-health-check\r\nConnection: close\r\n\r\n"
        let expected = entry.settings.expectStatus
        let deadline = eventLoop.scheduleTask(in: timeout) { finish(.timedOut) }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ProbeHandler(request: request, expected: expected) { outcome in
                            deadline.cancel()
                            finish(outcome)
                        })
                }
            }
            .connect(to: address)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    deadline.futureResult.whenSuccess { _ in channel.close(promise: nil) }  // timed out: let go
                case .failure(let error):
                    deadline.cancel()
                    finish(ProbeOutcome.classify(error))
                }
            }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

/// One health check connection: sends the request (if any) and judges the status line.
private final class ProbeHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let request: String?
    private let expected: ClosedRange<Int>
    private let done: (ProbeOutcome) -> Void
    private var received: [UInt8] = []
    private var answered = false

    init(request: String?, expected: ClosedRange<Int>, done: @escaping (ProbeOutcome) -> Void) {
        self.request = request
        self.expected = expected
        self.done = done
    }

    func channelActive(context: ChannelHandlerContext) {
        guard let request else {
            answer(.passed(status: nil), context)
            return
        }
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: request)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytesView
        guard let outcome = ProbeOutcome.judge(received, expected: expected) else { return }
        answer(outcome, context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        answer(.closedEarly, context)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        answer(ProbeOutcome.classify(error), context)
    }

    private func answer(_ outcome: ProbeOutcome, _ context: ChannelHandlerContext) {
        guard !answered else { return }
        answered = true
        done(outcome)
        context.close(promise: nil)
    }
}
