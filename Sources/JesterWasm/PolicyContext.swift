// SPDX-License-Identifier: Apache-2.0

/// A field as policies see it and set it: a name and a value, both text.
public struct PolicyField: Sendable, Equatable, CustomStringConvertible {
    public var name: String
    public var value: String

    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }

    public var description: String { "\(name): \(value)" }
}

/// What one stage call shows the policy (ABI v1's `context`): the caller fills what the stage has and leaves
/// the rest empty. Protocol-free values, so the proxy can build it from any protocol's request.
public struct PolicyContext: Sendable, Equatable {
    public var method: String
    public var scheme: String
    public var authority: String
    /// The path without the query.
    public var path: String
    /// The query without "?" (empty: none).
    public var query: String
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
