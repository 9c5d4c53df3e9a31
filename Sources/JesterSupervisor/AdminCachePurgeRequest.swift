// SPDX-License-Identifier: Apache-2.0
import JesterControl

/// The body of `POST /api/v1/cache/purge`: `{"uri": "https://host/path?q"}` or `{"prefix": "https://host/dir/"}`,
/// read into the control protocol's `CachePurgeTarget`, so the purge itself is the one `jesterctl cache purge`
/// asks for (`Master.answerCacheRequest`).
///
/// Pure, and strict: a purge that removes the wrong entries, or none without saying why, is worse than a refusal.
/// So a body naming both or neither, a member the API does not know (a misspelt `prefx` would otherwise purge
/// nothing and answer `removed: 0`), a value that is not a string, an empty value (an empty prefix would purge
/// everything) and a value that cannot be a cache key (keys are absolute `http` or `https` URIs) are each refused
/// with a message that says what to send. The JSON is read with the control protocol's strict parser
/// (`JSONTree`), which refuses a member given twice, since which of two values a purge used cannot be guessed.
enum AdminCachePurgeRequest {
    /// Why a body is refused: answered with 400 and this message.
    struct Refusal: Error, Equatable, CustomStringConvertible {
        var message: String

        var description: String { message }
    }

    /// What a body should look like, repeated in refusals so an operator can correct the request from the answer.
    static let shape = #"send {"uri": "https://host/path?q"} or {"prefix": "https://host/dir/"}"#

    /// The purge `body` asks for, or why it is refused.
    static func target(from body: [UInt8]) throws(Refusal) -> CachePurgeTarget {
        guard body.contains(where: { !isWhitespace($0) }) else { throw Refusal(message: "no body: \(shape)") }
        let tree: JSONTree
        do {
            tree = try JSONTree.parse(body)
        } catch {
            throw Refusal(message: "the body is not JSON (\(error)): \(shape)")
        }
        guard case .object(let members) = tree else {
            throw Refusal(message: "the body must be a JSON object: \(shape)")
        }
        // Sorted so the message names the same member whatever order the client wrote them in.
        if let unknown = members.keys.sorted().first(where: { $0 != "uri" && $0 != "prefix" }) {
            throw Refusal(message: "unknown member \"\(unknown)\": \(shape)")
        }
        switch (members["uri"], members["prefix"]) {
        case (nil, nil):
            throw Refusal(message: "neither \"uri\" nor \"prefix\": \(shape)")
        case (.some, .some):
            throw Refusal(message: "\"uri\" and \"prefix\" together: give one of them")
        case (.some(let value), nil):
            return .key(try key(value, member: "uri"))
        case (nil, .some(let value)):
            return .prefix(try key(value, member: "prefix"))
        }
    }

    /// The text of `member`, checked to be what a cache key starts with: the key's URI is
    /// `scheme://authority/path?query` with the scheme lowercase (`CacheKey.uri`), so anything else matches
    /// nothing.
    private static func key(_ value: JSONTree, member: String) throws(Refusal) -> String {
        guard case .string(let text) = value else { throw Refusal(message: "\"\(member)\" must be a string") }
        guard !text.isEmpty else {
            let why = member == "prefix" ? " (an empty prefix would purge everything)" : ""
            throw Refusal(message: "\"\(member)\" is empty\(why)")
        }
        guard let scheme = ["http://", "https://"].first(where: { text.hasPrefix($0) }),
            text.count > scheme.count
        else {
            throw Refusal(
                message: "\"\(member)\" must be an absolute http:// or https:// URI as the cache keys it "
                    + "(https://example.com/a?b), not \"\(text)\"")
        }
        return text
    }

    /// RFC 8259 §2's insignificant whitespace.
    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D
    }
}
