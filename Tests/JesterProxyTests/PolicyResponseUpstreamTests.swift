// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterCore
import JesterHTTP2
import JesterWasm
import Logging
import NIOCore
import Testing

@testable import JesterProxy

/// The post-response wrapper between an attempt's upstream and the adapter, without sockets: a scripted upstream
/// on one side, a recording adapter on the other, and the live tests' conformance module (built here with the
/// toolchain's clang) doing what the request's `x-do-response` field says.
@Suite struct PolicyResponseUpstreamTests {
    /// The conformance module, built once per test process.
    static let module: Data = {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("conformance-\(getpid()).wasm")
        let clang = FileManager.default.fileExists(atPath: "/opt/swift/usr/bin/clang") ? "/opt/swift/usr/bin/clang" : "clang"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            clang, "--target=wasm32", "-O2", "-ffreestanding", "-nostdlib", "-mbulk-memory", "-Wl,--no-entry",
            "-I", repository.appendingPathComponent("SDK/c").path, "-o", output.path,
            repository.appendingPathComponent("Tests/Live/policies/conformance.c").path,
            repository.appendingPathComponent("SDK/c/jester_policy.c").path,
        ]
        try? process.run()
        process.waitUntilExit()
        return (try? Data(contentsOf: output)) ?? Data()
    }()

    /// A wrapper whose policy reads bodies up to `bodyLimit` (nil: head only), for a request with `command`.
    static func wrapper(
        _ command: String, bodyLimit: Int64? = nil, head: Bool = false
    ) -> (PolicyResponseUpstream, ScriptedUpstream, RecordingAdapter) {
        var settings = PolicySettings(name: "conf", module: "conformance.wasm")
        settings.moduleBytes = module
        if let bodyLimit {
            settings.readsBody = true
            settings.bodyLimit = bodyLimit
        }
        let policy = WorkerPolicy(settings: settings, logger: Logger(label: "test"))
        let request = PolicyContext(method: head ? "HEAD" : "GET", requestHeaders: [PolicyField("x-do-response", command)])
        let inner = ScriptedUpstream()
        let wrapper = PolicyResponseUpstream(
            wrapping: inner, policies: [policy], state: PolicyRequestState(clientAddress: "192.0.2.1"),
            request: request, isHeadRequest: head, allocator: ByteBufferAllocator())
        let adapter = RecordingAdapter()
        wrapper.startExchange(
            delegate: adapter, requestHead: ByteBuffer(), chunkedBody: false, isHeadRequest: head, expectsUpgrade: false)
        return (wrapper, inner, adapter)
    }

    static func response(_ text: String) -> (HTTPHead, ByteBuffer) {
        let bytes = ByteBuffer(string: text)
        var head = HTTPHead()
        _ = bytes.withUnsafeReadableBytes { HTTPHeadParser().parseResponse($0, into: &head) }
        return (head, bytes)
    }

    static let ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n"

    @Test func aResponseNoPolicyChangesPassesAsItCame() throws {
        #expect(!Self.module.isEmpty, "clang could not build the conformance module")
        let (wrapper, _, adapter) = Self.wrapper("nothing")
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        wrapper.upstreamResponseBody(ByteBuffer(string: "0123456789"))
        wrapper.upstreamResponseEnd(reusable: true)
        #expect(adapter.events == ["head 200", "body 0123456789", "end reusable"])
        #expect(adapter.heads.first?.readableBytes == bytes.readableBytes)
    }

    @Test func aDenyAtTheHeadEndsTheAnswerAndClosesTheUpstreamMidBody() {
        let (wrapper, inner, adapter) = Self.wrapper("deny")
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        #expect(adapter.events == ["head 403", "body 403 Forbidden\n", "end not reusable"])
        #expect(inner.calls == ["close"])
        #expect(wrapper.answeredItself)
        // What the closed upstream still says reaches no one; the adapter's release does not touch it again.
        wrapper.upstreamResponseBody(ByteBuffer(string: "01234"))
        wrapper.upstreamFailed(.closedEarly, responseStarted: true)
        wrapper.release(reusable: false)
        #expect(adapter.events.count == 3 && inner.calls == ["close"])
    }

    @Test func nothingReachesAnAdapterThatLetGoInItsHeadCallback() {
        // A retry on the status: the adapter closes the upstream while the policy's answer is being handed over.
        let (wrapper, inner, adapter) = Self.wrapper("respond")
        adapter.onHead = { wrapper.close() }
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        wrapper.upstreamResponseEnd(reusable: true)
        #expect(adapter.events == ["head 299"])
        #expect(inner.calls == ["close"])
    }

    @Test func aHeldBodyOverTheLimitFailsClosedWithoutWaitingForTheRest() {
        let (wrapper, inner, adapter) = Self.wrapper("redact", bodyLimit: 8)
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        wrapper.upstreamResponseBody(ByteBuffer(string: "01234"))
        #expect(adapter.events.isEmpty)
        wrapper.upstreamReadComplete()
        #expect(inner.calls == ["read"])
        wrapper.upstreamResponseBody(ByteBuffer(string: "56789"))
        #expect(adapter.events == ["head 500", "body 500 Internal Server Error\n", "end not reusable"])
        #expect(inner.calls == ["read", "close"])
    }

    @Test func aHeldBodyIsChangedWholeAndSentWithItsLength() {
        let (wrapper, _, adapter) = Self.wrapper("redact", bodyLimit: 64)
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        wrapper.upstreamResponseBody(ByteBuffer(string: "ab12"))
        wrapper.upstreamResponseBody(ByteBuffer(string: "cd34ef"))
        wrapper.upstreamResponseEnd(reusable: true)
        #expect(adapter.events == ["head 200", "body ab##cd##ef", "end reusable"])
        #expect(adapter.headFields.first?["content-length"] == "10")
        #expect(adapter.headFields.first?["x-redacted"] == "1")
    }

    @Test func aNotModifiedAnswerCarriesNoBodyNorLength() {
        let (wrapper, _, adapter) = Self.wrapper("respond-304")
        let (head, bytes) = Self.response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        wrapper.upstreamResponseHead(head, bytes: bytes)
        wrapper.upstreamResponseEnd(reusable: true)
        // (Answered at the head, before the upstream's end: its connection is let go, not waited for.)
        #expect(adapter.events == ["head 304", "end not reusable"])
        #expect(adapter.headFields.first?["content-length"] == nil)
    }

    @Test func aFieldChangeGoesToTheResponsePhaseNotANewHead() {
        let (wrapper, _, adapter) = Self.wrapper("set-header late")
        let (head, bytes) = Self.response(Self.ok)
        wrapper.upstreamResponseHead(head, bytes: bytes)
        // The upstream's own head goes on; the change waits for `decideResponse` as the response phase's edit.
        #expect(adapter.heads.first.map { String(buffer: $0) } == Self.ok)
        wrapper.upstreamResponseEnd(reusable: true)
        #expect(adapter.events == ["head 200", "end reusable"])
    }

    @Test func interimAnswersAndFailuresBeforeAHeadPassThrough() {
        let (wrapper, _, adapter) = Self.wrapper("deny")
        let (interim, interimBytes) = Self.response("HTTP/1.1 100 Continue\r\n\r\n")
        wrapper.upstreamResponseHead(interim, bytes: interimBytes)
        wrapper.upstreamFailed(.closedEarly, responseStarted: false)
        #expect(adapter.events == ["head 100", "failed started=false"])
    }
}

