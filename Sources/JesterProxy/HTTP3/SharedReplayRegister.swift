// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP3
import JesterSystem

/// QUIC 0-RTT's replay register (`QUICReplayRegister`) in an instance-wide shared table (a `RateLimitTable` of
/// its own, which the master makes and hands to every worker and across upgrades): an early ClientHello seen by
/// any worker of any generation is refused early data by every other within the anti-replay window. An attacker who copies a client's first flight can send it from any address, so it may
/// reach any worker; a register per process would accept the copy once per worker.
///
/// Each binder is a key (SipHash under the table's seed) whose stored time is when its record expires. The table
/// evicts the earliest times first, so under a flood of early ClientHellos beyond its size the records that go
/// are the oldest (counted as live evictions): the guard weakens to "only safe requests are sent early", which
/// holds regardless. Its own table, so such a flood cannot evict the rate limits' state.
final class SharedReplayRegister: QUICReplayRegister {
    private let table: RateLimitTable

    init(table: RateLimitTable) {
        self.table = table
    }

    func recordFirstUse(of binder: UnsafeRawBufferPointer, now: Int64, window: Int64) -> Bool {
        var hasher = RateLimitKeyHasher(seed: table.hashSeed)
        hasher.combine("QUIC 0-RTT ClientHello")
        hasher.combine(bytes: binder)
        var isFirst = true
        table.update(key: hasher.finalize(), now: now) { expiry in
            // (Called again when another process changed the slot meanwhile: the last call decides.)
            if let expiry, expiry > now {
                isFirst = false
                return nil
            }
            isFirst = true
            return now + window
        }
        return isFirst
    }
}
