// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import NIOCore

/// A route's (or listener's) `error_pages`, compiled once per configuration: the body of each error status Jester
/// answers itself, and which upstream error statuses are replaced by those answers.
///
/// Pure: the request id comes in as bytes, and the answer goes out as a `LocalResponse` the adapters render, so
/// the rules are tested without sockets. Page files were read by the master; their placeholders are split out here
/// once, so an answer is one pass over literal pieces.
final class ErrorPages: Sendable {
    /// How a placeholder's value is escaped: by the page's type, so a client's request id cannot inject markup.
    enum Escaping: Sendable {
        case none
        case html
        case json
    }

    /// One piece of a page: text as written, or a placeholder rendered per answer.
    enum Segment: Sendable, Equatable {
        case literal([UInt8])
        case status
        case reason
        case requestID
    }

    /// A page file, split at its placeholders.
    struct Template: Sendable {
        let contentType: String
        let segments: [Segment]
        let escaping: Escaping

        init(contentType: String, text: String) {
            self.contentType = contentType
            escaping = contentType.hasPrefix("text/html") ? .html : contentType.hasSuffix("json") ? .json : .none
            segments = Self.segments(of: text)
        }

        /// `text` split at `{status}`, `{reason}` and `{request_id}`; any other brace is text.
        static func segments(of text: String) -> [Segment] {
            var segments: [Segment] = []
            var literal: [UInt8] = []
            var rest = Substring(text)
            let placeholders: [(String, Segment)] = [
                ("{status}", .status), ("{reason}", .reason), ("{request_id}", .requestID),
            ]
            while let first = rest.utf8.first {
                if first == UInt8(ascii: "{"),
                    let (name, segment) = placeholders.first(where: { rest.hasPrefix($0.0) })
                {
                    if !literal.isEmpty { segments.append(.literal(literal)) }
                    literal = []
                    segments.append(segment)
                    rest = rest.dropFirst(name.count)
                } else {
                    literal.append(first)
                    rest = Substring(rest.utf8.dropFirst())
                }
            }
            if !literal.isEmpty { segments.append(.literal(literal)) }
            return segments
        }
    }

    let format: ErrorPageSettings.Format
    /// Pages for one status.
    private let exact: [Int: Template]
    /// Pages for a class, by the status's first digit (indexes 4 and 5).
    private let classes: [Template?]
    /// `intercept`: statuses, and classes by first digit.
    private let interceptedStatuses: Set<Int>
    private let interceptedClasses: Set<Int>

    init(_ settings: ErrorPageSettings) {
        format = settings.format
        var exact: [Int: Template] = [:]
        var classes = [Template?](repeating: nil, count: 6)
        for page in settings.pages {
            let template = Template(contentType: page.contentType, text: String(decoding: page.body, as: UTF8.self))
            switch page.statuses {
            case .status(let status): exact[status] = template
            case .statusClass(let digit): classes[digit] = template
            }
        }
        self.exact = exact
        self.classes = classes
        var statuses = Set<Int>()
        var statusClasses = Set<Int>()
        for pattern in settings.intercept {
            switch pattern {
            case .status(let status): statuses.insert(status)
            case .statusClass(let digit): statusClasses.insert(digit)
            }
        }
        interceptedStatuses = statuses
        interceptedClasses = statusClasses
    }

    /// Whether an upstream's answer with `status` is replaced by Jester's own (`intercept`).
    func intercepts(_ status: Int) -> Bool {
        interceptedStatuses.contains(status) || interceptedClasses.contains(status / 100)
    }

    /// The page of `status`: its own, else its class's; nil when `format` makes the body.
    func template(for status: Int) -> Template? {
        if let page = exact[status] { return page }
        let digit = status / 100
        return classes.indices.contains(digit) ? classes[digit] : nil
    }

    /// The answer for `status`: the page, else the format's body. `fields`: the caller's extras (`Retry-After`);
    /// `requestID`: the request's id as sent upstream and logged, so a user can quote it.
    func response(status: Int, fields: [LocalResponse.Field], requestID: UnsafeRawBufferPointer) -> LocalResponse {
        let reason = HTTPStatus.reason(status)
        var body = ByteBuffer()
        let contentType: String
        if let page = template(for: status) {
            contentType = page.contentType
            for segment in page.segments {
                switch segment {
                case .literal(let bytes): body.writeBytes(bytes)
                case .status: body.writeString(String(status))
                case .reason: Self.write(Array(reason.utf8), escaping: page.escaping, into: &body)
                case .requestID: Self.write(requestID, escaping: page.escaping, into: &body)
                }
            }
        } else {
            switch format {
            case .text:
                return .error(status, fields: fields)
            case .html:
                contentType = "text/html; charset=utf-8"
                body.writeString("<!DOCTYPE html>\n<html><head><title>\(status) ")
                Self.write(Array(reason.utf8), escaping: .html, into: &body)
                body.writeString("</title></head>\n<body><h1>\(status) ")
                Self.write(Array(reason.utf8), escaping: .html, into: &body)
                body.writeString("</h1></body></html>\n")
            case .problemJSON:
                // RFC 9457 §4.2.1: "about:blank" says the status code is all the problem there is; `request_id`
                // is an extension member (§3.2), the one detail that helps without telling internals.
                contentType = "application/problem+json"
                body.writeString("{\"type\":\"about:blank\",\"title\":\"")
                Self.write(Array(reason.utf8), escaping: .json, into: &body)
                body.writeString("\",\"status\":\(status),\"request_id\":\"")
                Self.write(requestID, escaping: .json, into: &body)
                body.writeString("\"}\n")
            }
        }
        return LocalResponse(
            status: status, fields: [LocalResponse.Field("Content-Type", contentType)] + fields, body: body)
    }

    /// Writes a placeholder's value escaped for the page's type. A client's request id may hold any visible byte,
    /// obs-text included (RFC 9110 §5.5): escaped, bytes from 0x80 are read as ISO-8859-1, so the page stays
    /// valid UTF-8 and a JSON page stays JSON.
    static func write<Bytes: Collection>(_ value: Bytes, escaping: Escaping, into body: inout ByteBuffer)
    where Bytes.Element == UInt8 {
        let hex = Array("0123456789abcdef".utf8)
        switch escaping {
        case .none:
            body.writeBytes(value)
        case .html:
            for byte in value {
                switch byte {
                case UInt8(ascii: "&"): body.writeStaticString("&amp;")
                case UInt8(ascii: "<"): body.writeStaticString("&lt;")
                case UInt8(ascii: ">"): body.writeStaticString("&gt;")
                case UInt8(ascii: "\""): body.writeStaticString("&quot;")
                case UInt8(ascii: "'"): body.writeStaticString("&#39;")
                case 0x80...:
                    body.writeStaticString("&#x")
                    body.writeBytes([hex[Int(byte >> 4)], hex[Int(byte & 0xF)], UInt8(ascii: ";")])
                default: body.writeInteger(byte)
                }
            }
        case .json:
            // RFC 8259 §7: quotation mark, reverse solidus and control characters are escaped.
            for byte in value {
                switch byte {
                case UInt8(ascii: "\""): body.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): body.writeStaticString("\\\\")
                case 0..<0x20, 0x7F...:
                    body.writeStaticString("\\u00")
                    body.writeBytes([hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
                default: body.writeInteger(byte)
                }
            }
        }
    }
}
