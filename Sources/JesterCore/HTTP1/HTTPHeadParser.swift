// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A strict RFC 9112 parser for HTTP/1 request and response heads that works in place over received bytes.
///
/// It runs in two steps so a head that trickles in byte by byte costs linear time: `findEnd` resumes its search
/// for the empty line where it stopped, and `parse` walks a complete head once, recording offsets into an
/// `HTTPHead`. Anything ambiguous is an error, never a guess: a proxy that guesses differently from the server
/// behind it is how request smuggling happens.
public struct HTTPHeadParser: Sendable {
    /// Size limits applied while parsing. Exceeding them maps to 414 and 431.
    public struct Limits: Sendable, Equatable {
        /// The largest head (request line and fields) accepted.
        public var maxHeadSize: Int
        /// The longest request target accepted.
        public var maxURILength: Int
        /// The most header fields accepted.
        public var maxFieldCount: Int

        public init(maxHeadSize: Int = 16 * 1024, maxURILength: Int = 8 * 1024, maxFieldCount: Int = 100) {
            self.maxHeadSize = maxHeadSize
            self.maxURILength = maxURILength
            self.maxFieldCount = maxFieldCount
        }
    }

    /// What `findEnd` learned about the bytes received so far.
    public enum Progress: Sendable, Equatable {
        /// No complete head yet; call again when more bytes arrive.
        case needMoreBytes
        /// The head ends after `length` bytes (including the final CRLF CRLF).
        case complete(length: Int)
        /// The bytes can never become a valid head.
        case failed(HTTPParseError)
    }

    public var limits: Limits
    /// How far `findEnd` has already looked, so a resumed search skips what it saw.
    private var scanned = 0
    /// Whether the request line was already seen to end within the URI limit (checked once, not per read).
    private var requestLineFits = false

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Forgets the search state, for the next message on the connection.
    public mutating func reset() {
        scanned = 0
        requestLineFits = false
    }

    /// Looks for the end of the head (CRLF CRLF) in `bytes`, which start at the head's first byte; resumable, so
    /// each byte is examined once however the head arrives.
    public mutating func findEnd(_ bytes: UnsafeRawBufferPointer, isRequest: Bool) -> Progress {
        let count = bytes.count
        // A response that does not start with "HTTP/" (an HTTP/0.9 body, a non-HTTP server) is refused at once
        // instead of waiting for a head end that never comes.
        if !isRequest, scanned < 5 {
            // Checked on whatever part of the prefix has arrived, so the answer never depends on how reads split.
            let prefix: StaticString = "HTTP/"
            for index in scanned..<min(count, 5) where bytes[index] != prefix.utf8Start[index] {
                return .failed(.badStatusLine)
            }
        }
        // Every line must end in CRLF, so every LF is looked at (memchr finds them fast): a bare LF is an error
        // at once (RFC 9112 §2.2 lets recipients accept it; a proxy must not, since the origin may not), and an
        // LF that follows CR LF CR ends the head. Bytes before `scanned` were looked at by an earlier call.
        var index = scanned
        while index < count, let base = bytes.baseAddress,
              let found = memchr(base + index, Int32(ASCII.lf), count - index) {
            let lf = base.distance(to: UnsafeRawPointer(found))
            guard lf > 0, bytes[lf - 1] == ASCII.cr else { return .failed(.badField) }
            if lf >= 3, bytes[lf - 2] == ASCII.lf, bytes[lf - 3] == ASCII.cr {
                let length = lf + 1
                if length > limits.maxHeadSize { return .failed(overflow(bytes, isRequest: isRequest)) }
                return .complete(length: length)
            }
            index = lf + 1
        }
        scanned = count
        if count > limits.maxHeadSize { return .failed(overflow(bytes, isRequest: isRequest)) }
        if isRequest, !requestLineFits, count > limits.maxURILength + 64 {
            guard bytes.contains(ASCII.lf) else { return .failed(.uriTooLong) }
            requestLineFits = true
        }
        return .needMoreBytes
    }

