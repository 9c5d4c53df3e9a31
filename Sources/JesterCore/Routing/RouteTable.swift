// SPDX-License-Identifier: Apache-2.0
/// Which host names a route answers for.
public enum HostPattern: Hashable, Sendable, CustomStringConvertible {
    /// Any host (the route has no `hosts`).
    case any
    /// Exactly this name, lowercased, without port.
    case exact(String)
    /// `*.example.com`: any name ending in `.example.com` (stored as the suffix with its dot); not the apex.
    case wildcard(suffix: String)

    /// Parses `example.com` or `*.example.com`, lowercasing it.
    public init(_ text: String) {
        let lowercased = text.lowercased()
        if lowercased.hasPrefix("*.") {
            self = .wildcard(suffix: String(lowercased.dropFirst()))
        } else {
            self = .exact(lowercased)
        }
    }

    /// Whether `name` (lowercase, without port) is one this pattern names.
    public func matches(_ name: String) -> Bool {
        switch self {
        case .any: return true
        case .exact(let expected): return name == expected
        case .wildcard(let suffix): return name.hasSuffix(suffix) && name.count > suffix.count
        }
    }

    public var description: String {
        switch self {
        case .any: return "*"
        case .exact(let name): return name
        case .wildcard(let suffix): return "*" + suffix
        }
    }
}

/// The route table of one listener: host (exact, then the longest matching wildcard, then any) and path prefix
/// (longest wins), compiled once per configuration.
///
/// Generic over what a route leads to, so this pure module does not depend on configuration types. The full
/// matcher set (methods, headers, query, regex, priorities) arrives with the routing issue and replaces the
/// per-host prefix lists here; the lookup signature, bytes in and a value out, stays.
public struct RouteTable<Value: Sendable>: Sendable {
    /// One route as configured.
    public struct Entry: Sendable {
        public var hosts: [HostPattern]
        public var pathPrefix: String
        public var value: Value
        /// Among routes with the same host pattern and prefix, higher ranks are tried first (more specific
        /// conditions, or an explicit priority); equal ranks keep configuration order.
        public var rank: Int

        public init(hosts: [HostPattern], pathPrefix: String, value: Value, rank: Int = 0) {
            self.hosts = hosts.isEmpty ? [.any] : hosts
            self.pathPrefix = pathPrefix
            self.value = value
            self.rank = rank
        }
    }

    /// Path prefixes of one host pattern, answering "longest prefix of this path" in time that depends on the
    /// number of distinct prefix lengths, not the number of routes: a hash of the path's first N bytes is looked
    /// up for each length N in use, longest first, and the hashes of all those lengths come from one pass over
    /// the path. (A linear scan cost ~24 µs per request at 1,000 routes in the benchmark.)
    @usableFromInline
    struct PrefixList: Sendable {
        @usableFromInline var prefixes: [[UInt8]] = []
        /// The routes of each prefix, in the order they are tried.
        @usableFromInline var values: [[Value]] = []
        /// The distinct prefix lengths, shortest first.
        @usableFromInline var lengths: [Int] = []
        /// FNV-1a hash of a prefix → the indices of the prefixes with that hash (compared byte by byte).
        @usableFromInline var byHash: [UInt64: [Int]] = [:]

        @usableFromInline static var hashBasis: UInt64 { 0xcbf2_9ce4_8422_2325 }

        @inlinable @inline(__always)
        static func hash(_ hash: UInt64, _ byte: UInt8) -> UInt64 { (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }

        /// Adds a route under `prefix`, after the routes already there.
        mutating func insert(_ prefix: [UInt8], _ value: Value) {
            let key = prefix.reduce(Self.hashBasis, Self.hash)
            if let existing = byHash[key]?.first(where: { prefixes[$0] == prefix }) {
                values[existing].append(value)
                return
            }
            byHash[key, default: []].append(prefixes.count)
            prefixes.append(prefix)
            values.append([value])
            if !lengths.contains(prefix.count) {
                lengths.append(prefix.count)
                lengths.sort()
            }
        }

        @inlinable
        func match(_ bytes: UnsafeRawBufferPointer, _ path: Range<Int>, _ accept: (Value) -> Bool) -> Value? {
            guard let shortest = lengths.first, shortest <= path.count else { return nil }
            return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: lengths.count) { hashes in
                // One pass over the path: the hash of its first `lengths[i]` bytes, for every length that fits.
                var fitting = 0
                var hash = Self.hashBasis
                var position = 0
                for length in lengths {
                    guard length <= path.count else { break }
                    while position < length {
                        hash = Self.hash(hash, bytes[path.lowerBound + position])
                        position += 1
                    }
                    hashes[fitting] = hash
                    fitting += 1
                }
                // Longest first.
                var index = fitting - 1
                while index >= 0 {
                    if let candidates = byHash[hashes[index]] {
                        let length = lengths[index]
                        for candidate in candidates where prefixes[candidate].count == length {
                            let equal = prefixes[candidate].withUnsafeBytes { prefix in
                                prefix.elementsEqual(bytes[path.lowerBound..<(path.lowerBound + length)])
                            }
                            if equal, let value = values[candidate].first(where: accept) { return value }
                        }
                    }
                    index -= 1
                }
                return nil
            }
        }
    }

