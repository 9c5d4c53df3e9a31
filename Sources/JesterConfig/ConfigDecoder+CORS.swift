// SPDX-License-Identifier: Apache-2.0
import JesterCore

extension ConfigDecoder {
    /// `kind = "cors"`: every origin is parsed here with the worker's own parser (`CORSOriginPattern`), so an
    /// entry that would never match (a path, a typo in the scheme, `*` in the wrong place) is an error at its
    /// place rather than an origin silently refused.
    mutating func cors(_ table: inout TableReader) -> CORSSettings? {
        let origins = corsList("allow_origins", &table) { decoder, entry in
            do throws(CORSOrigin.ParseError) {
                _ = try CORSOriginPattern(parsing: entry.value)
            } catch {
                decoder.report(entry.location, error.message)
            }
        }
        let methods = corsList("allow_methods", &table) { decoder, entry in
            guard entry.value.utf8.allSatisfy(ASCII.isToken) else {
                decoder.report(entry.location, "'\(entry.value)' is not a method")
                return
            }
            // RFC 9110 §9.1: methods are case-sensitive, and browsers send the standard ones upper case.
            let standard = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
            if entry.value != entry.value.uppercased(), standard.contains(entry.value.uppercased()) {
                decoder.report(entry.location, "methods are case-sensitive: browsers send \(entry.value.uppercased()), "
                    + "not \(entry.value)")
            }
        }
        let checkHeader: (inout ConfigDecoder, LocatedString) -> Void = { decoder, entry in
            if !entry.value.utf8.allSatisfy(ASCII.isToken) {
                decoder.report(entry.location, "'\(entry.value)' is not a header name")
            }
        }
        let headers = corsList("allow_headers", &table, caseInsensitive: true, checkHeader)
        let exposed = corsList("expose_headers", &table, caseInsensitive: true, checkHeader)
        var settings = CORSSettings(allowOrigins: origins ?? .listed([]))
        settings.allowMethods = methods ?? settings.allowMethods
        settings.allowHeaders = headers ?? settings.allowHeaders
        settings.exposeHeaders = exposed ?? settings.exposeHeaders
        settings.allowCredentials = table.boolean("allow_credentials", decoder: &self) ?? false
        if settings.allowCredentials {
            // Fetch §3.2.3: a browser ignores `*` with credentials. Echoing every origin instead (what many
            // gateways do) would let any site send the user's cookies and read the answers: refused.
            if settings.allowOrigins == .any {
                report(table.location(of: "allow_credentials"),
                    "allow_credentials = true needs listed origins, not \"*\": browsers refuse \"*\" with "
                        + "credentials, and allowing every origin with them would let any site use the user's "
                        + "cookies (list them; \"https://*.example.com\" allows subdomains)")
            }
            if settings.exposeHeaders == .any {
                report(table.location(of: "expose_headers"),
                    "expose_headers = \"*\" means the header named * when credentials are allowed; list the headers")
            }
        }
        if let maxAge = table.duration("max_age", decoder: &self) {
            if maxAge < .zero || maxAge > CORSSettings.maxAgeLimit {
                report(table.location(of: "max_age"), "'max_age' must be between 0s and 24h (browsers keep a "
                    + "preflight at most 24h, Chromium 2h)")
            }
            settings.maxAge = maxAge
        }
        settings.allowPrivateNetwork = table.boolean("allow_private_network", decoder: &self) ?? false
        return origins == nil ? nil : settings
    }

    /// A cors list key: `"*"`, or an array of strings each checked by `check`, without repeats (`caseInsensitive`:
    /// header names) and with `*` only alone. nil when missing or wrong (reported).
    private mutating func corsList(
        _ key: String, _ table: inout TableReader, caseInsensitive: Bool = false,
        _ check: (inout ConfigDecoder, LocatedString) -> Void
    ) -> CORSList? {
        guard let node = table.take(key, decoder: &self) else { return nil }
        let wrong = "'\(key)' must be \"*\" or an array of strings"
        switch node.value {
        case .string("*"):
            return .any
        case .array:
            break
        default:
            report(node.location, "\(wrong), not \(node.describedValue)")
            return nil
        }
        guard case .array(let elements) = node.value else { return nil }
        var entries: [LocatedString] = []
        for element in elements {
            guard case .string(let value) = element.value else {
                report(element.location, "elements of '\(key)' must be strings, not \(element.typeName)")
                continue
            }
            entries.append(LocatedString(value: value, location: element.location))
        }
        if entries.count == 1, entries[0].value == "*" { return .any }
        if let star = entries.first(where: { $0.value == "*" }) {
            report(star.location, "\"*\" allows every value of '\(key)': write \(key) = \"*\" alone")
            return nil
        }
        if key == "allow_origins" || key == "allow_methods", elements.isEmpty {
            report(node.location, "'\(key)' needs at least one entry (or \"*\")")
            return nil
        }
        var seen = Set<String>()
        for entry in entries {
            check(&self, entry)
            let identity = caseInsensitive ? entry.value.lowercased() : entry.value
            if !seen.insert(identity).inserted {
                report(entry.location, "'\(entry.value)' is already in '\(key)'")
            }
        }
        return .listed(entries.map(\.value))
    }
}
