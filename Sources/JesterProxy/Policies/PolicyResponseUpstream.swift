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
/// upgraded connections pass through untouched. When the policies answer themselves (or deny, or fail), the
/// upstream's body is read to its end and dropped, so the connection goes back to the pool. Loop-confined.
final class PolicyResponseUpstream: ExchangeUpstream, UpstreamConnectionDelegate, @unchecked Sendable {
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
        /// A body-reading policy waits for the whole body.
        case buffering(head: HTTPHead, bytes: ByteBuffer, body: ByteBuffer)
        /// The adapter has the policies' own answer; the upstream's body is dropped.
        case dropping
    }

    private var mode = Mode.awaitingHead
    /// Whether a head went to the adapter (what `upstreamFailed` reports as the response having started).
    private var deliveredHead = false
    private var trailers: [HTTP2Field] = []
    /// The head the adapter got was rendered here (so its framing is this wrapper's, not the upstream's).
    private var rendered = false
    /// The adapter got the policies' own answer (a respond, a deny or a failure), not the target's: a status in
    /// the route's retry_on does not send the request to another target.
    private(set) var answeredItself = false

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

    var pool: UpstreamPool { inner.pool }
    var target: Int { inner.target }
    var targetDescription: String { inner.targetDescription }
    var isWritable: Bool { inner.isWritable }
    var completedExchanges: Int { inner.completedExchanges }
    var responseFramingIsSynthesized: Bool { rendered ? false : inner.responseFramingIsSynthesized }
    var responseWait: Int64? { inner.responseWait }
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
    func read() { inner.read() }
    func startTunnel() { inner.startTunnel() }
    func close() { inner.close() }
    func release(reusable: Bool) { inner.release(reusable: reusable) }
    func finished(failed: Bool) { inner.finished(failed: failed) }

    // MARK: The upstream's answer

    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer) {
        guard case .awaitingHead = mode, head.status >= 200, head.status != 101 else {
            if head.status == 101 { mode = .passing }
            deliveredHead = deliveredHead || head.status >= 200
            delegate?.upstreamResponseHead(head, bytes: bytes)
            return
        }
        let hasBody = !isHeadRequest && head.status != 204 && head.status != 304
        if hasBody, policies.contains(where: { $0.bodyLimit != nil }) {
            mode = .buffering(head: head, bytes: bytes, body: allocator.buffer(capacity: 0))
            return
        }
        decide(head: head, bytes: bytes, body: nil)
    }

    func upstreamResponseBody(_ body: ByteBuffer) {
        switch mode {
        case .passing, .awaitingHead:
            delegate?.upstreamResponseBody(body)
        case .buffering(let head, let bytes, var held):
            let limit = policies.compactMap(\.bodyLimit).min() ?? 0
            guard held.readableBytes + body.readableBytes <= limit else {
                mode = .dropping
                let policy = policies.first { $0.bodyLimit != nil }!
                let reason = "policy \(policy.name) failed at post_response: the response body is over its "
                    + "body_limit of \(limit) bytes"
                answer(LocalResponse.error(policy.settings.errorStatus), reason: reason)
                return
            }
            var piece = body
            held.writeBuffer(&piece)
            mode = .buffering(head: head, bytes: bytes, body: held)
        case .dropping:
            break
        }
    }

    func upstreamResponseTrailers(_ fields: [HTTP2Field]) {
        switch mode {
        case .passing, .awaitingHead: delegate?.upstreamResponseTrailers(fields)
        case .buffering: trailers = fields
        case .dropping: break
        }
    }

    func upstreamResponseEnd(reusable: Bool) {
        if case .buffering(let head, let bytes, let body) = mode {
            decide(head: head, bytes: bytes, body: body)
            if case .passing = mode, !trailers.isEmpty { delegate?.upstreamResponseTrailers(trailers) }
        }
        delegate?.upstreamResponseEnd(reusable: reusable)
    }

    func upstreamTunnelData(_ bytes: ByteBuffer) { delegate?.upstreamTunnelData(bytes) }

    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        delegate?.upstreamFailed(failure, responseStarted: deliveredHead)
    }

    func upstreamReadComplete() {
        switch mode {
        case .buffering, .dropping:
            // The adapter asks for more only as its client takes what it got; held or dropped bytes are read on.
            inner.read()
            if deliveredHead { delegate?.upstreamReadComplete() }
        case .passing, .awaitingHead:
            delegate?.upstreamReadComplete()
        }
    }

    func upstreamWritabilityChanged(isWritable: Bool) {
        delegate?.upstreamWritabilityChanged(isWritable: isWritable)
    }

    // MARK: Deciding

    /// Runs the policies on the final head (and the whole body when they read it) and hands the adapter what
    /// they decided. `body` nil: the body (if any) streams after the head.
    private func decide(head: HTTPHead, bytes: ByteBuffer, body: ByteBuffer?) {
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
                trace.traced(policy, .postResponse) { policy.run(.postResponse, context: context, metadata: &state.metadata) }
            } ?? policy.run(.postResponse, context: context, metadata: &state.metadata)
            switch outcome {
            case .proceedResponse(let mutations):
                if mutations.isEmpty { continue }
                if let problem = PolicyManagedFields.violation(in: mutations.fields, request: false) {
                    return failed(policy, problem)
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
                return failed(policy, "a request action at post_response")
            case .respond(let response):
                if let problem = PolicyManagedFields.violation(in: response.fields.map { .set($0) }, request: false) {
                    return failed(policy, problem)
                }
                return answer(
                    RequestExchange.localResponse(response), reason: "policy \(policy.name) answered at post_response")
            case .deny(let why):
                let reason = "policy \(policy.name) denied at post_response" + (why.isEmpty ? "" : ": \(why)")
                return answer(LocalResponse.error(policy.settings.denyStatus), reason: reason)
            case .failed(let failure):
                return failed(policy, failure.description)
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
            deliver(status: head.status, fields: fields, body: replacement, length: isHeadRequest ? nil : replacement.count)
            mode = bodyChanged && body == nil ? .dropping : .passing
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

    /// A policy failed on the response: the client gets its `error_status` (fail closed).
    private func failed(_ policy: WorkerPolicy, _ problem: String) {
        answer(
            LocalResponse.error(policy.settings.errorStatus),
            reason: "policy \(policy.name) failed at post_response: \(problem)")
    }

    /// The policies' own answer instead of the upstream's; the upstream's body (what is left of it) is dropped.
    private func answer(_ response: LocalResponse, reason: String) {
        state.failure = reason
        answeredItself = true
        mode = .dropping
        let fields = response.fields.map { PolicyField($0.name.lowercased(), $0.value) }
        deliver(
            status: response.status, fields: fields, body: Array(response.body.readableBytesView),
            length: isHeadRequest ? nil : response.body.readableBytes)
        if !isHeadRequest { delegate?.upstreamReadComplete() }
    }

    /// Hands the adapter a head rendered here (and a whole body when given).
    private func deliver(status: Int, fields: [PolicyField], body: [UInt8]?, length: Int?) {
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
        let error = bytes.withUnsafeReadableBytes { HTTPHeadParser().parseResponse($0, into: &head) }
        guard error == nil else {
            // (The decoder checked every name and value; this would be a field Jester itself got wrong.)
            return answer(LocalResponse.error(500), reason: "a policy's response could not be rendered")
        }
        rendered = true
        deliveredHead = true
        delegate?.upstreamResponseHead(head, bytes: bytes)
        if let body, !body.isEmpty, !isHeadRequest {
            delegate?.upstreamResponseBody(ByteBuffer(bytes: body))
        }
    }
}
