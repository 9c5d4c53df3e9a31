// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterTracing
@testable import JesterTracingExport
import Synchronization
import Testing

// The exporter against a collector on loopback (a scripted OTLP/HTTP receiver in this process): batching,
// retries on throttling, giving up, and a collector that hangs, which must never make `enqueue` wait.

/// A minimal OTLP/HTTP receiver: answers each export with the next scripted response (then 200), or hangs.
private final class TestCollector: Sendable {
    enum Mode { case answer, hang }
    let port: Int
    private let listener: Int32
    private let script: Mutex<[String]>
    let bodies = Mutex<[[UInt8]]>([])
    private let held = Mutex<[Int32]>([])
    private let stopped = Mutex(false)

    init(mode: Mode, script: [String] = []) {
        self.script = Mutex(script)
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                _ = bind(listener, pointer, length)
                _ = getsockname(listener, pointer, &length)
            }
        }
        listen(listener, 16)
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve(mode) }
        thread.start()
    }

    private func serve(_ mode: Mode) {
        while true {
            let fd = accept(listener, nil, nil)
            // Closed here, not in `stop`: tests run in parallel, and a descriptor number closed under a blocked
            // accept can be reused by another test's listener, whose connections this loop would then take.
            guard fd >= 0, !stopped.withLock({ $0 }) else {
                if fd >= 0 { close(fd) }
                close(listener)
                for held in held.withLock({ $0 }) { close(held) }
                return
            }
            var request: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                if let body = Self.body(of: request) {
                    bodies.withLock { $0.append(body) }
                    break
                }
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { break }
                request += buffer[0..<count]
            }
            if mode == .hang {
                held.withLock { $0.append(fd) }
                continue
            }
            let status = script.withLock { $0.isEmpty ? "200 OK" : $0.removeFirst() }
            let response = Array("HTTP/1.1 \(status)\r\nContent-Length: 0\r\n\r\n".utf8)
            _ = response.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
        }
    }

    /// The body of a complete request (by Content-Length), or nil while incomplete.
    private static func body(of request: [UInt8]) -> [UInt8]? {
        let end: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = request.indices.first(where: { request[$0...].starts(with: end) }) else { return nil }
        let head = String(decoding: request[..<headEnd], as: UTF8.self).lowercased()
        guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
            let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
        else { return nil }
        let start = headEnd + 4
        return request.count >= start + length ? Array(request[start..<start + length]) : nil
    }

    /// Stops listening (connections are refused from now on) and ends the thread.
    func stop() {
        stopped.withLock { $0 = true }
        shutdown(listener, Int32(SHUT_RDWR))
    }

    var endpoint: OTLPEndpoint { OTLPEndpoint(host: "127.0.0.1", port: port) }
}

/// The fields of a protobuf message: (number, payload of length-delimited fields).
private func fields(_ bytes: ArraySlice<UInt8>) -> [(Int, ArraySlice<UInt8>)] {
    var result: [(Int, ArraySlice<UInt8>)] = []
    var index = bytes.startIndex
    func varint() -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
    }
    while index < bytes.endIndex {
        let key = varint()
        switch key & 7 {
        case 0: _ = varint()
        case 1: index += 8
        case 5: index += 4
        default:
            let length = Int(varint())
            result.append((Int(key >> 3), bytes[index..<index + length]))
            index += length
        }
    }
    return result
}

/// The spans' ids in an ExportTraceServiceRequest body.
private func spanIDs(in body: [UInt8]) -> [[UInt8]] {
    fields(body[...]).filter { $0.0 == 1 }.flatMap { resourceSpans in
        fields(resourceSpans.1).filter { $0.0 == 2 }.flatMap { scopeSpans in
            fields(scopeSpans.1).filter { $0.0 == 2 }.map { span in Array(fields(span.1).first { $0.0 == 2 }!.1) }
        }
    }
}

private func spans(_ count: Int) -> [Span] {
    var ids = TraceIDGenerator(seed: 9)
    let trace = ids.traceID()
    return (0..<count).map { _ in
        Span(traceID: trace, spanID: ids.spanID(), parentSpanID: nil, name: "GET", kind: .server, startNanos: 1,
             endNanos: 2)
    }
}

private func configuration(
    _ endpoint: OTLPEndpoint, queue: Int = 2048, batch: Int = 10, timeout: Duration = .seconds(5),
    retry: OTLPRetryPolicy = OTLPRetryPolicy(initialBackoff: .milliseconds(10))
) -> OTLPExporter.Configuration {
    OTLPExporter.Configuration(
        endpoint: endpoint, resource: .jester(instanceID: "test", version: "0"), maxQueueSize: queue,
        maxBatchSize: batch, scheduleDelay: .milliseconds(50), exportTimeout: timeout, retry: retry)
}

