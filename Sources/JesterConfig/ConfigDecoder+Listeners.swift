// SPDX-License-Identifier: Apache-2.0
import JesterCore

extension ConfigDecoder {
    /// `redirect_to_https` and `hsts` of a listener: the HTTPS options that depend on whether it is TLS.
    mutating func decodeHTTPSOptions(_ table: inout TableReader, into listener: inout ListenerSettings) {
        if let node = table.take("redirect_to_https", decoder: &self) {
            switch node.value {
            case .boolean(let on): listener.redirectToHTTPS = on ? 443 : nil
            case .integer(let port) where (1...65535).contains(port): listener.redirectToHTTPS = port
            default:
                report(node.location,
                    "'redirect_to_https' must be true (port 443) or a port from 1 to 65535, not \(node.describedValue)")
            }
            if listener.redirectToHTTPS != nil {
                // A redirecting listener is the plain-text side of a site; its TLS side is another listener.
                if listener.tls != nil {
                    report(node.location, "'redirect_to_https' is for a plain-text listener; this one is TLS already")
                }
                if listener.isTCP {
                    report(node.location, "'redirect_to_https' needs an http listener, not protocol = \"tcp\"")
                }
                if listener.filters?.isEmpty == false {
                    report(node.location, "a listener with 'redirect_to_https' runs no filters; remove 'filters'")
                }
            }
        }
        if let node = table.take("hsts", decoder: &self), var reader = TableReader(node, ConfigSchema.hsts, decoder: &self) {
            let maxAge = reader.duration("max_age", decoder: &self)
            var hsts = HSTSSettings(maxAgeSeconds: Int(maxAge?.components.seconds ?? 0))
            hsts.includeSubdomains = reader.boolean("include_subdomains", decoder: &self) ?? false
            hsts.preload = reader.boolean("preload", decoder: &self) ?? false
            reader.finish(decoder: &self)
            if let problem = hsts.preloadProblem {
                report(reader.location(of: "preload"), problem)
            }
            if listener.tls == nil {
                // RFC 6797 §8.1: a browser ignores the field on a response that did not come over TLS.
                report(node.location,
                    "'hsts' needs a TLS listener: browsers ignore Strict-Transport-Security over plain HTTP "
                        + "(RFC 6797 §8.1); put it on the listener with [listeners.tls]")
            }
            if maxAge != nil { listener.hsts = hsts }
        }
    }
}

extension TableReader {
    /// An array of strings each of which must be one of the choices the schema declares for the elements.
    mutating func choiceArray(_ key: String, decoder: inout ConfigDecoder) -> [String]? {
        guard let entries = locatedStrings(key, decoder: &decoder) else { return nil }
        guard case .array(.choice(let options)) = schemaType(of: key) else {
            preconditionFailure("\(key) is not an array of choices")
        }
        var values: [String] = []
        for entry in entries {
            guard options.contains(entry.value) else {
                var message = "'\(entry.value)' in '\(key)' is not one of " + options.map { "\"\($0)\"" }
                    .joined(separator: ", ")
                if let close = Suggestion.closest(to: entry.value, among: options) {
                    message = "'\(entry.value)' in '\(key)' is unknown; did you mean \"\(close)\"?"
                }
                decoder.report(entry.location, message)
                continue
            }
            values.append(entry.value)
        }
        return values
    }
}

extension ConfigNode {
    /// The value as a message quotes it: strings quoted (they are strings, saying "a string" would not help),
    /// other types by their type name.
    var describedValue: String {
        if case .string(let text) = value { return "\"\(text)\"" }
        if case .integer(let number) = value { return "\(number)" }
        return typeName
    }
}
