// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import JesterControl
import JesterLogging
import JesterSystem
import Logging
import NIOCore
import NIOPosix

/// The control socket's requests (jesterctl): admission, dispatch, and the reports they ask for.
extension Master {
    // MARK: Control socket

    /// Serves the control socket: bound here, or the listening fd a binary upgrade handed over.
    func startControlServer(adopting adopted: Int32? = nil) throws {
        if let adopted {
            controlServerFD = adopted
        } else {
            let path = configuration.server.controlSocket
            try PidFile.makeDirectory(forFile: path)
            controlServerFD = try ListeningSocket.bindUnix(path: path, group: access.controlGroupID)
            chmod(path, 0o660)
        }
        ServerBootstrap(group: eventLoop)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ControlSocketSession(master: self))
                }
            }
            .withBoundSocket(controlServerFD)
            .assumeIsolated()
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.controlServer = channel
                case .failure(let error):
                    self.logger.critical("cannot serve the control socket", metadata: ["error": "\(error)"])
                    self.beginStop(fast: true, exitCode: 1)
                }
            }
    }

    /// Checks a new control connection's peer (SO_PEERCRED); refused peers are logged and disconnected with a
    /// reason. Calls `admitted` on the event loop when the peer may proceed.
    func admit(_ channel: any Channel, admitted: @escaping () -> Void) {
        guard let provider = channel as? any SocketOptionProvider else {
            channel.close(promise: nil)
            return
        }
        let future: EventLoopFuture<RawPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        future.assumeIsolated().whenComplete { result in
            guard case .success(let credentials) = result else {
                channel.close(promise: nil)
                return
            }
            if self.permits(credentials, channel) { admitted() }
        }
    }

    func permits(_ credentials: RawPeerCredentials, _ channel: any Channel) -> Bool {
        let peer = PeerCredentials(pid: credentials.pid, uid: credentials.uid, gid: credentials.gid)
        if access.permits(uid: peer.uid, gid: peer.gid, supplementaryGroups: peer.supplementaryGroups()) {
            return true
        }
        logger.warning("control connection refused", metadata: [
            "peer_pid": .stringConvertible(peer.pid), "peer_uid": .stringConvertible(peer.uid), "peer_gid": .stringConvertible(peer.gid),
        ])
        channel.writeAndFlush(ByteBuffer(bytes: ControlFrameCodec.encode(
            .failure(message: "permission denied: uid \(peer.uid) may not control this Jester instance",
                reason: .permissionDenied))), promise: nil)
        channel.close(promise: nil)
        return false
    }

    /// Answers one control request, whatever transport carried it (see `ControlReplyTarget`).
    func controlRequest(_ message: ControlMessage, from channel: any ControlReplyTarget) {
        switch message {
        case .status:
            reply(.statusReport(statusReport()), to: channel)
        case .reload:
            reload(replyTo: channel)
        case .reloadAndWait:
            reload(replyTo: channel, watching: true)
        case .drain(let timeout):
            drainWatchers.append(channel)
            beginStop(fast: false, exitCode: 0, drainSeconds: timeout)
            reportDrainProgress()
        case .stop(let fast, let wait):
            reply(.done(success: true, message: fast ? "stopping now" : "stopping gracefully"), to: channel)
            // With --wait the requester hears again as the master exits (`reportStopToWatchers`).
            if wait == true { drainWatchers.append(channel) }
            beginStop(fast: fast, exitCode: 0)
        case .upgrade:
            upgrade(replyTo: channel)
        case .upstreams:
            reply(.upstreamsReport(upstreamsReport()), to: channel)
        case .setTargetAdmin(let upstream, let target, let state):
            setTargetAdmin(upstream: upstream, target: target, state: state, replyTo: channel)
        case .awaitUpgrade(let untilDrained):
            awaitUpgrade(channel, untilDrained: untilDrained)
        case .reopenLogs:
            reopenAccessLogs(replyTo: channel)
        case .metrics(let accept):
            guard let exposition = metricsExposition(accept: accept) else {
                reply(.failure(message: Self.metricsOffReason, reason: .notFound), to: channel)
                return
            }
            reply(.metricsExposition(contentType: exposition.contentType,
                body: String(decoding: exposition.body, as: UTF8.self)), to: channel)
        case .tap(let filter):
            openTap(filter, replyTo: channel)
        case .cacheStatus, .cachePurge:
            answerCacheRequest(message, replyTo: channel)
        default:
            reply(.failure(message: "not a request", reason: .invalidRequest), to: channel)
        }
    }

    /// Tells `jesterctl drain` and `stop --wait` how the stop ended, as the master exits: cleanly, or with the
    /// number of requests the drain timeout cut (which makes them exit non-zero).
    func reportStopToWatchers(exitCode: Int32) {
        let message: String
        if cutRequests > 0 {
            let requests = cutRequests == 1 ? "1 request" : "\(cutRequests) requests"
            message = "drain timeout passed: \(requests) in flight cut; master stopped"
        } else if exitCode != 0 {
            message = "master stopped with exit status \(exitCode) (see its log)"
        } else {
            message = "all workers drained; master stopped"
        }
        for channel in drainWatchers {
            reply(.done(success: cutRequests == 0 && exitCode == 0, message: message), to: channel)
        }
    }

    func reportDrainProgress() {
        guard stopping, !workers.isEmpty else { return }
        let connections = workers.values.reduce(0) { $0 + $1.stats.connections }
        for channel in drainWatchers {
            reply(.progress(ProgressReport(phase: "draining", connections: connections, workers: workers.count)), to: channel)
        }
        eventLoop.scheduleTask(in: .milliseconds(500)) { self.reportDrainProgress() }
    }

    func statusReport() -> StatusReport {
        let rows = workers.values.sorted { ($0.generation, $0.slot) < ($1.generation, $1.slot) }.map { worker in
            WorkerStatus(
                pid: worker.pid, slot: worker.slot, generation: worker.generation,
                state: (state(of: worker) ?? .starting).rawValue,
                connections: worker.stats.connections, requests: worker.stats.requests,
                rssBytes: worker.stats.rssBytes ?? ProcessSpawner.residentSetSize(of: worker.pid),
                restarts: machine.respawnPolicies[worker.slot]?.totalCrashes ?? 0, configHash: worker.configHash,
                startedAt: wallClockNow - (monotonicNow - worker.startedAt), drainDeadline: worker.drainDeadline,
                quic: worker.stats.quic)
        }
        let masterState = stopping ? "stopping" : (machine.transaction != nil ? "reloading" : "running")
        return StatusReport(
            pid: getpid(), version: JesterVersion.current, startedAt: startedAt, configFile: configPath,
            configHash: configuration.hash, generation: generation, state: masterState, workers: rows,
            binaryReplaced: ProcessImage.binaryReplacedOnDisk, lastFailedReload: lastFailedReload,
            listeners: configuration.listeners.map { listener in
                ListenerStatus(name: listener.name, address: listener.address.description,
                    protocol: listener.isTCP ? "tcp" : "http", tls: listener.tls != nil)
            },
            policies: policyStatus(), controlPlane: controlPlaneReport)
    }

    /// The serving configuration's policies, with the serving generation's workers' reports summed.
    private func policyStatus() -> [PolicyStatus] {
        let reports = workers.values.filter { $0.generation == generation }.flatMap { $0.stats.policies ?? [] }
        return configuration.policies.map { policy in
            let mine = reports.filter { $0.name == policy.name }
            return PolicyStatus(
                name: policy.name, module: policy.module, digest: policy.moduleDigest, version: policy.version,
                calls: mine.reduce(0) { $0 + $1.calls }, failures: mine.reduce(0) { $0 + $1.failures },
                failedWorkers: mine.filter(\.failed).count, memoryBytes: mine.reduce(0) { $0 + $1.memoryBytes })
        }
    }
}
