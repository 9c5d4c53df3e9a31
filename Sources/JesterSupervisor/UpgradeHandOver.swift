// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterSystem

/// What the master's old program hands its new one across a binary upgrade (exec in place, see jester(8),
/// BINARY UPGRADE): the descriptors that must stay open, and the state needed to keep supervising the workers
/// the old program started.
///
/// It travels in one environment variable, which the new program removes before it spawns anything. Descriptors
/// travel by number: exec keeps every descriptor not marked close-on-exec, at the same number.
struct UpgradeHandOver: Codable, Equatable {
    /// Bumped when a field changes meaning; a program that cannot read a hand-over must not start from it.
    static let currentFormat = 1
    static let environmentVariable = "JESTER_UPGRADE_HANDOVER"

    struct Listener: Codable, Equatable {
        var settings: ListenerSettings
        /// One listening socket per worker slot.
        var fds: [Int32]
        /// With `http3 = true`, its UDP sockets (one per slot of the serving generation) and the program and maps
        /// that steer them (optional: a hand-over from a version without HTTP/3 or without steering).
        var datagramFDs: [Int32]? = nil
        var steering: Steering? = nil
    }

    /// `QUICSteering`'s descriptors: the adopted workers' connection IDs stay in its maps, so their connections
    /// keep reaching them while the new program's generation starts beside them.
    struct Steering: Codable, Equatable {
        var program: Int32
        var owners: Int32
        var newConnections: Int32
    }

    struct AdoptedWorker: Codable, Equatable {
        var pid: Int32
        var slot: Int
        var generation: Int
        var state: String
        /// Wall-clock start (the monotonic clock's origin does not survive exec).
        var startedAt: Double
        var configHash: String
        var drainDeadline: Double?
        /// The master's end of the worker's socketpair.
        var controlFD: Int32
        /// Bytes of a control frame read but not yet complete, so the new program reads the rest in step.
        var pendingBytes: [UInt8]
        /// Its partition of the connection table (optional: a hand-over from a version without one).
        var connectionPartition: Int? = nil
        /// Its partition of the metrics table (optional: a hand-over from a version without metrics).
        var metricsPartition: Int? = nil
        /// Its HTTP/3 forwarding inboxes (optional: steered, without HTTP/3, or from a version without them).
        var quicInboxes: [QUICInbox]? = nil
    }

    var format = currentFormat
    var fromVersion: String
    var masterStartedAt: Double
    var generation: Int
    /// The configuration the old program served, as JSON decoded on its own (a changed field must not spoil the
    /// rest). It stays in force until the new generation is ready, like the old configuration during a reload.
    var configuration: Data
    var controlSocketFD: Int32
    var listeners: [String: Listener]
    var activatedSockets: [Systemd.ActivatedSocket]
    /// Descriptors in systemd's store, by fd (see `Systemd.storeDescriptor`).
    var storedDescriptorNames: [Int32: String]
    /// Operators' target admin states (`jesterctl upstream drain`), by upstream and target; optional so a
    /// hand-over from a version without them still reads.
    var adminStates: [String: [String: String]]? = nil
    /// The TLS session-ticket keys, so clients resume across the upgrade.
    var ticketKeys: [Data]? = nil
    /// The instance's QUIC secrets, so tokens and stateless resets of the adopted workers stay valid.
    var quicKeys: Data? = nil
    var workers: [AdoptedWorker]
    /// The connection table the adopted workers count in, which the new generation shares.
    var connectionTableFD: Int32? = nil
    /// The rate-limit table every generation decides on (optional: a hand-over from a version without one).
    var rateLimitTableFD: Int32? = nil
    /// HTTP/3 0-RTT's replay records (optional: a hand-over from a version without them).
    var earlyDataTableFD: Int32? = nil
    /// The metrics table every generation counts in, so totals survive the upgrade (optional: a hand-over from
    /// a version without one).
    var metricsTableFD: Int32? = nil
    /// The shared HTTP cache's index (optional: no route caches, or a hand-over from a version without one).
    var cacheIndexFD: Int32? = nil
    /// The admin API's listening socket and what it is bound to (optional: none configured, or a hand-over from
    /// a version without one).
    var adminSocketFD: Int32? = nil
    var adminEndpoint: AdminSettings.Endpoint? = nil

    /// Every descriptor the new program needs open.
    var descriptors: Set<Int32> {
        var all = [controlSocketFD] + listeners.values.flatMap(\.fds) + activatedSockets.map(\.fd)
        all += workers.map(\.controlFD)
        all += listeners.values.flatMap { listener in
            (listener.datagramFDs ?? []) + (listener.steering.map { [$0.program, $0.owners, $0.newConnections] } ?? [])
        }
        let tables: [Int32?] = [connectionTableFD, rateLimitTableFD, earlyDataTableFD, metricsTableFD, cacheIndexFD]
        all += (tables + [adminSocketFD]).compactMap { $0 }
        return Set(all)
    }

    func encoded() throws -> String {
        String(decoding: try JSONEncoder().encode(self), as: UTF8.self)
    }

    /// Takes the hand-over from the environment (and removes it there, so no child sees it). Nil when this
    /// program was not started by an upgrade.
    static func takeFromEnvironment() throws -> UpgradeHandOver? {
        guard let text = ProcessInfo.processInfo.environment[environmentVariable] else { return nil }
        unsetenv(environmentVariable)
        struct FormatOnly: Decodable { var format: Int }
        let data = Data(text.utf8)
        let format = try JSONDecoder().decode(FormatOnly.self, from: data).format
        guard format == currentFormat else { throw UnreadableHandOver(format: format) }
        return try JSONDecoder().decode(UpgradeHandOver.self, from: data)
    }

    struct UnreadableHandOver: Error, Equatable, CustomStringConvertible {
        var format: Int
        var description: String {
            "upgrade hand-over format \(format) is not supported (this binary reads format \(UpgradeHandOver.currentFormat))"
        }
    }
}
