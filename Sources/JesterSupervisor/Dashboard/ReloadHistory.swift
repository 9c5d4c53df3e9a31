// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The last reloads and binary upgrades with their outcomes, newest first (`GET /api/v1/reloads`, the dashboard's
/// reload history).
///
/// `jesterctl status` keeps only the last failure; an operator looking at a dashboard wants to see the sequence
/// (two good reloads, then a bad one, then a fix) to tell when the running configuration changed. Bounded, so a
/// deploy script reloading every minute for a year costs the master the same few kilobytes. Pure: the master
/// passes the time in. Encoded as `{"reloads": [...]}` with snake_case keys (`ReloadHistory` in
/// Docs/admin-openapi.yaml).
struct ReloadHistory: Encodable, Equatable, Sendable {
    /// One finished reload or upgrade.
    struct Entry: Encodable, Equatable, Sendable {
        /// Seconds since the epoch when it finished (committed or rolled back).
        var at: Double
        /// "reload" or "upgrade".
        var kind: String
        var success: Bool
        /// The generation serving afterwards: the new one, or the old one still serving after a failure.
        var generation: Int
        /// The hash of the configuration serving afterwards.
        var configHash: String
        /// Why it failed (empty on success), as the reload's own answer says it.
        var errors: [String]
    }

    /// How many outcomes are kept: enough for a day of an ordinary deploy rhythm, small enough to send every poll.
    static let capacity = 20

    /// Newest first.
    private(set) var reloads: [Entry] = []

    /// A transaction ended with `result` at `at`; the oldest entry goes once there are `capacity`.
    mutating func record(_ result: ReloadResult, kind: String, at: Double) {
        reloads.insert(Entry(at: at, kind: kind, success: result.success, generation: result.generation,
            configHash: result.configHash, errors: result.errors), at: 0)
        if reloads.count > Self.capacity { reloads.removeLast(reloads.count - Self.capacity) }
    }
}
