// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterCore
import JesterMetrics
import JesterTLS
import NIOCore

/// What a request filter decided: the contract of every request-side phase (filters now, Wasm policies at
/// pre-route and pre-upstream next), modelled on Envoy's `Continue` / local reply and Pingora's phase results.
enum FilterVerdict {
    /// Go on with the next filter, then the upstream.
    case proceed
    /// Answer with this response instead (a short circuit: 401 with a challenge, 429 with `Retry-After`); the
    /// request never reaches an upstream. `reason` goes to the access log's `error` field.
    case respond(LocalResponse, reason: String)
    /// Refuse with an error status (the plain-text error answer); the request never reaches an upstream.
    case fail(status: Int, reason: String)
}

/// A filter's answer to one request: decided now, or later (after a Redis round trip), through
/// `FilterContext.resume`, exactly once and on the worker's event loop.
enum FilterStep {
    case decided(FilterVerdict)
    case suspended
}

/// The request as filters see it: the parsed head over its bytes (whatever protocol carried it: HTTP/2 and
/// HTTP/3 requests are translated to the same head), the client, and the chosen route. Read-only: what a filter
/// wants to change goes into its `FilterContext`.
struct FilterInput {
    let head: HTTPHead
    let bytes: ByteBuffer
    /// The client's address as text (after a trusted PROXY header), and as bytes for network rules.
    let clientAddress: String
    let clientIP: IPAddressBytes?
    let route: CompiledRoute
    let tls: TLSSessionFacts?
    /// The worker's monotonic clock now (one clock read per request, shared by all filters).
    let now: NIODeadline
    /// The whole request body, decoded (no chunk framing), when a filter of the chain asked for it
    /// (`RequestFilter.bodyLimit`) and the request has one; nil otherwise. The pre-upstream phase holds the body
    /// back until the filters decide, so what they read is exactly what goes upstream.
    var body: [UInt8]? = nil

    /// The value of the first field called `name` (lowercase), without surrounding blanks.
    func field(_ name: [UInt8]) -> String? {
        bytes.withUnsafeReadableBytes { raw in
            head.field(named: name, in: raw).map {
                String(decoding: UnsafeRawBufferPointer(rebasing: raw[$0.value]), as: UTF8.self)
            }
        }
    }
}

/// One request's run through its filter chain, and what the filters found out and want done, kept by the exchange
/// from the first filter to the log record: an identity for later filters (a rate limit keyed by a JWT claim),
/// fields for the upstream request (claims forwarded as headers) and for the response (`RateLimit` fields).
///
/// The run goes one filter after the other and stops at the first answer. A filter that must wait returns
/// `.suspended` and calls `resume` later; the run then goes on from the next filter, and the exchange hears the
/// verdict through `onDecision`. One object per filtered request, made only for routes that have filters: no
/// closure per filter, and the exchange's closure only for runs that actually wait.
final class FilterContext {
    /// Who the client proved to be (a basic-auth user, a token's `sub`), for the access log.
    var user: String?
    /// Claims of a verified token, as strings (numbers in decimal, arrays joined by spaces), for later filters.
    var claims: [String: String] = [:]
    /// Fields set on the upstream request; a client's field of the same name never passes (a client cannot
    /// pretend to be `X-User: admin`). One with an empty value only removes the client's field.
    var upstreamFields: [LocalResponse.Field] = []
    /// Fields added to the response, whoever answers it.
    var responseFields: [LocalResponse.Field] = []

    private let chain: FilterChain
    private let input: FilterInput
    private var next = 0
    /// Told the verdict of a run that waited; set by the exchange once `start` returned nil.
    var onDecision: ((FilterVerdict) -> Void)?
    /// Told as each filter begins and decides, for its span; set by the exchange only when the request's trace is
    /// recorded (`FilterRunObserver`), so an untraced run makes no span, reads no clock and allocates nothing.
    var observer: (any FilterRunObserver)?
    /// The exchange gave up on this request (the client left): a late `resume` is dropped.
    private(set) var isCancelled = false
    /// A filter is running: a `resume` now (a cache answering before the filter even returned `.suspended`) is
    /// kept here and taken by the loop, instead of finishing the run from inside it.
    private var applying = false
    private var earlyVerdict: FilterVerdict?
    /// A filter waits for its `resume`.
    private var waiting = false
    /// When the filter being applied (or waited for) began, read only when metrics count its duration.
    private var filterStartedAt: NIODeadline?

    init(chain: FilterChain, input: FilterInput) {
        self.chain = chain
        self.input = input
    }

    /// Sets `name` on the upstream request, replacing an earlier filter's value.
    func setUpstreamField(_ name: String, _ value: String) {
        upstreamFields.removeAll { $0.name.lowercased() == name.lowercased() }
        upstreamFields.append(LocalResponse.Field(name, value))
    }

    /// Runs the filters; nil when one waits (the verdict then goes to `onDecision`).
    func start() -> FilterVerdict? {
        proceed()
    }

