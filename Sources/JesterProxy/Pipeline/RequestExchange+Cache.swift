// SPDX-License-Identifier: Apache-2.0
import JesterCache
import JesterCacheStore
import JesterCore
import NIOCore

/// The cache step of the upstream phase: on a route with `cache`, the request is classified once its pool is
/// chosen, and every attempt's upstream is then asked of the cache first (`CacheExchange`), which answers a hit
/// itself and wraps what it forwards. Unsafe methods invalidate what the cache holds for their target.
extension RequestExchange {
    /// Classifies the request for the route's cache (nothing on a route without one, or in a worker with no
    /// store): cacheable requests get a `CacheExchange`; an unsafe method's target is remembered for invalidation.
    mutating func startCache(runtime: WorkerRuntime) {
        cache = nil
        guard let policy = route?.cachePolicy, let store = runtime.cacheStore, let headBytes else { return }
        let request = headBytes.withUnsafeReadableBytes {
            CacheRequest(head: head, bytes: $0, scheme: isSecure ? "https" : "http")
        }
        switch request.classify(policy: policy) {
        case .cacheable(let plan):
            cache = CacheExchange(
                store: store, policy: policy, request: request.stripping(plan.stripFields), plan: plan,
                eventLoop: runtime.eventLoop, allocator: runtime.allocator, memo: runtime.cacheMemo)
        case .bypass:
            if !["GET", "HEAD", "OPTIONS", "TRACE"].contains(request.method) { pendingInvalidation = request }
        }
    }

    /// After an unsafe method's answer (RFC 9111 §4.4): a non-error status invalidates the stored responses for
    /// its target URI, and for its same-origin `Location` and `Content-Location`, on every worker (they share the
    /// index).
    mutating func invalidateCache(status: Int, head: HTTPHead, bytes: ByteBuffer, runtime: WorkerRuntime) {
        guard let request = pendingInvalidation, let policy = route?.cachePolicy, let store = runtime.cacheStore
        else { return }
        pendingInvalidation = nil
        guard CacheInvalidation.invalidates(method: request.method, status: status) else { return }
        let fields = bytes.withUnsafeReadableBytes { CacheFields(head: head, bytes: $0) }
        for key in CacheInvalidation.keys(request: request, responseFields: fields, policy: policy) {
            store.invalidate(key)
        }
    }
}
