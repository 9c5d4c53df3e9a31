// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// `[cache]`: where the instance's one HTTP cache keeps its bodies and how large it may grow (jester.toml(5), HTTP
/// CACHE).
///
/// One store for the whole instance, shared by every worker of every generation: the master creates its index in
/// shared memory when a route first caches and keeps it across reloads and binary upgrades. Routes opt in with
/// `cache = { ... }` (`RouteCacheSettings`); without such a route nothing is created.
public struct CacheStoreSettings: Sendable, Codable, Equatable {
    /// The directory of body files (`path`); the master creates it and gives it to the workers' user.
    public var path: String
    /// The bytes all bodies and their headers may take; past it the least recently used entries go (`max_size`).
    public var maxSize: Int64
    /// Slots of the shared index: at most this many entries (`entries`; 128 bytes each, touched as used).
    public var entries: Int
    /// How long a request waits for another's fetch of the same key, and a fetch may hold its key
    /// (`lock_timeout`, nginx's `proxy_cache_lock_timeout`).
    public var lockTimeout: Duration
    /// How long a key whose response could not be stored goes upstream in parallel instead of queueing
    /// (`uncacheable_hold`).
    public var uncacheableHold: Duration

    /// The defaults of a configuration without `[cache]`.
    public init() {
        path = "/var/cache/jester"
        maxSize = 1 << 30
        entries = 65_536
        lockTimeout = .seconds(5)
        uncacheableHold = .seconds(10)
    }
}

/// `cache = { ... }` of a route: which of its responses the shared cache answers and stores, and how it keys them.
/// Kept as written; the data plane compiles it into JesterCache's `CachePolicy`.
public struct RouteCacheSettings: Sendable, Codable, Equatable {
    /// How the query takes part in the key (`key_query`).
    public enum QueryKey: Sendable, Codable, Equatable {
        /// As received (`"whole"`, the default).
        case whole
        /// Not at all (`"ignore"`).
        case ignored
        /// Only these parameters, sorted (`["page", "lang"]`).
        case only([String])
    }

    /// Methods answered from the cache (`methods`): GET, and HEAD from a stored GET.
    public var methods: [String]
    public var keyQuery: QueryKey
    /// Request fields added to every key (`key_headers`).
    public var keyHeaders: [String]
    /// Fields that may change an origin's answer without being keyed (`unkeyed_headers`); nil: the built-in list.
    public var unkeyedHeaders: [String]?
    /// `"strip"` them from what goes upstream (the default) or `"bypass"` the cache for requests carrying them
    /// (`unkeyed_action`).
    public var bypassUnkeyed: Bool
    /// Requests with `Authorization` use the cache (`cache_authorized`).
    public var cacheAuthorized: Bool
    /// Requests with `Cookie` use the cache (`cache_cookies`).
    public var cacheCookies: Bool
    /// Responses with `Set-Cookie` are stored without it (`set_cookie = "strip"`) instead of not at all.
    public var storeWithoutSetCookie: Bool
    /// Heuristic freshness for responses without a lifetime but with `Last-Modified`, in percent of their age
    /// (`heuristic_percent`; 0: none, RFC 9111's default for a cache that is not told).
    public var heuristicPercent: Int
    /// The longest lifetime the heuristic grants (`heuristic_max`).
    public var heuristicMax: Duration
    /// `stale-if-error` for responses that give none (`stale_if_error`).
    public var staleIfError: Duration?
    /// A client's `no-cache` and `max-age=0` make the cache revalidate (`client_revalidation`, the RFC's
    /// behaviour); false protects the origin from reload storms.
    public var clientRevalidation: Bool
    /// The largest body stored (`max_object_size`).
    public var maxObjectSize: Int64

    /// The defaults of `cache = {}`.
    public init() {
        methods = ["GET", "HEAD"]
        keyQuery = .whole
        keyHeaders = []
        unkeyedHeaders = nil
        bypassUnkeyed = false
        cacheAuthorized = false
        cacheCookies = false
        storeWithoutSetCookie = false
        heuristicPercent = 0
        heuristicMax = .seconds(86_400)
        staleIfError = nil
        clientRevalidation = true
        maxObjectSize = 64 << 20
    }