    func cancel() {
        if waiting, !isCancelled { observer?.filterAbandoned() }
        isCancelled = true
        onDecision = nil
    }

    /// The verdict of a filter that returned `.suspended`: call once, on the event loop. Later calls, and calls
    /// after the exchange gave up, are ignored.
    func resume(_ verdict: FilterVerdict) {
        if applying {
            earlyVerdict = verdict
            return
        }
        guard waiting, !isCancelled else { return }
        waiting = false
        observer?.filterDecided(verdict)
        timeFilter()
        let outcome: FilterVerdict?
        if case .proceed = verdict { outcome = proceed() } else { outcome = counted(verdict) }
        guard let outcome, let onDecision else { return }
        self.onDecision = nil
        onDecision(outcome)
    }

    private func proceed() -> FilterVerdict? {
        while next < chain.filters.count {
            let filter = chain.filters[next]
            next += 1
            observer?.filterBegan(filter, kind: chain.kind(of: next - 1))
            if chain.metrics?.metrics != nil { filterStartedAt = .now() }
            applying = true
            var step = filter.apply(input, context: self)
            applying = false
            if case .suspended = step, let early = earlyVerdict {
                earlyVerdict = nil
                step = .decided(early)
            }
            if case .decided(let verdict) = step {
                observer?.filterDecided(verdict)
                timeFilter()
            }
            switch step {
            case .suspended:
                waiting = true
                observer?.filterWaits()
                return nil
            case .decided(.proceed):
                continue
            case .decided(let answer):
                return counted(answer)
            }
        }
        return counted(.proceed)
    }

    /// The filter last applied decided: how long it took (its wait included) goes to the metrics.
    private func timeFilter() {
        guard let started = filterStartedAt, let metrics = chain.metrics?.metrics else { return }
        filterStartedAt = nil
        metrics.filterTook(route: input.route, filter: next - 1, nanoseconds: (NIODeadline.now() - started).nanoseconds)
    }

    /// The run's verdict, given by the filter last applied, counted in the metrics (jester-metrics(7)).
    private func counted(_ verdict: FilterVerdict) -> FilterVerdict {
        if let metrics = chain.metrics?.metrics {
            let outcome: FilterOutcome
            switch verdict {
            case .proceed: outcome = .proceed
            case .respond: outcome = .respond
            case .fail: outcome = .fail
            }
            metrics.filtersDecided(route: input.route, decider: next - 1, outcome: outcome)
        }
        return verdict
    }
}

/// A request filter: a value compiled once per configuration and worker, shared by every request of the routes
/// it is attached to; its per-request state lives in the exchange's `FilterContext`. Loop-confined.
protocol RequestFilter: AnyObject {
    /// The name the configuration gives it (logs and, next, metrics).
    var name: String { get }
    /// Decides on `request`. A filter that must wait returns `.suspended` and calls `context.resume` once, on the
    /// event loop; one that decides now never calls it.
    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep
    /// The request body this filter reads, at most (opt-in body access): with one, the exchange holds the whole
    /// body back until the chain decides, answers 413 to a longer one, and hands it over in `FilterInput.body`.
    /// Nil (the default): the filter reads the head only, and the body streams as it comes.
    var bodyLimit: Int? { get }
}

extension RequestFilter {
    var bodyLimit: Int? { nil }
}

/// The filters of one route on one listener, in execution order: the listener's list, then the route's.
/// (Loop-confined like the worker's other per-configuration state; hence `@unchecked Sendable`.)
struct FilterChain: @unchecked Sendable {
    let filters: [any RequestFilter]
    /// Where the chain's verdicts are counted (the runtime's, filled once it attaches its metrics).
    var metrics: FilterMetrics? = nil
    /// The most request body a filter of the chain reads (`RequestFilter.bodyLimit`); 0: none reads it.
    let bodyLimit: Int
    /// Each filter's `kind` as the configuration names it, for its span; empty for a chain made without settings.
    let kinds: [FilterKindName]

    init(filters: [any RequestFilter], kinds: [FilterKindName] = [], metrics: FilterMetrics? = nil) {
        self.filters = filters
        self.kinds = kinds
        self.metrics = metrics
        bodyLimit = filters.compactMap(\.bodyLimit).max() ?? 0
    }

    /// The kind of the filter at `index`, when known.
    func kind(of index: Int) -> FilterKindName? {
        index < kinds.count ? kinds[index] : nil
    }

    static let empty = FilterChain(filters: [])

    /// The chain's last `count` filters (a route's own, after its listener's), counted in the same metrics.
    func suffix(_ count: Int) -> FilterChain {
        FilterChain(
            filters: Array(filters.suffix(count)), kinds: kinds.count == filters.count ? Array(kinds.suffix(count)) : [],
            metrics: metrics)
    }

    var isEmpty: Bool { filters.isEmpty }
}
