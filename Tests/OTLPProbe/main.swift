// SPDX-License-Identifier: Apache-2.0
// Drives JesterTracing's recorder and OTLPExporter for the live tier (Tests/Live/test_otlp.py) while nothing in
// the worker exports spans yet.
//
//   jester-otlp-probe ENDPOINT traces N    records N requests' traces (the first continues a caller's trace),
//                                          exports them, and prints what it sent and the exporter's counts
//   jester-otlp-probe ENDPOINT stalled N   enqueues N spans at a collector that does not answer and prints the
//                                          slowest enqueue, the counts and how long shutdown took
//
// Output: one JSON object on standard output.
import Foundation
import JesterTracing
import JesterTracingExport

let arguments = CommandLine.arguments
guard arguments.count == 4, let count = Int(arguments[3]) else {
    FileHandle.standardError.write(Data("usage: jester-otlp-probe ENDPOINT traces|stalled N\n".utf8))
    exit(2)
}
let endpoint: OTLPEndpoint
do {
    endpoint = try OTLPEndpoint(parsing: arguments[1])
} catch {
    FileHandle.standardError.write(Data("jester-otlp-probe: \(error)\n".utf8))
    exit(2)
}
let resource = OTLPResource.jester(instanceID: "probe-\(getpid())", version: "0.0.0-probe")

/// Unix nanoseconds now.
func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_REALTIME, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func counts(_ statistics: OTLPExporter.Statistics) -> [String: Int] {
    ["exported": statistics.exported, "dropped": statistics.dropped, "failed": statistics.failed,
     "requests": statistics.requests, "retries": statistics.retries]
}

var ids = TraceIDGenerator()
let sampler = TraceSampler(ratio: 1)

switch arguments[2] {
case "traces":
    let exporter = OTLPExporter(
        configuration: .init(
            endpoint: endpoint, resource: resource, maxBatchSize: 16, scheduleDelay: .milliseconds(200),
            exportTimeout: .seconds(5)))
    var traces: [[String: Any]] = []
    let caller = TraceContext(traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                              tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")!
    for number in 0..<count {
        let start = now()
        var trace = RequestTrace(
            incoming: number == 0 ? caller : nil, sampler: sampler, ids: &ids, name: "GET", startNanos: start,
            attributes: HTTPSpanAttributes.server(
                method: "GET", scheme: "http", path: "/probe/\(number)", host: "localhost", port: 8080,
                protocolVersion: "1.1", clientAddress: "127.0.0.1"))
        let routing = trace.beginRouting(at: start + 1_000, ids: &ids)
        trace.endRouting(routing, at: start + 2_000, outcome: .matched, route: "probe", action: .proxy)
        let filter = trace.beginFilter(name: "basic_auth", kind: "basic_auth", at: start + 3_000, ids: &ids)
        trace.endFilter(filter, at: start + 4_000, outcome: .proceed)
        var upstreams: [String] = []
        for (attempt, status) in [(1, 503), (2, 200)] {
            let begun = trace.beginUpstreamAttempt(
                "GET", at: start + UInt64(attempt) * 10_000, ids: &ids,
                attributes: HTTPSpanAttributes.client(method: "GET", upstream: "app", address: "127.0.0.1",
                                                      port: 9000 + attempt, attempt: attempt, protocolVersion: "1.1"))
            upstreams.append(begun.upstream.traceparent)
            trace.endUpstreamAttempt(begun.handle, at: start + UInt64(attempt) * 10_000 + 5_000, statusCode: status)
        }
        let spans = trace.finish(at: start + 50_000, statusCode: 200)
        exporter.enqueue(spans)
        traces.append(["trace_id": trace.context.traceID.description, "server_span": trace.context.spanID.description,
                       "remote_parent": trace.remoteParent?.description ?? NSNull(), "upstream_traceparents": upstreams,
                       "spans": spans.count])
    }
    let finished = exporter.shutdown(timeout: .seconds(20))
    printJSON(["traces": traces, "statistics": counts(exporter.statistics), "shutdown_complete": finished])
case "stalled":
    let exporter = OTLPExporter(
        configuration: .init(endpoint: endpoint, resource: resource, maxQueueSize: 256, maxBatchSize: 32,
                             scheduleDelay: .milliseconds(50), exportTimeout: .seconds(2)))
    var slowest: Duration = .zero
    var total: Duration = .zero
    let clock = ContinuousClock()
    let trace = RequestTrace(incoming: nil, sampler: sampler, ids: &ids, name: "GET", startNanos: now())
    var spanTemplate = Span(traceID: trace.context.traceID, spanID: trace.context.spanID, parentSpanID: nil,
                            name: "GET", kind: .server, startNanos: now(), endNanos: now() + 1)
    for _ in 0..<count {
        spanTemplate.spanID = ids.spanID()
        let batch = [spanTemplate]
        let took = clock.measure { exporter.enqueue(batch) }
        slowest = max(slowest, took)
        total += took
        // Spread the spans over time, so that the exporter is inside a stalled export while most arrive.
        usleep(100)
    }
    let shutdownStarted = clock.now
    let finished = exporter.shutdown(timeout: .milliseconds(500))
    let shutdownTook = clock.now - shutdownStarted
    func microseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e6 + Double(duration.components.attoseconds) / 1e12
    }
    printJSON(["slowest_enqueue_us": microseconds(slowest), "mean_enqueue_us": microseconds(total) / Double(count),
               "statistics": counts(exporter.statistics), "shutdown_complete": finished,
               "shutdown_us": microseconds(shutdownTook)])
default:
    FileHandle.standardError.write(Data("jester-otlp-probe: unknown mode \(arguments[2])\n".utf8))
    exit(2)
}
