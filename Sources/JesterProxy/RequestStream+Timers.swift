// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterCore
import JesterHTTP2
import NIOCore

/// An HTTP/2 request's timers (the route's whole-exchange deadline, the client body, the response and the reads
/// between its parts) and its completion.
extension RequestStream {
    /// `timeout`: the whole exchange; a response under way is cut short with a reset, visibly.
    func armRouteTimers(_ route: CompiledRoute) {
        guard let total = route.totalTimeout else { return }
        let deadline = ConnectionTimer()
        // Strong, like `timer`: `closed` cancels it.
        deadline.setup(queue: runtime.timers) { _ in self.timedOut("route timeout") }
        deadline.arm(.response, after: total)
        exchangeDeadline = deadline
    }

    /// `client_body_timeout` while the body streams upstream (or is held whole before it goes), as on HTTP/1.1:
    /// a body that stops coming gets 408 rather than holding the stream, and its upstream, until the client leaves.
    /// Every DATA frame re-arms it; the response timeout replaces it once the body is complete. Once the response
    /// has started it no longer applies (gRPC streams both ways; `read_timeout` bounds the pauses then).
    func armBodyTimer() {
        guard !requestComplete, !finished, !responseStarted else { return }
        timer.arm(.body, after: runtime.timeouts.body)
    }

    /// `read_timeout`: re-armed by every part of the response.
    func armReadTimer() {
        guard let read = exchange.route?.readTimeout, !finished else { return }
        timer.arm(.upstreamRead, after: read)
    }

    func timerFired(_ purpose: ConnectionTimer.Purpose) {
        switch purpose {
        case .response:
            guard !responseStarted, !finished else { return }
            finishLocally(status: 504, failure: UpstreamFailure.responseTimedOut.reason)
        case .upstreamRead:
            timedOut("upstream read timeout")
        case .body:
            if peekedBody != nil {
                // The body matchers waited for a body that stopped coming.
                peekedBody = nil
                finishLocally(status: 408, failure: "client body timeout")
                return
            }
            guard !requestComplete, !finished, !responseStarted else { return }
            // Bytes Jester has not acknowledged (no upstream connection yet, or one not taking more) are its own
            // pause, not the client's. (A body held whole before it goes fits one window: never paused so.)
            if deferredStart == nil, !pendingBody.isEmpty || unacknowledged > 0 {
                timer.arm(.body, after: runtime.timeouts.body)
                return
            }
            finishLocally(status: 408, failure: "client body timeout")
        default:
            break
        }
    }

    func timedOut(_ reason: String) {
        guard !finished else { return }
        detachUpstream()
        if responseStarted {
            exchange.log.failure = reason
            complete()
            // At once, dropping what is still queued for the client (unlike an upstream that failed midway): the
            // client may be the one not reading, and the stream must not wait on it.
            connection.resetWithInternalError(id)
        } else {
            finishLocally(status: 504, failure: reason)
        }
    }

    func complete(status: Int? = nil) {
        guard !finished else { return }
        finished = true
        timer.disarm()
        exchangeDeadline?.disarm()
        // DATA that waited for an upstream that never came (a failed connect, a local answer) is acknowledged
        // now: the client's connection window is shared by all its streams.
        if !pendingBody.isEmpty { dropHeldBody() }
        exchange.writeLog(
            status: status, protocol: connection.streamProtocol.logName, tls: tls, runtime: runtime,
            listener: connection.metricsListener)
        exchange.end()
    }
}
