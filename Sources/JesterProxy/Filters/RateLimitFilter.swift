// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterLogging
import JesterSystem
import Logging
import NIOCore

/// `kind = "rate_limit"`: `rate` requests per `per`, plus `burst` at once, per key (client address, route, a
/// header, a token claim, or several of them), decided by GCRA (`GCRA` says why that algorithm).
///
/// - `scope = "instance"`: the key's state is in the instance-wide `RateLimitTable` the master shares with every
///   worker of every generation, so neither SO_REUSEPORT's spreading of connections over workers nor a reload or a
///   binary upgrade gives a client more allowance.
/// - `scope = "cluster"`: in Redis, shared by every Jester that uses it (`RedisRateLimiter`); when Redis does not
///   answer within its timeout, or refuses the connection's AUTH or SELECT, `on_failure` decides (allow by
///   default: a limiter outage must not become an outage of the API).
///
/// Allowed requests get `RateLimit-Policy` and `RateLimit` on their response (draft-ietf-httpapi-ratelimit-headers)
/// so clients can pace themselves; refused ones get the configured status (429) with `Retry-After` too. With
/// `delay`, requests over the rate but within the burst wait until they conform (nginx's `limit_req ... delay`),
/// in either scope: the wait comes from GCRA in the worker or from the script in Redis, and is served the same way.
///
/// A request that lacks a part of the key (no such header, no such claim) is not counted, as nginx does for an
/// empty key: limit by an authenticated claim, or by the client address, to catch everyone.
final class RateLimitFilter: RequestFilter {
    let name: String
    private let settings: RateLimitSettings
    private let limit: GCRA
    private let policyItem: String
    private let eventLoop: any EventLoop
    /// The runtime that owns this filter (through its routes), for the shared table the master hands over after
    /// the runtime is made; set by `WorkerRuntime` once it is whole.
    weak var runtime: WorkerRuntime?
    private let redis: RedisRateLimiter?
    /// The header names of `header:` key parts, lowercased as the head lookup wants them.
    private let headerNames: [[UInt8]]
    /// Per-worker state when the master gave no table (a worker started without one: never in a packaged
    /// instance, where the master always makes it). Wrong for an instance-wide limit, so it is logged.
    private var localState: [UInt64: Int64] = [:]
    private var warnedNoTable = false

    /// `resolved`: the master's lookups of host names, for a Redis named by one (`followAddresses` keeps up).
    init(name: String, settings: RateLimitSettings, eventLoop: any EventLoop, resolved: [String: String] = [:]) {
        self.name = name
        self.settings = settings
        self.eventLoop = eventLoop
        limit = GCRA(
            rate: settings.rate, period: settings.per, burst: settings.toleratedExcess, delay: settings.undelayedExcess)
        policyItem = RateLimitFields.policyItem(name: name, limit: limit)
        headerNames = settings.key.compactMap {
            if case .header(let header) = $0 { return Array(header.lowercased().utf8) }
            return nil
        }
        if settings.scope == .cluster, let redis = settings.redis {
            let host = redis.address.host
            var resolved = resolved
            if RedisRateLimiter.address(host: host, port: redis.address.port, resolved: resolved) == nil {
                // A name the master has not looked up yet (new in this reload): looked up here, once, before the
                // worker serves, as UpstreamPool does for targets; the master's lookups take over from then on.
                resolved[host] = (try? SocketAddress.makeAddressResolvingHost(host, port: 0))?.ipAddress
            }
            self.redis = RedisRateLimiter(
                eventLoop: eventLoop, host: host, port: redis.address.port, resolved: resolved,
                handshake: RedisHandshake(username: redis.username, password: redis.password, database: redis.database),
                poolSize: redis.poolSize, timeout: redis.timeout, keyPrefix: redis.keyPrefix,
                logger: Logger(component: .rateLimit))
        } else {
            redis = nil
        }
    }

    deinit {
        redis?.shutdown()
    }

    /// The master looked host names up again (`ControlMessage.resolvedAddresses`): a Redis named by one follows.
    func followAddresses(_ resolved: [String: String]) {
        redis?.follow(resolved: resolved)
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        if let redis {
            var parts: [String] = []
            guard forEachKeyPart(request, context: context, { parts.append($0) }) else { return .decided(.proceed) }
            redis.check(
                key: clusterKey(parts), rate: settings.rate, period: settings.per, burst: settings.toleratedExcess,
                delay: settings.undelayedExcess, now: request.now
            ) { [self] decision in
                if case .delay(let wait, let remaining) = decision {
                    addFields(.delay(wait, remaining: remaining), to: context)
                    proceed(after: wait, context: context)
                } else {
                    context.resume(clusterVerdict(decision, context: context))
                }
            }
            return .suspended
        }
        guard let decision = instanceDecision(request, context: context) else { return .decided(.proceed) }
        switch decision {
        case .allow:
            addFields(decision, to: context)
            return .decided(.proceed)
        case .delay(let wait, _):
            addFields(decision, to: context)
            proceed(after: wait, context: context)
            return .suspended
        case .refuse(let retryAfter):
            return .decided(refusal(retryAfter: retryAfter, decision: decision))
        }
    }

