// SPDX-License-Identifier: Apache-2.0
/// A session-ticket key: its public name (sent in every ticket), the HMAC secret that authenticates a ticket and
/// the AES-256 key that encrypts it.
///
/// Why Jester manages these instead of letting OpenSSL make its own: OpenSSL's default keys are random per
/// process, so a client resuming on another worker, or after a reload, would get a full handshake. The master
/// generates the keys, hands the same ones to every worker, and rotates them (see `TicketKeyRing`).
public struct TLSTicketKey: Sendable, Equatable {
    public static let byteCount = 80

    public var name: [UInt8]
    public var hmacSecret: [UInt8]
    public var aesKey: [UInt8]

    /// Splits 80 bytes of key material: 16 name, 32 HMAC secret, 32 AES key. Nil for any other length.
    public init?(material: [UInt8]) {
        guard material.count == Self.byteCount else { return nil }
        name = Array(material[0..<16])
        hmacSecret = Array(material[16..<48])
        aesKey = Array(material[48..<80])
    }
}
