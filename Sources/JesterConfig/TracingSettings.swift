// SPDX-License-Identifier: Apache-2.0
import JesterTracing

/// `[tracing]`: where spans go and how many are recorded (jester-pipeline(7), TRACING).
///
/// Off unless the table is there. Every worker exports its own spans from a thread of its own, so a collector
/// that is slow or down costs requests nothing: spans that do not fit the queue are dropped and counted.
public struct TracingSettings: Sendable, Codable, Equatable {
    /// The OTLP/HTTP endpoint (protobuf), e.g. `http://127.0.0.1:4318/v1/traces`.
    public var endpoint: String
    /// The share of new traces recorded (0…1).
    public var sampleRatio: Double
    /// Follow the caller's sampled flag when its `traceparent` is valid.
    public var parentBased: Bool
    public var maxQueueSize: Int
    public var maxBatchSize: Int
    public var scheduleDelay: Duration
    public var exportTimeout: Duration
    public var maxRetryTime: Duration

    public init(
        endpoint: String, sampleRatio: Double = 0.01, parentBased: Bool = true, maxQueueSize: Int = 2048,
        maxBatchSize: Int = 512, scheduleDelay: Duration = .seconds(5), exportTimeout: Duration = .seconds(10),
        maxRetryTime: Duration = .seconds(30)
    ) {
        self.endpoint = endpoint
        self.sampleRatio = sampleRatio
        self.parentBased = parentBased
        self.maxQueueSize = maxQueueSize
        self.maxBatchSize = maxBatchSize
        self.scheduleDelay = scheduleDelay
        self.exportTimeout = exportTimeout
        self.maxRetryTime = maxRetryTime
    }
}

extension ConfigDecoder {
    /// `[tracing]`, with the endpoint parsed as the exporter will parse it (an https URL, which the exporter
    /// cannot speak, is refused here rather than failing in every worker).
    mutating func decodeTracing(_ node: ConfigNode) -> TracingSettings? {
        guard var table = TableReader(node, ConfigSchema.tracing, decoder: &self) else { return nil }
        let endpoint = table.string("endpoint", decoder: &self)
        if let endpoint {
            do {
                _ = try OTLPEndpoint(parsing: endpoint)
            } catch {
                report(table.location(of: "endpoint"), "'endpoint' of [tracing]: \(error)")
            }
        }
        var settings = TracingSettings(endpoint: endpoint ?? "")
        if let ratio = table.number("sample_ratio", decoder: &self) { settings.sampleRatio = ratio }
        if let parentBased = table.boolean("parent_based", decoder: &self) { settings.parentBased = parentBased }
        if let size = table.integer("max_queue_size", decoder: &self) { settings.maxQueueSize = size }
        if let size = table.integer("max_batch_size", decoder: &self) { settings.maxBatchSize = size }
        if let delay = table.duration("schedule_delay", decoder: &self) { settings.scheduleDelay = delay }
        if let timeout = table.duration("export_timeout", decoder: &self) { settings.exportTimeout = timeout }
        if let time = table.duration("max_retry_time", decoder: &self) { settings.maxRetryTime = time }
        table.finish(decoder: &self)
        return settings
    }
}
