// SPDX-License-Identifier: Apache-2.0
import JesterCore
import JesterHTTP2
import JesterWasm
import NIOCore

/// The route's post-response policies, between an attempt's upstream and the client adapter: the upstream's final
/// response is held until the policies decided on it, then what they decided goes on to the adapter as if the
/// upstream had sent it, so the response phase after it (the route's field edits, compression, error pages, logs,
/// metrics) is the same for every client protocol and the adapters have no policy code.
///
/// A head-only policy decides when the head arrives, and the body streams on (or is replaced). A policy that
/// reads bodies (`read_body`) gets the whole body, held up to its `body_limit` (a longer one fails closed with
/// the policy's `error_status`), and the client gets the head with the body's final length. 1xx answers and
/// upgraded connections pass through untouched. When the policies answer themselves (or deny, or fail, or
/// replace the body at the head), the client's response ends with that answer and an upstream connection still
/// in the middle of its body is closed (reading an event stream to its end would never end). Once the adapter
/// lets go of this upstream (a retry on the status, an error page it intercepts), nothing more reaches it.
/// Loop-confined.
final class PolicyResponseUpstream: WrappingUpstream, UpstreamConnectionDelegate, @unchecked Sendable {
    let inner: any ExchangeUpstream
    private let policies: [WorkerPolicy]
    private let state: PolicyRequestState
    /// The request's part of every call's context.
    private let request: PolicyContext
    private let isHeadRequest: Bool
    private let allocator: ByteBufferAllocator
    private weak var delegate: (any UpstreamConnectionDelegate)?
    /// The request's trace, when it is recorded: each call gets a span.
    private let trace: ExchangeTrace?

    private enum Mode {
        /// Nothing decided yet: 1xx heads pass.
        case awaitingHead
        /// The response goes to the adapter as the upstream sends it (after a head the policies let through).
        case passing
        /// A body-reading policy waits for the whole body (held in `held`).
        case buffering(head: HTTPHead, bytes: ByteBuffer)
        /// The adapter has a whole answer from here (the policies' own, or a replaced body): the upstream's
        /// body is not the client's.
        case answered
    }

    private var mode = Mode.awaitingHead
    /// The body held for body-reading policies (a stored property, so appending does not copy it).
    private var held = ByteBuffer()
    /// Whether a head went to the adapter (what `upstreamFailed` reports as the response having started).
    private var deliveredHead = false
    private var trailers: [HTTP2Field] = []
    /// The head the adapter got was rendered here (so its framing is this wrapper's, not the upstream's).
    private var rendered = false
    /// The adapter got the policies' own answer (a respond, a deny or a failure), not the target's: a status in
    /// the route's retry_on does not send the request to another target.
    private(set) var answeredItself = false
    /// The adapter let go of this upstream (closed, released or finished it, possibly from inside one of the
    /// callbacks here: a retry on the status, an intercepted error page): nothing more goes to it.
    private var detached = false
    /// The wrapped upstream ended its response, or was closed here.
    private var innerEnded = false
    private var innerClosed = false
    /// The adapter was told the response ended.
    private var ended = false

    init(
        wrapping inner: any ExchangeUpstream, policies: [WorkerPolicy], state: PolicyRequestState,
        request: PolicyContext, isHeadRequest: Bool, allocator: ByteBufferAllocator, trace: ExchangeTrace? = nil
    ) {
        self.trace = trace
        self.inner = inner
        self.policies = policies
        self.state = state
        self.request = request
        self.isHeadRequest = isHeadRequest
        self.allocator = allocator
    }

    // MARK: ExchangeUpstream (the request side passes through)

    var responseFramingIsSynthesized: Bool { rendered ? false : inner.responseFramingIsSynthesized }
    var isCacheAnswer: Bool { inner.isCacheAnswer }

    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {
        self.delegate = delegate
        inner.startExchange(
            delegate: self, requestHead: requestHead, chunkedBody: chunkedBody, isHeadRequest: isHeadRequest,
            expectsUpgrade: expectsUpgrade)
    }

