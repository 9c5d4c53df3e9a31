// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

/// Where filter definitions and the lists naming them were written, kept by the decoder so the checks of whole
/// chains (which need every listener, route and filter) can point at the entry that is wrong.
struct FilterLocations {
    /// Each `[filters.NAME]` table.
    var definitions: [String: SourceLocation] = [:]
    /// The `filters` entries of each decoded listener, aligned with `Configuration.listeners`.
    var listeners: [[LocatedString]] = []
    /// Where each decoded listener's `filters` key is (or the listener), aligned likewise.
    var listenerKeys: [SourceLocation] = []
    /// The `filters` entries of each decoded route, aligned with `Configuration.routes`.
    var routes: [[LocatedString]] = []
}

/// A string from an array, with the place it was written.
struct LocatedString {
    var value: String
    var location: SourceLocation
}

extension ConfigDecoder {
    /// `[filters.NAME]`, sorted by name (TOML tables keep no order; chains are ordered by the lists naming them).
    mutating func decodeFilters(_ top: inout TableReader) -> [FilterSettings] {
        var filters: [FilterSettings] = []
        for (name, node) in top.map("filters", decoder: &self).sorted(by: { $0.key < $1.key }) {
            filterLocations.definitions[name] = node.location
            if let filter = decodeFilter(name, node) { filters.append(filter) }
        }
        return filters
    }

