// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A UDP endpoint's address as the kernel gives it (a `sockaddr_in` or `sockaddr_in6`, kept as bytes): QUIC
/// validates paths and ties address-validation tokens to the client's address, so the sessions need the exact
/// address, not a string. The UDP loop that owns the socket converts to and from this type.
public struct QUICSocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The raw `sockaddr` bytes (family first, in host order as the kernel writes it).
    public let bytes: [UInt8]

    /// Wraps a `sockaddr` the kernel filled (from `recvmsg`); nil when it is neither IPv4 nor IPv6.
    public init?(sockaddrBytes: UnsafeRawBufferPointer) {
        guard sockaddrBytes.count >= MemoryLayout<sa_family_t>.size else { return nil }
        let family = Int32(sockaddrBytes.loadUnaligned(as: sa_family_t.self))
        switch family {
        case AF_INET where sockaddrBytes.count >= MemoryLayout<sockaddr_in>.size:
            bytes = Array(sockaddrBytes.prefix(MemoryLayout<sockaddr_in>.size))
        case AF_INET6 where sockaddrBytes.count >= MemoryLayout<sockaddr_in6>.size:
            bytes = Array(sockaddrBytes.prefix(MemoryLayout<sockaddr_in6>.size))
        default:
            return nil
        }
    }

    /// An address from its text form ("127.0.0.1", "::1") and a port; nil when the text is not an address.
    public init?(ip: String, port: UInt16) {
        var v4 = sockaddr_in()
        if inet_pton(AF_INET, ip, &v4.sin_addr) == 1 {
            v4.sin_family = sa_family_t(AF_INET)
            v4.sin_port = port.bigEndian
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = sockaddr_in6()
        guard inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1 else { return nil }
        v6.sin6_family = sa_family_t(AF_INET6)
        v6.sin6_port = port.bigEndian
        bytes = withUnsafeBytes(of: &v6) { Array($0) }
    }

    /// The port, in host order.
    public var port: UInt16 {
        // sin_port and sin6_port sit at the same offset, right after the family.
        UInt16(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self) })
    }

    /// Whether this is an IPv6 address.
    public var isIPv6: Bool { bytes.count == MemoryLayout<sockaddr_in6>.size }

    /// The address without the port: "127.0.0.1", "::1" (the client address logs and headers name).
    public var ipText: String {
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let isV6 = isIPv6
        bytes.withUnsafeBytes { raw in
            let offset = isV6 ? 8 : 4  // sin6_addr after flowinfo; sin_addr right after the port
            _ = inet_ntop(isV6 ? AF_INET6 : AF_INET, raw.baseAddress! + offset, &text, socklen_t(text.count))
        }
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// "127.0.0.1:443" or "[::1]:443".
    public var description: String {
        isIPv6 ? "[\(ipText)]:\(port)" : "\(ipText):\(port)"
    }
}
