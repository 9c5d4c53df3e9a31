// SPDX-License-Identifier: Apache-2.0
/// A token bucket: `rate` tokens a second, at most `burst` saved up. Pure: time comes in as seconds.
///
/// Used for the request rate of one client connection (`http.connection_request_rate`): a client may send a
/// burst (a page's worth of pipelined or multiplexed requests), then only `rate` a second on average.
public struct TokenBucket: Sendable, Equatable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var updatedAt: Double?

    public init(rate: Double, burst: Double) {
        precondition(rate > 0 && burst >= 1, "a token bucket needs a positive rate and room for one token")
        self.rate = rate
        self.burst = burst
        tokens = burst
    }

    /// Takes one token at `now`; false when none is left (the request is over the rate).
    public mutating func take(now: Double) -> Bool {
        if let updatedAt { tokens = min(burst, tokens + max(0, now - updatedAt) * rate) }
        updatedAt = now
        // (A hair of slack: refills summed from decimal times land just under whole tokens in binary.)
        guard tokens >= 1 - 1e-9 else { return false }
        tokens = max(0, tokens - 1)
        return true
    }
}
