// SPDX-License-Identifier: Apache-2.0
import JesterCore
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

    /// `response` with the error pages' body when it is a plain error (`LocalResponse.error`: Jester's own, or a
    /// filter's refusal, 401, 403, 429, with its extra fields kept); any other answer as it is. Both adapters'
    /// `respond` call this for every local answer, so no error path can miss the pages.
    mutating func errorPage(
        replacing response: LocalResponse, runtime: WorkerRuntime, routes: ListenerRoutes
    ) -> LocalResponse {
        var response = response
        if response.status == 415, response.isPlainError, case .unsupported = requestDecoding {
            // RFC 9110 §15.5.16: say which codings the route decodes.
            response.fields.append(LocalResponse.Field("Accept-Encoding", RequestDecompression.acceptedCodings))
        }
        guard response.isPlainError, route == nil ? routes.errorPages != nil : route!.errorPages != nil else {
            return response
        }
        // (`LocalResponse.error` puts its Content-Type first; the page brings its own.)
        return errorResponse(
            status: response.status, fields: Array(response.fields.dropFirst()), runtime: runtime, routes: routes)
    }

    /// Whether the upstream's answer `status` is thrown away and replaced by Jester's error answer
    /// (`error_pages.intercept`), decided before any of it goes to the client.
    mutating func intercepts(upstreamStatus status: Int) -> Bool {
        guard status >= 400, let pages = route?.errorPages else { return false }
        return pages.intercepts(status)
    }
}
