// SPDX-License-Identifier: Apache-2.0
import Logging

/// The `component` of an operational log line: one name per role, so `jq 'select(.component == "jester.health")'`
/// or `journalctl ... | grep jester.tls` finds every line of that role and nothing else.
///
/// jester(8) lists these names; a new role gets a case here (and a line there), never a label made up at a call
/// site, which is how one role used to log as "master", "worker" and "jester.worker" at once.
public enum LogComponent: String, Sendable, CaseIterable {
    /// The master process: start and stop, workers spawned and exited, reloads, binary upgrades, listeners, the
    /// control socket, shared tables.
    case master = "jester.master"
    /// Configuration warnings and errors, at start and on reload.
    case config = "jester.config"
    /// A worker process: its start, drain and exit, refused connections, protocol errors of its clients.
    case worker = "jester.worker"
    /// Active health checks (in the master): target health changes and pools failing open.
    case health = "jester.health"
    /// Upstream pools in the workers: TLS to targets, targets ejected by passive health checks, address changes.
    case upstream = "jester.upstream"
    /// Client TLS handshakes that failed: each at debug, and a rate-limited warning that sums them up.
    case tls = "jester.tls"
    /// JSON Web Key Sets the master fetches for jwt filters.
    case jwks = "jester.jwks"
    /// The Redis connection behind cluster-wide rate limits.
    case rateLimit = "jester.ratelimit"
    /// The control plane (`jester control-plane`): its store, its REST API's accepted and refused changes.
    case controlPlane = "jester.control-plane"
}

extension Logger {
    /// A logger whose lines carry `component` (see `LogComponent`).
    public init(component: LogComponent) {
        self.init(label: component.rawValue)
    }
}
