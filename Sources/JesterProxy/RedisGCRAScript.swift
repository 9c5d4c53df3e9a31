// SPDX-License-Identifier: Apache-2.0
import JesterCore
import NIOCore

/// What a cluster-scope limit says about one request.
enum ClusterRateDecision: Sendable, Equatable {
    /// Within the limit; `remaining` more requests would be allowed right now, and the key is back to its full
    /// allowance after `resetAfter` (the `RateLimit` field's `r` and `t`).
    case allow(remaining: Int, resetAfter: Duration)
    /// Within the limit in delay mode, but over the rate: the request is counted and passes after waiting
    /// this long (`GCRA.Decision.delay`, nginx's `limit_req ... delay`); `remaining` as for `allow`.
    case delay(Duration, remaining: Int)
    /// Over the limit: a request conforms again after `retryAfter` (`Retry-After`).
    case refuse(retryAfter: Duration)
    /// Redis did not answer within the timeout (down, slow, or out of step): the caller applies the configured
    /// `on_failure` (fail open by default).
    case unavailable
}

/// The GCRA as a Lua script that Redis runs atomically, so any number of Jester instances share one limit
/// without a read-modify-write race (Envoy's Redis GCRA reads, then writes, and over-admits under contention).
///
/// The Generic Cell Rate Algorithm keeps one number per key, the theoretical arrival time (TAT): when the key's
/// allowance is fully used up to now. With emission interval `T = period / rate` and burst tolerance
/// `τ = burst × T`, a request of cost `c` arriving at `now`:
///
///     tat     = max(stored TAT, now)           (an unseen or long-idle key starts at now; a TAT beyond
///                                               now + τ + T, left by a clock that went back, is clamped there)
///     newTAT  = tat + c × T
///     allowed ⇔ newTAT − now ≤ τ + T           (burst 0: requests strictly spaced T apart)
///     allowed:  store newTAT, expiring after newTAT − now (after that the key is at full allowance again,
///               exactly as if it were unseen, so the expiry loses nothing and Redis never fills up)
///               remaining  = ⌊(τ + T − (newTAT − now)) / T⌋
///               resetAfter = newTAT − now
///               wait       = max(0, (tat − now) − D)   (delay mode: D = delay × T is the excess that
///                                                        passes at once; the rest waits until it conforms)
///     refused:  nothing stored (a refusal consumes no allowance)
///               retryAfter = newTAT − (τ + T) − now
///
/// So `burst + 1` requests pass at once, then one every `T`: `GCRA.decide` in JesterCore (the `instance` scope),
/// decision for decision, delays included (a test runs both on one sequence), in microseconds rather than
/// nanoseconds since the TAT lives in a Lua double, exact to 2⁵³ µs. The wait is counted from Redis's `now`, so
/// the round trip is part of it: a delayed request waits a little longer than the instance scope's, never less.
/// `now` is Redis's own clock (`TIME`), so instances whose clocks disagree still share one timeline.
/// `redis.replicate_commands()` makes Redis before 5.0 replicate the script's effects (its `TIME` is not
/// deterministic); from 5.0 on that is the default and the call does nothing.
enum RedisGCRAScript {
    /// KEYS[1]: the key. ARGV: T (µs), τ (µs), cost, D (µs).
    /// Returns {allowed 0/1, remaining, retryAfter µs, resetAfter µs, wait µs}.
    static let source = """
        if redis.replicate_commands then redis.replicate_commands() end
        local clock = redis.call('TIME')
        local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
        local interval = tonumber(ARGV[1])
        local tolerance = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local free = tonumber(ARGV[4]) or tolerance
        local tat = tonumber(redis.call('GET', KEYS[1])) or now
        if tat < now then tat = now end
        if tat > now + tolerance + interval then tat = now + tolerance + interval end
        local newTAT = tat + cost * interval
        local allowAt = newTAT - tolerance - interval
        if now < allowAt then
          return {0, 0, allowAt - now, tat - now, 0}
        end
        local resetAfter = newTAT - now
        redis.call('SET', KEYS[1], string.format('%.0f', newTAT), 'PX', math.max(1, math.ceil(resetAfter / 1000)))
        local wait = tat - now - free
        if wait < 0 then wait = 0 end
        return {1, math.floor((tolerance + interval - resetAfter) / interval), 0, resetAfter, wait}
        """

