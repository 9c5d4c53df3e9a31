// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Foundation
import JesterConfig
import Logging
import NIOCore

/// Which upstream target host names need resolving, how often, and what they resolved to. Pure: the master
/// feeds it the configurations, the time and the lookups' results.
///
/// Why in the master: a name is looked up once per instance instead of once per worker, workers never block on
/// the resolver, and every worker switches to a new address at the same moment.
struct ResolvedAddresses: Equatable {
    /// Host name → the address it resolved to last ("10.0.0.7", "2001:db8::7").
    private(set) var addresses: [String: String] = [:]
    /// Host name → the resolve interval of the pools that name it (the shortest wins), in seconds.
    private(set) var intervals: [String: Double] = [:]
    /// Host name → when it was last looked up (monotonic seconds).
    private var lookedUpAt: [String: Double] = [:]

    /// Takes the names of `configurations`' targets and of their cluster rate limits' Redis servers (looked up
    /// every 30 s; IP literals need no lookup); names no longer used are forgotten.
    mutating func track(_ configurations: [Configuration]) {
        var wanted: [String: Double] = [:]
        for configuration in configurations {
            for upstream in configuration.upstreams {
                let interval = Double((upstream.resolveInterval ?? .seconds(30)).components.seconds)
                for target in upstream.targets where !Self.isAddressLiteral(target.address.host) {
                    wanted[target.address.host] = min(wanted[target.address.host] ?? interval, interval)
                }
            }
            for case .rateLimit(let limit) in configuration.filters.map(\.kind) {
                guard let host = limit.redis?.address.host, !Self.isAddressLiteral(host) else { continue }
                wanted[host] = min(wanted[host] ?? 30, 30)
            }
        }
        intervals = wanted
        addresses = addresses.filter { wanted[$0.key] != nil }
        lookedUpAt = lookedUpAt.filter { wanted[$0.key] != nil }
    }

    /// The names whose interval has passed at `now` (or that were never looked up); marks them as being looked up.
    mutating func due(now: Double) -> [String] {
        let names = intervals.filter { name, interval in now - (lookedUpAt[name] ?? -.infinity) >= interval }.map(\.key)
        for name in names { lookedUpAt[name] = now }
        return names.sorted()
    }

    /// Records a lookup; true when the name's address changed. A failed lookup (nil) keeps the last address: a
    /// resolver outage must not take targets away.
    mutating func record(_ name: String, address: String?) -> Bool {
        guard intervals[name] != nil, let address, addresses[name] != address else { return false }
        addresses[name] = address
        return true
    }

    static func isAddressLiteral(_ host: String) -> Bool {
        host.contains(":") || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }

    /// The first address getaddrinfo(3) gives for `name` (blocking: call it off the event loop).
    static func lookUp(_ name: String) -> String? {
        (try? SocketAddress.makeAddressResolvingHost(name, port: 0))?.ipAddress
    }
}
