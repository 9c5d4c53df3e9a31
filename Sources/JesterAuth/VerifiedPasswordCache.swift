// SPDX-License-Identifier: Apache-2.0
import JesterTLS
import Synchronization

/// A bounded memory of (user, password) pairs that recently verified, so a keep-alive client sending the same
/// Basic credentials on every request pays the password hash once, not per request.
///
/// Why it is needed: bcrypt is slow on purpose (about 50-250 ms at cost 10-12), which is right against offline
/// guessing and wrong for a gateway that sees the same header a hundred times a second.
///
/// What it holds: never a password, only HMAC-SHA-256(per-instance random key, user ‖ password). The key is
/// made when the cache is, lives only in this process and is never written anywhere, so a memory dump does not
/// give an attacker a fast hash to guess against in place of bcrypt. Only successes are remembered: a wrong
/// password always pays the full hash, so the cache never speeds up guessing.
///
/// Bounds: `capacity` entries; when full, the oldest entry is replaced (first in, first out), so a flood of
/// distinct valid logins costs at most `capacity` × 32 bytes. Entries do not expire by time: the cache belongs
/// to one loaded htpasswd file, and a reload (which is how a password is changed or revoked) builds a new one.
final class VerifiedPasswordCache: Sendable {
    private struct State {
        var members: Set<[UInt8]> = []
        /// Insertion order, as a ring: `order[next]` is the oldest once the ring is full.
        var order: [[UInt8]] = []
        var next = 0
    }

    private let capacity: Int
    private let key: [UInt8]
    private let state = Mutex(State())

    /// A cache of at most `capacity` entries (0 disables it).
    init(capacity: Int) {
        self.capacity = max(0, capacity)
        var generator = SystemRandomNumberGenerator()  // getrandom(2): a CSPRNG
        key = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
    }

    /// The cache key of a pair. The user's length comes first so ("ab", "c") and ("a", "bc") differ.
    func fingerprint(user: String, password: String) -> [UInt8] {
        let userBytes = Array(user.utf8)
        let length = UInt32(truncatingIfNeeded: userBytes.count)
        let message = [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF),
            UInt8(length & 0xFF)] + userBytes + Array(password.utf8)
        return MessageDigest.sha256.authenticationCode(key: key, message: message)
    }

    /// True if `fingerprint` verified recently.
    func contains(_ fingerprint: [UInt8]) -> Bool {
        guard capacity > 0 else { return false }
        return state.withLock { $0.members.contains(fingerprint) }
    }

    /// Remembers a pair that just verified, replacing the oldest entry when full.
    func insert(_ fingerprint: [UInt8]) {
        guard capacity > 0 else { return }
        state.withLock { state in
            guard !state.members.contains(fingerprint) else { return }
            if state.order.count < capacity {
                state.order.append(fingerprint)
            } else {
                state.members.remove(state.order[state.next])
                state.order[state.next] = fingerprint
                state.next = (state.next + 1) % capacity
            }
            state.members.insert(fingerprint)
        }
    }

    /// How many pairs are remembered (tests).
    var count: Int { state.withLock { $0.members.count } }
}
