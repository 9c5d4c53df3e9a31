// SPDX-License-Identifier: Apache-2.0
import JesterControlPlane
import JesterControlPlaneGRPC
import NIOCore

/// The data planes' streams (gRPC, `--grpc-listen`): every decision is `DataPlaneRegistry`'s, taken on the
/// control plane's loop like the API's, so a version committed by a REST change and a data plane's ACK are seen
/// in one order. The gRPC service only carries messages (`SnapshotStreamHub`).
extension ControlPlaneServer: SnapshotStreamHub {
    public func openStream() async -> (stream: UInt64, pushes: AsyncStream<SnapshotPush>) {
        let (pushes, continuation) = AsyncStream.makeStream(of: SnapshotPush.self)
        // Stream numbers start at 1; 0 says the control plane is stopping.
        let stream: UInt64 = await onLoop { [self] in
            guard !streamsClosed else { return UInt64(0) }
            nextStream += 1
            streams[nextStream] = continuation
            api.dataPlanes.opened(nextStream)
            return nextStream
        } ?? 0
        if stream == 0 { continuation.finish() }
        return (stream, pushes)
    }

    public func receive(_ reply: SnapshotStreamReply, on stream: UInt64) async {
        await onLoop { [self] in
            // What it refused at other replicas first, so this one does not offer it those versions.
            if case .hello(let node, _, _, _) = reply { adoptSharedRefusals(of: node) }
            let received = api.dataPlanes.receive(reply, on: stream, current: api.current, now: Self.timestamp())
            let node = api.dataPlanes.node(of: stream) ?? "?"
            if let replaced = received.replaced {
                logger.warning("a second stream from the same node replaces the first (two data planes with one name?)",
                    metadata: ["node": "\(node)"])
                streams.removeValue(forKey: replaced)?.finish()
            }
            switch received.outcome {
            case .greeted:
                logger.info("data plane connected", metadata: [
                    "node": "\(node)", "running": "\(api.dataPlanes.entries[node]?.session.running.map(String.init) ?? "none")",
                ])
            case .accepted(let version):
                logger.info("data plane applied a version", metadata: ["node": "\(node)", "version": "\(version)"])
            case .refused(let version, let detail):
                logger.warning("data plane refused a version", metadata: [
                    "node": "\(node)", "version": "\(version)", "detail": "\(detail)",
                ])
                shareRefusals(of: node)
            case .outOfOrder:
                logger.warning("a data plane spoke before saying hello; its stream is closed")
                streams.removeValue(forKey: stream)?.finish()
            case .reported, .stale:
                break
            }
            if let push = received.push { streams[stream]?.yield(push) }
        }
    }

    public func closeStream(_ stream: UInt64) async {
        await onLoop { [self] in
            if let node = api.dataPlanes.node(of: stream) {
                logger.info("data plane disconnected", metadata: ["node": "\(node)"])
            }
            streams.removeValue(forKey: stream)?.finish()
            api.dataPlanes.closed(stream, now: Self.timestamp())
        }
    }

    /// Runs `body` on the loop and returns its result, or nil once the loop is shutting down. The check and the
    /// submission happen under the lock `stop` takes to close, so nothing is handed to a closed loop.
    @discardableResult
    private func onLoop<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T? {
        let future: EventLoopFuture<T>? = loopClosed.withLockedValue { closed in closed ? nil : loop.submit(body) }
        return try? await future?.get()
    }

    /// Takes what `node` refused from the replicas' store (etcd), if it shares refusals.
    func adoptSharedRefusals(of node: String) {
        guard store.sharesRefusals, !refusalsNotShared.contains(node) else { return }
        do {
            let refusals = try store.loadRefusals(of: node)[node] ?? DataPlaneRefusals()
            api.dataPlanes.adoptRefusals(refusals, of: node, now: Self.timestamp())
        } catch {
            logger.error("cannot read what a data plane refused at other replicas", metadata: [
                "node": "\(node)", "error": "\(error.description)",
            ])
        }
    }

    /// Writes what `node` refused to the replicas' store (etcd), if it shares refusals.
    func shareRefusals(of node: String) {
        guard store.sharesRefusals, let entry = api.dataPlanes.entries[node] else { return }
        // Counted once the write has ended: a read that began before then is not taken (see `adopt`).
        defer { localWrites.withLockedValue { $0 += 1 } }
        do {
            try store.saveRefusals(entry.session.refusals, of: node)
            refusalsNotShared.remove(node)
        } catch {
            refusalsNotShared.insert(node)
            logger.error("cannot share what a data plane refused with other replicas", metadata: [
                "node": "\(node)", "error": "\(error.description)",
            ])
        }
    }

    /// After a version is committed: push it to every data plane that should have it.
    func pushCurrentVersion() {
        for (stream, push) in api.dataPlanes.offer(api.current) {
            streams[stream]?.yield(push)
        }
    }
}