@Test func spansGoInBatchesAndEveryOneArrives() {
    let collector = TestCollector(mode: .answer)
    defer { collector.stop() }
    let exporter = OTLPExporter(configuration: configuration(collector.endpoint))
    let sent = spans(25)
    for span in sent { #expect(exporter.enqueue([span])) }
    #expect(exporter.shutdown(timeout: .seconds(10)))
    let bodies = collector.bodies.withLock { $0 }
    #expect(bodies.allSatisfy { spanIDs(in: $0).count <= 10 })
    #expect(bodies.flatMap(spanIDs).sorted { $0.lexicographicallyPrecedes($1) }
        == sent.map(\.spanID.bytes).sorted { $0.lexicographicallyPrecedes($1) })
    let statistics = exporter.statistics
    #expect(statistics.exported == 25 && statistics.dropped == 0 && statistics.failed == 0)
    #expect(statistics.requests == bodies.count && statistics.retries == 0)
}

@Test func throttlingIsRetriedUntilTheCollectorTakesTheBatch() {
    let collector = TestCollector(mode: .answer, script: ["503 Service Unavailable", "429 Too Many Requests"])
    defer { collector.stop() }
    let exporter = OTLPExporter(configuration: configuration(collector.endpoint))
    exporter.enqueue(spans(3))
    // Shut down at once: the retries still happen, within the shutdown's deadline.
    #expect(exporter.shutdown(timeout: .seconds(10)))
    let statistics = exporter.statistics
    #expect(statistics.exported == 3 && statistics.retries == 2 && statistics.requests == 3)
    // The same batch each time.
    let bodies = collector.bodies.withLock { $0 }
    #expect(bodies.count == 3 && Set(bodies).count == 1)
}

@Test func aRefusedBatchIsGivenUpAndCounted() {
    let collector = TestCollector(mode: .answer, script: ["400 Bad Request"])
    defer { collector.stop() }
    let exporter = OTLPExporter(configuration: configuration(collector.endpoint))
    exporter.enqueue(spans(4))
    #expect(exporter.shutdown(timeout: .seconds(10)))
    #expect(exporter.statistics.failed == 4 && exporter.statistics.exported == 0 && exporter.statistics.retries == 0)
}

@Test func anUnreachableCollectorIsRetriedWithinTheBoundThenGivenUp() {
    let collector = TestCollector(mode: .answer)
    let endpoint = collector.endpoint
    collector.stop()  // nothing listens on the port now
    let exporter = OTLPExporter(configuration: configuration(
        endpoint, retry: OTLPRetryPolicy(initialBackoff: .milliseconds(10), maxElapsed: .milliseconds(300))))
    exporter.enqueue(spans(2))
    let deadline = Date().addingTimeInterval(10)
    while exporter.statistics.failed == 0, Date() < deadline { usleep(10_000) }
    #expect(exporter.statistics.failed == 2 && exporter.statistics.retries >= 2)
    #expect(exporter.shutdown(timeout: .seconds(5)))
}

@Test func aHangingCollectorNeverMakesEnqueueWait() {
    let collector = TestCollector(mode: .hang)
    defer { collector.stop() }
    let exporter = OTLPExporter(
        configuration: configuration(collector.endpoint, queue: 100, batch: 10, timeout: .seconds(3)))
    let clock = ContinuousClock()
    var slowest: Duration = .zero
    for span in spans(5_000) {
        let took = clock.measure { exporter.enqueue([span]) }
        slowest = max(slowest, took)
        if collector.bodies.withLock({ $0.isEmpty }) { usleep(1_000) }  // let the first export start and hang
    }
    // The exporter is stuck in an export, the queue is full: every further span is dropped, at once.
    #expect(collector.bodies.withLock { $0.count } == 1)
    #expect(slowest < .milliseconds(50), "slowest enqueue \(slowest)")
    let statistics = exporter.statistics
    #expect(statistics.dropped >= 4_800 && statistics.exported == 0)
    // Shutdown is bounded by its timeout, not by the hung export (which its deadline cuts).
    let shutdownTook = clock.measure { #expect(!exporter.shutdown(timeout: .milliseconds(200))) }
    #expect(shutdownTook < .seconds(1))
}

@Test(arguments: [
    ("HTTP/1.1 200 OK\r\n\r\n", Optional(200), Duration?.none),
    ("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\r\n", 429, .seconds(7)),
    ("HTTP/1.0 503 x\r\nretry-after:  2 \r\nX: y\r\n\r\nbody", 503, .seconds(2)),
    ("HTTP/1.1 503 x\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n\r\n", 503, nil),
    ("HTTP/1.1 200 OK\r\n", nil, nil),
    ("SSH-2.0-OpenSSH\r\n\r\n", nil, nil),
    ("HTTP/1.1 20 OK\r\n\r\n", nil, nil),
])
func responseHeadsAreReadForStatusAndRetryAfter(text: String, status: Int?, retryAfter: Duration?) {
    let head = OTLPResponseHead(parsing: Array(text.utf8))
    #expect(head?.status == status)
    #expect(head?.retryAfter == retryAfter)
}
