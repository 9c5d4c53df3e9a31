// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// The master's view of upstream targets: active health checks, target name resolution, the operators'
/// admin states and the TLS session-ticket keys it hands every worker.
extension Master {
    func startHealthChecks() {
        healthChecker = HealthChecker(eventLoop: eventLoop)
        healthChecker.onChange = { [unowned self] in
            self.broadcastTargetStates()
            self.updateTargetHealthMetrics()
        }
        healthChecker.update(configuration)
    }

    // MARK: Target name resolution

    /// Looks up target host names now (blocking once, so the first workers start with addresses) and then every
    /// second checks which are due, looking those up on a background queue.
    func startResolving() {
        resolved.track([configuration])
        for name in resolved.due(now: monotonicNow) {
            _ = resolved.record(name, address: ResolvedAddresses.lookUp(name))
        }
        healthChecker.updateAddresses(resolved.addresses)
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [unowned self] _ in
            self.resolved.track([self.configuration] + (self.prepared.map { [$0.configuration] } ?? []))
            let names = self.resolved.due(now: self.monotonicNow)
            guard !names.isEmpty else { return }
            let inbox = self.inbox!
            DispatchQueue.global().async {
                let results = names.map { ($0, ResolvedAddresses.lookUp($0)) }
                inbox.post { self.resolutionsArrived(results) }
            }
        }
    }

    func resolutionsArrived(_ results: [(String, String?)]) {
        var changed = false
        for (name, address) in results {
            let previous = resolved.addresses[name]
            guard resolved.record(name, address: address) else {
                if address == nil, previous != nil {
                    logger.warning("cannot resolve upstream target; keeping its last address", metadata: [
                        "host": "\(name)", "address": "\(previous!)"])
                }
                continue
            }
            changed = true
            logger.notice("upstream target address changed", metadata: [
                "host": "\(name)", "from": "\(previous ?? "-")", "to": "\(address ?? "-")"])
        }
        guard changed else { return }
        healthChecker.updateAddresses(resolved.addresses)
        for worker in workers.values {
            if let channel = worker.channel { send(.resolvedAddresses(resolved.addresses), to: channel) }
        }
    }

    // MARK: TLS session-ticket keys

    /// Makes the first key now (unless adopted in an upgrade) and a new one every `ticket_key_rotation`, checked
    /// each minute so a reload that changes the period takes effect without rescheduling.
    func startTicketKeyRotation() {
        rotateTicketKeysIfDue()
        eventLoop.scheduleRepeatedTask(initialDelay: .seconds(60), delay: .seconds(60)) { [unowned self] _ in
            self.rotateTicketKeysIfDue()
        }
    }

    func rotateTicketKeysIfDue() {
        let period = Double((configuration.server.ticketKeyRotation ?? .seconds(3600)).components.seconds)
        guard ticketKeys.isDue(now: monotonicNow, period: period) else { return }
        let first = ticketKeys.keys.isEmpty
        ticketKeys.rotate(to: TicketKeyRing.freshKey(), now: monotonicNow)
        guard !first else { return }
        logger.info("TLS session-ticket key rotated", metadata: ["keys": .stringConvertible(ticketKeys.keys.count)])
        // Every generation, draining ones included: their clients' tickets are renewed under the new key.
        for worker in workers.values { if let channel = worker.channel { send(.ticketKeys(ticketKeys.keys.map { Base64Bytes($0) }), to: channel) } }
    }

    // MARK: Upstream targets

    /// Health and admin state of every target of `configuration`.
    func targetStates(for configuration: Configuration) -> [TargetState] {
        configuration.upstreams.flatMap { upstream in
            upstream.targets.map { target in
                TargetState(
                    upstream: upstream.name, target: target.description,
                    health: healthChecker.health(upstream: upstream.name, target: target.description),
                    admin: adminStates[upstream.name]?[target.description] ?? "enabled")
            }
        }
    }

    func broadcastTargetStates() {
        // The serving configuration's targets, and a starting generation's; a worker ignores targets it lacks.
        let current = targetStates(for: configuration)
        healthChecker.noteTargetStates(current)
        let starting = prepared.map { targetStates(for: $0.configuration) }
        for worker in workers.values {
            guard let channel = worker.channel else { continue }
            let mine = worker.generation == machine.startingGeneration ? starting ?? current : current
            send(.targetStates(mine), to: channel)
        }
    }

    func forgetAdminStatesOfRemovedTargets() {
        for (upstream, targets) in adminStates {
            let existing = Set(configuration.upstream(named: upstream)?.targets.map(\.description) ?? [])
            adminStates[upstream] = targets.filter { existing.contains($0.key) }
            if adminStates[upstream]?.isEmpty == true { adminStates[upstream] = nil }
        }
    }

    /// `jesterctl upstream drain|disable|enable POOL TARGET`.
    /// Sets `target`'s admin state in pool `upstream`, or (nil) in every pool that has it.
    func setTargetAdmin(upstream: String?, target: String, state: String, replyTo channel: any ControlReplyTarget) {
        guard ["enabled", "drain", "disabled"].contains(state) else {
            reply(.failure(message: "unknown target state '\(state)'", reason: .invalidRequest), to: channel)
            return
        }
        let pools: [String]
        if let upstream {
            guard let pool = configuration.upstream(named: upstream) else {
                reply(.failure(message: "no upstream '\(upstream)' (see jesterctl upstreams)", reason: .notFound),
                    to: channel)
                return
            }
            guard pool.targets.contains(where: { $0.description == target }) else {
                reply(.failure(message: "upstream '\(upstream)' has no target '\(target)' (see jesterctl upstreams)",
                    reason: .notFound), to: channel)
                return
            }
            pools = [upstream]
        } else {
            pools = configuration.upstreams.filter { $0.targets.contains { $0.description == target } }.map(\.name)
                .sorted()
            guard !pools.isEmpty else {
                reply(.failure(message: "no upstream has a target '\(target)' (see jesterctl upstreams)",
                    reason: .notFound), to: channel)
                return
            }
        }
        for pool in pools {
            adminStates[pool, default: [:]][target] = state == "enabled" ? nil : state
            logger.notice("upstream target admin state changed", metadata: [
                "upstream": "\(pool)", "target": "\(target)", "state": "\(state)",
            ])
        }
        broadcastTargetStates()
        reply(.done(success: true, message: "\(pools.joined(separator: ", ")) \(target): \(state) on every worker"),
            to: channel)
    }

    /// `jesterctl upstreams`: the master's view of each target with the workers' counters summed.
    func upstreamsReport() -> [TargetReport] {
        var sums: [String: (active: Int, requests: Int, failures: Int, ejected: Int, latency: Double, count: Int)] = [:]
        for worker in workers.values {
            for stats in worker.stats.targets ?? [] {
                let key = stats.upstream + "\u{0}" + stats.target
                var sum = sums[key] ?? (0, 0, 0, 0, 0, 0)
                sum.active += stats.active
                sum.requests += stats.requests
                sum.failures += stats.failures
                sum.ejected += stats.ejected ? 1 : 0
                sum.latency += stats.latencyMilliseconds
                sum.count += 1
                sums[key] = sum
            }
        }
        return targetStates(for: configuration).map { state in
            let sum = sums[state.upstream + "\u{0}" + state.target] ?? (0, 0, 0, 0, 0, 0)
            return TargetReport(
                state: state, active: sum.active, requests: sum.requests, failures: sum.failures,
                ejectedBy: sum.ejected, latencyMilliseconds: sum.count > 0 ? sum.latency / Double(sum.count) : 0,
                failOpen: healthChecker.failsOpen(state.upstream))
        }
    }
}
