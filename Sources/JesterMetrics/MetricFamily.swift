// SPDX-License-Identifier: Apache-2.0
import JesterConfig

/// The kind of a metric family, as Prometheus and OpenMetrics name it in `# TYPE`.
public enum MetricType: String, Sendable, CaseIterable {
    /// Only goes up (a worker's figures are folded into the retired total when it exits, so it never drops).
    case counter
    /// Goes up and down; summed over every live process, and not folded when a process exits.
    case gauge
    /// Observations counted in fixed buckets, with their sum: the request-duration family of Prometheus.
    case histogram
}

/// A family's unit, the suffix its name ends with (Prometheus wants base units: seconds, bytes).
public enum MetricUnit: String, Sendable {
    case none = ""
    case seconds
    case bytes
}

/// A label a family may carry. The set is closed on purpose: every label's values are either fixed here
/// (`fixedValues`) or taken from the configuration (names of listeners, routes, upstreams, targets, filters),
/// so no request can mint a new series: cardinality is bounded by the configuration, and then by the
/// registry's per-family limit (`SeriesRegistry.defaultSeriesLimit`).
public enum MetricLabel: String, Sendable, CaseIterable {
    case listener
    case route
    case upstream
    case target
    case `protocol`
    case statusClass = "status_class"
    case result
    case state
    case filter
    case outcome
    case family
    /// A Wasm policy's name (`[policies.NAME]`).
    case policy
    /// The stage a policy ran at.
    case stage
    /// What a policy call decided.
    case decision
    /// A counter a Wasm policy names (`counter-add`): at most 32 per policy, of [a-z0-9_].
    case counter
    /// What became of a QUIC datagram (`QUICDatagramDisposition`).
    case disposition

    /// The value a series is counted under when its own would pass the family's limit (see `SeriesRegistry`).
    public static let otherValue = "other"

    /// The only values the label takes, when they do not come from the configuration; nil when they do.
    public var fixedValues: [String]? {
        switch self {
        case .listener, .route, .upstream, .target, .filter, .policy, .counter: nil
        case .protocol: MetricProtocol.allCases.map(\.rawValue)
        case .statusClass: StatusClass.allCases.map(\.rawValue)
        case .result: ReloadResult.allCases.map(\.rawValue)
        case .state: CircuitStateLabel.allCases.map(\.rawValue)
        case .outcome: FilterOutcome.allCases.map(\.rawValue)
        case .family: MetricCatalog.families.map(\.name)
        case .stage: PolicyStageName.allCases.map(\.rawValue)
        case .decision: PolicyDecision.allCases.map(\.rawValue)
        case .disposition: QUICDatagramDisposition.allCases.map(\.rawValue)
        }
    }
}

/// The `protocol` label: what carried a request or a connection.
public enum MetricProtocol: String, Sendable, CaseIterable {
    case http1
    case http2
    case http3
    case tcp
}

/// The `disposition` label of `jester_quic_datagrams_total`: what a worker did with a datagram of an HTTP/3
/// listener. Without steering by connection ID, datagrams that reach the wrong worker are forwarded to the owner.
public enum QUICDatagramDisposition: String, Sendable, CaseIterable {
    /// Read from the listener's UDP socket.
    case received
    /// A short-header datagram for a connection the worker does not know.
    case unknownConnection = "unknown_connection"
    /// Of those, one whose connection ID names another worker.
    case otherWorker = "other_worker"
    /// Passed to the worker that owns it.
    case forwarded
    /// Passed here by another worker.
    case forwardedIn = "forwarded_in"
    /// A forwarded message refused (not from this instance's workers).
    case forwardingRefused = "forwarding_refused"

    /// Its position in `allCases`: the index of per-disposition id arrays.
    public var index: Int { Self.allCases.firstIndex(of: self)! }
}

/// The `status_class` label: a response status's hundred, so a status code cannot multiply series.
public enum StatusClass: String, Sendable, CaseIterable {
    case informational = "1xx"
    case success = "2xx"
    case redirection = "3xx"
    case clientError = "4xx"
    case serverError = "5xx"

    /// The class of `status`; nil outside 100...599 (status 0, a request that got no answer, has none).
    public init?(status: Int) {
        switch status {
        case 100..<200: self = .informational
        case 200..<300: self = .success
        case 300..<400: self = .redirection
        case 400..<500: self = .clientError
        case 500..<600: self = .serverError
        default: return nil
        }
    }
}

/// The `result` label of reloads: whether the new generation took over.
public enum ReloadResult: String, Sendable, CaseIterable {
    case success
    case failure
}

/// The `state` label of the circuit-breaker gauge: one series per state, so a dashboard can stack them.
public enum CircuitStateLabel: String, Sendable, CaseIterable {
    case closed
    case open
    case halfOpen = "half_open"
}

/// The `outcome` label of filters: the three verdicts of the request-filter contract (jester-pipeline(7)).
public enum FilterOutcome: String, Sendable, CaseIterable {
    /// The filter let the request go on.
    case proceed
    /// It answered itself (a challenge, a 429 with Retry-After).
    case respond
    /// It refused with an error status.
    case fail
}

/// The `decision` label of policy calls: the policy let the request go on (changed or not), answered it itself,
/// denied it, or its call failed (a trap, fuel, memory, the deadline, a malformed action: fail closed).
public enum PolicyDecision: String, Sendable, CaseIterable {
    case proceed
    case respond
    case deny
    case failure
}

/// One metric family: its name, kind, help, unit and the labels every series of it carries, in order.
///
/// `name` is the family name as OpenMetrics spells it (a counter's without `_total`); `sampleName` adds the
/// suffix samples carry. Names follow `jester_<subsystem>_<name>_<unit>`, and a unit's family ends with it.
public struct MetricFamily: Sendable, Hashable {
    public let name: String
    public let type: MetricType
    public let unit: MetricUnit
    public let labels: [MetricLabel]
    public let help: String
    /// Bucket upper bounds in seconds (histograms only; `+Inf` is implied and last).
    public let buckets: [Double]

    public init(
        _ name: String, _ type: MetricType, unit: MetricUnit = .none, labels: [MetricLabel] = [], help: String,
        buckets: [Double] = []
    ) {
        precondition(name.hasPrefix("jester_"), "metric names start with jester_")
        precondition(unit == .none || name.hasSuffix("_" + unit.rawValue), "a family with a unit ends with it")
        precondition(!name.hasSuffix("_total"), "the family name of a counter has no _total; samples add it")
        precondition((type == .histogram) == !buckets.isEmpty, "histograms, and only they, have buckets")
        self.name = name
        self.type = type
        self.unit = unit
        self.labels = labels
        self.help = help
        self.buckets = buckets
    }

    /// The name of the family's plain samples: `_total` added for a counter (both formats), the name otherwise.
    public var sampleName: String { type == .counter ? name + "_total" : name }

    /// Words of shared memory one series takes: one for a counter or gauge; a histogram one per bucket,
    /// `+Inf` included, and one for its sum in nanoseconds (its count is the buckets' sum).
    public var width: Int { type == .histogram ? buckets.count + 2 : 1 }

    /// Whether the family's words are counted (summed and folded on exit) rather than gauged (summed only).
    public var isCumulative: Bool { type != .gauge }
}
