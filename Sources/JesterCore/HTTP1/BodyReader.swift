// SPDX-License-Identifier: Apache-2.0
/// How a message body is delimited (RFC 9112 §6.3).
public enum BodyFraming: Sendable, Equatable {
    /// No body.
    case none
    /// Exactly this many bytes.
    case length(Int64)
    /// Chunked transfer coding.
    case chunked
    /// Until the connection closes (responses only).
    case untilClose

    /// The framing of a request body: chunked or Content-Length, else none (a request is never close-delimited).
    public static func request(_ head: HTTPHead) -> BodyFraming {
        if head.isChunked { return .chunked }
        if let length = head.contentLength, length > 0 { return .length(length) }
        return .none
    }

    /// The framing of a response body, given the request method (RFC 9112 §6.3 items 1-7).
    public static func response(_ head: HTTPHead, requestWasHead: Bool) -> BodyFraming {
        if requestWasHead || head.status < 200 || head.status == 204 || head.status == 304 { return .none }
        if head.isChunked { return .chunked }
        if let length = head.contentLength { return length > 0 ? .length(length) : .none }
        return .untilClose
    }
}

/// Reads a body incrementally, returning the ranges of body bytes (chunk framing removed).
public struct BodyReader: Sendable {
    private enum State: Sendable {
        case remaining(Int64)
        case chunked(ChunkedDecoder)
        case untilClose
        case complete
    }

    private var state: State

    public init(_ framing: BodyFraming) {
        switch framing {
        case .none: state = .complete
        case .length(let length): state = length > 0 ? .remaining(length) : .complete
        case .chunked: state = .chunked(ChunkedDecoder())
        case .untilClose: state = .untilClose
        }
    }

    /// Whether the whole body has been read.
    public var isComplete: Bool {
        if case .complete = state { return true }
        return false
    }

    /// The next range of body bytes at or after `index`, advancing `index` past what was consumed; nil when the
    /// bytes ran out or the body is complete.
    public mutating func next(_ bytes: UnsafeRawBufferPointer, _ index: inout Int) throws(HTTPParseError) -> Range<Int>? {
        switch state {
        case .complete:
            return nil
        case .remaining(let remaining):
            guard index < bytes.count else { return nil }
            let taken = Int(min(Int64(bytes.count - index), remaining))
            let range = index..<(index + taken)
            index += taken
            state = remaining == Int64(taken) ? .complete : .remaining(remaining - Int64(taken))
            return range
        case .chunked(var decoder):
            while true {
                guard let output = try decoder.next(bytes, &index) else {
                    state = .chunked(decoder)
                    return nil
                }
                switch output {
                case .data(let range):
                    state = .chunked(decoder)
                    if range.isEmpty { continue }
                    return range
                case .end:
                    state = .complete
                    return nil
                }
            }
        case .untilClose:
            guard index < bytes.count else { return nil }
            let range = index..<bytes.count
            index = bytes.count
            return range
        }
    }

    /// The connection closed. A close-delimited body is then complete; any other incomplete body was cut short.
    public mutating func connectionClosed() -> Bool {
        if case .untilClose = state { state = .complete }
        return isComplete
    }
}
