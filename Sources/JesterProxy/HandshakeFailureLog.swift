// SPDX-License-Identifier: Apache-2.0
import JesterLogging
import JesterTLS
import Logging
import NIOCore

/// Logs a worker's failed client TLS handshakes without flooding the journal: each one at debug (client and
/// reason), and at most one warning a minute summing them up (`WarningSummary` decides).
///
/// Port scans, clients that distrust the certificate and plain HTTP sent to a TLS port are common, and one
/// warning each made a scan a flood of warnings. Loop-confined to the worker's event loop, like `WorkerRuntime`.
final class HandshakeFailureLog: @unchecked Sendable {
    private let eventLoop: any EventLoop
    private var summary: WarningSummary
    private let logger = Logger(component: .tls)

    /// `interval`: the least time between two warnings, in seconds.
    init(eventLoop: any EventLoop, interval: Double = 60) {
        self.eventLoop = eventLoop
        summary = WarningSummary(interval: interval)
    }

    /// A client's handshake failed with `error`.
    func failed(client: String, error: TLSError) {
        failed(client: client, reason: error.shortReason, detail: error.description)
    }

    /// A client's handshake failed for `reason` (short, the summary's key), with `detail` for the debug line.
    func failed(client: String, reason: String, detail: String) {
        logger.debug("TLS handshake failed", metadata: ["client": .string(client), "reason": .string(reason),
            "error": .string(detail)])
        switch summary.record(reason: reason, now: now) {
        case .report(let report): warn(report)
        case .scheduleReport(let at):
            eventLoop.scheduleTask(in: .nanoseconds(Int64(max(0, at - now) * 1e9))) { [self] in
                if let report = summary.reportDue(now: now) { warn(report) }
            }
        case .none: break
        }
    }

    private var now: Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// The warning: `failures` since the previous one, over `seconds`, and the commonest `reasons` with counts.
    private func warn(_ report: WarningSummary.Report) {
        let reasons = Dictionary(uniqueKeysWithValues: report.reasons.map {
            ($0.reason, Logger.MetadataValue.stringConvertible($0.count))
        })
        logger.warning(
            "TLS handshake failed (summed up: one such warning every \(Int(summary.interval))s at most, each at debug)",
            metadata: [
                "failures": .stringConvertible(report.count),
                "seconds": .stringConvertible(Int(report.seconds.rounded())),
                "reasons": .dictionary(reasons),
            ])
    }
}