    /// The `cache = { ... }` line of `jester config dump`, every key written so it reads back the same. Header
    /// names and parameters were checked as tokens: none needs escapes.
    var renderedTOML: String {
        func list(_ items: [String]) -> String { "[" + items.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        var parts = ["methods = " + list(methods)]
        switch keyQuery {
        case .whole: parts.append("key_query = \"whole\"")
        case .ignored: parts.append("key_query = \"ignore\"")
        case .only(let names): parts.append("key_query = " + list(names))
        }
        parts.append("key_headers = " + list(keyHeaders))
        if let unkeyedHeaders { parts.append("unkeyed_headers = " + list(unkeyedHeaders)) }
        parts.append("unkeyed_action = \"\(bypassUnkeyed ? "bypass" : "strip")\"")
        parts.append("cache_authorized = \(cacheAuthorized)")
        parts.append("cache_cookies = \(cacheCookies)")
        parts.append("set_cookie = \"\(storeWithoutSetCookie ? "strip" : "do_not_store")\"")
        parts.append("heuristic_percent = \(heuristicPercent)")
        parts.append("heuristic_max = \"\(Units.format(heuristicMax))\"")
        if let staleIfError { parts.append("stale_if_error = \"\(Units.format(staleIfError))\"") }
        parts.append("client_revalidation = \(clientRevalidation)")
        parts.append("max_object_size = \(Units.formatSize(maxObjectSize))")
        return "cache = { " + parts.joined(separator: ", ") + " }"
    }
}

extension ConfigSchema {
    public static let cacheStore = Table(
        "[cache]",
        [
            Field("path", .string, default: "\"/var/cache/jester\"",
                "Directory of the cached bodies; the master creates it and gives it to the workers' user."),
            Field("max_size", .size, default: "1GiB",
                "The most bytes the cached bodies may take; past it the least recently used go."),
            Field("entries", .integer(64...16_777_216), default: "65536",
                "Entries the shared index holds (128 bytes of shared memory each, touched as used)."),
            Field("lock_timeout", .duration, default: "5s",
                "How long requests for a key being fetched wait for that fetch before going upstream themselves."),
            Field("uncacheable_hold", .duration, default: "10s",
                "How long a key whose response could not be stored is fetched in parallel rather than queued."),
        ])

    public static let routeCache = Table(
        "cache",
        [
            Field("methods", .array(.choice(["GET", "HEAD"])), default: "[\"GET\", \"HEAD\"]",
                "Methods answered from the cache (HEAD from a stored GET); only GET responses are stored."),
            Field("key_query", .either([.choice(["whole", "ignore"]), .array(.string)]), default: "\"whole\"",
                "The query in the key: \"whole\", \"ignore\", or only the parameters listed (sorted)."),
            Field("key_headers", .array(.string), default: "[]", "Request header fields added to every key."),
            Field("unkeyed_headers", .array(.string), default: "X-Forwarded-Host, X-Original-URL and the like",
                "Request fields that change an origin's answer without being keyed (cache poisoning)."),
            Field("unkeyed_action", .choice(["strip", "bypass"]), default: "\"strip\"",
                "strip: such fields never reach the upstream; bypass: requests with them skip the cache."),
            Field("cache_authorized", .boolean, default: "false", "Requests with Authorization use the cache."),
            Field("cache_cookies", .boolean, default: "false", "Requests with Cookie use the cache."),
            Field("set_cookie", .choice(["do_not_store", "strip"]), default: "\"do_not_store\"",
                "Responses with Set-Cookie are not stored, or stored without it."),
            Field("heuristic_percent", .integer(0...100), default: "0",
                "Freshness for responses without a lifetime: this percent of the time since Last-Modified (0: none)."),
            Field("heuristic_max", .duration, default: "24h", "The longest heuristic lifetime."),
            Field("stale_if_error", .duration, default: "none",
                "Serve a stale response this long when the upstream fails (when a response gives no stale-if-error)."),
            Field("client_revalidation", .boolean, default: "true",
                "A client's no-cache or max-age=0 makes the cache revalidate; false serves fresh entries anyway."),
            Field("max_object_size", .size, default: "64MiB", "The largest body stored."),
        ])
}

extension ConfigDecoder {
    /// `[cache]`.
    mutating func decodeCacheStore(_ node: ConfigNode) -> CacheStoreSettings {
        var settings = CacheStoreSettings()
        guard var table = TableReader(node, ConfigSchema.cacheStore, decoder: &self) else { return settings }
        if let path = table.string("path", decoder: &self) {
            if !path.hasPrefix("/") { report(table.location(of: "path"), "the cache 'path' must be absolute") }
            settings.path = path
        }
        if let size = table.size("max_size", decoder: &self) {
            if size < 1 << 20 { report(table.location(of: "max_size"), "the cache's 'max_size' must be at least 1MiB") }
            settings.maxSize = size
        }
        settings.entries = table.integer("entries", decoder: &self) ?? settings.entries
        if let timeout = table.duration("lock_timeout", decoder: &self) {
            if timeout < .milliseconds(10) || timeout > .seconds(600) {
                report(table.location(of: "lock_timeout"), "'lock_timeout' must be between 10ms and 10m")
            }
            settings.lockTimeout = timeout
        }
        settings.uncacheableHold = table.duration("uncacheable_hold", decoder: &self) ?? settings.uncacheableHold
        table.finish(decoder: &self)
        return settings
    }

