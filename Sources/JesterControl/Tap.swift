// SPDX-License-Identifier: Apache-2.0
/// What `jesterctl tap` wants to see: access records of one route, one upstream, one status or status class.
///
/// The master sends the workers the filters of every open tap, and a worker renders and sends only the records
/// some filter matches; with no tap open, workers send nothing and render nothing beyond their access log.
public struct TapFilter: Codable, Sendable, Hashable {
    /// A route's name (`name` in the config, or the `route-N` the loader gave it).
    public var route: String?
    /// An upstream pool's name.
    public var upstream: String?
    /// An exact status (`"404"`) or a class (`"5xx"`).
    public var status: String?

    public init(route: String? = nil, upstream: String? = nil, status: String? = nil) {
        self.route = route
        self.upstream = upstream
        self.status = status
    }

    /// Whether `text` is a status filter: three digits, or a digit 1–5 and "xx".
    public static func isValidStatus(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 3, (UInt8(ascii: "1")...UInt8(ascii: "5")).contains(bytes[0]) else {
            // (Status 0, a request cut by the drain timeout, is a valid exact status too.)
            return text == "0"
        }
        let digits = bytes.dropFirst().allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        let classWildcard = bytes.dropFirst().allSatisfy { $0 == UInt8(ascii: "x") || $0 == UInt8(ascii: "X") }
        return digits || classWildcard
    }

    /// Whether the record is one this filter asks for (every field it sets must match).
    public func matches(route recordRoute: String, upstream recordUpstream: String, status recordStatus: Int) -> Bool {
        if let route, route != recordRoute { return false }
        if let upstream, upstream != recordUpstream { return false }
        if let status {
            if status.count == 3, status.lowercased().hasSuffix("xx") {
                guard let digit = status.first?.wholeNumberValue else { return false }
                return recordStatus / 100 == digit
            }
            return Int(status) == recordStatus
        }
        return true
    }

    /// Whether the record matches any of `filters`.
    public static func any(_ filters: [TapFilter], route: String, upstream: String, status: Int) -> Bool {
        filters.contains { $0.matches(route: route, upstream: upstream, status: status) }
    }
}

/// One tapped access record: what filters look at, and the access-log line itself (JSON, all fields).
public struct TapRecord: Codable, Sendable, Equatable {
    public var route: String
    public var upstream: String
    public var status: Int
    public var line: String

    public init(route: String, upstream: String, status: Int, line: String) {
        self.route = route
        self.upstream = upstream
        self.status = status
        self.line = line
    }
}