    /// The script's ARGV for a limit of `rate` requests per `period` with `burst` extra at once, of which `delay`
    /// pass without waiting (`GCRA`'s `burst` and `delay`: the default passes them all, nginx's `nodelay`): T is
    /// `GCRA.emissionInterval` (period / rate in nanoseconds, rounded down) rounded down to microseconds (at least
    /// 1), τ and D whole numbers of T, as in `GCRA`.
    static func arguments(rate: Int, period: Duration, burst: Int, delay: Int = .max, cost: Int = 1) -> [String] {
        let components = period.components
        let (seconds, overflow) = components.seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let periodNanos = overflow ? Int64.max : seconds &+ components.attoseconds / 1_000_000_000
        let interval = max(1, periodNanos / Int64(max(1, rate)) / 1000)
        // A Lua double is exact to 2⁵³: a tolerance beyond that (centuries) is as good as infinite.
        func times(_ count: Int) -> Int64 {
            let (product, tooLong) = interval.multipliedReportingOverflow(by: Int64(max(0, count)))
            return tooLong ? 1 << 53 : min(product, 1 << 53)
        }
        let tolerance = times(burst)
        return [String(interval), String(tolerance), String(max(1, cost)), String(min(times(delay), tolerance))]
    }

    /// `EVALSHA sha 1 key T τ cost D`.
    static func evalSHA(_ sha: String, key: String, arguments: [String]) -> [UInt8] {
        RESPEncoder.command(["EVALSHA", sha, "1", key] + arguments)
    }

    /// `EVAL source 1 key T τ cost D`: after NOSCRIPT, or before the script's SHA is known. It also caches the
    /// script on the server.
    static func eval(key: String, arguments: [String]) -> [UInt8] {
        RESPEncoder.command(["EVAL", source, "1", key] + arguments)
    }

    /// `SCRIPT LOAD source`, whose reply is the SHA-1 for EVALSHA (so Jester needs no SHA-1 of its own).
    static let load = RESPEncoder.command(["SCRIPT", "LOAD", source])

    /// What a script reply means; nil when it is not the five integers the script returns (an error reply, say).
    static func decision(from reply: RESPValue) -> ClusterRateDecision? {
        guard case .array(let elements?) = reply, elements.count == 5 else { return nil }
        var numbers: [Int64] = []
        for element in elements {
            guard case .integer(let number) = element else { return nil }
            numbers.append(number)
        }
        switch numbers[0] {
        case 1 where numbers[4] > 0:
            return .delay(.microseconds(numbers[4]), remaining: Int(max(0, numbers[1])))
        case 1: return .allow(remaining: Int(max(0, numbers[1])), resetAfter: .microseconds(max(0, numbers[3])))
        case 0: return .refuse(retryAfter: .microseconds(max(0, numbers[2])))
        default: return nil
        }
    }
}

/// Keys known to be over their limit, answered in the worker without asking Redis until their retry-after
/// passes.
///
/// Exact, not an approximation: GCRA refusals change nothing in Redis, and other instances' requests can only
/// move the key's TAT later, so every request before the cached moment would be refused by Redis too. Bounded:
/// when full, expired entries go first, then an arbitrary one (the cost of losing one is a round trip). Pure:
/// time comes in as an argument.
struct OverLimitCache {
    let capacity: Int
    private var until: [String: NIODeadline] = [:]

    init(capacity: Int) {
        precondition(capacity > 0, "an over-limit cache needs room for one key")
        self.capacity = capacity
    }

    var count: Int { until.count }

    /// The refusal for `key` at `now`, when it is cached and still holds.
    mutating func refusal(for key: String, now: NIODeadline) -> ClusterRateDecision? {
        guard let deadline = until[key] else { return nil }
        guard now < deadline else {
            until[key] = nil
            return nil
        }
        return .refuse(retryAfter: .nanoseconds((deadline - now).nanoseconds))
    }

    /// Remembers that `key` is refused until `deadline`.
    mutating func insert(_ key: String, until deadline: NIODeadline, now: NIODeadline) {
        if until.count >= capacity, until[key] == nil {
            until = until.filter { $0.value > now }
            // All live: drop one (the first in hash order, which is as good as random).
            if until.count >= capacity { until.remove(at: until.startIndex) }
        }
        until[key] = deadline
    }
}
