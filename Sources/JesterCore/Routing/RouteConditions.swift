// SPDX-License-Identifier: Apache-2.0
import Foundation

/// A regular expression of a route (`path_regex`, `regex` of a header or query condition), compiled once.
public struct RoutePattern: @unchecked Sendable {
    // Regex is immutable once built; it is not declared Sendable on every platform.
    private let regex: Regex<AnyRegexOutput>
    public let source: String

    /// Throws the compiler's error when `source` is not a valid expression.
    public init(_ source: String) throws {
        regex = try Regex(source)
        self.source = source
    }

    /// The groups of the first match in `text` (index 0: the whole match; nil: a group that did not take part),
    /// or nil when it does not match.
    public func captures(in text: String) -> [String?]? {
        guard let match = try? regex.firstMatch(in: text) else { return nil }
        return (0..<match.output.count).map { match.output[$0].substring.map(String.init) }
    }

    /// Whether the expression matches anywhere in the bytes (anchor it with ^ and $ to match all of them).
    public func matches(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        return (try? regex.firstMatch(in: text)) != nil
    }
}

/// What a TLS handshake established that routes can match on.
public struct TLSRouteFacts: Sendable, Equatable {
    /// The SNI the client sent.
    public var serverName: String?
    /// The verified client certificate's subject (RFC 2253).
    public var clientSubject: String?

    public init(serverName: String?, clientSubject: String?) {
        self.serverName = serverName
        self.clientSubject = clientSubject
    }
}

/// What a request must also satisfy for a route to take it, beyond its host and path prefix: the matchers of
/// `[[routes]]` (methods, exact path, path regex, header and query conditions, client networks).
///
/// Pure and checked only for routes that have conditions; a route without them costs nothing here.
public struct RouteConditions: Sendable {
    public enum Test: Sendable {
        case equals([UInt8])
        case matches(RoutePattern)
        case present
        case absent
    }

    /// A condition on a header field (name lowercase) or a query parameter.
    public struct FieldCondition: Sendable {
        public var name: [UInt8]
        public var test: Test

        public init(name: String, test: Test) {
            self.name = Array(name.utf8)
            self.test = test
        }
    }

    /// Allowed methods, uppercase; empty: any.
    public var methods: [[UInt8]] = []
    /// The path must be exactly the route's prefix (`path = "/x"`).
    public var exactPath = false
    public var pathPattern: RoutePattern?
    public var headers: [FieldCondition] = []
    public var query: [FieldCondition] = []
    public var sources: [CIDR] = []
    /// TLS server names (SNI) the connection must have used; empty: any (or none).
    public var serverNames: [HostPattern] = []
    /// A test on the verified client certificate's subject (RFC 2253): present, absent, equals or matches.
    public var clientSubject: Test?
    /// A regular expression the start of the body must match (`match_body.regex`).
    public var bodyPattern: RoutePattern?
    /// JSON fields the whole body must have (`match_body.json`): a dotted path ("user.roles.0") and the value's
    /// text (a string's content, a number or true/false/null as JSON writes them).
    public var bodyJSON: [(path: [String], value: String)] = []
    /// How much of the body the matchers look at.
    public var bodyLimit = 0
    /// Tags a pre-route policy must have given the request, all of them (`policy_tags`).
    public var tags: [String] = []

    public init() {}

    public var isEmpty: Bool {
        methods.isEmpty && !exactPath && pathPattern == nil && headers.isEmpty && query.isEmpty && sources.isEmpty
            && serverNames.isEmpty && clientSubject == nil && bodyPattern == nil && bodyJSON.isEmpty && tags.isEmpty
    }

    /// Whether this route looks at the request body (so the body is read before the route is chosen).
    public var needsBody: Bool { bodyPattern != nil || !bodyJSON.isEmpty }

    /// How specific the conditions are, to order routes that share a host and path prefix: an exact path first,
    /// then routes with more conditions, then the plain prefix.
    public var specificity: Int {
        (exactPath ? 1000 : 0) + (pathPattern == nil ? 0 : 100) + methods.count.signum() + headers.count
            + query.count + sources.count.signum() + serverNames.count.signum() + (clientSubject == nil ? 0 : 1)
            + (bodyPattern == nil ? 0 : 1) + bodyJSON.count + 10 * tags.count
    }

