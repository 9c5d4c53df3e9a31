// SPDX-License-Identifier: Apache-2.0
/// Whether an HTTP/1.x client connection carries another request after this one, what its responses say about it
/// (`Connection: close` / `keep-alive`), and what the connection does between requests: wait (for how long),
/// answer a pipelined request already buffered, or close. Pure: events in, actions out, no clock: the adapter
/// turns "wait the keep-alive timeout" or "the drain's grace" into its timers.
///
/// The rules (RFC 9112 §9.3, §9.6, and what nginx and HAProxy do):
/// - A request keeps the connection if its head does (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
///   `Connection: keep-alive`), the worker is not draining, and `keepalive_requests` is not reached.
/// - Anything that leaves the byte stream ambiguous ends it after the response: a body Jester did not read (a
///   local answer, a refusal), a request body cut short, a response delimited by closing (no length, or chunks
///   an HTTP/1.0 client cannot parse), input closed by the client.
/// - The decision is final when the response head goes out (`responseHead`): a drain that began during the
///   exchange still ends it, with `Connection: close`; after that, a response that promised keep-alive keeps the
///   promise, and the connection, now idle, closes at a jittered moment instead (`drain`).
public struct HTTP1KeepAlive: Sendable, Equatable {
    /// What the response head says about the connection.
    public enum ConnectionField: Sendable, Equatable {
        /// Nothing: HTTP/1.1 keeps connections by default.
        case none
        case close
        /// `Connection: keep-alive`, which an HTTP/1.0 client needs to hear.
        case keepAlive
    }

    /// How long an idle connection waits for its next request.
    public enum IdleLimit: Sendable, Equatable {
        /// `http.keepalive_timeout`.
        case keepaliveTimeout
        /// The worker drains: a moment for a request the client may already be sending (a random one within a
        /// second, so that many idle clients do not all reconnect to the new generation at once), then close.
        case drainGrace
    }

    /// What to do when an exchange ends.
    public enum AfterExchange: Sendable, Equatable {
        /// Flush and close.
        case close
        /// Wait for the next request, at most `idle`; `processBuffered`: a pipelined request is already buffered
        /// and goes now.
        case awaitNext(idle: IdleLimit, processBuffered: Bool)
    }

    /// `http.keepalive_requests` (0: no limit).
    public let maxRequests: Int
    /// Bytes of pipelined requests read ahead while an exchange is in progress (bounded, so a pipelining client
    /// waits in its own socket buffer).
    public let readAheadLimit: Int

    /// Requests started on this connection.
    public private(set) var requestsStarted = 0
    /// Whether the current exchange may be followed by another.
    public private(set) var keepsConnection = true
    /// The client's version (an HTTP/1.0 client is told `keep-alive` explicitly).
    private var isHTTP10 = false
    /// The client sent FIN: no request after the current one.
    public private(set) var inputClosed = false

    public init(maxRequests: Int, readAheadLimit: Int = 16 * 1024) {
        self.maxRequests = maxRequests
        self.readAheadLimit = readAheadLimit
    }

    // MARK: Events

    /// A request head arrived. `persistent`: what the head asks for (`HTTPHead.isPersistent`).
    public mutating func requestStarted(persistent: Bool, isHTTP10: Bool, draining: Bool) {
        requestsStarted += 1
        self.isHTTP10 = isHTTP10
        keepsConnection = persistent && !draining && !inputClosed
            && (maxRequests == 0 || requestsStarted < maxRequests)
    }

    /// Something made the rest of the byte stream ambiguous or unusable (an unread request body, a request body
    /// cut short, a response delimited by closing): the connection ends after this exchange.
    public mutating func endAfterExchange() {
        keepsConnection = false
    }

    /// The client shut its sending side: the current request (if complete) is answered, nothing after it.
    public mutating func clientInputClosed() {
        inputClosed = true
        keepsConnection = false
    }

    /// The response head goes out now: what it says about the connection. A drain that started during the
    /// exchange ends the connection here, while the response can still say so.
    public mutating func responseHead(draining: Bool) -> ConnectionField {
        if draining { keepsConnection = false }
        if !keepsConnection { return .close }
        return isHTTP10 ? .keepAlive : .none
    }

    /// The exchange ended (response complete, request body `requestComplete`). `bufferedBytes`: request bytes
    /// already read (a pipelined request). A response that promised keep-alive before a drain began keeps the
    /// promise: the connection waits the drain's grace for a request the client may already be sending.
    public mutating func exchangeFinished(requestComplete: Bool, bufferedBytes: Int, draining: Bool) -> AfterExchange {
        if !requestComplete { keepsConnection = false }
        guard keepsConnection else { return .close }
        return .awaitNext(idle: draining ? .drainGrace : .keepaliveTimeout, processBuffered: bufferedBytes > 0)
    }

    /// The worker started draining. An idle connection (no exchange, nothing buffered) waits the drain's grace,
    /// then closes, unless a request arrives first (answered with `Connection: close`); a busy one ends after its
    /// exchange (`responseHead`), so nothing is to be done now: nil.
    public func drainStarted(idle: Bool) -> IdleLimit? {
        idle ? .drainGrace : nil
    }

    /// Whether to keep reading while an exchange whose request is complete is in progress: a read kept pending
    /// notices a client that leaves, and saves re-arming read interest after every response; bounded, so
    /// pipelined requests wait in the client's socket buffer beyond `readAheadLimit`.
    public func readsAhead(bufferedBytes: Int) -> Bool {
        bufferedBytes < readAheadLimit
    }
}
