// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore

/// `error_pages = { ... }` of a route, or of a listener for its routes that set none (and for requests no route
/// takes): the bodies of Jester's own error answers, and which upstream error answers they replace.
///
/// Page files are read by the master when it loads the configuration, like certificates, so a worker never touches
/// the file system and a reload picks up edited pages. Paths are kept resolved against the configuration file's
/// directory, so a dump names the same files wherever it is read; `body` is what the worker renders. A route's
/// table replaces its listener's whole.
public struct ErrorPageSettings: Sendable, Codable, Equatable {
    /// The body of an error answer that has no page of its own.
    public enum Format: String, Sendable, Codable, CaseIterable {
        /// `404 Not Found` as plain text: the answer without error pages.
        case text
        /// A short HTML document naming the status.
        case html
        /// RFC 9457 problem details, for API clients that parse errors.
        case problemJSON = "problem+json"
    }

    /// Which statuses a page or an `intercept` entry covers: one status (`"404"`), or a class (`"5xx"`).
    public enum StatusPattern: Sendable, Codable, Hashable, CustomStringConvertible {
        case status(Int)
        case statusClass(Int)

        /// `"404"` or `"4xx"`/`"5xx"`: error statuses (400 to 599) only, since only errors get pages.
        public init?(_ text: String) {
            let bytes = Array(text.utf8)
            guard bytes.count == 3, bytes[0] == UInt8(ascii: "4") || bytes[0] == UInt8(ascii: "5") else { return nil }
            if bytes[1] == UInt8(ascii: "x"), bytes[2] == UInt8(ascii: "x") {
                self = .statusClass(Int(bytes[0] - UInt8(ascii: "0")))
            } else if let status = Int(text) {
                self = .status(status)
            } else {
                return nil
            }
        }

        public var description: String {
            switch self {
            case .status(let status): return String(status)
            case .statusClass(let digit): return "\(digit)xx"
            }
        }

        /// Whether `status` is covered.
        public func covers(_ status: Int) -> Bool {
            switch self {
            case .status(let exact): return status == exact
            case .statusClass(let digit): return status / 100 == digit
            }
        }
    }

    /// One page: the statuses it serves, the file (absolute), and the file's bytes as read at load.
    public struct Page: Sendable, Codable, Equatable {
        public var statuses: StatusPattern
        public var path: String
        public var body: Data

        public init(statuses: StatusPattern, path: String, body: Data) {
            self.statuses = statuses
            self.path = path
            self.body = body
        }

        /// The page's content type, from the file name's extension.
        public var contentType: String {
            if path.hasSuffix(".html") || path.hasSuffix(".htm") { return "text/html; charset=utf-8" }
            if path.hasSuffix(".json") { return "application/json" }
            return "text/plain; charset=utf-8"
        }
    }

    /// The body of statuses without a page (`format`).
    public var format: Format = .text
    /// The pages, sorted by pattern as written (`pages`).
    public var pages: [Page] = []
    /// Upstream answers with these statuses are replaced by Jester's (`intercept`).
    public var intercept: [StatusPattern] = []

    /// The largest page file: a page is sent whole, from memory, by every worker.
    public static let maxPageSize = 64 << 10

    public init() {}

    /// The `error_pages = { ... }` line of `jester config dump`, which reads back the same.
    var renderedTOML: String {
        let pages = pages.map { "\"\($0.statuses)\" = " + QuotedString.basic($0.path) }.joined(separator: ", ")
        let intercept = intercept.map { "\"\($0)\"" }.joined(separator: ", ")
        return "error_pages = { format = \"\(format.rawValue)\", pages = { \(pages) }, intercept = [\(intercept)] }"
    }
}

extension Configuration {
    /// The error pages of requests on `listener` taken by `route`: the route's own, else the listener's.
    public func errorPages(for route: RouteSettings, listener: String) -> ErrorPageSettings? {
        route.errorPages ?? listeners.first(where: { $0.name == listener })?.errorPages
    }
}

extension ConfigDecoder {
    /// `error_pages = { ... }` of a route or listener: every key checked, each page file read (relative to the
    /// configuration file) and held to `maxPageSize` and UTF-8, errors at the key's place.
    mutating func decodeErrorPages(_ node: ConfigNode) -> ErrorPageSettings? {
        guard var table = TableReader(node, ConfigSchema.errorPages, decoder: &self) else { return nil }
        var settings = ErrorPageSettings()
        if let format = table.choice("format", decoder: &self) {
            settings.format = ErrorPageSettings.Format(rawValue: format) ?? .text
        }
        for (key, entry) in table.map("pages", decoder: &self).sorted(by: { $0.key < $1.key }) {
            guard let statuses = ErrorPageSettings.StatusPattern(key) else {
                report(entry.location, "'\(key)' in 'pages' is not an error status (\"404\") or class (\"5xx\")")
                continue
            }
            guard case .string(let path) = entry.value else {
                report(entry.location, "'\(key)' in 'pages' must be a file name, not \(entry.describedValue)")
                continue
            }
            guard let body = readFile(path, at: entry.location) else { continue }
            if body.count > ErrorPageSettings.maxPageSize {
                report(entry.location, "\(path) has \(body.count) bytes; a page may have at most "
                    + "\(ErrorPageSettings.maxPageSize >> 10)KiB")
                continue
            }
            if String(data: body, encoding: .utf8) == nil {
                report(entry.location, "\(path) is not UTF-8 text")
                continue
            }
            // Kept absolute, so a dump read from anywhere names the same file.
            let base = (entry.location.file as NSString).deletingLastPathComponent
            let absolute = path.hasPrefix("/") || base.isEmpty ? path : base + "/" + path
            settings.pages.append(ErrorPageSettings.Page(statuses: statuses, path: absolute, body: body))
        }
        for entry in table.stringArray("intercept", decoder: &self) ?? [] {
            guard let pattern = ErrorPageSettings.StatusPattern(entry) else {
                report(table.location(of: "intercept"),
                    "'\(entry)' in 'intercept' is not an error status (\"503\") or class (\"5xx\")")
                continue
            }
            settings.intercept.append(pattern)
        }
        table.finish(decoder: &self)
        return settings
    }
}

extension ConfigSchema {
    /// A route's or listener's `error_pages` table.
    public static let errorPages = Table(
        "error_pages",
        [
            Field("format", .choice(ErrorPageSettings.Format.allCases.map(\.rawValue)), default: "\"text\"",
                "The body of an error without a page: \"text\" (the status and reason), \"html\", or "
                    + "\"problem+json\" (RFC 9457 problem details with type, title, status and request_id)."),
            Field("pages", .map(.string), default: "{}",
                "Page files by status (\"404\") or class (\"5xx\"), relative to the configuration file, at most 64KiB "
                    + "each; the exact status wins over its class. The extension gives the type (.html, .json, else "
                    + "text); {status}, {reason} and {request_id} are replaced, escaped for HTML and JSON."),
            Field("intercept", .array(.string), default: "[]",
                "Upstream answers with these statuses (\"503\") or classes (\"5xx\") are replaced by Jester's: "
                    + "their body is not sent, and the upstream connection is closed."),
        ])
}
