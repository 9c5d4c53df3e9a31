// SPDX-License-Identifier: Apache-2.0
import Foundation

/// The TLS session-ticket keys of the instance: made by the master, handed to every worker (and every new
/// generation), rotated on a schedule.
///
/// Why the master: OpenSSL's default ticket key is random per process, so a client that comes back to another
/// worker, or after a reload, would get a full handshake. Newest first; the newest encrypts new tickets, the
/// older ones only decrypt (and their tickets are renewed), so a rotation never costs a resumption. Pure: the
/// caller supplies fresh key material and the time.
struct TicketKeyRing: Equatable {
    /// Key material (80 bytes each: name, HMAC secret, AES key), newest first.
    private(set) var keys: [Data]
    /// When the newest key was made (monotonic seconds).
    private(set) var rotatedAt: Double
    /// Keys kept: the current one and two before it, so a ticket stays valid for at least two rotation periods.
    static let retained = 3
    static let keyLength = 80

    init(keys: [Data] = [], rotatedAt: Double = 0) {
        self.keys = Array(keys.prefix(Self.retained))
        self.rotatedAt = rotatedAt
    }

    /// Whether a new key is due at `now` for a rotation `period` (or there is none yet).
    func isDue(now: Double, period: Double) -> Bool {
        keys.isEmpty || now - rotatedAt >= period
    }

    /// Makes `material` the current key; the oldest beyond `retained` is forgotten.
    mutating func rotate(to material: Data, now: Double) {
        precondition(material.count == Self.keyLength, "a ticket key is \(Self.keyLength) bytes")
        keys.insert(material, at: 0)
        if keys.count > Self.retained { keys.removeLast(keys.count - Self.retained) }
        rotatedAt = now
    }

    /// 80 bytes from the system's CSPRNG (getrandom(2) behind SystemRandomNumberGenerator).
    static func freshKey() -> Data {
        var generator = SystemRandomNumberGenerator()
        return Data((0..<keyLength).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }
}