    /// Which limit an oversized head broke: a request line longer than the URI limit is 414, anything else 431.
    private func overflow(_ bytes: UnsafeRawBufferPointer, isRequest: Bool) -> HTTPParseError {
        guard isRequest else { return .headTooLarge }
        let firstLine = bytes.firstIndex(of: ASCII.lf) ?? bytes.count
        return firstLine > limits.maxURILength ? .uriTooLong : .headTooLarge
    }

    /// Parses a complete request head (`bytes` end with the CRLF CRLF found by `findEnd`) into `head`.
    public func parseRequest(_ bytes: UnsafeRawBufferPointer, into head: inout HTTPHead) -> HTTPParseError? {
        head.length = bytes.count
        var index = 0
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
        if bytes.count >= 2, bytes[0] == ASCII.cr, bytes[1] == ASCII.lf { index = 2 }

        // method SP request-target SP HTTP-version CRLF (RFC 9112 §3)
        let methodStart = index
        while index < bytes.count, ASCII.isToken(bytes[index]) { index += 1 }
        guard index > methodStart, index < bytes.count, bytes[index] == ASCII.space else { return .badRequestLine }
        head.method = methodStart..<index
        index += 1

        let targetStart = index
        while index < bytes.count, ASCII.isTargetByte(bytes[index]) { index += 1 }
        guard index > targetStart, index < bytes.count, bytes[index] == ASCII.space else {
            return .badRequestLine
        }
        head.target = targetStart..<index
        if head.target.count > limits.maxURILength { return .uriTooLong }
        index += 1

        guard let version = parseVersion(bytes, &index) else { return .badRequestLine }
        switch version {
        case .supported(let supported): head.version = supported
        case .unsupported: return .versionNotSupported
        }
        guard index + 1 < bytes.count, bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf else {
            return .badRequestLine
        }
        index += 2

        if let error = parseTargetForm(bytes, &head) { return error }
        if let error = parseFields(bytes, from: index, into: &head) { return error }
        return checkRequestSemantics(bytes, &head)
    }

    /// Parses a complete response head into `head`. Errors here mean the upstream misbehaved (502).
    public func parseResponse(_ bytes: UnsafeRawBufferPointer, into head: inout HTTPHead) -> HTTPParseError? {
        head.length = bytes.count
        var index = 0
        // HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 §4)
        guard let version = parseVersion(bytes, &index), case .supported(let supported) = version else {
            return .badStatusLine
        }
        head.version = supported
        guard index + 4 <= bytes.count, bytes[index] == ASCII.space else { return .badStatusLine }
        var status = 0
        for offset in 1...3 {
            let digit = bytes[index + offset] &- UInt8(ascii: "0")
            guard digit <= 9 else { return .badStatusLine }
            status = status * 10 + Int(digit)
        }
        guard status >= 100 else { return .badStatusLine }
        head.status = status
        index += 4
        // Exactly three digits: "2000" is not status 200 with a reason starting "0".
        guard index < bytes.count, bytes[index] == ASCII.space || bytes[index] == ASCII.cr else { return .badStatusLine }
        // The reason phrase is informational; some servers omit the space before an empty one.
        while index < bytes.count, bytes[index] != ASCII.cr {
            guard ASCII.isFieldValueByte(bytes[index]) else { return .badStatusLine }
            index += 1
        }
        guard index + 1 < bytes.count, bytes[index + 1] == ASCII.lf else { return .badStatusLine }
        index += 2
        if let error = parseFields(bytes, from: index, into: &head) { return error }
        return checkFraming(bytes, &head)
    }

    private enum ParsedVersion {
        case supported(HTTPVersion)
        case unsupported
    }

