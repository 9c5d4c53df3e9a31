// SPDX-License-Identifier: Apache-2.0
import Foundation
import Glibc

/// Delivers process signals to Swift code on a dedicated thread.
///
/// The signals Jester handles are blocked in every thread (`blockHandledSignals`, called first thing in main, so
/// every thread created later inherits the mask) and collected here with sigwait. Nothing runs in signal-handler
/// context, which is the Swift-safe form of nginx's "handlers only set flags".
public final class SignalWaiter: Sendable {
    /// SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2.
    public static let handledSignals: [Int32] = [SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2]

    /// Blocks the handled signals in the calling thread (and so in threads it creates afterwards), and ignores
    /// SIGPIPE (a write to a closed socket is an error return, not a death).
    public static func blockHandledSignals() {
        var mask = sigset_t()
        sigemptyset(&mask)
        for signal in handledSignals { sigaddset(&mask, signal) }
        pthread_sigmask(SIG_BLOCK, &mask, nil)
        Glibc.signal(SIGPIPE, SIG_IGN)
    }

    /// Starts a thread that calls `handler` with each handled signal as it arrives.
    public init(handler: @escaping @Sendable (Int32) -> Void) {
        let thread = Thread {
            var mask = sigset_t()
            sigemptyset(&mask)
            for signal in Self.handledSignals { sigaddset(&mask, signal) }
            while true {
                var received: Int32 = 0
                if sigwait(&mask, &received) == 0 { handler(received) }
            }
        }
        thread.name = "jester-signals"
        thread.start()
    }
}
