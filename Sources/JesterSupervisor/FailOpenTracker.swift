// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// Which upstream pools are failing open: every target that may take requests fails its active checks, so the
/// workers' balancers ignore the checks and send requests to them all (a check that fails everywhere is more
/// likely wrong than every target). Pure: the master feeds it each new picture of target states and logs the
/// changes, once on entering and once on leaving the state, and `jesterctl upstreams` shows it.
struct FailOpenTracker: Sendable, Equatable {
    /// A pool entered or left the fail-open state.
    enum Change: Sendable, Equatable {
        /// Every one of `targets` serving targets is unhealthy: requests go to them anyway.
        case entered(upstream: String, targets: Int)
        case left(upstream: String)
    }

    /// The pools failing open now.
    private(set) var pools: Set<String> = []

    /// Takes the whole picture of target states (as the master sends workers) and returns what changed, in pool
    /// order. Mirrors `UpstreamBalancer`: a target taken out by an operator ("drain", "disabled") takes no
    /// requests either way, so a pool fails open when it has targets still enabled and every one of them is
    /// unhealthy. Pools missing from `states` (removed by a reload) are forgotten without a change.
    mutating func update(_ states: [TargetState]) -> [Change] {
        var order: [String] = []
        var enabled: [String: (count: Int, unhealthy: Int)] = [:]
        for state in states {
            if enabled[state.upstream] == nil {
                order.append(state.upstream)
                enabled[state.upstream] = (0, 0)
            }
            guard state.admin == "enabled" else { continue }
            enabled[state.upstream]!.count += 1
            if state.health == "unhealthy" { enabled[state.upstream]!.unhealthy += 1 }
        }
        var changes: [Change] = []
        var now: Set<String> = []
        for upstream in order {
            let counts = enabled[upstream]!
            let failingOpen = counts.count > 0 && counts.unhealthy == counts.count
            if failingOpen { now.insert(upstream) }
            if failingOpen, !pools.contains(upstream) {
                changes.append(.entered(upstream: upstream, targets: counts.count))
            }
            if !failingOpen, pools.contains(upstream) { changes.append(.left(upstream: upstream)) }
        }
        pools = now
        return changes
    }
}