    /// Whether a request satisfies every condition. `client` is the client's address (needed only with sources),
    /// `tls` what the connection's handshake said (nil on plain text).
    /// `tags`: what the listener's pre-route policies tagged the request with.
    public func matches(
        _ bytes: UnsafeRawBufferPointer, head: HTTPHead, client: IPAddressBytes?, tls: TLSRouteFacts? = nil,
        body: BodyPeek? = nil, tags: [String] = []
    ) -> Bool {
        if !self.tags.isEmpty, !self.tags.allSatisfy(tags.contains) { return false }
        if !methods.isEmpty {
            let method = head.method
            guard methods.contains(where: { candidate in
                candidate.count == method.count && candidate.withUnsafeBytes { $0.elementsEqual(bytes[method]) }
            }) else { return false }
        }
        if exactPath, head.path.count != pathLength { return false }
        if let pathPattern, !pathPattern.matches(bytes, head.path) { return false }
        for condition in headers {
            let field = head.field(named: condition.name, in: bytes)
            guard Self.passes(condition.test, bytes, field?.value) else { return false }
        }
        if !query.isEmpty {
            let queryRange = Self.queryRange(bytes, head)
            for condition in query {
                guard Self.passes(condition.test, bytes, Self.parameter(condition.name, bytes, queryRange)) else {
                    return false
                }
            }
        }
        if !sources.isEmpty {
            guard let client, sources.contains(where: { $0.contains(client) }) else { return false }
        }
        if !serverNames.isEmpty {
            guard let name = tls?.serverName?.lowercased(), serverNames.contains(where: { $0.matches(name) }) else {
                return false
            }
        }
        if let clientSubject {
            let subject = tls?.clientSubject
            switch clientSubject {
            case .present: if subject == nil { return false }
            case .absent: if subject != nil { return false }
            case .equals(let expected): if subject.map({ Array($0.utf8) }) != expected { return false }
            case .matches(let pattern):
                guard let subject else { return false }
                let found = Array(subject.utf8).withUnsafeBytes { pattern.matches($0, 0..<$0.count) }
                if !found { return false }
            }
        }
        if needsBody {
            let body = body ?? .empty
            let limited = Array(body.bytes.prefix(bodyLimit))
            if let bodyPattern, !limited.withUnsafeBytes({ bodyPattern.matches($0, 0..<$0.count) }) { return false }
            if !bodyJSON.isEmpty {
                // JSON is judged on the whole body only: a document cut at the limit cannot be parsed honestly.
                guard body.isComplete, body.bytes.count <= bodyLimit,
                    let document = try? JSONSerialization.jsonObject(with: Data(body.bytes), options: [.fragmentsAllowed])
                else { return false }
                for (path, value) in bodyJSON where Self.jsonText(at: path, in: document) != value { return false }
            }
        }
        return true
    }

    /// The text of the JSON value at `path` ("a", "b", "0" steps through objects and arrays), or nil.
    static func jsonText(at path: [String], in document: Any) -> String? {
        var current: Any = document
        for step in path {
            if let object = current as? [String: Any], let next = object[step] {
                current = next
            } else if let array = current as? [Any], let index = Int(step), array.indices.contains(index) {
                current = array[index]
            } else {
                return nil
            }
        }
        switch current {
        case let text as String: return text
        case is NSNull: return "null"
        case let number as NSNumber:
            // JSONSerialization gives booleans as NSNumber too (a boolean subclass); tell them apart by type.
            if "\(type(of: number))".contains("Boolean") { return number.boolValue ? "true" : "false" }
            return number.stringValue
        default: return nil
        }
    }

    /// The prefix length an exact path must have (set by the router, which knows the route's path).
    public var pathLength = 0

    private static func passes(_ test: Test, _ bytes: UnsafeRawBufferPointer, _ value: Range<Int>?) -> Bool {
        switch test {
        case .present: return value != nil
        case .absent: return value == nil
        case .equals(let expected):
            guard let value, value.count == expected.count else { return false }
            return expected.withUnsafeBytes { $0.elementsEqual(bytes[value]) }
        case .matches(let pattern):
            guard let value else { return false }
            return pattern.matches(bytes, value)
        }
    }

    /// The query of the request target: after "?" up to the end of the target ("#" is not a target byte).
    static func queryRange(_ bytes: UnsafeRawBufferPointer, _ head: HTTPHead) -> Range<Int> {
        var index = head.target.lowerBound
        while index < head.target.upperBound, bytes[index] != UInt8(ascii: "?") { index += 1 }
        return min(index + 1, head.target.upperBound)..<head.target.upperBound
    }

    /// The raw (still percent-encoded) value of parameter `name` in `query`; an empty range for "name" or
    /// "name=". The first occurrence wins.
    static func parameter(_ name: [UInt8], _ bytes: UnsafeRawBufferPointer, _ query: Range<Int>) -> Range<Int>? {
        var start = query.lowerBound
        while start < query.upperBound {
            var end = start
            while end < query.upperBound, bytes[end] != UInt8(ascii: "&") { end += 1 }
            var equals = start
            while equals < end, bytes[equals] != UInt8(ascii: "=") { equals += 1 }
            if equals - start == name.count,
                name.withUnsafeBytes({ $0.elementsEqual(bytes[start..<equals]) })
            {
                return min(equals + 1, end)..<end
            }
            start = end + 1
        }
        return nil
    }
}