/// An attempt's upstream that records what is asked of it.
final class ScriptedUpstream: ExchangeUpstream, @unchecked Sendable {
    var calls: [String] = []
    var pool: UpstreamPool { fatalError("not used") }
    var target: Int { 0 }
    var targetDescription: String { "127.0.0.1:1" }
    var isWritable: Bool { true }
    var completedExchanges: Int { 0 }
    var responseFramingIsSynthesized: Bool { false }
    var responseWait: Int64? { nil }
    var isCacheAnswer: Bool { false }
    func startExchange(
        delegate: any UpstreamConnectionDelegate, requestHead: ByteBuffer, chunkedBody: Bool, isHeadRequest: Bool,
        expectsUpgrade: Bool
    ) {}
    func sendBody(_ bytes: ByteBuffer) { calls.append("body") }
    func endRequest(trailers: [HTTP2Field]) { calls.append("end") }
    func writeTunnel(_ bytes: ByteBuffer) {}
    func flush() {}
    func read() { calls.append("read") }
    func startTunnel() {}
    func close() { calls.append("close") }
    func release(reusable: Bool) { calls.append("release") }
    func finished(failed: Bool) { calls.append("finished") }
}

/// A client adapter that records what reaches it.
final class RecordingAdapter: UpstreamConnectionDelegate {
    var events: [String] = []
    var heads: [ByteBuffer] = []
    var headFields: [[String: String]] = []
    var onHead: (() -> Void)?

    func upstreamResponseHead(_ head: HTTPHead, bytes: ByteBuffer) {
        events.append("head \(head.status)")
        heads.append(bytes)
        headFields.append(bytes.withUnsafeReadableBytes { raw in
            Dictionary(head.fields.map { field in
                (String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.name]), as: UTF8.self).lowercased(),
                    String(decoding: UnsafeRawBufferPointer(rebasing: raw[field.value]), as: UTF8.self))
            }, uniquingKeysWith: { first, _ in first })
        })
        onHead?()
    }
    func upstreamResponseBody(_ body: ByteBuffer) { events.append("body " + String(buffer: body)) }
    func upstreamResponseTrailers(_ fields: [HTTP2Field]) { events.append("trailers") }
    func upstreamResponseEnd(reusable: Bool) { events.append(reusable ? "end reusable" : "end not reusable") }
    func upstreamTunnelData(_ bytes: ByteBuffer) {}
    func upstreamFailed(_ failure: UpstreamFailure, responseStarted: Bool) {
        events.append("failed started=\(responseStarted)")
    }
    func upstreamReadComplete() {}
    func upstreamWritabilityChanged(isWritable: Bool) {}
}
