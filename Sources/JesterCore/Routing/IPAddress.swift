// SPDX-License-Identifier: Apache-2.0
/// An IPv4 or IPv6 address as bytes (4 or 16), parsed from text without the C library.
public struct IPAddressBytes: Sendable, Hashable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 4 || bytes.count == 16, "an IP address has 4 or 16 bytes")
        self.bytes = bytes
    }

    /// The text form: dotted IPv4, or IPv6 in RFC 5952's canonical form (lowercase, the longest run of two or
    /// more zero groups as "::").
    public var description: String {
        if bytes.count == 4 { return Self.dottedQuad(bytes.reduce(0) { $0 << 8 | UInt32($1) }) }
        let groups = (0..<8).map { Int(bytes[2 * $0]) << 8 | Int(bytes[2 * $0 + 1]) }
        var best = (start: -1, length: 0)
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else { index += 1; continue }
            var end = index
            while end < 8, groups[end] == 0 { end += 1 }
            if end - index > best.length, end - index >= 2 { best = (index, end - index) }
            index = end
        }
        func text(_ range: Range<Int>) -> String {
            range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
        }
        guard best.start >= 0 else { return text(0..<8) }
        return text(0..<best.start) + "::" + text((best.start + best.length)..<8)
    }

    /// An IPv4 address (host byte order) in dotted form, written straight into a small string: what a worker
    /// does for every accepted connection, where `inet_ntop`'s formatted printing and `description`'s joined
    /// pieces showed in profiles.
    public static func dottedQuad(_ address: UInt32) -> String {
        String(unsafeUninitializedCapacity: 15) { text in
            var length = 0
            for shift in stride(from: 24, through: 0, by: -8) {
                let octet = Int(truncatingIfNeeded: address >> UInt32(shift)) & 0xFF
                if octet >= 100 { text[length] = UInt8(ascii: "0") + UInt8(octet / 100); length += 1 }
                if octet >= 10 { text[length] = UInt8(ascii: "0") + UInt8(octet / 10 % 10); length += 1 }
                text[length] = UInt8(ascii: "0") + UInt8(octet % 10)
                length += 1
                if shift > 0 { text[length] = UInt8(ascii: "."); length += 1 }
            }
            return length
        }
    }

    public init?(_ text: some StringProtocol) {
        if text.contains(":") {
            guard let bytes = Self.parseIPv6(Substring(text)) else { return nil }
            self.bytes = bytes
        } else {
            guard let bytes = Self.parseIPv4(Substring(text)) else { return nil }
            self.bytes = bytes
        }
    }

    static func parseIPv4(_ text: Substring) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
                let value = UInt8(part), part.count == 1 || part.first != "0"
            else { return nil }
            bytes.append(value)
        }
        return bytes
    }

    static func parseIPv6(_ text: Substring) -> [UInt8]? {
        var text = text
        if let percent = text.firstIndex(of: "%") { text = text[..<percent] }  // a zone: not part of the address
        let halves = text.components(separatedBy: "::")
        guard halves.count <= 2 else { return nil }
        func groups(_ part: String) -> [UInt8]? {
            if part.isEmpty { return [] }
            var bytes: [UInt8] = []
            let pieces = part.split(separator: ":", omittingEmptySubsequences: false)
            for (index, piece) in pieces.enumerated() {
                if index == pieces.count - 1, piece.contains(".") {
                    guard let v4 = parseIPv4(piece) else { return nil }
                    bytes += v4
                    continue
                }
                guard (1...4).contains(piece.count), let value = UInt16(piece, radix: 16) else { return nil }
                bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
            }
            return bytes
        }
        guard let head = groups(halves[0]) else { return nil }
        if halves.count == 1 { return head.count == 16 ? head : nil }
        guard let tail = groups(halves[1]), head.count + tail.count <= 14 else { return nil }
        return head + [UInt8](repeating: 0, count: 16 - head.count - tail.count) + tail
    }
}

/// A network in CIDR notation ("10.0.0.0/8", "2001:db8::/32", or one address).
public struct CIDR: Sendable, Hashable, CustomStringConvertible {
    public var network: IPAddressBytes
    public var prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddressBytes(parts[0]) else { return nil }
        let bits = address.bytes.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...bits).contains(length), parts[1].allSatisfy(\.isNumber) else {
                return nil
            }
            prefixLength = length
        } else {
            prefixLength = bits
        }
        network = address
    }

    /// Whether `address` is inside. An IPv4-mapped IPv6 address ("::ffff:10.1.2.3") counts as its IPv4 address.
    public func contains(_ address: IPAddressBytes) -> Bool {
        var bytes = address.bytes
        if bytes.count == 16, network.bytes.count == 4, bytes[0..<10].allSatisfy({ $0 == 0 }),
            bytes[10] == 0xFF, bytes[11] == 0xFF
        {
            bytes = Array(bytes[12...])
        }
        guard bytes.count == network.bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<bytes.count where remaining > 0 {
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            if bytes[index] & mask != network.bytes[index] & mask { return false }
            remaining -= 8
        }
        return true
    }

    public var description: String { "\(network)/\(prefixLength)" }
}
