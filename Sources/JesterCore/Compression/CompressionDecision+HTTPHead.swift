// SPDX-License-Identifier: Apache-2.0
/// The compression rules over parsed heads: what the response phase reads from a request and a response head, and
/// the field edits it turns a decision into. Both protocols' heads are `HTTPHead`s over their bytes.
extension AcceptEncoding {
    /// The request's `Accept-Encoding` field lines, as one list; `absent` when it has none.
    public init(head: HTTPHead, bytes: UnsafeRawBufferPointer) {
        self = .absent
        for field in head.fields where ASCII.equalsIgnoringCase(bytes, field.name, "accept-encoding") {
            add(String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self))
        }
    }
}

extension CompressionDecision.Response {
    /// The fields the rules read from a response head over `bytes`, several lines of one name joined with ", ".
    /// The declared length is the head's `Content-Length` (a HEAD response's too), none when chunked.
    public init(head: HTTPHead, bytes: UnsafeRawBufferPointer) {
        self.init(status: head.status, contentLength: head.isChunked ? nil : head.contentLength)
        for field in head.fields {
            let name = field.name
            func joined(_ earlier: String?) -> String {
                let value = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[field.value]), as: UTF8.self)
                return earlier.map { $0 + ", " + value } ?? value
            }
            switch name.count {
            case 4:
                if ASCII.equalsIgnoringCase(bytes, name, "etag") { etag = joined(etag) }
                if ASCII.equalsIgnoringCase(bytes, name, "vary") { vary = joined(vary) }
            case 12:
                if ASCII.equalsIgnoringCase(bytes, name, "content-type") { contentType = joined(contentType) }
            case 13:
                if ASCII.equalsIgnoringCase(bytes, name, "content-range") { contentRange = joined(contentRange) }
                if ASCII.equalsIgnoringCase(bytes, name, "cache-control") { cacheControl = joined(cacheControl) }
            case 16:
                if ASCII.equalsIgnoringCase(bytes, name, "content-encoding") {
                    contentEncoding = joined(contentEncoding)
                }
            default:
                break
            }
        }
    }
}

extension CompressionDecision {
    /// Whether the response field `field` (over `bytes`) is left out: `Content-Length`, `Accept-Ranges` and an
    /// identity `Content-Encoding` of a coded response, and the `ETag` and `Vary` lines `addedFields` replaces.
    public func drops(_ field: HTTPField, in bytes: UnsafeRawBufferPointer) -> Bool {
        let name = field.name
        if removesLengthAndRanges {
            if ASCII.equalsIgnoringCase(bytes, name, "content-length")
                || ASCII.equalsIgnoringCase(bytes, name, "accept-ranges")
                || ASCII.equalsIgnoringCase(bytes, name, "content-encoding")
            {
                return true
            }
        }
        if etag != .keep, ASCII.equalsIgnoringCase(bytes, name, "etag") { return true }
        if vary != nil, ASCII.equalsIgnoringCase(bytes, name, "vary") { return true }
        return false
    }

    /// The fields to add, after the ones `drops` leaves out: `Content-Encoding`, the merged `Vary`, the weak `ETag`.
    public var addedFields: [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = []
        if let coding = contentEncoding { fields.append(("Content-Encoding", coding.token)) }
        if let vary { fields.append(("Vary", vary)) }
        if case .replace(let value) = etag { fields.append(("ETag", value)) }
        return fields
    }
}
