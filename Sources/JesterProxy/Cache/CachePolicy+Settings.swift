// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterConfig

extension CachePolicy {
    /// A route's `cache = { ... }` as the decisions read it.
    init(_ settings: RouteCacheSettings) {
        self.init()
        methods = Set(settings.methods)
        switch settings.keyQuery {
        case .whole: queryKey = .whole
        case .ignored: queryKey = .ignored
        case .only(let names): queryKey = .only(names)
        }
        keyFields = settings.keyHeaders
        if let unkeyed = settings.unkeyedHeaders { unkeyedFields = unkeyed }
        unkeyedFieldAction = settings.bypassUnkeyed ? .bypass : .strip
        cachesAuthorizedRequests = settings.cacheAuthorized
        cachesRequestsWithCookies = settings.cacheCookies
        setCookie = settings.storeWithoutSetCookie ? .storeWithout : .doNotStore
        if settings.heuristicPercent > 0 {
            heuristic = Heuristic(
                percent: Int64(settings.heuristicPercent), maxLifetime: settings.heuristicMax.components.seconds)
        }
        staleIfError = settings.staleIfError.map { $0.components.seconds }
        honoursClientRevalidation = settings.clientRevalidation
        maxObjectSize = settings.maxObjectSize
    }
}
