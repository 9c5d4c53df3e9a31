// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterControlPlane
import JesterControlPlaneGRPC
import JesterLogging
import Logging
import NIOCore

/// A control plane's snapshot the master serves (or is applying), with its version.
public struct AppliedSnapshot: Sendable, Equatable {
    public var version: Int
    public var snapshot: ConfigSnapshot
    /// The control plane store it came from (nil: not known, a state file from before stores had one).
    public var store: String?

    public init(version: Int, document: [UInt8], store: String? = nil) {
        self.version = version
        self.store = store
        snapshot = ConfigSnapshot(version: String(version), document: document)
    }
}

/// The master's side of the control plane (`[control_plane]`, issue 25): `ControlPlaneLink` decides, this carries
/// its actions out. Only the master talks to the control plane; a pushed version is applied as a reload (a new
/// generation beside the serving one; a version that fails to load or to start is refused and the serving one
/// stays), and the last one applied is kept in `state_file` (`LastGoodSnapshot`).
extension Master {
    /// The configuration to start with: the file, with the control plane's last good version over it when the
    /// file names a control plane and that version still loads; a warning says why it was not used.
    public static func loadAtStart(
        _ path: String, loader: ConfigLoader
    ) -> (configuration: Result<Configuration, ConfigError>, snapshot: AppliedSnapshot?, warning: String?) {
        LastGoodSnapshot.load(path, with: loader) { path, snapshot in
            do throws(ConfigError) {
                if let snapshot { return .success(try loader.load(file: path, snapshot: snapshot)) }
                return .success(try loader.load(file: path))
            } catch {
                return .failure(error)
            }
        }
    }

    func startControlPlaneLink() {
        guard let settings = configuration.controlPlane else { return }
        controlPlaneLinkEpoch += 1
        controlPlaneAddressIndex = 0  // the first replica first, as the file lists them
        let firstLink = controlPlaneLinkStarted == false
        controlPlaneLinkStarted = true
        controlPlaneLink = ControlPlaneLink(
            node: settings.node ?? Self.hostName(), running: snapshot?.version, runningStore: snapshot?.store)
        controlPlaneEvent(.start)
        if firstLink { scheduleControlPlaneReport() }
    }

    /// Feeds the link one event and carries out what it decides. On the master's loop.
    func controlPlaneEvent(_ event: ControlPlaneLink.Event) {
        guard var link = controlPlaneLink else { return }
        let actions = link.handle(event)
        controlPlaneLink = link
        for action in actions { perform(action) }
    }

    private func perform(_ action: ControlPlaneLink.Action) {
        switch action {
        case .connect:
            controlPlaneStreamSerial += 1
            let serial = controlPlaneStreamSerial
            // Replicas in turn: the one after the last whenever a stream ended or could not be opened.
            let settings = configuration.controlPlane
            let address = settings.map { $0.addresses[controlPlaneAddressIndex % $0.addresses.count] }
            guard let settings, let address, let port = Int(exactly: address.port) else {
                eventLoop.execute { self.streamEvent(.ended(reason: "no [control_plane]", opened: false), serial: serial) }
                return
            }
            controlPlaneState = "connecting"
            let tls = settings.tls.map { StreamTLSFiles(certificate: $0.cert, key: $0.key, ca: $0.ca) }
            // Through the inbox: gRPC's threads outlive the master's loop, and a task posted to a closed loop
            // is an error.
            let inbox = self.inbox!
            controlPlaneAddress = address.description
            controlPlaneStream = SnapshotStreamClient(host: address.host, port: port, tls: tls) {
                [weak self] event in
                guard let master = self else { return }
                inbox.post { master.streamEvent(event, serial: serial) }
            }
        case .send(let reply):
            controlPlaneStream?.send(reply)
        case .apply(let push):
            // Not inside the transaction that just ended (its commit is still being carried out).
            eventLoop.execute { self.applySnapshot(push) }
        case .persist(let version, let document, let store):
            do {
                try LastGoodSnapshot.write(AppliedSnapshot(version: version, document: document, store: store),
                    to: configuration.controlPlane?.stateFile ?? ControlPlaneSettings.defaultStateFile)
            } catch {
                logger.error("cannot keep the last good snapshot", metadata: ["error": "\(error)"])
            }
        case .scheduleReconnect(let delay):
            controlPlaneState = "waiting to reconnect (\(controlPlaneState))"
            let epoch = controlPlaneLinkEpoch
            eventLoop.scheduleTask(in: .nanoseconds(Int64(delay.components.seconds) * 1_000_000_000
                + delay.components.attoseconds / 1_000_000_000)) {
                // A link restarted meanwhile has its own timers.
                if epoch == self.controlPlaneLinkEpoch { self.controlPlaneEvent(.timerFired) }
            }
        case .closeStream:
            // Its own `ended` event is not a loss: the serial no longer matches.
            controlPlaneStreamSerial += 1
            controlPlaneStream?.close()
            controlPlaneStream = nil
        }
    }

    /// What the stream reported, if it is still the current one.
    private func streamEvent(_ event: SnapshotStreamClient.Event, serial: Int) {
        guard serial == controlPlaneStreamSerial else { return }
        switch event {
        case .opened:
            controlPlaneState = "connected"
            controlPlaneEvent(.connected)
            eventLoop.scheduleTask(in: .seconds(10)) {
                if serial == self.controlPlaneStreamSerial { self.controlPlaneEvent(.streamStable) }
            }
        case .push(let push):
            controlPlaneEvent(.received(push))
        case .ended(let reason, let opened):
            controlPlaneStream = nil
            controlPlaneAddressIndex += 1
            controlPlaneState = reason
            if opened {
                logger.warning("the control plane's stream ended", metadata: ["reason": "\(reason)"])
                controlPlaneEvent(.streamLost(reason: reason, jitter: Double.random(in: 0..<1)))
            } else {
                logger.info("cannot reach the control plane", metadata: ["reason": "\(reason)"])
                controlPlaneEvent(.connectFailed(reason: reason, jitter: Double.random(in: 0..<1)))
            }
        }
    }

