// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterHTTPAPI

/// The control plane's REST API (Docs/control-plane-openapi.yaml) and the versions it keeps: requests in,
/// answers and versions to store out.
///
/// Pure: the server reads a request, asks `handle` for a `Decision`, stores the decision's new version (if any)
/// durably, then calls `commit` and sends the answer; if storing fails it sends `storageFailed` instead and the
/// version never existed. Time is passed in. So every rule (validation, `If-Match`, roles, diffs, rollbacks) is
/// tested without sockets or files.
public struct ControlPlaneAPI: Sendable {
    /// Every version, oldest first (`history[n]` is version n); the last is current. Versions share the resources they did not change
    /// (copy-on-write), so a long history of small edits costs little more than one document.
    public private(set) var history: [SnapshotVersion]
    /// The most recent audit records, oldest first (the log on disk has them all).
    public private(set) var recentAudit: [AuditRecord]
    public var validator: SnapshotValidator
    public var authorization: BearerAuthorization
    /// The data planes' streams: what each runs, what it refused (`GET /api/v1/data-planes`).
    public var dataPlanes = DataPlaneRegistry()

    /// How many audit records `GET /api/v1/audit` can show.
    public static let recentAuditLimit = 1000

    public init(
        history: [SnapshotVersion], recentAudit: [AuditRecord] = [], validator: SnapshotValidator = SnapshotValidator(),
        authorization: BearerAuthorization = BearerAuthorization(tokens: nil)
    ) {
        // Stored versions are 1, 2, …; version 0, the empty document, is never stored.
        self.history = [.initial] + history.filter { $0.number > 0 }
        self.recentAudit = Array(recentAudit.suffix(Self.recentAuditLimit))
        self.validator = validator
        self.authorization = authorization
    }

    /// The version in use.
    public var current: SnapshotVersion { history[history.count - 1] }

    /// What to do with one request.
    public struct Decision: Sendable {
        /// The answer, sent once `version` (if any) is stored.
        public var response: APIResponse
        /// A new version to store, then `commit`.
        public var version: SnapshotVersion?
        /// A record for the audit log (writes only).
        public var audit: AuditRecord?
        /// A data plane whose refusals to forget (`POST /api/v1/data-planes/NODE/retry`), after which the
        /// current version is offered to it again.
        public var retry: String?
    }

    /// Makes `version` current, after the server stored it.
    public mutating func commit(_ version: SnapshotVersion) {
        precondition(version.number == current.number + 1, "versions are committed in order")
        history.append(version)
    }

    /// Keeps an audit record for `GET /api/v1/audit`, after the server logged it.
    public mutating func remember(_ record: AuditRecord) {
        recentAudit.append(record)
        if recentAudit.count > Self.recentAuditLimit { recentAudit.removeFirst(recentAudit.count - Self.recentAuditLimit) }
    }

    /// Takes the audit log's recent records as the store has them (replicas sharing etcd each add theirs).
    public mutating func replaceRecentAudit(_ records: [AuditRecord]) {
        recentAudit = Array(records.suffix(Self.recentAuditLimit))
    }

    /// The answer when a decision's version could not be stored: nothing changed.
    public static func storageFailed(_ reason: String) -> APIResponse {
        APIResponse.error(503, "the change could not be stored, so it was not made: \(reason)")
    }

    /// Answers one request at time `now` (RFC 3339).
    public func handle(_ request: APIRequest, now: String) -> Decision {
        let query = Self.parameters(request.query)
        guard let segments = Self.segments(request.path) else {
            return Decision(response: .error(400, "the path is not valid percent-encoded UTF-8"))
        }
        let isWrite = request.method != "GET" && request.method != "HEAD"
        if segments == ["healthz"] {
            // For load balancers and systemd checks: says only that the process answers, needs no token.
            guard !isWrite else { return Self.notAllowed("GET, HEAD") }
            return Decision(response: .json(200, raw: JSONTree.object(["status": .string("ok")]).serialized()))
        }
        guard segments.count >= 2, segments[0] == "api", segments[1] == "v1" else {
            return Decision(response: .error(404, "no such resource; the API is under /api/v1/"))
        }
        let route = Array(segments.dropFirst(2))
        if authorization.tokens == nil, !Self.isLoopbackHost(request.field("host")) {
            // Without tokens anyone who reaches the port may write; a page whose name was rebound to 127.0.0.1
            // (DNS rebinding) would reach it with its own name in Host, so only loopback names are answered.
            return Decision(response: .error(403,
                "without tokens only requests to a loopback address or localhost are answered (Host: "
                    + "\(request.field("host") ?? "none"))"))
        }
        if isWrite, case .refuse(let reason) = CrossSiteCheck.decide(
            origin: request.field("origin"), fetchSite: request.field("sec-fetch-site"), host: request.field("host"))
        {
            return Decision(response: .error(403, reason))
        }
        let actor: String
        switch authorization.decide(authorization: request.field("authorization"), required: isWrite ? .write : .read) {
        case .allowed(let name):
            actor = name
        case .unauthorized(let reason):
            var response = APIResponse.error(401, reason)
            response.fields.append(("WWW-Authenticate", "Bearer realm=\"jester-control-plane\""))
            return Decision(response: response)
        case .forbidden(let name, let reason):
            let response = APIResponse.error(403, reason)
            return Decision(response: response, audit: isWrite ? refusal(request, now, name, response, reason) : nil)
        }
        var decision = dispatch(request, route, query: query, actor: actor, now: now)
        if request.method == "HEAD" { decision.response.body = [] }
        return decision
    }

