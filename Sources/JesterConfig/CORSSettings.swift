// SPDX-License-Identifier: Apache-2.0
/// `kind = "cors"`: cross-origin resource sharing (the Fetch standard's CORS protocol) for the routes the filter
/// is attached to: which origins may read responses, with which methods, request headers and credentials, what
/// response headers they may read, and how long a browser keeps a preflight's answer.
///
/// Kept as written (entries are strings, checked by the decoder with JesterCore's `CORSOriginPattern`), so the
/// dump writes back what was read; the worker compiles it into a `CORSPolicy`.
public struct CORSSettings: Sendable, Codable, Equatable {
    /// `allow_origins`: exact origins (`https://app.example.com`), subdomain patterns (`https://*.example.com`),
    /// or any origin (`"*"`, never with credentials).
    public var allowOrigins: CORSList
    /// `allow_methods`: the methods a preflight may ask for (case-sensitive), or any.
    public var allowMethods: CORSList
    /// `allow_headers`: the request headers a preflight may ask for (any case), or any.
    public var allowHeaders: CORSList
    /// `expose_headers`: the response headers beyond the safelisted ones that scripts may read, or all
    /// (`"*"`, never with credentials).
    public var exposeHeaders: CORSList
    /// `allow_credentials`: scripts may send cookies and HTTP authentication, and read the answers.
    public var allowCredentials: Bool
    /// `max_age`: how long a browser keeps a preflight's answer; nil sends no `Access-Control-Max-Age`.
    public var maxAge: Duration?
    /// `allow_private_network`: answer Chromium's Private Network Access preflights (a public site reaching
    /// this private address) with `Access-Control-Allow-Private-Network: true`; without it they are refused.
    public var allowPrivateNetwork: Bool

    /// The methods allowed when `allow_methods` is not written: the CORS-safelisted ones (Fetch §2.2.1).
    public static let defaultMethods = ["GET", "HEAD", "POST"]
    /// The longest `max_age` accepted: Firefox keeps a preflight at most 24 hours (Chromium 2 hours).
    public static let maxAgeLimit = Duration.seconds(86400)

    public init(
        allowOrigins: CORSList, allowMethods: CORSList = .listed(defaultMethods), allowHeaders: CORSList = .listed([]),
        exposeHeaders: CORSList = .listed([]), allowCredentials: Bool = false, maxAge: Duration? = nil,
        allowPrivateNetwork: Bool = false
    ) {
        self.allowOrigins = allowOrigins
        self.allowMethods = allowMethods
        self.allowHeaders = allowHeaders
        self.exposeHeaders = exposeHeaders
        self.allowCredentials = allowCredentials
        self.maxAge = maxAge
        self.allowPrivateNetwork = allowPrivateNetwork
    }
}

/// A CORS list key's value: `"*"` (any), or the entries written.
public enum CORSList: Sendable, Codable, Equatable {
    /// `"*"`.
    case any
    /// The entries, in the order written.
    case listed([String])
}