    /// A route's `cache = { ... }` (`cache = true` is `{}`; false is none).
    mutating func decodeRouteCache(_ node: ConfigNode) -> RouteCacheSettings? {
        if case .boolean(let on) = node.value { return on ? RouteCacheSettings() : nil }
        guard var table = TableReader(node, ConfigSchema.routeCache, decoder: &self) else { return nil }
        var settings = RouteCacheSettings()
        if let methods = table.stringArray("methods", decoder: &self) {
            if !methods.contains("GET") {
                report(table.location(of: "methods"), "the cache's 'methods' must include GET (only GETs are stored)")
            }
            settings.methods = methods
        }
        if let node = table.take("key_query", decoder: &self) {
            switch node.value {
            case .string("whole"): settings.keyQuery = .whole
            case .string("ignore"): settings.keyQuery = .ignored
            case .array(let elements):
                var names: [String] = []
                for element in elements {
                    guard case .string(let name) = element.value, !name.isEmpty else {
                        report(element.location, "elements of 'key_query' must be parameter names")
                        continue
                    }
                    names.append(name)
                }
                settings.keyQuery = .only(names)
            default:
                report(node.location, "'key_query' must be \"whole\", \"ignore\" or an array of parameter names")
            }
        }
        let headerList = { (decoder: inout ConfigDecoder, table: inout TableReader, key: String) -> [String]? in
            guard let names = table.stringArray(key, decoder: &decoder) else { return nil }
            for name in names where name.isEmpty || !name.utf8.allSatisfy(ASCII.isToken) {
                decoder.report(table.location(of: key), "'\(name)' in '\(key)' is not a header name")
            }
            return names.map { $0.lowercased() }
        }
        settings.keyHeaders = headerList(&self, &table, "key_headers") ?? []
        settings.unkeyedHeaders = headerList(&self, &table, "unkeyed_headers")
        settings.bypassUnkeyed = table.choice("unkeyed_action", decoder: &self) == "bypass"
        settings.cacheAuthorized = table.boolean("cache_authorized", decoder: &self) ?? false
        settings.cacheCookies = table.boolean("cache_cookies", decoder: &self) ?? false
        settings.storeWithoutSetCookie = table.choice("set_cookie", decoder: &self) == "strip"
        settings.heuristicPercent = table.integer("heuristic_percent", decoder: &self) ?? 0
        settings.heuristicMax = table.duration("heuristic_max", decoder: &self) ?? settings.heuristicMax
        settings.staleIfError = table.duration("stale_if_error", decoder: &self)
        settings.clientRevalidation = table.boolean("client_revalidation", decoder: &self) ?? true
        settings.maxObjectSize = table.size("max_object_size", decoder: &self) ?? settings.maxObjectSize
        table.finish(decoder: &self)
        return settings
    }
}
