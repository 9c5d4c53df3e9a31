// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import JesterControlPlane

// The stream's protobuf messages (Proto/jester/controlplane/v1/snapshot_stream.proto) to and from the pure
// values both state machines speak (`SnapshotPush`, `SnapshotStreamReply`). No generated type leaves this module.

extension SnapshotStreamReply {
    /// The reply a data plane's message carries; nil for a message with no kind this version knows.
    init?(_ message: Jester_Controlplane_V1_DataPlaneMessage) {
        switch message.kind {
        case .hello(let hello):
            self = .hello(
                node: hello.node, running: hello.hasRunning ? Int(hello.running) : nil,
                store: hello.runningStore.isEmpty ? nil : hello.runningStore,
                jesterVersion: hello.jesterVersion.isEmpty ? nil : hello.jesterVersion)
        case .ack(let ack):
            self = .ack(version: Int(ack.version), nonce: ack.nonce)
        case .nack(let nack):
            self = .nack(kept: nack.hasKept ? Int(nack.kept) : nil, nonce: nack.nonce, detail: nack.detail)
        case .report(let report):
            self = .report(DataPlaneReport(
                running: report.hasRunning ? Int(report.running) : nil, healthy: report.healthy,
                workers: Int(report.workers), connections: Int(clamping: report.connections),
                requests: report.requests))
        case nil:
            return nil
        }
    }

    var message: Jester_Controlplane_V1_DataPlaneMessage {
        var message = Jester_Controlplane_V1_DataPlaneMessage()
        switch self {
        case .hello(let node, let running, let store, let jesterVersion):
            var hello = Jester_Controlplane_V1_Hello()
            hello.node = node
            if let running { hello.running = Int64(running) }
            hello.runningStore = store ?? ""
            hello.jesterVersion = jesterVersion ?? JesterVersion.current
            message.hello = hello
        case .ack(let version, let nonce):
            var ack = Jester_Controlplane_V1_Ack()
            ack.version = Int64(version)
            ack.nonce = nonce
            message.ack = ack
        case .nack(let kept, let nonce, let detail):
            var nack = Jester_Controlplane_V1_Nack()
            if let kept { nack.kept = Int64(kept) }
            nack.nonce = nonce
            nack.detail = detail
            message.nack = nack
        case .report(let summary):
            var report = Jester_Controlplane_V1_Report()
            if let running = summary.running { report.running = Int64(running) }
            report.healthy = summary.healthy
            report.workers = UInt32(clamping: summary.workers)
            report.connections = UInt64(clamping: summary.connections)
            report.requests = summary.requests
            message.report = report
        }
        return message
    }
}

extension SnapshotPush {
    init?(_ message: Jester_Controlplane_V1_ControlPlaneMessage) {
        guard case .snapshot(let snapshot) = message.kind else { return nil }
        self.init(
            version: Int(snapshot.version), nonce: snapshot.nonce, document: Array(snapshot.document),
            store: snapshot.store)
    }

    var message: Jester_Controlplane_V1_ControlPlaneMessage {
        var snapshot = Jester_Controlplane_V1_Snapshot()
        snapshot.version = Int64(version)
        snapshot.nonce = nonce
        snapshot.document = Data(document)
        snapshot.store = store
        var message = Jester_Controlplane_V1_ControlPlaneMessage()
        message.snapshot = snapshot
        return message
    }
}
