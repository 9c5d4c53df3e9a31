// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// A complete response to a fetch: status, fields as text and the body without its framing.
public struct FetchResponse: Sendable, Equatable {
    /// One field as received (names keep their case; look them up with `field(_:)`).
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public var status: Int
    public var fields: [Field]
    public var body: [UInt8]

    public init(status: Int, fields: [Field], body: [UInt8]) {
        self.status = status
        self.fields = fields
        self.body = body
    }

    /// The values of every field called `name` (any case), joined with ", " as RFC 9110 §5.3 allows; nil when
    /// there is none.
    public func field(_ name: String) -> String? {
        let values = fields.filter { $0.name.lowercased() == name.lowercased() }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ", ")
    }
}

/// Reads one HTTP/1.1 response from the bytes of a connection, with JesterCore's strict head parser and body
/// readers (the same ones the proxy trusts with upstream answers), and a cap on the body.
///
/// Pure: bytes in, progress out, so every way a server can misbehave is tested without a socket. The cap is
/// checked as bytes arrive, against a declared `Content-Length` at once, so an endpoint cannot make the master
/// buffer more than the caller allowed.
public struct FetchResponseParser: Sendable {
    /// What the bytes so far amount to.
    public enum Progress: Sendable {
        /// Not a whole response yet.
        case needMoreBytes
        case complete(FetchResponse)
        /// The response can never be accepted; the connection should be closed.
        case failed(FetchError)
    }

    /// The largest body accepted.
    public let maximumBodySize: Int
    /// Bytes received and not yet consumed: the head until it is complete, then body bytes being framed.
    private var buffer: [UInt8] = []
    private var headParser = HTTPHeadParser(limits: .init(maxHeadSize: 64 * 1024, maxFieldCount: 200))
    private var status = 0
    private var fields: [FetchResponse.Field] = []
    /// Set once the final (non-1xx) head is read.
    private var reader: BodyReader?
    private var body: [UInt8] = []
    private var finished = false

    public init(maximumBodySize: Int) {
        self.maximumBodySize = maximumBodySize
    }

    /// Consumes `bytes` received on the connection.
    public mutating func received<Bytes: Sequence>(_ bytes: Bytes) -> Progress where Bytes.Element == UInt8 {
        guard !finished else { return .needMoreBytes }
        buffer.append(contentsOf: bytes)
        let progress = advance()
        if case .needMoreBytes = progress { return progress }
        finished = true
        return progress
    }

    /// The connection closed: a close-delimited body is complete now, anything else was cut short.
    public mutating func closed() -> Progress {
        guard !finished else { return .needMoreBytes }
        finished = true
        guard var reader else {
            return .failed(FetchError(.closedEarly, "the connection closed before a complete response head"))
        }
        guard reader.connectionClosed() else {
            return .failed(FetchError(.closedEarly, "the connection closed before the body was complete"))
        }
        return .complete(FetchResponse(status: status, fields: fields, body: body))
    }

    private mutating func advance() -> Progress {
        while reader == nil {
            let found = buffer.withUnsafeBytes { headParser.findEnd($0, isRequest: false) }
            switch found {
            case .needMoreBytes:
                return .needMoreBytes
            case .failed(let error):
                return .failed(FetchError(.badResponse, "bad response head: \(error.reason)"))
            case .complete(let length):
                var head = HTTPHead()
                let problem = buffer.withUnsafeBytes {
                    headParser.parseResponse(UnsafeRawBufferPointer(rebasing: $0[0..<length]), into: &head)
                }
                if let problem { return .failed(FetchError(.badResponse, "bad response head: \(problem.reason)")) }
                if head.status == 101 { return .failed(FetchError(.badResponse, "the server switched protocols")) }
                if head.status < 200 {
                    // An interim response (RFC 9110 §15.2): the final one follows on the same connection.
                    buffer.removeFirst(length)
                    headParser.reset()
                    continue
                }
                status = head.status
                fields = buffer.withUnsafeBytes { raw in
                    head.fields.map { field in
                        FetchResponse.Field(
                            String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.name]), as: UTF8.self),
                            String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self))
                    }
                }
                let framing = BodyFraming.response(head, requestWasHead: false)
                if case .length(let declared) = framing, declared > Int64(maximumBodySize) {
                    return .failed(tooLarge("declares \(declared) bytes, more"))
                }
                reader = BodyReader(framing)
                buffer.removeFirst(length)
            }
        }
        var reader = self.reader!
        let room = maximumBodySize - body.count
        // The ranges of body bytes in `buffer` (chunk framing removed), and how far the reader got.
        let read: Result<(ranges: [Range<Int>], consumed: Int), HTTPParseError> = buffer.withUnsafeBytes { raw in
            var index = 0
            var ranges: [Range<Int>] = []
            do throws(HTTPParseError) {
                while let range = try reader.next(raw, &index) { ranges.append(range) }
            } catch {
                return .failure(error)
            }
            return .success((ranges, index))
        }
        self.reader = reader
        let index: Int
        switch read {
        case .failure(let error):
            return .failed(FetchError(.badResponse, "bad response body: \(error.reason)"))
        case .success(let (ranges, consumed)):
            guard ranges.reduce(0, { $0 + $1.count }) <= room else { return .failed(tooLarge("is longer")) }
            for range in ranges { body.append(contentsOf: buffer[range]) }
            index = consumed
        }
        buffer.removeFirst(index)
        guard reader.isComplete else { return .needMoreBytes }
        return .complete(FetchResponse(status: status, fields: fields, body: body))
    }

    private func tooLarge(_ what: String) -> FetchError {
        FetchError(.tooLarge, "the response body \(what) than the \(maximumBodySize) bytes allowed")
    }
}
