// SPDX-License-Identifier: Apache-2.0
/// What identifies a stored response (RFC 9111 §2, §4.1): the primary key (method, scheme, host, path, query and
/// the route's key fields) and, for a response with `Vary`, the values of the request fields it names.
///
/// The text form is canonical and unambiguous (every part length-prefixed in the hash; the text is for people and
/// for the byte-for-byte check beside the body). Its hash, keyed with the index's secret seed, is what the shared
/// index holds.
public struct CacheKey: Sendable, Hashable {
    /// The method the entry is stored under: HEAD is answered from a stored GET, so it keys as GET.
    public var method: String
    /// `http` or `https`, lowercase.
    public var scheme: String
    /// The host, lowercase, with the scheme's default port dropped (`Example.COM:443` over https is
    /// `example.com`).
    public var authority: String
    /// The path as received: percent-encoding is not undone, since origins differ on what `%2F` means.
    public var path: String
    /// The query as the policy keeps it; nil when the target has none (`/a` and `/a?` are different URIs).
    public var query: String?
    /// The route's `keyFields` with the request's normalized values (nil: absent).
    public var fields: [VaryValue]

    /// A key from its parts, already normalized.
    public init(method: String, scheme: String, authority: String, path: String, query: String?, fields: [VaryValue]) {
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.query = query
        self.fields = fields
    }

    /// The primary key of `request` under `policy`.
    public init(request: CacheRequest, policy: CachePolicy) {
        method = request.method == "HEAD" ? "GET" : request.method
        scheme = CacheFields.lowercased(request.scheme)
        authority = Self.normalizedAuthority(request.authority, scheme: scheme)
        path = request.path.isEmpty ? "/" : request.path
        query = request.query.flatMap { Self.keyedQuery($0, policy.queryKey) }
        fields = policy.keyFields.map { VaryValue(name: $0, request: request.fields) }
    }

    /// The URI part as text: `https://example.com/a?b`.
    public var uri: String {
        "\(scheme)://\(authority)\(path)" + (query.map { "?\($0)" } ?? "")
    }

    /// One line for people and logs: `GET https://example.com/a?b`, then the key fields.
    public var text: String {
        ([method + " " + uri] + fields.map(\.text)).joined(separator: "\n")
    }

    /// The primary key's hash, keyed with the index's `seed`.
    public func hash(seed: (UInt64, UInt64)) -> CacheKeyHash {
        var hasher = CacheKeyHasher(seed: seed)
        combine(into: &hasher)
        return hasher.finalize()
    }

    /// The hash of one variant: the primary key plus the values of the fields the response's `Vary` named.
    /// `values` must be in the order of `VaryValue.names`, which sorts them, so a response that says
    /// `Vary: A, B` and one that says `Vary: b, a` share variants.
    public func variantHash(values: [VaryValue], seed: (UInt64, UInt64)) -> CacheKeyHash {
        var hasher = CacheKeyHasher(seed: seed)
        combine(into: &hasher)
        hasher.combine("vary")
        for value in values { value.combine(into: &hasher) }
        return hasher.finalize()
    }

    private func combine(into hasher: inout CacheKeyHasher) {
        hasher.combine(method)
        hasher.combine(scheme)
        hasher.combine(authority)
        hasher.combine(path)
        // Absent and empty queries differ.
        hasher.combine(query.map { "?" + $0 } ?? "")
        for field in fields { field.combine(into: &hasher) }
    }

    /// Host lowercase (RFC 3986 §6.2.2.1), the default port dropped (§6.2.3), and a trailing dot kept: an
    /// origin may answer `example.com.` differently, and the route matched what was received.
    static func normalizedAuthority(_ authority: String, scheme: String) -> String {
        let lower = CacheFields.lowercased(authority)
        let defaultPort = scheme == "https" ? ":443" : scheme == "http" ? ":80" : nil
        if let defaultPort, lower.hasSuffix(defaultPort) {
            return String(lower.dropLast(defaultPort.count))
        }
        return lower
    }

    /// The query as `policy` keys it; nil when nothing of it is kept, so `/a?utm_source=x` keys as `/a`.
    static func keyedQuery(_ query: String, _ keying: CachePolicy.QueryKey) -> String? {
        switch keying {
        case .whole:
            return query
        case .ignored:
            return nil
        case .only(let names):
            let kept = query.split(separator: "&", omittingEmptySubsequences: true).filter { pair in
                let name = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
                return names.contains(String(name))
            }
            return kept.isEmpty ? nil : kept.map(String.init).sorted().joined(separator: "&")
        }
    }
}

/// A request field's value as a key compares it (§4.1): all its lines combined, list members trimmed and
/// whitespace around `;` and `=` removed, and lowercased for the fields whose values are case-insensitive. nil
/// when the request has no such field, which is not the same as an empty one.
public struct VaryValue: Sendable, Hashable {
    /// The field's name, lowercase.
    public var name: String
    /// The normalized value; nil when absent.
    public var value: String?

    /// A value as stored.
    public init(name: String, value: String?) {
        self.name = name
        self.value = value
    }

    /// The normalized value of field `name` in `request`.
    public init(name: String, request: CacheFields) {
        self.name = CacheFields.lowercased(name)
        let lines = request.values(name)
        guard !lines.isEmpty else {
            value = nil
            return
        }
        let members = lines.flatMap(CacheFields.splitList).map(Self.tightened)
        var joined = members.joined(separator: ",")
        if Self.caseInsensitiveFields.contains(self.name) { joined = CacheFields.lowercased(joined) }
        value = joined
    }

    /// The values of the fields `names` in `request`, in the order `names(from:)` gives.
    public static func values(of names: [String], in request: CacheFields) -> [VaryValue] {
        names.map { VaryValue(name: $0, request: request) }
    }

    /// The field names a response's `Vary` lists, lowercase, sorted and without repeats; nil for `Vary: *`, which
    /// no request ever matches (§4.1).
    public static func names(from response: CacheFields) -> [String]? {
        let names = response.list("Vary").map(CacheFields.lowercased)
        if names.contains("*") { return nil }
        return Array(Set(names)).sorted()
    }

    /// Fields whose values compare without regard to case (RFC 9110 §12.5: codings, charsets, language tags).
    static let caseInsensitiveFields: Set<String> = ["accept-encoding", "accept-charset", "accept-language"]

    /// `gzip ; q=0.5` becomes `gzip;q=0.5`.
    static func tightened(_ member: String) -> String {
        var out: [UInt8] = []
        var pendingBlank = false
        for byte in member.utf8 {
            if byte == 0x20 || byte == 0x09 {
                pendingBlank = true
                continue
            }
            let separator = byte == UInt8(ascii: ";") || byte == UInt8(ascii: "=")
            if pendingBlank, !separator, let last = out.last, last != UInt8(ascii: ";"), last != UInt8(ascii: "=") {
                out.append(0x20)
            }
            pendingBlank = false
            out.append(byte)
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `name: value`, or `name` alone when absent.
    var text: String {
        value.map { "\(name): \($0)" } ?? name
    }

    func combine(into hasher: inout CacheKeyHasher) {
        hasher.combine(name)
        // A flag, so an absent field and an empty one differ.
        if let value {
            hasher.write(1)
            hasher.combine(value)
        } else {
            hasher.write(0)
        }
    }
}