    // MARK: Keys

    /// Hands the key's parts for this request to `body`, in configuration order; false when one is missing (the
    /// request is not counted). A callback rather than an array: the instance path hashes the parts as they come.
    private func forEachKeyPart(
        _ request: FilterInput, context: FilterContext, _ body: (String) -> Void
    ) -> Bool {
        var headers = headerNames.makeIterator()
        for part in settings.key {
            switch part {
            case .clientAddress:
                body(request.clientAddress)
            case .route:
                body(request.route.name)
            case .header:
                guard let name = headers.next(), let value = request.field(name), !value.isEmpty else { return false }
                body(value)
            case .claim(let claim):
                guard let value = context.claims[claim], !value.isEmpty else { return false }
                body(value)
            }
        }
        return true
    }

    /// The instance-wide decision: the shared table's slot for (filter, key parts), updated atomically; nil when
    /// the request lacks a part of the key.
    private func instanceDecision(_ request: FilterInput, context: FilterContext) -> GCRA.Decision? {
        let now = Int64(request.now.uptimeNanoseconds)
        let table = runtime?.sharedRateLimits
        var hasher = RateLimitKeyHasher(seed: table?.hashSeed ?? (0, 0))
        hasher.combine(name)
        guard forEachKeyPart(request, context: context, { hasher.combine($0) }) else { return nil }
        let key = hasher.finalize()
        if let table { return table.acquire(key: key, now: now, limit: limit) }
        if !warnedNoTable {
            warnedNoTable = true
            runtime?.logWarning(
                "rate limit \(name): no instance-wide table from the master, limiting per worker", metadata: [:])
        }
        let (newTAT, decision) = limit.decide(tat: localState[key], now: now)
        if let newTAT { localState[key] = newTAT }
        return decision
    }

    /// The Redis key: readable (the filter's name and the parts), shared by every instance with the same
    /// configuration; very long parts (a header a client chose) are hashed so keys stay small.
    private func clusterKey(_ parts: [String]) -> String {
        let joined = ([name] + parts).joined(separator: "|")
        guard joined.utf8.count > 200 else { return joined }
        var hasher = RateLimitKeyHasher(seed: (0x6A65_7374_6572, 0x726C))
        for part in parts { hasher.combine(part) }
        return name + "|#" + String(hasher.finalize(), radix: 16)
    }

    // MARK: Answers

    /// Delay mode, for both scopes: the request is counted already and proceeds once it conforms to the rate.
    private func proceed(after wait: Duration, context: FilterContext) {
        eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(wait)) { context.resume(.proceed) }
    }

    private func clusterVerdict(_ decision: ClusterRateDecision, context: FilterContext) -> FilterVerdict {
        switch decision {
        case .allow(let remaining, let resetAfter):
            addFields(.allow(remaining: remaining, resetAfter: resetAfter), to: context)
            return .proceed
        case .delay:
            // (`apply` serves delays before asking for a verdict.)
            return .proceed
        case .refuse(let retryAfter):
            return refusal(retryAfter: retryAfter, decision: .refuse(retryAfter: retryAfter))
        case .unavailable:
            guard settings.redis?.onFailure == .deny else { return .proceed }
            // Fail closed: the limiter cannot say, so nothing passes; 503 says the service (not the client) is
            // the problem, and Retry-After paces retries.
            return .respond(
                .error(503, fields: [LocalResponse.Field("Retry-After", "1")]),
                reason: "rate_limit \(name): redis unavailable (on_failure = deny)")
        }
    }

    private func refusal(retryAfter: Duration, decision: GCRA.Decision) -> FilterVerdict {
        let fields = [
            LocalResponse.Field("Retry-After", RateLimitFields.retryAfter(retryAfter)),
            LocalResponse.Field("RateLimit-Policy", policyItem),
            LocalResponse.Field("RateLimit", RateLimitFields.serviceLimitItem(name: name, decision: decision)),
        ]
        return .respond(.error(settings.status, fields: fields), reason: "rate_limit \(name): over the limit")
    }

    private func addFields(_ decision: GCRA.Decision, to context: FilterContext) {
        context.responseFields.append(LocalResponse.Field("RateLimit-Policy", policyItem))
        context.responseFields.append(
            LocalResponse.Field("RateLimit", RateLimitFields.serviceLimitItem(name: name, decision: decision)))
    }
}

