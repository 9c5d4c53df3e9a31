// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
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

    /// Starts a thread that calls `handler` with each handled signal as it arrives. (A plain pthread: Foundation's
    /// Thread would pull all of Foundation into jesterctl, which needs none of it.)
    public init(handler: @escaping @Sendable (Int32) -> Void) {
        let box = Unmanaged.passRetained(HandlerBox(handler)).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { argument in
            let handler = Unmanaged<HandlerBox>.fromOpaque(argument!).takeRetainedValue().handler
            _ = cjester_set_process_name("jester-signals")  // PR_SET_NAME names the calling thread
            var mask = sigset_t()
            sigemptyset(&mask)
            for signal in SignalWaiter.handledSignals { sigaddset(&mask, signal) }
            while true {
                var received: Int32 = 0
                if sigwait(&mask, &received) == 0 { handler(received) }
            }
        }, box)
        precondition(created == 0, "cannot start the signal thread: \(created)")
        pthread_detach(thread)
    }

    private final class HandlerBox {
        let handler: @Sendable (Int32) -> Void
        init(_ handler: @escaping @Sendable (Int32) -> Void) { self.handler = handler }
    }
}
