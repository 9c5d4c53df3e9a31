// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterControl
import NIOCore
import NIOEmbedded
import NIOPosix
import Synchronization
import Testing

@testable import JesterSupervisor

/// The master's two seams to the outside: work other threads hand to its loop, and answers to a control request.

@Test func theInboxRunsPostsOnTheLoopUntilItIsClosedAndDropsThemAfter() async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let loop = group.next()
    let inbox = LoopInbox(loop: loop)
    let ran = Mutex<[String]>([])
    // From another thread, as the signal thread posts.
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        Thread.detachNewThread {
            inbox.post { ran.withLock { $0.append(loop.inEventLoop ? "on the loop" : "elsewhere") } }
            inbox.post { done.resume() }
        }
    }
    try await loop.submit {
        inbox.close()
    }.get()
    inbox.post { ran.withLock { $0.append("after close") } }
    try await loop.submit {}.get()
    #expect(ran.withLock { $0 } == ["on the loop"])
    try await group.shutdownGracefully()
    // Posting to a loop that has shut down is dropped here, not handed to SwiftNIO (which would report an error).
    inbox.post { ran.withLock { $0.append("after shutdown") } }
    #expect(ran.withLock { $0 } == ["on the loop"])
}

@Test func answersToARequestCarryItsCorrelationIDOnTheChannel() throws {
    let channel = EmbeddedChannel()
    try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    let target = ChannelReplyTarget(channel: channel, id: 41)
    #expect(target.isOpen)
    target.send(.progress(ProgressReport(phase: "validated", connections: 0, workers: 0, generation: 2)))
    target.send(.done(success: true, message: "ok"))
    var codec = ControlFrameCodec()
    while let bytes = try channel.readOutbound(as: ByteBuffer.self) { codec.append(bytes.readableBytesView) }
    #expect(try codec.nextEnvelope()?.id == 41)
    #expect(try codec.nextEnvelope() == ControlEnvelope(.done(success: true, message: "ok"), id: 41))
    target.close()
    #expect(!target.isOpen)
}
