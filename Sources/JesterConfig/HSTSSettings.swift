// SPDX-License-Identifier: Apache-2.0

/// `[listeners.NAME.hsts]`: the `Strict-Transport-Security` field (RFC 6797) a TLS listener adds to responses.
///
/// Kept as numbers and flags rather than a written field value, so the loader can hold `preload` to the rules of
/// hstspreload.org (a year at least, subdomains included) and the field is spelt one way everywhere.
public struct HSTSSettings: Sendable, Codable, Equatable {
    /// How long a browser keeps to HTTPS after seeing the field (`max-age`, RFC 6797 §6.1.1).
    public var maxAgeSeconds: Int
    /// The rule covers every subdomain too (`includeSubDomains`, RFC 6797 §6.1.2).
    public var includeSubdomains: Bool
    /// Consent to be listed in browsers' preload lists; only meaningful with a year or more and subdomains.
    public var preload: Bool

    /// The least `max_age` hstspreload.org accepts for `preload`: one year.
    public static let preloadMinimumSeconds = 31_536_000

    public init(maxAgeSeconds: Int, includeSubdomains: Bool = false, preload: Bool = false) {
        self.maxAgeSeconds = maxAgeSeconds
        self.includeSubdomains = includeSubdomains
        self.preload = preload
    }

    /// The field value as sent: `max-age=31536000; includeSubDomains; preload`.
    public var fieldValue: String {
        var value = "max-age=\(maxAgeSeconds)"
        if includeSubdomains { value += "; includeSubDomains" }
        if preload { value += "; preload" }
        return value
    }

    /// Why these settings cannot be preloaded (nil: they can, or `preload` is off).
    public var preloadProblem: String? {
        guard preload else { return nil }
        if maxAgeSeconds < Self.preloadMinimumSeconds {
            return "'preload' needs max_age of at least 1 year (\"365d\"), as hstspreload.org requires"
        }
        if !includeSubdomains {
            return "'preload' needs include_subdomains = true, as hstspreload.org requires"
        }
        return nil
    }
}
