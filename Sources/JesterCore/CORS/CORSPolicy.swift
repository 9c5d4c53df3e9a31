// SPDX-License-Identifier: Apache-2.0
/// One route's CORS rules (the Fetch standard's "CORS protocol", §3.2) and the decision they give each request:
/// answer a preflight, refuse it, or let the request through with the response fields the browser needs.
///
/// Pure: the request's four fields in, a decision out; the filter that owns it only reads fields and carries the
/// decision out. Everything that does not depend on the request (joined lists, the max-age) is rendered once.
///
/// What the browser is told, and why:
/// - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is answered here, 204 with the
///   allowed origin, methods, headers, max-age and credentials; one asking for an origin, method, header or
///   private-network access the rules do not allow gets 403. A browser fails a preflight on any status outside
///   200-299 as surely as on missing fields, so 403 costs the client nothing, and it says plainly in the access
///   log, the metrics and the browser's network panel that Jester refused, where a bare 204 would look allowed.
/// - An actual request from an allowed origin gets `Access-Control-Allow-Origin` (the origin, or `*` when every
///   origin is allowed without credentials), `-Credentials` and `-Expose-Headers`. A refused origin gets none of
///   them: the request still goes on (a simple request is the browser's to block, and other clients ignore CORS).
/// - `Vary: Origin` goes on every response whose fields depend on the origin, including responses to requests
///   without one and to refused origins: otherwise a shared cache (or the browser's) could hand one origin's
///   answer, or a navigation's answer without CORS fields, to another (Fetch, "CORS protocol and HTTP caches").
///   The one exception is Fetch's own: `*` without credentials is sent on every response, with or without
///   `Origin`, and then nothing varies.
public struct CORSPolicy: Sendable {
    /// Which origins may read responses.
    public enum Origins: Sendable, Equatable {
        /// Any origin (`*`); never with credentials.
        case any
        /// These origins and subdomain patterns.
        case listed([CORSOriginPattern])
    }

    /// A list of methods or header names, or any of them (`*`).
    public enum Names: Sendable, Equatable {
        /// Any (`*`): what a preflight asks for is echoed.
        case any
        /// These, as configured (methods compared exactly, header names in any case).
        case listed([String])
    }

    /// A response field the decision adds.
    public struct Field: Sendable, Equatable, CustomStringConvertible {
        /// The field name, as browsers document it (HTTP/2 adapters lowercase it).
        public let name: String
        /// The field value.
        public let value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }

        public var description: String { "\(name): \(value)" }
    }

    /// The request fields the decision depends on, as the client sent them (several fields of one name joined
    /// with ", ", as RFC 9110 §5.3 combines them: two `Origin` fields then parse as no origin at all).
    public struct Request: Sendable {
        /// The request's method, as sent.
        public var method: String
        /// `Origin`; nil when absent.
        public var origin: String?
        /// `Access-Control-Request-Method`; nil when absent.
        public var requestMethod: String?
        /// `Access-Control-Request-Headers`; nil when absent.
        public var requestHeaders: String?
        /// `Access-Control-Request-Private-Network: true` (Private Network Access; Chromium).
        public var requestsPrivateNetwork: Bool

        public init(
            method: String, origin: String? = nil, requestMethod: String? = nil, requestHeaders: String? = nil,
            requestsPrivateNetwork: Bool = false
        ) {
            self.method = method
            self.origin = origin
            self.requestMethod = requestMethod
            self.requestHeaders = requestHeaders
            self.requestsPrivateNetwork = requestsPrivateNetwork
        }

        /// A CORS-preflight request (Fetch §3.2.2): `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
        /// Any other `OPTIONS` is an actual request like any method.
        public var isPreflight: Bool { method == "OPTIONS" && origin != nil && requestMethod != nil }
    }

    /// What to do with one request.
    public enum Decision: Sendable, Equatable {
        /// Let it through; the response (whoever answers it) gets these fields (possibly none).
        case proceed(fields: [Field])
        /// An allowed preflight: answer 204 with these fields; nothing goes upstream.
        case answerPreflight(fields: [Field])
        /// A refused preflight: answer 403 with these fields (`Vary` only); `reason` is for the access log.
        case refusePreflight(reason: String, fields: [Field])
    }

    /// `allow_origins`.
    public let origins: Origins
    /// `allow_methods`: what a preflight's `Access-Control-Request-Method` may be.
    public let methods: Names
    /// `allow_headers`: what a preflight's `Access-Control-Request-Headers` may list.
    public let headers: Names
    /// `expose_headers`: the response fields scripts may read beyond the safelisted ones.
    public let exposedHeaders: Names
    /// `allow_credentials`: scripts may send cookies and read the answers.
    public let allowsCredentials: Bool
    /// `Access-Control-Max-Age` in seconds; nil sends none (browsers then keep a preflight for 5 seconds).
    public let maxAgeSeconds: Int?
    /// `allow_private_network`: Private Network Access preflights are answered rather than refused.
    public let allowsPrivateNetwork: Bool

    /// The allowed header names, lowercase, to check `Access-Control-Request-Headers` against.
    private let allowedHeaderNames: Set<String>
    private let methodsValue: String?
    private let headersValue: String?
    private let exposedValue: String?
    private let preflightVary: String
    /// `Access-Control-Allow-Origin: *` without credentials: the same on every response, which then never varies.
    private var isStatic: Bool { origins == .any && !allowsCredentials }

    /// `*` origins with credentials is a precondition failure: the loader refuses that configuration (a browser
    /// ignores `*` with credentials, and echoing every origin instead would let any site use the user's cookies).
    public init(
        origins: Origins, methods: Names = .listed(["GET", "HEAD", "POST"]), headers: Names = .listed([]),
        exposedHeaders: Names = .listed([]), allowsCredentials: Bool = false, maxAgeSeconds: Int? = nil,
        allowsPrivateNetwork: Bool = false
    ) {
        precondition(!(origins == .any && allowsCredentials), "CORS: '*' origins with credentials")
        precondition(!(exposedHeaders == .any && allowsCredentials), "CORS: '*' exposed headers with credentials")
        self.origins = origins
        self.methods = methods
        self.headers = headers
        self.exposedHeaders = exposedHeaders
        self.allowsCredentials = allowsCredentials
        self.maxAgeSeconds = maxAgeSeconds
        self.allowsPrivateNetwork = allowsPrivateNetwork
        func joined(_ names: Names) -> String? {
            guard case .listed(let list) = names else { return nil }
            return list.isEmpty ? nil : list.joined(separator: ", ")
        }
        methodsValue = joined(methods)
        headersValue = joined(headers)
        // Without credentials `*` exposes every header but `Set-Cookie` (Fetch's "CORS-exposed header-name list").
        exposedValue = exposedHeaders == .any ? "*" : joined(exposedHeaders)
        if case .listed(let list) = headers {
            allowedHeaderNames = Set(list.map { String(decoding: $0.utf8.map(ASCII.lowercased), as: UTF8.self) })
        } else {
            allowedHeaderNames = []
        }
        preflightVary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            + (allowsPrivateNetwork ? ", Access-Control-Request-Private-Network" : "")
    }

    /// The decision for `request`.
    public func decide(_ request: Request) -> Decision {
        request.isPreflight ? preflight(request) : actual(request)
    }

    /// Whether `origin` (an `Origin` field value) may read responses.
    public func allows(origin text: String) -> Bool {
        switch origins {
        case .any:
            // `*` covers every origin, `null` and all.
            return true
        case .listed(let patterns):
            guard let origin = try? CORSOrigin(parsing: text) else { return false }
            return patterns.contains { $0.matches(origin) }
        }
    }

    // MARK: Actual requests

    private func actual(_ request: Request) -> Decision {
        if isStatic {
            // Fetch: "*" is sent for non-CORS requests as well, and `Vary` is not used.
            var fields = [Field("Access-Control-Allow-Origin", "*")]
            if let exposedValue { fields.append(Field("Access-Control-Expose-Headers", exposedValue)) }
            return .proceed(fields: fields)
        }
        let vary = Field("Vary", "Origin")
        guard let origin = request.origin, allows(origin: origin) else { return .proceed(fields: [vary]) }
        var fields = allowOrigin(origin)
        if let exposedValue { fields.append(Field("Access-Control-Expose-Headers", exposedValue)) }
        fields.append(vary)
        return .proceed(fields: fields)
    }

    /// `Access-Control-Allow-Origin` (and `-Credentials`) for an allowed origin.
    private func allowOrigin(_ origin: String) -> [Field] {
        if isStatic { return [Field("Access-Control-Allow-Origin", "*")] }
        // The origin exactly as the browser sent it: the browser compares it byte for byte with its own.
        var fields = [Field("Access-Control-Allow-Origin", origin)]
        if allowsCredentials { fields.append(Field("Access-Control-Allow-Credentials", "true")) }
        return fields
    }

    // MARK: Preflights

    private func preflight(_ request: Request) -> Decision {
        let vary = [Field("Vary", preflightVary)]
        // (isPreflight guarantees both.)
        guard let origin = request.origin, let method = request.requestMethod else { return .proceed(fields: []) }
        guard allows(origin: origin) else {
            return .refusePreflight(reason: "origin \(Self.shown(origin)) is not allowed", fields: vary)
        }
        guard !method.isEmpty, method.utf8.allSatisfy(ASCII.isToken) else {
            return .refusePreflight(reason: "Access-Control-Request-Method is not a method", fields: vary)
        }
        // Methods are case-sensitive (RFC 9110 §9.1; browsers upper-case only the six standard ones).
        if case .listed(let allowed) = methods, !allowed.contains(method) {
            return .refusePreflight(reason: "method \(Self.shown(method)) is not allowed", fields: vary)
        }
        guard let requested = Self.headerNames(request.requestHeaders ?? "") else {
            return .refusePreflight(reason: "Access-Control-Request-Headers is not a list of names", fields: vary)
        }
        if headers != .any, let refused = requested.first(where: { !allowedHeaderNames.contains($0) }) {
            return .refusePreflight(reason: "header \(Self.shown(refused)) is not allowed", fields: vary)
        }
        if request.requestsPrivateNetwork, !allowsPrivateNetwork {
            return .refusePreflight(reason: "private network access is not allowed", fields: vary)
        }
        var fields = allowOrigin(origin)
        // `*` as a method list counts only without credentials (Fetch §3.2.3); the method asked for always does.
        fields.append(Field("Access-Control-Allow-Methods", methodsValue ?? method))
        if headers == .any {
            // Echoed rather than `*`, which neither covers `Authorization` nor counts with credentials.
            if !requested.isEmpty {
                fields.append(Field("Access-Control-Allow-Headers", requested.joined(separator: ", ")))
            }
        } else if let headersValue {
            fields.append(Field("Access-Control-Allow-Headers", headersValue))
        }
        if let maxAgeSeconds { fields.append(Field("Access-Control-Max-Age", String(maxAgeSeconds))) }
        if request.requestsPrivateNetwork {
            fields.append(Field("Access-Control-Allow-Private-Network", "true"))
        }
        return .answerPreflight(fields: fields + vary)
    }

    /// The names of `Access-Control-Request-Headers` (a comma-separated list, Fetch §3.2.2), lowercase, empty
    /// elements skipped; nil when an element is not a field name.
    static func headerNames(_ value: String) -> [String]? {
        var names: [String] = []
        for element in value.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            let trimmed = element.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }
            if trimmed.isEmpty { continue }
            guard trimmed.allSatisfy(ASCII.isToken) else { return nil }
            names.append(String(decoding: trimmed.reversed().map(ASCII.lowercased), as: UTF8.self))
        }
        return names
    }

    /// A client's value as a log reason shows it: at most 100 bytes, so a long field cannot fill the log line.
    static func shown(_ value: String) -> String {
        value.utf8.count <= 100 ? value : String(decoding: value.utf8.prefix(100), as: UTF8.self) + "…"
    }
}