    private func dispatch(
        _ request: APIRequest, _ route: [String], query: [String: String], actor: String, now: String
    ) -> Decision {
        let method = request.method == "HEAD" ? "GET" : request.method
        switch (method, route.count) {
        case (_, 1) where route[0] == "snapshot":
            switch method {
            case "GET": return readCurrent(request, body: current.tree)
            case "PUT": return replace(request, actor: actor, now: now)
            default: return Self.notAllowed("GET, HEAD, PUT")
            }
        case (_, 1) where route[0] == "versions":
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            return Decision(response: .json(200, raw: JSONTree.object([
                "current": .integer(current.number),
                "versions": .array(history.reversed().filter { $0.number > 0 }.map(\.summaryTree)),
            ]).serialized()))
        case (_, 2) where route[0] == "versions":
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            guard let version = version(route[1]) else { return Self.noVersion(route[1]) }
            return Decision(response: .json(200, raw: version.tree.serialized()))
        case (_, 3) where route[0] == "versions" && route[2] == "rollback":
            guard method == "POST" else { return Self.notAllowed("POST") }
            return rollback(request, to: route[1], actor: actor, now: now)
        case (_, 1) where route[0] == "diff":
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            return diff(from: query["from"], to: query["to"])
        case (_, 1) where route[0] == "data-planes":
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            return Decision(response: .json(200, raw: dataPlanes.tree.serialized()))
        case (_, 1) where route[0] == "audit":
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            let limit: Int
            if let text = query["limit"] {
                guard let number = Int(text), (0...Self.recentAuditLimit).contains(number) else {
                    return Decision(response: .error(400, "limit is an integer from 0 to \(Self.recentAuditLimit)"))
                }
                limit = number
            } else {
                limit = 100
            }
            return Decision(response: .json(200, raw: JSONTree.object([
                "records": .array(recentAudit.suffix(limit).map(\.tree)),
            ]).serialized()))
        case (_, 1):
            guard let kind = ResourceKind(rawValue: route[0]) else { return Self.noSuchResource(route[0]) }
            guard method == "GET" else { return Self.notAllowed("GET, HEAD") }
            let document = current.document
            let collection: JSONTree = kind == .routes
                ? .array(document.routes.map(\.value))
                : .object(Dictionary(uniqueKeysWithValues: document.names(kind).map { ($0, document.resource(kind, $0)!) }))
            return readCurrent(request, body: .object([
                "version": .integer(current.number),
                "set": .bool(document.kinds.contains(kind)),
                kind.rawValue: collection,
            ]))
        case (_, 3) where route[0] == "data-planes" && route[2] == "retry":
            guard method == "POST" else { return Self.notAllowed("POST") }
            let node = route[1]
            guard dataPlanes.entries[node] != nil else {
                let response = APIResponse.error(404, "no data plane '\(node)' has streamed from this control plane")
                return Decision(response: response, audit: refusal(request, now, actor, response, nil))
            }
            let response = APIResponse.json(200, raw: JSONTree.object([
                "node": .string(node), "version": .integer(current.number),
            ]).serialized())
            return Decision(response: response, audit: AuditRecord(
                at: now, actor: actor, method: request.method, path: request.path, outcome: .accepted, status: 200,
                version: current.number, reason: "refusals of '\(node)' forgotten"), retry: node)
        case (_, 2):
            guard let kind = ResourceKind(rawValue: route[0]) else { return Self.noSuchResource(route[0]) }
            let name = route[1]
            guard SnapshotDocument.isValidName(name) else {
                return Decision(response: .error(404, "there is no \(kind.singular) '\(name)': \(SnapshotDocument.nameRule)"))
            }
            switch method {
            case "GET":
                guard let resource = current.document.resource(kind, name) else {
                    return Decision(response: .error(404, "there is no \(kind.singular) '\(name)'"))
                }
                return readCurrent(request, body: resource)
            case "PUT": return put(request, kind, name, actor: actor, now: now)
            case "DELETE": return delete(request, kind, name, actor: actor, now: now)
            default: return Self.notAllowed("GET, HEAD, PUT, DELETE")
            }
        default:
            return Self.noSuchResource(route.joined(separator: "/"))
        }
    }