    func sendBody(_ bytes: ByteBuffer) { inner.sendBody(bytes) }
    func endRequest(trailers: [HTTP2Field]) { inner.endRequest(trailers: trailers) }
    func writeTunnel(_ bytes: ByteBuffer) { inner.writeTunnel(bytes) }
    func flush() { inner.flush() }
    func startTunnel() { inner.startTunnel() }

    func read() {
        if !innerClosed { inner.read() }
    }

    func close() {
        detached = true
        guard !innerClosed else { return }
        innerClosed = true
        inner.close()
    }

    func release(reusable: Bool) {
        detached = true
        guard !innerClosed else { return }
        inner.release(reusable: reusable)
    }

    func finished(failed: Bool) {
        detached = true
        guard !innerClosed else { return }
        inner.finished(failed: failed)
    }

    // MARK: The upstream's answer

    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer) {
        guard !detached else { return }
        guard case .awaitingHead = mode, head.status >= 200, head.status != 101 else {
            if head.status == 101 { mode = .passing }
            deliveredHead = deliveredHead || head.status >= 200
            delegate?.upstreamResponseHead(head, bytes: bytes)
            return
        }
        let hasBody = !isHeadRequest && head.status != 204 && head.status != 304
        if hasBody, policies.contains(where: { $0.bodyLimit != nil }) {
            mode = .buffering(head: head, bytes: bytes)
            held = allocator.buffer(capacity: 0)
            return
        }
        decide(head: head, bytes: bytes, body: nil, responseHasBody: hasBody)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        guard !detached else { return }
        switch mode {
        case .passing, .awaitingHead:
            delegate?.upstreamResponseBody(body)
        case .buffering:
            // The body must fit the smallest limit of the policies that read it: that policy refuses it.
            let readers = policies.filter { $0.bodyLimit != nil }
            let strictest = readers.min { $0.bodyLimit! < $1.bodyLimit! }!
            let limit = strictest.bodyLimit!
            guard held.readableBytes + body.readableBytes <= limit else {
                let reason = "policy \(strictest.name) failed at post_response: the response body is over its "
                    + "body_limit of \(limit) bytes"
                held = ByteBuffer()
                answer(LocalResponse.error(strictest.settings.errorStatus), reason: reason)
                return
            }
            var piece = body
            held.writeBuffer(&piece)
        case .answered:
            break
        }
    }

    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {
        guard !detached else { return }
        switch mode {
        case .passing, .awaitingHead: delegate?.upstreamResponseTrailers(fields)
        case .buffering: trailers = fields
        case .answered: break
        }
    }

    func upstreamResponseEnd(reusable: Bool) {
        innerEnded = true
        guard !detached else { return }
        if case .buffering(let head, let bytes) = mode {
            let body = held
            held = ByteBuffer()
            decide(head: head, bytes: bytes, body: body, responseHasBody: true)
            guard !detached else { return }
            if case .passing = mode, !trailers.isEmpty { delegate?.upstreamResponseTrailers(trailers) }
        }
        guard !detached, !ended else { return }
        ended = true
        delegate?.upstreamResponseEnd(reusable: reusable)
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) {
        guard !detached else { return }
        delegate?.upstreamTunnelData(bytes)
    }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        innerEnded = true
        guard !detached, !ended else { return }
        if case .answered = mode {
            // The adapter has its whole answer already; what the upstream does with the rest is not the client's.
            ended = true
            delegate?.upstreamResponseEnd(reusable: false)
            return
        }
        delegate?.upstreamFailed(failure, responseStarted: deliveredHead)
    }

    func upstreamReadComplete() {
        guard !detached else { return }
        switch mode {
        case .buffering:
            // The adapter asks for more only as its client takes what it got; held bytes are read on regardless,
            // bounded by the body limit.
            inner.read()
        case .answered:
            break
        case .passing, .awaitingHead:
            delegate?.upstreamReadComplete()
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        guard !detached else { return }
        delegate?.upstreamWritabilityChanged(isWritable: isWritable)
    }

    // MARK: Deciding

    /// Runs the policies on the final head (and the whole body when they read it) and hands the adapter what
    /// they decided. `body` nil: the body (if any, `responseHasBody`) streams after the head.
    private func decide(head: HTTPHead, bytes: ByteBuffer, body: ByteBuffer?, responseHasBody: Bool) {
        // (An earlier attempt's edit, whose response was retried, is not this one's.)
        state.responseEdit = nil
        // The fields as the policies see them: the upstream's (by index into its head) not dropped, then those
        // added. Kept as an edit of the upstream's head, so a change of fields alone reaches the client through
        // the response phase (`ResponseEdit`), without rendering the head again.
        let original = bytes.withUnsafeReadableBytes { raw in
            head.fields.map { field in
                PolicyField(
                    PolicyFieldName.lowercase(UnsafeRawBufferPointer(rebasing: raw[field.name])),
                    String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self))
            }
        }
        var dropped: [Int] = []
        var added: [PolicyField] = []
        func current() -> [PolicyField] {
            dropped.isEmpty && added.isEmpty
                ? original : original.indices.filter { !dropped.contains($0) }.map { original[$0] } + added
        }
        func drop(_ name: String) {
            for index in original.indices where original[index].name == name && !dropped.contains(index) {
                dropped.append(index)
            }
            added.removeAll { $0.name == name }
        }
        var replacement: [UInt8]? = body.map { Array($0.readableBytesView) }
        var changed = false
        var bodyChanged = false
        for policy in policies {
            var context = request
            context.status = head.status
            context.responseHeaders = current()
            context.responseBody = policy.bodyLimit == nil ? nil : replacement
            let state = self.state
            let outcome = trace.map { trace in
                trace.traced(policy, .postResponse) {
                    policy.run(.postResponse, context: context, metadata: &state.metadata, check: Self.problem)
                }
            } ?? policy.run(.postResponse, context: context, metadata: &state.metadata, check: Self.problem)
            switch outcome {
            case .proceedResponse(let mutations):
                if mutations.isEmpty { continue }
                if let problem = PolicyManagedFields.violation(in: mutations.fields, request: false) {
                    return failed(policy, problem, responseHasBody: responseHasBody)
                }
                for edit in mutations.fields {
                    switch edit {
                    case .set(let field):
                        drop(field.name.lowercased())
                        added.append(PolicyField(field.name.lowercased(), field.value))
                    case .add(let field):
                        added.append(PolicyField(field.name.lowercased(), field.value))
                    case .remove(let name):
                        drop(name.lowercased())
                    }
                }
                if let body = mutations.body {
                    replacement = body
                    bodyChanged = true
                }
                changed = true
            case .proceed:
                return failed(policy, "a request action at post_response", responseHasBody: responseHasBody)
            case .respond(let response):
                if let problem = PolicyManagedFields.violation(in: response.fields.map { .set($0) }, request: false) {
                    return failed(policy, problem, responseHasBody: responseHasBody)
                }
                return answer(
                    RequestExchange.localResponse(response), reason: "policy \(policy.name) answered at post_response",
                    responseHasBody: responseHasBody)
            case .deny(let why):
                let reason = "policy \(policy.name) denied at post_response" + (why.isEmpty ? "" : ": \(why)")
                return answer(
                    LocalResponse.error(policy.settings.denyStatus), reason: reason, responseHasBody: responseHasBody)
            case .failed(let failure):
                return failed(policy, failure.description, responseHasBody: responseHasBody)
            }
        }
        if body == nil, !changed {
            // Nothing changed: the upstream's own head, its body streaming after it.
            mode = .passing
            deliveredHead = true
            delegate?.upstreamResponseHead(head, bytes: bytes)
            return
        }
        if let replacement {
            // A held or replaced body goes whole, with its length, under a head rendered here.
            var fields = current()
            fields.removeAll { $0.name == "content-length" || $0.name == "transfer-encoding" }
            if body == nil, bodyChanged {
                // Replaced at the head: the upstream's body is not the client's.
                mode = .answered
                deliver(status: head.status, fields: fields, body: replacement, length: replacement.count)
                finishEarly(responseHasBody: responseHasBody)
            } else {
                mode = .passing
                deliver(status: head.status, fields: fields, body: replacement, length: replacement.count)
            }
        } else {
            // Changed fields, the body streaming after them: the upstream's head goes on, with the change as the
            // response phase's edit (fields left out by index, fields added), applied where every response's
            // fields are written, the route's own edits and compression after it.
            var edit = ResponseEdit()
            edit.droppedFields = dropped
            edit.addedFields = added.map { LocalResponse.Field($0.name, $0.value) }
            state.responseEdit = edit
            mode = .passing
            deliveredHead = true
            delegate?.upstreamResponseHead(head, bytes: bytes)
        }
    }

    /// What is refused in a post-response action before any of it is carried out (the call then counts as
    /// failed): fields Jester manages, a request action.
    private static func problem(in outcome: PolicyOutcome) -> String? {
        switch outcome {
        case .proceedResponse(let mutations): PolicyManagedFields.violation(in: mutations.fields, request: false)
        case .respond(let response): PolicyManagedFields.violation(in: response.fields.map { .set($0) }, request: false)
        case .proceed: "a request action at post_response"
        case .deny, .failed: nil
        }
    }

    /// A policy failed on the response: the client gets its `error_status` (fail closed).
    private func failed(_ policy: WorkerPolicy, _ problem: String, responseHasBody: Bool) {
        answer(
            LocalResponse.error(policy.settings.errorStatus),
            reason: "policy \(policy.name) failed at post_response: \(problem)", responseHasBody: responseHasBody)
    }

    /// The policies' own answer instead of the upstream's; the upstream's body (what is left of it) is not read.
    private func answer(_ response: LocalResponse, reason: String, responseHasBody: Bool = true) {
        state.failure = reason
        answeredItself = true
        mode = .answered
        let fields = response.fields.map { PolicyField($0.name.lowercased(), $0.value) }
        deliver(
            status: response.status, fields: fields, body: Array(response.body.readableBytesView),
            length: response.body.readableBytes)
        finishEarly(responseHasBody: responseHasBody)
    }

    /// The adapter has a whole answer from here while the upstream's body may still come: the response ends now,
    /// and the upstream connection, mid-body, is closed rather than read to its end for nothing (an event
    /// stream never ends). A response without a body ends by itself (`upstreamResponseEnd` follows).
    private func finishEarly(responseHasBody: Bool) {
        guard !detached, !innerEnded, responseHasBody, !ended else { return }
        innerClosed = true
        inner.close()
        ended = true
        delegate?.upstreamResponseEnd(reusable: false)
    }

    /// Hands the adapter a head rendered here (and a whole body when given). A 204 or 304 gets neither (RFC 9110
    /// §6.4.1: a body there would be read as the next response on an HTTP/1.1 connection), a HEAD no body but
    /// the length.
    private func deliver(status: Int, fields: [PolicyField], body: [UInt8]?, length: Int?) {
        let bodiless = status == 204 || status == 304
        let length = bodiless ? nil : length
        let body = bodiless || isHeadRequest ? nil : body
        var bytes = allocator.buffer(capacity: 128 + fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 4 })
        bytes.writeString("HTTP/1.1 \(status) \(HTTPStatus.reason(status))\r\n")
        for field in fields {
            bytes.writeString(field.name)
            bytes.writeStaticString(": ")
            bytes.writeString(field.value)
            bytes.writeStaticString("\r\n")
        }
        if let length { bytes.writeString("content-length: \(length)\r\n") }
        bytes.writeStaticString("\r\n")
        var head = HTTPHead()
        let error = bytes.withUnsafeReadableBytes { Self.parser.parseResponse($0, into: &head) }
        guard error == nil else {
            // (The decoder checked every name and value; this would be a field Jester itself got wrong.)
            return deliver(status: 500, fields: [], body: Array("500 Internal Server Error\n".utf8), length: 26)
        }
        rendered = true
        deliveredHead = true
        delegate?.upstreamResponseHead(head, bytes: bytes)
        // (The adapter may have let go of this upstream in its head callback: a retry, an error page.)
        if let body, !body.isEmpty, !detached {
            delegate?.upstreamResponseBody(ByteBuffer(bytes: body))
        }
    }

    /// Heads rendered here carry the upstream's fields: parsed with limits as large as the upstream reader's.
    private static let parser = HTTPHeadParser(
        limits: HTTPHeadParser.Limits(maxHeadSize: 1 << 20, maxURILength: 8192, maxFieldCount: 1000))
}
