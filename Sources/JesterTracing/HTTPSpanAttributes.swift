// SPDX-License-Identifier: Apache-2.0
/// The semantic-convention attributes of HTTP server and client spans, made from what the exchange knows, so
/// the names, the method normalisation and the protocol spelling are decided here once.
public enum HTTPSpanAttributes {
    /// Methods the conventions know (RFC 9110 §9 and PATCH); any other is recorded as `_OTHER` with the
    /// original beside it, so a client cannot make span names or metric labels without bound.
    static let knownMethods: Set<String> = [
        "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
    ]

    /// The span name for a request with `method`: the method, or `HTTP` for an unknown one (the conventions'
    /// `{method}` when no low-cardinality route template exists, which Jester's route names are not).
    public static func spanName(method: String) -> String {
        knownMethods.contains(method) ? method : "HTTP"
    }

    /// `http.request.method` (and `http.request.method_original` for a method the conventions do not know).
    public static func method(_ method: String) -> [SpanAttribute] {
        if knownMethods.contains(method) { return [SpanAttribute(SemanticKey.httpRequestMethod, method)] }
        return [
            SpanAttribute(SemanticKey.httpRequestMethod, "_OTHER"),
            SpanAttribute(SemanticKey.httpRequestMethodOriginal, method),
        ]
    }

    /// `network.protocol.version` as the conventions spell it: "1.0", "1.1", "2", "3".
    public static func protocolVersion(major: Int, minor: Int) -> String {
        major >= 2 ? String(major) : "\(major).\(minor)"
    }

    /// A server span's attributes at the request's start. `path` is the path without its query; `query` the
    /// part after `?` (nil when none).
    public static func server(
        method: String, scheme: String, path: String, query: String? = nil, host: String?, port: Int?,
        protocolVersion: String, clientAddress: String?, userAgent: String? = nil
    ) -> [SpanAttribute] {
        var attributes = Self.method(method)
        attributes.append(SpanAttribute(SemanticKey.urlScheme, scheme))
        attributes.append(SpanAttribute(SemanticKey.urlPath, path))
        if let query { attributes.append(SpanAttribute(SemanticKey.urlQuery, query)) }
        if let host { attributes.append(SpanAttribute(SemanticKey.serverAddress, host)) }
        if let port { attributes.append(SpanAttribute(SemanticKey.serverPort, port)) }
        attributes.append(SpanAttribute(SemanticKey.networkProtocolVersion, protocolVersion))
        if let clientAddress { attributes.append(SpanAttribute(SemanticKey.clientAddress, clientAddress)) }
        if let userAgent { attributes.append(SpanAttribute(SemanticKey.userAgentOriginal, userAgent)) }
        return attributes
    }

    /// An upstream attempt's attributes: the target it went to, which attempt (`http.request.resend_count`
    /// counts the sends before this one: replays and retries), the pool and the protocol.
    public static func client(
        method: String, upstream: String, address: String, port: Int, attempt: Int, protocolVersion: String
    ) -> [SpanAttribute] {
        var attributes = Self.method(method)
        attributes.append(SpanAttribute(SemanticKey.serverAddress, address))
        attributes.append(SpanAttribute(SemanticKey.serverPort, port))
        attributes.append(SpanAttribute(SemanticKey.upstream, upstream))
        attributes.append(SpanAttribute(SemanticKey.networkProtocolVersion, protocolVersion))
        if attempt > 1 { attributes.append(SpanAttribute(SemanticKey.httpRequestResendCount, attempt - 1)) }
        return attributes
    }
}
