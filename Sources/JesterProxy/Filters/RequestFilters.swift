// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import NIOCore

/// Makes the configuration's filter definitions into filters, once per configuration and worker; routes share
/// them through their `FilterChain`.
enum RequestFilters {
    /// The filters by name. (The loader checked every definition; one that still cannot be made is left out of
    /// the map, and the routes that list it refuse their requests rather than run without it: see `chain`.)
    /// `resolved`: the master's lookups of host names (a cluster rate limit's Redis may be named by one).
    static func compile(
        _ definitions: [FilterSettings], eventLoop: any EventLoop, resolved: [String: String] = [:]
    ) -> [String: any RequestFilter] {
        var filters: [String: any RequestFilter] = [:]
        for definition in definitions {
            let filter: (any RequestFilter)?
            switch definition.kind {
            case .ipRules(let settings):
                filter = IPRulesFilter(name: definition.name, settings: settings)
            case .rateLimit(let settings):
                filter = RateLimitFilter(
                    name: definition.name, settings: settings, eventLoop: eventLoop, resolved: resolved)
            case .basicAuth(let settings):
                filter = BasicAuthFilter(name: definition.name, settings: settings, eventLoop: eventLoop)
            case .jwt(let settings):
                filter = JWTFilter(name: definition.name, settings: settings)
            case .hmacSignature(let settings):
                filter = HMACSignatureFilter(name: definition.name, settings: settings, eventLoop: eventLoop)
            case .cors(let settings):
                filter = CORSFilter(name: definition.name, settings: settings)
            }
            filters[definition.name] = filter
        }
        return filters
    }

    /// The chain of `route` on `listener`: the listener's filters, then the route's. A filter that could not be
    /// made fails closed: it is replaced by one that refuses with 500, so a broken auth filter never lets a request
    /// through. `metrics`: where its verdicts are counted.
    static func chain(
        _ settings: [FilterSettings], compiled: [String: any RequestFilter], metrics: FilterMetrics? = nil
    ) -> FilterChain {
        FilterChain(
            filters: settings.map { compiled[$0.name] ?? UnavailableFilter(name: $0.name) },
            kinds: settings.map(\.kind.name), metrics: metrics)
    }
}

/// Stands in for a filter that could not be made from its (validated) settings: every request is refused, since
/// letting it pass would skip an authentication or a limit.
final class UnavailableFilter: RequestFilter {
    let name: String

    init(name: String) {
        self.name = name
    }

    func apply(_ request: FilterInput, context: FilterContext) -> FilterStep {
        .decided(.fail(status: 500, reason: "filter \(name) could not be set up"))
    }
}