    /// One filter: its `kind` selects the schema, then the kind's keys are read and checked.
    private mutating func decodeFilter(_ name: String, _ node: ConfigNode) -> FilterSettings? {
        let kinds = FilterKindName.allCases.map(\.rawValue)
        guard case .table(var children) = node.value else {
            report(node.location, "[filters.\(name)] must be a table, not \(node.typeName)")
            return nil
        }
        guard let kindNode = children["kind"] else {
            report(node.location, "[filters.\(name)] is missing 'kind' (one of \(kinds.map { "\"\($0)\"" }.joined(separator: ", ")))")
            return nil
        }
        guard case .string(let kindText) = kindNode.value, let kind = FilterKindName(rawValue: kindText) else {
            var message = "'kind' of [filters.\(name)] must be one of " + kinds.map { "\"\($0)\"" }.joined(separator: ", ")
            if case .string(let text) = kindNode.value, let close = Suggestion.closest(to: text, among: kinds) {
                message += "; did you mean \"\(close)\"?"
            }
            report(kindNode.location, message)
            return nil
        }
        var schema = ConfigSchema.filterTable(kind)
        schema.title = "[filters.\(name)] (kind \"\(kind.rawValue)\")"
        // A key of another kind gets a clearer message than "unknown key".
        for (key, child) in children.sorted(by: { $0.key < $1.key }) where schema.field(key) == nil {
            guard let owner = FilterKindName.allCases.first(where: { ConfigSchema.filterTable($0).field(key) != nil })
            else { continue }
            report(child.location, "'\(key)' is a key of \(owner.rawValue) filters, not of \(kind.rawValue) ones ([filters.\(name)])")
            children.removeValue(forKey: key)
        }
        var trimmed = node
        trimmed.value = .table(children)
        guard var table = TableReader(trimmed, schema, decoder: &self) else { return nil }
        _ = table.choice("kind", decoder: &self)
        let settings: FilterKind?
        switch kind {
        case .rateLimit: settings = rateLimit(&table, node: node).map(FilterKind.rateLimit)
        case .basicAuth: settings = basicAuth(&table, name: name, node: node).map(FilterKind.basicAuth)
        case .jwt: settings = jwt(&table, node: node).map(FilterKind.jwt)
        case .ipRules: settings = ipRules(&table, node: node).map(FilterKind.ipRules)
        case .hmacSignature: settings = hmacSignature(&table).map(FilterKind.hmacSignature)
        case .cors: settings = cors(&table).map(FilterKind.cors)
        }
        table.finish(decoder: &self)
        return settings.map { FilterSettings(name: name, kind: $0) }
    }

    private mutating func rateLimit(_ table: inout TableReader, node: ConfigNode) -> RateLimitSettings? {
        let rate = table.integer("rate", decoder: &self)
        var limit = RateLimitSettings(rate: rate ?? 1)
        limit.per = table.duration("per", decoder: &self) ?? limit.per
        if limit.per < .milliseconds(1) {
            report(table.location(of: "per"), "'per' must be at least 1ms")
        }
        limit.burst = table.integer("burst", decoder: &self) ?? limit.burst
        limit.delay = table.integer("delay", decoder: &self) ?? limit.delay
        limit.status = table.integer("status", decoder: &self) ?? limit.status
        if let entries = table.locatedStrings("key", decoder: &self) {
            limit.key = []
            for entry in entries {
                guard let part = RateLimitKeyPart(parsing: entry.value) else {
                    report(entry.location, "'\(entry.value)' is not a key part (\"client_address\", \"route\", \"header:NAME\", \"claim:NAME\")")
                    continue
                }
                if case .header(let header) = part, !header.utf8.allSatisfy(ASCII.isToken) {
                    report(entry.location, "'\(header)' is not a header name")
                }
                if limit.key.contains(part) { report(entry.location, "'\(entry.value)' is already in 'key'") }
                limit.key.append(part)
            }
            if entries.isEmpty { report(table.location(of: "key"), "'key' needs at least one part") }
        }
        if let scope = table.choice("scope", decoder: &self).flatMap(RateLimitScope.init(rawValue:)) {
            limit.scope = scope
        }
        if let redisNode = table.take("redis", decoder: &self) {
            limit.redis = redis(redisNode)
            if limit.scope != .cluster {
                report(redisNode.location, "'redis' is used with scope = \"cluster\" only")
            }
        } else if limit.scope == .cluster {
            report(table.location(of: "scope"), "scope = \"cluster\" needs 'redis' (the server the instances share)")
        }
        return rate == nil ? nil : limit
    }

    private mutating func redis(_ node: ConfigNode) -> RedisSettings? {
        guard var reader = TableReader(node, ConfigSchema.redis, decoder: &self) else { return nil }
        // A host name is looked up by the master (ResolvedAddresses), like an upstream target's.
        let address = reader.address("address", decoder: &self)
        var settings = RedisSettings(address: address ?? SocketAddressSpec(host: "127.0.0.1", port: 6379))
        settings.timeout = reader.duration("timeout", decoder: &self) ?? settings.timeout
        if settings.timeout < .milliseconds(1) {
            report(reader.location(of: "timeout"), "the Redis 'timeout' must be at least 1ms")
        }
        settings.poolSize = reader.integer("pool_size", decoder: &self) ?? settings.poolSize
        settings.onFailure = reader.choice("on_failure", decoder: &self).flatMap(RedisFailurePolicy.init(rawValue:))
            ?? settings.onFailure
        settings.keyPrefix = reader.string("key_prefix", decoder: &self) ?? settings.keyPrefix
        settings.database = reader.integer("database", decoder: &self) ?? settings.database
        if let username = reader.string("username", decoder: &self) {
            // Redis ACL user names are one argument of ACL SETUSER: no blanks, no controls.
            if username.isEmpty || username.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) {
                report(reader.location(of: "username"),
                    "the Redis 'username' must be non-empty, without blanks or controls")
            }
            if !reader.has("password_file") {
                report(reader.location(of: "username"), "the Redis 'username' needs 'password_file' (AUTH sends both)")
            }
            settings.username = username
        }
        if let path = reader.string("password_file", decoder: &self) {
            let location = reader.location(of: "password_file")
            let file = filePath(path, at: location)
            settings.passwordFile = file
            if var data = readFile(path, at: location) {
                if data.last == 0x0A { data.removeLast() }
                if data.last == 0x0D { data.removeLast() }
                if data.isEmpty {
                    report(location, "the Redis password in \(file) is empty")
                } else if let password = String(data: data, encoding: .utf8) {
                    settings.password = password
                } else {
                    report(location, "the Redis password in \(file) is not UTF-8 text")
                }
            }
        }
        reader.finish(decoder: &self)
        return address == nil ? nil : settings
    }

    private mutating func basicAuth(_ table: inout TableReader, name: String, node: ConfigNode) -> BasicAuthSettings? {
        let realm = table.string("realm", decoder: &self) ?? "jester"
        // RFC 7617 §2: the realm is a quoted-string; keep it to what needs no escaping.
        if realm.isEmpty || realm.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == 0x22 || $0 == 0x5C }) {
            report(table.location(of: "realm"), "'realm' must be non-empty, without quotes, backslashes or controls")
        }
        guard let path = table.string("htpasswd", decoder: &self) else { return nil }
        let location = table.location(of: "htpasswd")
        let resolved = filePath(path, at: location)
        guard let data = readFile(path, at: location) else { return nil }
        let text = String(decoding: data, as: UTF8.self)
        let checked = HtpasswdCheck.check(text)
        for problem in checked.problems {
            report(SourceLocation(file: resolved, line: problem.line, column: 1),
                "\(problem.message) (htpasswd of filter '\(name)', \(location))")
        }
        if checked.problems.isEmpty, checked.users.isEmpty {
            report(location, "\(resolved) has no users")
        }
        return BasicAuthSettings(realm: realm, htpasswdFile: resolved, htpasswd: text)
    }

    private mutating func jwt(_ table: inout TableReader, node: ConfigNode) -> JWTSettings? {
        var algorithms: [JWTAlgorithm] = []
        let names = JWTAlgorithm.allCases.map(\.rawValue)
        for entry in table.locatedStrings("algorithms", decoder: &self) ?? [] {
            guard let algorithm = JWTAlgorithm(rawValue: entry.value) else {
                var message = entry.value.lowercased() == "none"
                    ? "unsigned tokens (alg none) are never accepted"
                    : "'\(entry.value)' is not an algorithm Jester verifies (\(names.joined(separator: " ")))"
                if let close = Suggestion.closest(to: entry.value, among: names), entry.value.lowercased() != "none" {
                    message += "; did you mean \"\(close)\"?"
                }
                report(entry.location, message)
                continue
            }
            if !algorithms.contains(algorithm) { algorithms.append(algorithm) }
        }
        if algorithms.isEmpty, table.has("algorithms") {
            report(table.location(of: "algorithms"), "'algorithms' needs at least one algorithm")
        }
        var settings = JWTSettings(algorithms: algorithms)
        settings.issuers = table.stringArray("issuers", decoder: &self) ?? []
        settings.audiences = table.stringArray("audiences", decoder: &self) ?? []
        settings.leeway = table.duration("leeway", decoder: &self) ?? settings.leeway
        if let path = table.string("jwks_file", decoder: &self) {
            let location = table.location(of: "jwks_file")
            settings.jwksFile = filePath(path, at: location)
            if let data = readFile(path, at: location) {
                if let problem = Self.jwksProblem(data) {
                    report(location, "\(settings.jwksFile!) is not a JWKS: \(problem)")
                }
                settings.jwks = data
            }
        }
        if let url = table.string("jwks_url", decoder: &self) {
            if let problem = Self.jwksURLProblem(url) { report(table.location(of: "jwks_url"), problem) }
            if settings.jwksFile != nil {
                report(table.location(of: "jwks_url"), "use one of 'jwks_file' and 'jwks_url'")
            }
            settings.jwksURL = url
        }
        if let refresh = table.duration("jwks_refresh", decoder: &self) {
            if settings.jwksURL == nil { report(table.location(of: "jwks_refresh"), "'jwks_refresh' needs 'jwks_url'") }
            if refresh < .seconds(1) { report(table.location(of: "jwks_refresh"), "'jwks_refresh' must be at least 1s") }
            settings.jwksRefresh = refresh
        }
        let hmac = algorithms.filter(\.isHMAC)
        if let path = table.string("secret_file", decoder: &self) {
            let location = table.location(of: "secret_file")
            settings.secretFile = filePath(path, at: location)
            if var secret = readFile(path, at: location) {
                if secret.last == 0x0A { secret.removeLast() }
                if secret.last == 0x0D { secret.removeLast() }
                // RFC 7518 §3.2: a key of the same size as the hash output or larger MUST be used.
                if let strictest = hmac.max(by: { $0.minimumSecretLength < $1.minimumSecretLength }),
                    secret.count < strictest.minimumSecretLength
                {
                    report(location, "the secret in \(settings.secretFile!) is \(secret.count) bytes; "
                        + "\(strictest.rawValue) needs at least \(strictest.minimumSecretLength) (RFC 7518 §3.2)")
                }
                settings.secret = secret
            }
            if hmac.isEmpty, !algorithms.isEmpty {
                report(location, "'secret_file' is used by HS256, HS384 and HS512 only, which 'algorithms' does not list")
            }
        }
        let hasKeySet = settings.jwksFile != nil || settings.jwksURL != nil
        if !hasKeySet, settings.secretFile == nil {
            report(node.location, "a jwt filter needs 'jwks_file', 'jwks_url' or 'secret_file'")
        } else {
            if let first = hmac.first, settings.secretFile == nil {
                report(table.location(of: "algorithms"), "\(first.rawValue) needs 'secret_file' (the shared secret)")
            }
            if let first = algorithms.first(where: { !$0.isHMAC }), !hasKeySet {
                report(table.location(of: "algorithms"), "\(first.rawValue) needs 'jwks_file' or 'jwks_url' (the public keys)")
            }
        }
        if let header = table.string("header", decoder: &self) {
            if header.isEmpty || !header.utf8.allSatisfy(ASCII.isToken) {
                report(table.location(of: "header"), "'\(header)' is not a header name")
            }
            settings.header = header
        }
        if let size = table.size("max_token_size", decoder: &self) {
            if !(64...(1 << 20)).contains(size) {
                report(table.location(of: "max_token_size"), "'max_token_size' must be between 64 bytes and 1MiB")
            }
            settings.maxTokenSize = Int(clamping: size)
        }
        for pair in table.stringMap("forward_claims", decoder: &self) {
            let reserved = ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "keep-alive"]
            if !isValidHeader(HeaderPair(name: pair.value, value: "")) || reserved.contains(pair.value.lowercased())
                || pair.value.lowercased() == settings.header.lowercased()
            {
                report(table.location(of: "forward_claims"), "claim '\(pair.name)' cannot be forwarded as '\(pair.value)'")
            }
            settings.forwardClaims.append(ClaimHeader(claim: pair.name, header: pair.value))
        }
        settings.requireClaims = table.stringMap("require_claims", decoder: &self).map {
            ClaimRequirement(claim: $0.name, value: $0.value)
        }
        return algorithms.isEmpty ? nil : settings
    }

    private mutating func ipRules(_ table: inout TableReader, node: ConfigNode) -> IPRuleSettings? {
        var rules = IPRuleSettings()
        for (key, isAllow) in [("allow", true), ("deny", false)] {
            let entries = table.locatedStrings(key, decoder: &self) ?? []
            for entry in entries where CIDR(entry.value) == nil {
                report(entry.location, "'\(entry.value)' is not an address or network (\"10.0.0.0/8\", \"::1\")")
            }
            if isAllow { rules.allow = entries.map(\.value) } else { rules.deny = entries.map(\.value) }
        }
        if rules.allow.isEmpty, rules.deny.isEmpty {
            report(node.location, "an ip_rules filter needs 'allow' or 'deny'")
        }
        return rules
    }

    /// `kind = "hmac_signature"`: the secret is read here, by the master, like jwt's `secret_file`.
    private mutating func hmacSignature(_ table: inout TableReader) -> HMACSignatureSettings? {
        let header = table.string("header", decoder: &self)
        if let header, header.isEmpty || !header.utf8.allSatisfy(ASCII.isToken) {
            report(table.location(of: "header"), "'\(header)' is not a header name")
        }
        let algorithm = table.choice("algorithm", decoder: &self).flatMap(HMACAlgorithm.init(rawValue:))
        let encoding = table.choice("encoding", decoder: &self).flatMap(SignatureEncoding.init(rawValue:))
        let prefix = table.string("prefix", decoder: &self) ?? ""
        // A field value has no surrounding blanks (RFC 9110 §5.5) nor controls: a prefix with them never matches.
        if prefix.first == " " || prefix.utf8.contains(where: { $0 < 0x20 || $0 >= 0x7F }) {
            report(table.location(of: "prefix"),
                "'prefix' must be printable ASCII not starting with a blank (a field value never starts with one)")
        }
        var secretFile: String?
        var secret: Data?
        if let path = table.string("secret_file", decoder: &self) {
            let location = table.location(of: "secret_file")
            secretFile = filePath(path, at: location)
            if var data = readFile(path, at: location) {
                if data.last == 0x0A { data.removeLast() }
                if data.last == 0x0D { data.removeLast() }
                // An empty key is legal HMAC, and anyone can compute it: never what an operator meant.
                if data.isEmpty { report(location, "the secret in \(secretFile!) is empty") }
                secret = data
            }
        }
        var maxBody = 1 << 20
        if let size = table.size("max_body", decoder: &self) {
            if !HMACSignatureSettings.maxBodyRange.contains(Int(clamping: size)) {
                report(table.location(of: "max_body"), "'max_body' must be between 1 byte and 16MiB")
            }
            maxBody = Int(clamping: size)
        }
        guard let header, let secretFile, let secret else { return nil }
        return HMACSignatureSettings(
            header: header, secretFile: secretFile, secret: secret, algorithm: algorithm ?? .sha256,
            encoding: encoding ?? .hex, prefix: prefix, maxBody: maxBody)
    }

    /// Checks what needs every listener, route and filter: names exist, a chain names a filter once, a claim key
    /// follows a jwt filter, tcp listeners have none; and warns of filters nothing uses.
    mutating func checkFilterChains(_ configuration: Configuration) {
        let defined = configuration.filters.map(\.name)
        let declared = Set(filterLocations.definitions.keys)
        var used = Set<String>()
        func checkNames(_ entries: [LocatedString], owner: String, decoder: inout ConfigDecoder) {
            for entry in entries where !declared.contains(entry.value) {
                decoder.report(entry.location, "\(owner) names filter '\(entry.value)', which is not defined"
                    + decoder.hint(entry.value, defined))
            }
        }
        for (index, listener) in configuration.listeners.enumerated() where index < filterLocations.listeners.count {
            let entries = filterLocations.listeners[index]
            checkNames(entries, owner: "listener '\(listener.name)'", decoder: &self)
            used.formUnion(entries.map(\.value))
            if listener.isTCP, !entries.isEmpty {
                report(filterLocations.listenerKeys[index],
                    "tcp listener '\(listener.name)' cannot have filters (they act on HTTP requests)")
            }
        }
        for (index, route) in configuration.routes.enumerated() where index < filterLocations.routes.count {
            let entries = filterLocations.routes[index]
            checkNames(entries, owner: "route '\(route.name)'", decoder: &self)
            used.formUnion(entries.map(\.value))
            for (listenerIndex, listener) in configuration.listeners.enumerated()
            where !listener.isTCP && (route.listeners.isEmpty || route.listeners.contains(listener.name)) {
                let chain = filterLocations.listeners[listenerIndex] + entries
                checkChain(chain, route: route.name, listener: listener.name, configuration)
            }
        }
        for name in defined where !used.contains(name) {
            let location = filterLocations.definitions[name] ?? SourceLocation(file: "", line: 1, column: 1)
            warnings.append(ConfigDiagnostic(location, "filter '\(name)' is defined, but no route or listener uses it",
                severity: .warning))
        }
    }

    /// One route's chain on one listener (the listener's entries first).
    private mutating func checkChain(_ chain: [LocatedString], route: String, listener: String, _ configuration: Configuration) {
        var seen: [String: SourceLocation] = [:]
        var verifiesTokens = false
        var authenticator: String?
        for entry in chain {
            if let first = seen[entry.value] {
                reportOnce(entry.location, "filter '\(entry.value)' is already in the chain of route '\(route)' on "
                    + "listener '\(listener)' (at \(first))")
                continue
            }
            seen[entry.value] = entry.location
            let kind = configuration.filter(named: entry.value)?.kind
            // A preflight carries no credentials (Fetch §3.2.2): an authentication before cors refuses it.
            if case .cors = kind, let authenticator {
                let warning = ConfigDiagnostic(entry.location,
                    "cors filter '\(entry.value)' comes after '\(authenticator)' in the chain of route '\(route)' on "
                        + "listener '\(listener)': preflights carry no credentials, so they would be refused before "
                        + "cors answers them", severity: .warning)
                if !warnings.contains(warning) { warnings.append(warning) }
            }
            if [.jwt, .basicAuth, .hmacSignature].contains(kind?.name) { authenticator = authenticator ?? entry.value }
            switch kind {
            case .jwt: verifiesTokens = true
            case .rateLimit(let limit):
                for case .claim(let claim) in limit.key where !verifiesTokens {
                    reportOnce(entry.location, "rate limit '\(entry.value)' keys on claim:\(claim), but no jwt filter "
                        + "comes before it in the chain of route '\(route)' on listener '\(listener)'")
                }
            default: break
            }
        }
    }

    /// Reports a problem found again from another listener's point of view only once.
    private mutating func reportOnce(_ location: SourceLocation, _ message: String) {
        let diagnostic = ConfigDiagnostic(location, message)
        if !diagnostics.contains(diagnostic) { report(location, message) }
    }

    /// A path written in the configuration, resolved against the directory of the file it is written in and
    /// made absolute, so messages, workers' logs and `jester config dump` name the file wherever they are read.
    static func resolve(_ path: String, at location: SourceLocation) -> String {
        let base = (location.file as NSString).deletingLastPathComponent
        let resolved = path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
        if resolved.hasPrefix("/") { return resolved }
        return (FileManager.default.currentDirectoryPath as NSString).appendingPathComponent(resolved)
    }

    /// Why `data` is not a JWKS (RFC 7517 §5: a JSON object whose `keys` is an array of objects), or nil.
    static func jwksProblem(_ data: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: data), let set = object as? [String: Any] else {
            return "not a JSON object"
        }
        guard let keys = set["keys"] as? [Any] else { return "no \"keys\" array" }
        guard keys.allSatisfy({ $0 is [String: Any] }) else { return "\"keys\" holds something other than objects" }
        return keys.isEmpty ? "\"keys\" is empty" : nil
    }

    /// Why `text` is not a URL the master may fetch keys from, or nil: https, or http to a loopback address
    /// (keys fetched over plain HTTP from elsewhere could be replaced on the way).
    static func jwksURLProblem(_ text: String) -> String? {
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), let host = url.host, !host.isEmpty
        else { return "'\(text)' is not a URL" }
        let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased())
        if scheme == "https" || (scheme == "http" && loopback) { return nil }
        return "'jwks_url' must be https (or http to a loopback address), not \(scheme)://\(host)"
    }
}

extension TableReader {
    /// An array of strings, each with its place, so a bad entry can be pointed at.
    mutating func locatedStrings(_ key: String, decoder: inout ConfigDecoder) -> [LocatedString]? {
        guard let child = take(key, decoder: &decoder) else { return nil }
        guard case .array(let elements) = child.value else {
            decoder.report(child.location, "'\(key)' must be an array of strings, not \(child.typeName)")
            return nil
        }
        var strings: [LocatedString] = []
        for element in elements {
            guard case .string(let value) = element.value else {
                decoder.report(element.location, "elements of '\(key)' must be strings, not \(element.typeName)")
                continue
            }
            strings.append(LocatedString(value: value, location: element.location))
        }
        return strings
    }
}
