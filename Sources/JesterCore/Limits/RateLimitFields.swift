// SPDX-License-Identifier: Apache-2.0
/// The values of the `RateLimit-Policy`, `RateLimit` and `Retry-After` response fields for a `GCRA` limit, so
/// clients can pace themselves instead of discovering the limit by its 429s.
///
/// The fields are those of draft-ietf-httpapi-ratelimit-headers-11 (Structured Field lists, RFC 8941):
/// - `RateLimit-Policy: "name";q=10;w=1` (§3.1): quota `q` requests per window `w` seconds. A GCRA limit is
///   advertised as its average rate, scaled to whole seconds when the period is not (the draft has no sub-second
///   windows, §3.1.3); the burst, which the draft has no parameter for, goes in a vendor-prefixed parameter as
///   §3.1 recommends: `jester-burst=5`.
/// - `RateLimit: "name";r=3;t=2` (§4.1): `r` the requests that would pass now, `t` the seconds until the
///   allowance is whole again (rounded up). The draft reads `t` as the window in which no more than `r` may be
///   used; under GCRA the allowance refills continuously, so a client that trusts `r` within `t` uses less than
///   it could, never more (the draft allows such sliding policies, §4.1.2). A refusal gives `r=0` and `t` the
///   time until a request would pass. A delayed request gives `r` alone (`t` is optional).
/// - `Retry-After` (RFC 9110 §10.2.3): delay-seconds, rounded up so that a client retrying then is admitted.
///
/// Several limits on one request give one item each, joined with ", " in one field (SF lists, RFC 8941 §3.1).
public enum RateLimitFields {
    /// One `RateLimit-Policy` item for the limit called `name` (a filter's name).
    public static func policyItem(name: String, limit: GCRA) -> String {
        let periodNanoseconds = Double(GCRA.nanoseconds(limit.period))
        let window = max(1, Int((periodNanoseconds / 1e9).rounded(.up)))
        // Requests per whole-seconds window at the limit's average rate (exact when the period is whole seconds).
        let quota = Int((Double(limit.rate) * Double(window) * 1e9 / periodNanoseconds).rounded(.down))
        var item = "\(string(name));q=\(quota);w=\(window)"
        if limit.burst > 0 { item += ";jester-burst=\(limit.burst)" }
        return item
    }

    /// One `RateLimit` item for the limit called `name`, after `decision`.
    public static func serviceLimitItem(name: String, decision: GCRA.Decision) -> String {
        switch decision {
        case .allow(let remaining, let resetAfter):
            return "\(string(name));r=\(remaining);t=\(seconds(roundingUp: resetAfter))"
        case .delay(_, let remaining):
            return "\(string(name));r=\(remaining)"
        case .refuse(let retryAfter):
            return "\(string(name));r=0;t=\(seconds(roundingUp: retryAfter))"
        }
    }

    /// The `Retry-After` value for a refusal that may be retried after `retryAfter`.
    public static func retryAfter(_ retryAfter: Duration) -> String {
        String(max(1, seconds(roundingUp: retryAfter)))
    }

    /// Whole seconds, rounded up (a client told "1" for 0.2 s waits a little long, never too short).
    public static func seconds(roundingUp duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        guard duration > .zero else { return 0 }
        return Int(clamping: seconds) + (attoseconds > 0 ? 1 : 0)
    }

    /// `name` as an SF String (RFC 8941 §3.3.3): quoted, `"` and `\` escaped; other characters outside printable
    /// ASCII cannot be sent and are dropped (names come from the configuration, which should not have them).
    static func string(_ name: String) -> String {
        var quoted = "\""
        for scalar in name.unicodeScalars where scalar.value >= 0x20 && scalar.value <= 0x7E {
            if scalar == "\"" || scalar == "\\" { quoted.append("\\") }
            quoted.unicodeScalars.append(scalar)
        }
        return quoted + "\""
    }
}
