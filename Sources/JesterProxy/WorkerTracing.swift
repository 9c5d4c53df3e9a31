// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterTracing
import JesterTracingExport

/// A worker's tracing (`[tracing]`): the sampler, the id generator and the exporter that sends its spans.
///
/// One per worker: the exporter sends from a thread of its own, so a collector that is slow or gone costs the
/// event loop an append under a lock, or a counted drop when the bounded queue is full.
final class WorkerTracing {
    let sampler: TraceSampler
    /// Trace and span ids; touched only on the worker's event loop.
    var ids = TraceIDGenerator()
    let exporter: OTLPExporter
    /// Also told of each request's spans as they are queued for export: the embedded tests read the tree here.
    var spansFinished: (([Span]) -> Void)?

    /// Nil without `[tracing]` (or, never in practice, with an endpoint the loader would have refused).
    init?(_ settings: TracingSettings?) {
        guard let settings, let endpoint = try? OTLPEndpoint(parsing: settings.endpoint) else { return nil }
        sampler = TraceSampler(ratio: settings.sampleRatio, honoursParent: settings.parentBased)
        let host = ProcessInfo.processInfo.hostName
        exporter = OTLPExporter(configuration: .init(
            endpoint: endpoint, resource: .jester(instanceID: "\(host)/\(getpid())", version: JesterVersion.current),
            maxQueueSize: settings.maxQueueSize, maxBatchSize: settings.maxBatchSize,
            scheduleDelay: settings.scheduleDelay, exportTimeout: settings.exportTimeout,
            retry: OTLPRetryPolicy(maxElapsed: settings.maxRetryTime)))
    }

    /// Now, as the spans' clock: Unix nanoseconds.
    static var now: UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