    /// Applies a pushed version as a reload; one that finds a transaction under way waits for it.
    private func applySnapshot(_ push: SnapshotPush) {
        // Only while the link that asked for it still wants it (a reload meanwhile may have removed or changed
        // [control_plane], which restarts or ends the link).
        guard !stopping, configuration.controlPlane != nil, let link = controlPlaneLink, link.state != .idle,
            link.applying?.push.nonce == push.nonce
        else { return }
        guard machine.transaction == nil, pendingSnapshot == nil else {
            eventLoop.scheduleTask(in: .milliseconds(200)) { self.applySnapshot(push) }
            return
        }
        logger.info("applying the control plane's version", metadata: ["version": "\(push.version)"])
        pendingSnapshot = AppliedSnapshot(version: push.version, document: push.document, store: push.store)
        reload(replyTo: SnapshotApplyTarget(master: self, nonce: push.nonce))
    }

    /// The reload transaction's result for a pushed version.
    func snapshotApplied(nonce: String, result: ReloadResult?, failure: String?) {
        let applied = pendingSnapshot
        pendingSnapshot = nil
        // A transaction cut short by a stop says nothing about the version: no ACK, no NACK.
        guard !stopping else { return }
        if let result, result.success, let applied {
            // A reload that removed [control_plane] serves the file alone from the next reload on.
            if configuration.controlPlane != nil { snapshot = applied }
            logger.info("the control plane's version serves", metadata: ["version": "\(applied.version)"])
            controlPlaneEvent(.applied(nonce: nonce))
        } else {
            let detail = failure ?? result.map { $0.errors.joined(separator: "\n") } ?? "the reload failed"
            logger.warning("the control plane's version was refused; the configuration in use stays", metadata: [
                "version": "\(applied?.version ?? -1)", "detail": "\(detail)",
            ])
            controlPlaneEvent(.applyRefused(nonce: nonce, detail: detail.isEmpty ? "the reload failed" : detail))
        }
    }

    /// Every ten seconds on an open stream: the version served, whether the serving generation is whole, and the
    /// workers' counters.
    private func scheduleControlPlaneReport() {
        eventLoop.scheduleTask(in: .seconds(10)) {
            guard !self.stopping else { return }
            defer { self.scheduleControlPlaneReport() }
            guard let link = self.controlPlaneLink else { return }
            if case .streaming = link.state {
                let serving = self.workers.values.filter { $0.generation == self.generation }
                self.controlPlaneStream?.send(.report(DataPlaneReport(
                    running: link.running, healthy: self.machine.transaction == nil && serving.count == self.workerCount,
                    workers: serving.count, connections: serving.reduce(0) { $0 + $1.stats.connections },
                    requests: UInt64(serving.reduce(0) { $0 + max(0, $1.stats.requests) }))))
            }
        }
    }

    func stopControlPlaneLink() {
        controlPlaneEvent(.stop)
    }

    /// After a reload or upgrade committed: a `[control_plane]` that changed (address, node, TLS files) restarts
    /// the link; one that was removed ends it, and the file alone serves from the next reload on.
    func controlPlaneConfigured(previous: ControlPlaneSettings?) {
        guard previous != configuration.controlPlane else { return }
        stopControlPlaneLink()
        controlPlaneLink = nil
        controlPlaneStream = nil
        if configuration.controlPlane == nil {
            if snapshot != nil {
                logger.notice("[control_plane] was removed: the next reload serves the file alone")
            }
            snapshot = nil
        } else {
            startControlPlaneLink()
        }
    }

    /// `jesterctl status`'s control-plane line.
    var controlPlaneReport: ControlPlaneStatus? {
        guard let settings = configuration.controlPlane, let link = controlPlaneLink else { return nil }
        return ControlPlaneStatus(
            address: controlPlaneAddress ?? settings.address.description, state: controlPlaneState, version: snapshot?.version,
            lastRefusal: link.lastRefusal.map { "version \($0.version): \($0.detail)" })
    }

    static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "jester" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Hears the reload transaction's result for one pushed version and hands it to the link.
final class SnapshotApplyTarget: ControlReplyTarget, @unchecked Sendable {
    private let master: Master
    private let nonce: String
    private var settled = false

    init(master: Master, nonce: String) {
        self.master = master
        self.nonce = nonce
    }

    func send(_ message: ControlMessage) {
        guard !settled else { return }
        switch message {
        case .reloadResult(let result):
            settled = true
            master.snapshotApplied(nonce: nonce, result: result, failure: nil)
        case .failure(let text, _):
            settled = true
            master.snapshotApplied(nonce: nonce, result: nil, failure: text)
        case .done(let success, let text) where !success:
            settled = true
            master.snapshotApplied(nonce: nonce, result: nil, failure: text)
        default:
            break
        }
    }

    var isOpen: Bool { !settled }

    func close() {
        guard !settled else { return }
        settled = true
        master.snapshotApplied(nonce: nonce, result: nil, failure: "the reload ended without a result")
    }
}
