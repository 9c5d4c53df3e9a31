// SPDX-License-Identifier: Apache-2.0

/// A field as policies see it and set it: a name and a value, both text.
public struct PolicyField: Sendable, Equatable, CustomStringConvertible {
    /// The field name (lowercase in contexts; a token in results).
    public var name: String
    /// The field value (no CR, LF, NUL or other control but HTAB in results).
    public var value: String

    /// A field `name: value`.
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    /// `name: value`, as on the wire.
    public var description: String { "\(name): \(value)" }
}

/// What one stage call shows the policy (ABI v1's `context`): the caller fills what the stage has and leaves
/// the rest empty. Protocol-free values, so the proxy can build it from any protocol's request.
public struct PolicyContext: Sendable, Equatable {
    /// The request method.
    public var method: String
    /// "http" or "https".
    public var scheme: String
    /// The host the client asked for (:authority or Host).
    public var authority: String
    /// The path without the query.
    public var path: String
    /// The query without "?" (empty: none).
    public var query: String
    /// The client's address as text (after a trusted PROXY header).
    public var clientAddress: String
    /// Request fields, names lowercase.
    public var requestHeaders: [PolicyField]
    /// The request body (pre-upstream, when the policy reads bodies).
    public var requestBody: [UInt8]?
    /// The chosen route's id (from pre-upstream on).
    public var route: String?
    /// The response's status (post-response; 0 before).
    public var status: Int
    /// Response fields, names lowercase (post-response).
    public var responseHeaders: [PolicyField]
    /// The response body (post-response, when the policy reads bodies).
    public var responseBody: [UInt8]?

    /// A context; every field defaults to empty (a GET of "/").
    public init(
        method: String = "GET",
        scheme: String = "http",
        authority: String = "",
        path: String = "/",
        query: String = "",
        clientAddress: String = "",
        requestHeaders: [PolicyField] = [],
        requestBody: [UInt8]? = nil,
        route: String? = nil,
        status: Int = 0,
        responseHeaders: [PolicyField] = [],
        responseBody: [UInt8]? = nil
    ) {
        self.method = method
        self.scheme = scheme
        self.authority = authority
        self.path = path
        self.query = query
        self.clientAddress = clientAddress
        self.requestHeaders = requestHeaders
        self.requestBody = requestBody
        self.route = route
        self.status = status
        self.responseHeaders = responseHeaders
        self.responseBody = responseBody
    }
}