    /// Exact host names (lowercase), found by a case-insensitive hash of the request's host bytes: no String is
    /// made per request.
    @usableFromInline var exact: [UInt64: [ExactHost]] = [:]

    /// One exact host name and its routes (a struct, not a tuple: tuple metadata in a generic type is looked up
    /// at run time, which showed up as a tenth of the lookup cost).
    @usableFromInline
    struct ExactHost: Sendable {
        @usableFromInline var name: [UInt8]
        @usableFromInline var routes: PrefixList
    }
    /// Wildcard suffixes, longest first, so `*.api.example.com` wins over `*.example.com`.
    @usableFromInline var wildcards: [(suffix: [UInt8], routes: PrefixList)] = []
    @usableFromInline var fallback = PrefixList()

    public init(_ entries: [Entry]) {
        var wildcardLists: [String: PrefixList] = [:]
        var exactLists: [String: PrefixList] = [:]
        let ordered = entries.enumerated().sorted { ($0.element.rank, -$0.offset) > ($1.element.rank, -$1.offset) }
        for entry in ordered.map(\.element) {
            let prefix = Array(entry.pathPrefix.utf8)
            for host in entry.hosts {
                switch host {
                case .any: fallback.insert(prefix, entry.value)
                case .exact(let name): exactLists[name, default: PrefixList()].insert(prefix, entry.value)
                case .wildcard(let suffix): wildcardLists[suffix, default: PrefixList()].insert(prefix, entry.value)
                }
            }
        }
        for (name, routes) in exactLists {
            let bytes = Array(name.utf8)
            let hash = bytes.withUnsafeBytes { Self.hostHash($0, 0..<$0.count) }
            exact[hash, default: []].append(ExactHost(name: bytes, routes: routes))
        }
        wildcards = wildcardLists.map { (Array($0.key.utf8), $0.value) }.sorted { $0.suffix.count > $1.suffix.count }
    }

    /// Finds the route for a request. `host` is the Host field value (any case, port allowed) and `path` the
    /// request path, both ranges of `bytes`. A host-specific route that matches no path falls through to less
    /// specific host patterns, as nginx's server blocks do not but users of path-only routes expect.
    @inlinable
    public func match(_ bytes: UnsafeRawBufferPointer, host: Range<Int>, path: Range<Int>) -> Value? {
        match(bytes, host: host, path: path) { _ in true }
    }

    /// The most specific route that `accept`s the request: routes whose other conditions (method, headers, ...)
    /// fail are passed over for the next candidate, down to shorter prefixes and less specific hosts.
    @inlinable
    public func match(
        _ bytes: UnsafeRawBufferPointer, host: Range<Int>, path: Range<Int>, where accept: (Value) -> Bool
    ) -> Value? {
        let name = Self.hostName(bytes, host)
        if !exact.isEmpty, !name.isEmpty, let candidates = exact[Self.hostHash(bytes, name)] {
            for candidate in candidates {
                let equal = candidate.name.withUnsafeBytes { ASCII.equalsIgnoringCase(bytes, name, $0, 0..<$0.count) }
                if equal, let value = candidate.routes.match(bytes, path, accept) { return value }
            }
        }
        for wildcard in wildcards where wildcard.suffix.count < name.count {
            let tail = (name.upperBound - wildcard.suffix.count)..<name.upperBound
            let matched = wildcard.suffix.withUnsafeBytes { ASCII.equalsIgnoringCase(bytes, tail, $0, 0..<$0.count) }
            if matched, let value = wildcard.routes.match(bytes, path, accept) { return value }
        }
        return fallback.match(bytes, path, accept)
    }

    /// FNV-1a over the lowercased bytes of a host name.
    @inlinable
    static func hostHash(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64 {
        var hash = PrefixList.hashBasis
        for index in range { hash = PrefixList.hash(hash, ASCII.lowercased(bytes[index])) }
        return hash
    }

    /// The host name without a port and without a trailing dot.
    @inlinable
    static func hostName(_ bytes: UnsafeRawBufferPointer, _ host: Range<Int>) -> Range<Int> {
        var end = host.upperBound
        if host.isEmpty { return host }
        if bytes[host.lowerBound] == UInt8(ascii: "[") {
            // IPv6 literal: the name is everything up to and including "]".
            var index = host.lowerBound
            while index < host.upperBound, bytes[index] != UInt8(ascii: "]") { index += 1 }
            return host.lowerBound..<min(index + 1, host.upperBound)
        }
        var index = host.lowerBound
        while index < host.upperBound, bytes[index] != ASCII.colon { index += 1 }
        end = index
        if end > host.lowerBound, bytes[end - 1] == UInt8(ascii: ".") { end -= 1 }
        return host.lowerBound..<end
    }
}
