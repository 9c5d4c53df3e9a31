// SPDX-License-Identifier: Apache-2.0
import NIOCore
import Synchronization

/// The one way other threads hand work to the master's event loop: the signal thread and the resolver's
/// background queue post here, never to the loop itself.
///
/// Why: the master's loop shuts down while those threads live on (the signal thread never ends), and a task
/// submitted to a loop that is closing or closed is at best dropped with an error on stderr and, in SwiftNIO's
/// strict mode and future versions, a crash. The inbox is closed before the loop is asked to shut down; a post
/// after that is dropped here, under the same lock that closing takes, so no post can slip in between.
final class LoopInbox: Sendable {
    private let loop: any EventLoop
    private let isOpen = Mutex(true)

    init(loop: any EventLoop) {
        self.loop = loop
    }

    /// Runs `task` on the loop, unless the inbox is closed (the master is past its last event): then it is dropped.
    func post(_ task: @escaping @Sendable () -> Void) {
        isOpen.withLock { open in
            if open { loop.execute(task) }
        }
    }

    /// Refuses every later post. Called on the loop, just before it shuts down.
    func close() {
        isOpen.withLock { $0 = false }
    }
}
