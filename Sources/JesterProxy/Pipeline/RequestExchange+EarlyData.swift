// SPDX-License-Identifier: Apache-2.0
import JesterCore

/// TLS early data (HTTP/3 0-RTT, `http3_early_data`): a request that arrives before the client's handshake
/// completed may be a copy an attacker replayed, since the first flight of a resumed connection can be captured
/// and sent again (RFC 8446 §8). Once the handshake completes the client is proven live, so the question is only
/// asked of requests still early when they would go upstream: a safe method goes at once, marked `Early-Data: 1`
/// for the origin (RFC 8470 §5.1: it may answer 425 Too Early, which reaches the client, whose retry is then no
/// longer early); anything else waits for the handshake (§3), so a replayed copy, which can never complete it,
/// never reaches an upstream.
extension RequestExchange {
    /// What to do with a request about to go upstream, given the state of its client's handshake.
    enum EarlyDataVerdict: Equatable {
        /// The handshake is complete: nothing to consider.
        case forward
        /// Early, and safe: forward now, with `Early-Data: 1`.
        case forwardEarly
        /// Early, and not safe: wait until the handshake completes (or the connection ends).
        case awaitHandshake
    }

    /// Decides what an upstream-bound request does about early data (`handshakeComplete`: the client's).
    mutating func earlyDataVerdict(handshakeComplete: Bool) -> EarlyDataVerdict {
        guard !handshakeComplete else { return .forward }
        let safe = headBytes?.withUnsafeReadableBytes { RequestMethod.isSafe($0, head.method) } ?? false
        return safe ? .forwardEarly : .awaitHandshake
    }
}
