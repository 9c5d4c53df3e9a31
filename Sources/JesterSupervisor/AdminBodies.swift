// SPDX-License-Identifier: Apache-2.0
import JesterHTTPAPI
import JesterConfig
import JesterControl

/// The JSON bodies of admin API answers that are not control-protocol types as they are (Docs/admin-openapi.yaml
/// names each schema). Encoded with snake_case keys (`APIResponse.json`).
enum AdminBodies {
    /// `GET /api/v1/config`.
    struct Config: Encodable, Equatable {
        /// The configuration's hash, also the answer's ETag.
        var hash: String
        /// The files it was read from, main file first.
        var files: [String]
        /// What the loader warned about.
        var warnings: [String]
        /// The effective configuration as `jester config dump` writes it, secrets redacted.
        var effectiveConfiguration: String

        init(_ configuration: Configuration) {
            hash = configuration.hash
            files = configuration.files
            warnings = configuration.warnings.map(\.description)
            effectiveConfiguration = configuration.redactingSecrets().renderTOML()
        }
    }

    /// `GET /api/v1/upstreams`: every pool with its targets.
    struct Upstreams: Encodable, Equatable {
        var pools: [Pool]

        /// Groups the dispatcher's per-target rows by pool, in the configuration's pool order (pools without a
        /// row still appear, with no targets).
        init(_ reports: [TargetReport], poolNames: [String]) {
            pools = poolNames.map { name in
                let rows = reports.filter { $0.state.upstream == name }
                return Pool(name: name, failOpen: rows.contains { $0.failOpen == true }, targets: rows.map(Target.init))
            }
        }
    }

    /// One pool.
    struct Pool: Encodable, Equatable {
        var name: String
        /// Every enabled target fails its active checks, so all get requests anyway.
        var failOpen: Bool
        var targets: [Target]
    }

    /// One target of a pool: the master's health and admin state, the workers' counters summed.
    struct Target: Encodable, Equatable {
        /// `host:port` as configured.
        var address: String
        /// "healthy", "unhealthy" or "unknown".
        var health: String
        /// "enabled", "drain" or "disabled".
        var admin: String
        var active: Int
        var requests: Int
        var failures: Int
        /// Workers whose passive health check ejected it.
        var ejectedBy: Int
        var latencyMilliseconds: Double

        init(_ report: TargetReport) {
            address = report.state.target
            health = report.state.health
            admin = report.state.admin
            active = report.active
            requests = report.requests
            failures = report.failures
            ejectedBy = report.ejectedBy
            latencyMilliseconds = report.latencyMilliseconds
        }
    }

    /// The answer to a target action.
    struct TargetAction: Encodable, Equatable {
        var target: String
        /// The admin state now in force: "drain", "disabled" or "enabled".
        var admin: String
        /// The pools it was set in.
        var pools: [String]
        var message: String
    }

    /// The answer to `POST /api/v1/drain`, sent before the instance goes.
    struct Drain: Encodable, Equatable {
        var stopping: Bool
        var message: String
    }
}
