// SPDX-License-Identifier: Apache-2.0
/// What consistent hashing (`balance = "hash"`) hashes for a request, parsed once from `hash_key`.
public enum BalancingKey: Sendable, Equatable {
    case clientAddress
    case path
    /// The value of this header field (the first one), name lowercase.
    case header([UInt8])
    /// The value of this cookie in the Cookie field.
    case cookie([UInt8])

    /// Parses "client_ip", "path", "header:NAME" or "cookie:NAME"; nil for anything else (the configuration
    /// loader reports it).
    public init?(_ text: String) {
        switch text {
        case "client_ip": self = .clientAddress
        case "path": self = .path
        default:
            let name = text.dropFirst(7)
            guard !name.isEmpty else { return nil }
            if text.hasPrefix("header:") {
                self = .header(Array(name.lowercased().utf8))
            } else if text.hasPrefix("cookie:") {
                self = .cookie(Array(name.utf8))
            } else {
                return nil
            }
        }
    }

    /// The hash of this key for a request (`bytes` holds its head). A request without the header or cookie
    /// hashes its client address instead, so it still lands on one target consistently.
    public func hash(head: HTTPHead, bytes: UnsafeRawBufferPointer, clientAddress: String) -> UInt64 {
        switch self {
        case .clientAddress:
            return SplitMix64.hash(clientAddress.utf8)
        case .path:
            return SplitMix64.hash(UnsafeRawBufferPointer(rebasing: bytes[head.path]))
        case .header(let name):
            guard let field = head.field(named: name, in: bytes) else { return SplitMix64.hash(clientAddress.utf8) }
            return SplitMix64.hash(UnsafeRawBufferPointer(rebasing: bytes[field.value]))
        case .cookie(let name):
            for field in head.fields where ASCII.equalsIgnoringCase(bytes, field.name, "cookie") {
                if let value = Self.cookie(name, in: bytes, field.value) {
                    return SplitMix64.hash(UnsafeRawBufferPointer(rebasing: bytes[value]))
                }
            }
            return SplitMix64.hash(clientAddress.utf8)
        }
    }

    /// The value of cookie `name` in any Cookie field of a request.
    public static func cookie(_ name: [UInt8], head: HTTPHead, bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        for field in head.fields where ASCII.equalsIgnoringCase(bytes, field.name, "cookie") {
            if let value = cookie(name, in: bytes, field.value) { return value }
        }
        return nil
    }

    /// The value of cookie `name` in a Cookie field value ("a=1; b=2").
    public static func cookie(_ name: [UInt8], in bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int>? {
        var start = range.lowerBound
        while start < range.upperBound {
            var end = start
            while end < range.upperBound, bytes[end] != UInt8(ascii: ";") { end += 1 }
            let pair = ASCII.trimmingWhitespace(bytes, start..<end)
            if pair.count > name.count, bytes[pair.lowerBound + name.count] == UInt8(ascii: "="),
                name.withUnsafeBytes({ $0.elementsEqual(bytes[pair.lowerBound..<(pair.lowerBound + name.count)]) })
            {
                return (pair.lowerBound + name.count + 1)..<pair.upperBound
            }
            start = end + 1
        }
        return nil
    }
}