    /// `HTTP/DIGIT.DIGIT`, case-sensitive (RFC 9112 §2.3). A well-formed version other than 1.0 and 1.1 is
    /// `unsupported` (505); anything else is malformed.
    private func parseVersion(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) -> ParsedVersion? {
        guard index + 8 <= bytes.count,
            bytes[index] == UInt8(ascii: "H"), bytes[index + 1] == UInt8(ascii: "T"),
            bytes[index + 2] == UInt8(ascii: "T"), bytes[index + 3] == UInt8(ascii: "P"),
            bytes[index + 4] == UInt8(ascii: "/"), bytes[index + 6] == UInt8(ascii: ".")
        else { return nil }
        let major = bytes[index + 5] &- UInt8(ascii: "0")
        let minor = bytes[index + 7] &- UInt8(ascii: "0")
        guard major <= 9, minor <= 9 else { return nil }
        index += 8
        switch (major, minor) {
        case (1, 1): return .supported(.http1_1)
        case (1, 0): return .supported(.http1_0)
        default: return .unsupported
        }
    }

    /// Classifies the request target (RFC 9112 §3.2) and records the path, and the authority for absolute-form.
    private func parseTargetForm(_ bytes: UnsafeRawBufferPointer, _ head: inout HTTPHead) -> HTTPParseError? {
        let target = head.target
        let first = bytes[target.lowerBound]
        let isConnect = ASCII.equalsIgnoringCase(bytes, head.method, "connect")
        if first == UInt8(ascii: "/") {
            guard !isConnect else { return .badTarget }
            head.path = target.lowerBound..<(pathEnd(bytes, target.lowerBound, target.upperBound))
            return nil
        }
        if first == UInt8(ascii: "*") {
            // Asterisk-form is only for a server-wide OPTIONS (RFC 9112 §3.2.4).
            guard target.count == 1, bytes.elementsEqual("OPTIONS".utf8, range: head.method) else { return .badTarget }
            head.path = target
            return nil
        }
        // absolute-form: scheme "://" authority path-abempty [ "?" query ]. Only http and https are proxied.
        let prefixLength: Int
        if target.count > 7, ASCII.equalsIgnoringCase(bytes, target.lowerBound..<(target.lowerBound + 7), "http://") {
            prefixLength = 7
        } else if target.count > 8,
            ASCII.equalsIgnoringCase(bytes, target.lowerBound..<(target.lowerBound + 8), "https://")
        {
            prefixLength = 8
        } else {
            // authority-form belongs to CONNECT, which Jester does not tunnel (RFC 9112 §3.2.3).
            return isConnect ? .methodNotAllowed : .badTarget
        }
        guard !isConnect else { return .badTarget }
        let authorityStart = target.lowerBound + prefixLength
        var index = authorityStart
        while index < target.upperBound, bytes[index] != UInt8(ascii: "/"), bytes[index] != UInt8(ascii: "?") {
            // Userinfo in an http(s) URI is deprecated and a known confusion vector (RFC 9110 §4.2.4).
            if bytes[index] == UInt8(ascii: "@") { return .badTarget }
            index += 1
        }
        guard index > authorityStart else { return .badTarget }
        head.absoluteAuthority = authorityStart..<index
        head.path = index..<pathEnd(bytes, index, target.upperBound)
        return nil
    }

