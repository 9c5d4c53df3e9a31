// SPDX-License-Identifier: Apache-2.0
/// The PROXY protocol (HAProxy's, versions 1 and 2): a header at the start of a TCP connection that carries the
/// original client's address through a proxy. Jester sends it to upstreams that ask (`send_proxy_protocol`)
/// and reads it from trusted load balancers in front of it (`proxy_protocol_from`). Pure.
public enum ProxyProtocol {
    /// The two ends of the original connection.
    public struct Addresses: Sendable, Equatable {
        public var source: IPAddressBytes
        public var sourcePort: Int
        public var destination: IPAddressBytes
        public var destinationPort: Int

        public init(source: IPAddressBytes, sourcePort: Int, destination: IPAddressBytes, destinationPort: Int) {
            self.source = source
            self.sourcePort = sourcePort
            self.destination = destination
            self.destinationPort = destinationPort
        }
    }

    public enum ParseResult: Sendable, Equatable {
        case needMoreBytes
        /// A complete header of `length` bytes; `addresses` is nil for a LOCAL / UNKNOWN header (a health check
        /// of the load balancer itself: use the connection's own addresses).
        case header(length: Int, addresses: Addresses?)
        case invalid(String)
    }

    static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n"
    public static func encodeV1(_ addresses: Addresses) -> [UInt8] {
        let family = addresses.source.bytes.count == 4 ? "TCP4" : "TCP6"
        return Array("PROXY \(family) \(text(addresses.source)) \(text(addresses.destination)) \(addresses.sourcePort) \(addresses.destinationPort)\r\n".utf8)
    }

    public static func encodeV2(_ addresses: Addresses) -> [UInt8] {
        let v4 = addresses.source.bytes.count == 4 && addresses.destination.bytes.count == 4
        var out = signature
        out.append(0x21)  // version 2, PROXY
        out.append(v4 ? 0x11 : 0x21)  // TCP over IPv4 / IPv6
        let source = v4 ? addresses.source.bytes : ipv6(addresses.source)
        let destination = v4 ? addresses.destination.bytes : ipv6(addresses.destination)
        let length = source.count + destination.count + 4
        out += [UInt8(length >> 8), UInt8(length & 0xFF)]
        out += source + destination
        out += [UInt8(addresses.sourcePort >> 8), UInt8(addresses.sourcePort & 0xFF)]
        out += [UInt8(addresses.destinationPort >> 8), UInt8(addresses.destinationPort & 0xFF)]
        return out
    }

    /// Reads a v1 or v2 header at the start of `bytes`.
    public static func parse(_ bytes: some Collection<UInt8>) -> ParseResult {
        let bytes = Array(bytes.prefix(536))
        if bytes.count < signature.count {
            if bytes.elementsEqual(signature.prefix(bytes.count)) || bytes.elementsEqual(Array("PROXY ".utf8).prefix(bytes.count)) {
                return .needMoreBytes
            }
        }
        if bytes.starts(with: signature) { return parseV2(bytes) }
        if bytes.starts(with: Array("PROXY ".utf8)) { return parseV1(bytes) }
        return .invalid("the connection does not start with a PROXY protocol header")
    }

    private static func parseV1(_ bytes: [UInt8]) -> ParseResult {
        guard let end = bytes.firstIndex(of: 0x0A) else {
            return bytes.count >= 107 ? .invalid("PROXY v1 header longer than 107 bytes") : .needMoreBytes
        }
        guard end > 0, bytes[end - 1] == 0x0D, end < 107 else { return .invalid("malformed PROXY v1 header") }
        let parts = String(decoding: bytes[0..<(end - 1)], as: UTF8.self).split(separator: " ")
        if parts.count >= 2, parts[1] == "UNKNOWN" { return .header(length: end + 1, addresses: nil) }
        guard parts.count == 6, parts[1] == "TCP4" || parts[1] == "TCP6",
            let source = IPAddressBytes(parts[2]), let destination = IPAddressBytes(parts[3]),
            let sourcePort = Int(parts[4]), let destinationPort = Int(parts[5]),
            (0...65535).contains(sourcePort), (0...65535).contains(destinationPort),
            source.bytes.count == (parts[1] == "TCP4" ? 4 : 16), destination.bytes.count == source.bytes.count
        else { return .invalid("malformed PROXY v1 header") }
        return .header(length: end + 1, addresses: Addresses(
            source: source, sourcePort: sourcePort, destination: destination, destinationPort: destinationPort))
    }

    private static func parseV2(_ bytes: [UInt8]) -> ParseResult {
        guard bytes.count >= 16 else { return .needMoreBytes }
        let versionCommand = bytes[12]
        guard versionCommand >> 4 == 2 else { return .invalid("PROXY v2 header of version \(versionCommand >> 4)") }
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        guard bytes.count >= 16 + length else { return length > 520 ? .invalid("PROXY v2 header too long") : .needMoreBytes }
        let total = 16 + length
        if versionCommand & 0x0F == 0 { return .header(length: total, addresses: nil) }  // LOCAL
        guard versionCommand & 0x0F == 1 else { return .invalid("PROXY v2 command \(versionCommand & 0x0F)") }
        let body = Array(bytes[16..<total])
        func port(_ at: Int) -> Int { Int(body[at]) << 8 | Int(body[at + 1]) }
        switch bytes[13] {
        case 0x11 where length >= 12:
            return .header(length: total, addresses: Addresses(
                source: IPAddressBytes(bytes: Array(body[0..<4])), sourcePort: port(8),
                destination: IPAddressBytes(bytes: Array(body[4..<8])), destinationPort: port(10)))
        case 0x21 where length >= 36:
            return .header(length: total, addresses: Addresses(
                source: IPAddressBytes(bytes: Array(body[0..<16])), sourcePort: port(32),
                destination: IPAddressBytes(bytes: Array(body[16..<32])), destinationPort: port(34)))
        default:
            return .header(length: total, addresses: nil)  // UNSPEC, UNIX or UDP: addresses not used
        }
    }

    /// The textual form of an address (dotted quad, or IPv6 groups without compression).
    public static func text(_ address: IPAddressBytes) -> String {
        let bytes = address.bytes
        if bytes.count == 4 { return bytes.map(String.init).joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(Int(bytes[$0]) << 8 | Int(bytes[$0 + 1]), radix: 16) }
            .joined(separator: ":")
    }

    private static func ipv6(_ address: IPAddressBytes) -> [UInt8] {
        address.bytes.count == 16 ? address.bytes : [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF] + address.bytes
    }
}