    /// A read of the current version: its entity tag, and 304 for an `If-None-Match` that names it.
    private func readCurrent(_ request: APIRequest, body: JSONTree) -> Decision {
        if let tags = request.field("if-none-match"), Self.matches(tags, current.entityTag) {
            return Decision(response: APIResponse(status: 304, fields: [("ETag", current.entityTag)]))
        }
        var response = APIResponse.json(200, raw: body.serialized())
        response.fields.append(("ETag", current.entityTag))
        return Decision(response: response)
    }

    private func diff(from: String?, to: String?) -> Decision {
        guard let fromText = from, let toText = to else {
            return Decision(response: .error(400, "name both versions: /api/v1/diff?from=N&to=M"))
        }
        guard let old = version(fromText) else { return Self.noVersion(fromText) }
        guard let new = version(toText) else { return Self.noVersion(toText) }
        return Decision(response: .json(200, raw: JSONTree.object([
            "from": .integer(old.number), "to": .integer(new.number),
            "changes": .array(ResourceChange.between(old.document, new.document).map(\.tree)),
        ]).serialized()))
    }

    /// The version a path segment or parameter names (decimal digits, or `current`).
    func version(_ text: String) -> SnapshotVersion? {
        if text == "current" { return current }
        guard !text.isEmpty, text.utf8.count <= 18, text.utf8.allSatisfy({ $0 &- UInt8(ascii: "0") < 10 }),
            let number = Int(text), number < history.count, history[number].number == number
        else { return nil }
        return history[number]
    }

    // MARK: - Answers and request parts

    static func notAllowed(_ allow: String) -> Decision {
        var response = APIResponse.error(405, "this resource takes \(allow)")
        response.fields.append(("Allow", allow))
        return Decision(response: response)
    }

    static func noSuchResource(_ path: String) -> Decision {
        Decision(response: .error(404,
            "no such resource '\(path)'; the API has snapshot, versions, diff, audit, data-planes, "
                + ResourceKind.allCases.map(\.rawValue).joined(separator: ", ")))
    }

    static func noVersion(_ text: String) -> Decision {
        Decision(response: .error(404, "there is no version '\(text)'"))
    }

    /// Whether an `If-Match` or `If-None-Match` list names `tag` (or is `*`). The tags are strong and every
    /// version has its own, so weak and strong comparison agree (a `W/` tag never matches).
    static func matches(_ list: String, _ tag: String) -> Bool {
        list.split(separator: ",").contains { entry in
            let trimmed = entry.trimmingCharacters(in: .whitespaces)
            return trimmed == "*" || trimmed == tag
        }
    }

    /// Whether a Host field names a loopback address or localhost (any port).
    static func isLoopbackHost(_ host: String?) -> Bool {
        guard var name = host?.lowercased() else { return false }
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return false }
            name = String(name[name.index(after: name.startIndex)..<close])
        } else if let colon = name.lastIndex(of: ":") {
            name = String(name[..<colon])
        }
        return SocketAddressSpec(host: name, port: 0).isLoopback
    }

    /// A query's parameters, decoded (`+` is not a space here; the last of a repeated name wins).
    static func parameters(_ query: String) -> [String: String] {
        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = PercentDecoding.decoded(parts[0]) else { continue }
            parameters[name] = parts.count > 1 ? PercentDecoding.decoded(parts[1]) ?? "" : ""
        }
        return parameters
    }

    /// The path's segments, each percent-decoded; nil if one is not valid UTF-8 once decoded. Empty segments
    /// (a trailing slash) are dropped.
    static func segments(_ path: String) -> [String]? {
        var segments: [String] = []
        for raw in path.split(separator: "/") {
            guard let segment = PercentDecoding.decoded(raw) else { return nil }
            segments.append(segment)
        }
        return segments
    }
}