    private func pathEnd(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> Int {
        var index = start
        while index < end, bytes[index] != UInt8(ascii: "?") { index += 1 }
        return index
    }

    /// Parses `field-name ":" OWS field-value OWS CRLF` lines up to the empty line (RFC 9112 §5).
    private func parseFields(
        _ bytes: UnsafeRawBufferPointer, from start: Int, into head: inout HTTPHead
    ) -> HTTPParseError? {
        var index = start
        let end = bytes.count - 2  // the final CRLF
        while index < end {
            let lineStart = index
            // A line starting with whitespace is obs-fold (RFC 9112 §5.2): rejected rather than unfolded.
            var underscore = false
            while index < end, ASCII.isToken(bytes[index]) {
                underscore = underscore || bytes[index] == UInt8(ascii: "_")
                index += 1
            }
            let name = lineStart..<index
            guard !name.isEmpty else {
                return bytes[index] == ASCII.space || bytes[index] == ASCII.tab ? .obsoleteLineFolding : .badField
            }
            // No whitespace between name and colon (RFC 9112 §5.1): it must be a 400.
            guard index < end, bytes[index] == ASCII.colon else { return .badField }
            index += 1
            let valueStart = index
            while index < end, ASCII.isFieldValueByte(bytes[index]) { index += 1 }
            // The value must end in CRLF: a bare CR, bare LF or any other control byte is an error.
            guard bytes[index] == ASCII.cr, bytes[index + 1] == ASCII.lf else { return .badField }
            let value = ASCII.trimmingWhitespace(bytes, valueStart..<index)
            guard head.fields.count < limits.maxFieldCount else { return .tooManyFields }
            let kind = HTTPFieldKind.classify(bytes, name)
            head.fields.append(
                HTTPField(line: lineStart..<index, name: name, value: value, kind: kind,
                    isHopByHop: kind.isAlwaysHopByHop, hasUnderscore: underscore))
            index += 2
            if kind != .other, let error = interpret(kind, value, bytes, &head) { return error }
        }
        markFieldsNamedByConnection(bytes, &head)
        return nil
    }

    /// Records what a known field means for framing and connection handling.
    private func interpret(
        _ kind: HTTPFieldKind, _ value: Range<Int>, _ bytes: UnsafeRawBufferPointer, _ head: inout HTTPHead
    ) -> HTTPParseError? {
        switch kind {
        case .contentLength:
            // RFC 9110 §8.6: a list of identical values may be treated as one; anything else is invalid.
            var parsed: Int64?
            var invalid = false
            ASCII.forEachListElement(bytes, value) { element in
                guard let number = ASCII.parseDecimal(bytes, element) else {
                    invalid = true
                    return
                }
                if let previous = parsed, previous != number { invalid = true }
                parsed = number
            }
            guard !invalid, let length = parsed else { return .badContentLength }
            if let previous = head.contentLength, previous != length { return .badContentLength }
            head.contentLength = length
        case .transferEncoding:
            // Only a single `chunked` is accepted: any other coding, a list, or a repeat is ambiguous for the
            // server behind us (RFC 9112 §6.1, §6.3).
            guard !head.isChunked, ASCII.equalsIgnoringCase(bytes, value, "chunked") else {
                return .unsupportedTransferEncoding
            }
            head.isChunked = true
        case .host:
            guard head.hostField == nil else { return .badHost }
            head.hostField = head.fields.count - 1
        case .connection:
            ASCII.forEachListElement(bytes, value) { token in
                if ASCII.equalsIgnoringCase(bytes, token, "close") {
                    head.connectionClose = true
                } else if ASCII.equalsIgnoringCase(bytes, token, "keep-alive") {
                    head.connectionKeepAlive = true
                } else if ASCII.equalsIgnoringCase(bytes, token, "upgrade") {
                    head.connectionUpgrade = true
                }
            }
        case .upgrade:
            var onlyWebSocket = true
            var sawAny = false
            ASCII.forEachListElement(bytes, value) { token in
                sawAny = true
                if !ASCII.equalsIgnoringCase(bytes, token, "websocket") { onlyWebSocket = false }
            }
            head.upgradeWebSocket = sawAny && onlyWebSocket
        case .expect:
            guard ASCII.equalsIgnoringCase(bytes, value, "100-continue") else { return .unsupportedExpectation }
            head.expectsContinue = true
        case .xRequestID:
            head.requestIDField = head.fields.count - 1
        default:
            break
        }
        return nil
    }

    /// Marks every field named in a `Connection` field as hop-by-hop (RFC 9110 §7.6.1), so it is not forwarded.
    private func markFieldsNamedByConnection(_ bytes: UnsafeRawBufferPointer, _ head: inout HTTPHead) {
        for connectionIndex in head.fields.indices where head.fields[connectionIndex].kind == .connection {
            ASCII.forEachListElement(bytes, head.fields[connectionIndex].value) { token in
                for index in head.fields.indices where !head.fields[index].isHopByHop {
                    // Names the proxy itself manages stay, or a client could strip X-Forwarded-For or Host.
                    guard head.fields[index].kind == .other else { continue }
                    if ASCII.equalsIgnoringCase(bytes, head.fields[index].name, bytes, token) {
                        head.fields[index].isHopByHop = true
                    }
                }
            }
        }
    }

    /// The rules that make a request unambiguous to forward.
    private func checkRequestSemantics(_ bytes: UnsafeRawBufferPointer, _ head: inout HTTPHead) -> HTTPParseError? {
        // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
        if head.version == .http1_1, head.hostField == nil { return .badHost }
        if let hostIndex = head.hostField {
            let host = head.fields[hostIndex].value
            if !isValidAuthority(bytes, host, allowEmpty: head.version == .http1_0) { return .badHost }
            // An absolute-form target wins over Host (RFC 9112 §3.2.2); a disagreement is refused outright so no
            // component can be routed by one and served by the other.
            if !head.absoluteAuthority.isEmpty,
                !ASCII.equalsIgnoringCase(bytes, head.absoluteAuthority, bytes, host)
            {
                return .badHost
            }
        }
        if !head.absoluteAuthority.isEmpty, !isValidAuthority(bytes, head.absoluteAuthority, allowEmpty: false) {
            return .badTarget
        }
        if head.isChunked, head.version == .http1_0 { return .unsupportedTransferEncoding }
        return checkFraming(bytes, &head)
    }

    /// Content-Length and Transfer-Encoding together are refused (RFC 9112 §6.3 item 3 allows it; smuggling
    /// research shows why a proxy must not).
    private func checkFraming(_ bytes: UnsafeRawBufferPointer, _ head: inout HTTPHead) -> HTTPParseError? {
        if head.isChunked, head.contentLength != nil { return .conflictingFraming }
        return nil
    }

    /// `host [ ":" port ]` with a reg-name, IPv4 or bracketed IPv6 host (RFC 9110 §7.2).
    private func isValidAuthority(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, allowEmpty: Bool) -> Bool {
        if range.isEmpty { return allowEmpty }
        var index = range.lowerBound
        if bytes[index] == UInt8(ascii: "[") {
            while index < range.upperBound, bytes[index] != UInt8(ascii: "]") {
                let byte = bytes[index]
                guard byte == UInt8(ascii: "[") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: ".")
                    || ASCII.hexValue(byte) != nil
                else { return false }
                index += 1
            }
            guard index < range.upperBound else { return false }
            index += 1
        } else {
            while index < range.upperBound, bytes[index] != UInt8(ascii: ":") {
                let byte = bytes[index]
                // unreserved / pct-encoded / sub-delims, minus the characters no real host name uses.
                let allowed =
                    (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                    || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
                    || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "_")
                    || byte == UInt8(ascii: "~")
                guard allowed else { return false }
                index += 1
            }
            guard index > range.lowerBound else { return false }
        }
        if index == range.upperBound { return true }
        guard bytes[index] == UInt8(ascii: ":") else { return false }
        index += 1
        let port = index..<range.upperBound
        guard port.count <= 5 else { return false }
        for digitIndex in port where bytes[digitIndex] &- UInt8(ascii: "0") > 9 { return false }
        return true
    }
}

extension UnsafeRawBufferPointer {
    @inlinable
    func elementsEqual<S: Sequence>(_ other: S, range: Range<Int>) -> Bool where S.Element == UInt8 {
        self[range].elementsEqual(other)
    }
}
