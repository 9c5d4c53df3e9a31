// SPDX-License-Identifier: Apache-2.0
import NIOCore

/// The error phase: the body of every error Jester answers itself, and whether an upstream's error answer is
/// replaced by one (`error_pages`). Decided here once for every protocol; the adapters only render the answer.
extension RequestExchange {
    /// The answer for an error `status` Jester gives itself (no route, a refusal, a dead or slow upstream): the
    /// route's error pages, else its listener's (`routes`) when no route took the request, else the plain text
    /// of `LocalResponse.error`. `fields`: the caller's extras (`Retry-After`). A route without error pages pays
    /// this one check.
    mutating func errorResponse(
        status: Int, fields: [LocalResponse.Field] = [], runtime: WorkerRuntime, routes: ListenerRoutes
    ) -> LocalResponse {
        // A route's own pages already fall back to its listener's (`Configuration.errorPages(for:listener:)`).
        guard let pages = route == nil ? routes.errorPages : route!.errorPages else {
            return .error(status, fields: fields)
        }
        return withRequestID(runtime: runtime) { pages.response(status: status, fields: fields, requestID: $0) }
    }

    /// Whether the upstream's answer `status` is thrown away and replaced by Jester's error answer
    /// (`error_pages.intercept`), decided before any of it goes to the client.
    mutating func intercepts(upstreamStatus status: Int) -> Bool {
        guard status >= 400, let pages = route?.errorPages else { return false }
        return pages.intercepts(status)
    }
}
