// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// How a child process ended, as waitpid(2) reports it.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32, coreDumped: Bool)

    init(waitStatus status: Int32) {
        // The WIFEXITED/WTERMSIG macros, spelled out: Swift cannot import them.
        let signal = status & 0x7F
        if signal == 0 {
            self = .exited(code: (status >> 8) & 0xFF)
        } else {
            self = .signaled(signal: signal, coreDumped: status & 0x80 != 0)
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): return "exited with status \(code)"
        case .signaled(let signal, let core):
            return "killed by signal \(signal) (\(SignalNames.name(signal)))" + (core ? ", core dumped" : "")
        }
    }

    /// A clean exit (status 0).
    public var isSuccess: Bool { self == .exited(code: 0) }
}

/// Names of the signals Jester logs.
public enum SignalNames {
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGILL: return "SIGILL"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGFPE: return "SIGFPE"
        case SIGKILL: return "SIGKILL"
        case SIGSEGV: return "SIGSEGV"
        case SIGPIPE: return "SIGPIPE"
        case SIGTERM: return "SIGTERM"
        case SIGCHLD: return "SIGCHLD"
        case SIGUSR1: return "SIGUSR1"
        case SIGUSR2: return "SIGUSR2"
        case SIGTRAP: return "SIGTRAP"
        default: return "signal \(signal)"
        }
    }
}

/// Starts worker processes: fork+exec of Jester's own binary via posix_spawn, which is safe from a process that
/// has threads (a bare fork of one is not: locks held by other threads stay locked forever in the child).
public enum ProcessSpawner {
    /// The fd number a worker finds its control socket at.
    public static let controlFD: Int32 = 3
    /// The first fd number of the listening sockets handed to a worker; they follow in order.
    public static let firstListenerFD: Int32 = 4

    /// What workers and probes are started from: the running binary itself, even when a package upgrade has
    /// replaced the file on disk. A worker then always runs exactly the master's code, so the two always speak
    /// the same control protocol; switching to the new file is `jesterctl upgrade`'s job.
    public static let runningImage = "/proc/self/exe"

    /// The path of the running executable as /proc/self/exe names it (with " (deleted)" once replaced on disk).
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Spawns `executable` with `arguments`; the child gets `controlSocket` as fd 3 and `listeners` as fds 4, 5, ...
    /// and no other descriptor of ours (everything else is closed in the child). Its signal mask and dispositions are
    /// reset, since the master blocks the signals it handles.
    public static func spawn(
        executable: String, argumentZero: String? = nil, arguments: [String], controlSocket: Int32, listeners: [Int32]
    ) throws(SystemError) -> Int32 {
        // dup2 onto the same number would keep close-on-exec set, so move every source above the targets first.
        let floor = firstListenerFD + Int32(listeners.count) + 64
        var moved: [Int32] = []
        defer { for fd in moved { close(fd) } }
        for fd in [controlSocket] + listeners {
            let copy = fcntl(fd, F_DUPFD_CLOEXEC, floor)
            guard copy >= 0 else { throw SystemError("fcntl(F_DUPFD_CLOEXEC)") }
            moved.append(copy)
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, moved[0], controlFD)
        for (offset, fd) in moved.dropFirst().enumerated() {
            posix_spawn_file_actions_adddup2(&actions, fd, firstListenerFD + Int32(offset))
        }
        // Then nothing else: a descriptor the master opened without close-on-exec (a control connection SwiftNIO
        // accepted, say) would otherwise leak into every worker spawned while it is open.
        _ = cjester_spawn_close_from(&actions, firstListenerFD + Int32(listeners.count))
        return try spawn(
            executable: executable, argumentZero: argumentZero, arguments: arguments, environment: nil, actions: &actions)
    }

    /// posix_spawn with the child's signal mask cleared and the signals the master handles or ignores reset to
    /// their defaults (the master blocks them for its signal thread; a child must not inherit that), `actions`
    /// arranging its descriptors, and `environment` (nil: ours).
    /// `argumentZero` is what ps shows (default: `executable`).
    static func spawn(
        executable: String, argumentZero: String? = nil, arguments: [String], environment: [String]?,
        actions: inout posix_spawn_file_actions_t
    ) throws(SystemError) -> Int32 {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in SignalWaiter.handledSignals + [SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([argumentZero ?? executable] + arguments).map { strdup($0) }
        defer { for pointer in argv { free(pointer) } }
        var argvPointers = argv + [nil]
        let variables = environment?.map { strdup($0) }
        defer { for pointer in variables ?? [] { free(pointer) } }
        var pid: pid_t = 0
        let result: Int32
        if let variables {
            var environmentPointers = variables + [nil]
            result = posix_spawn(&pid, executable, &actions, &attributes, &argvPointers, &environmentPointers)
        } else {
            result = posix_spawn(&pid, executable, &actions, &attributes, &argvPointers, environ)
        }
        guard result == 0 else { throw SystemError("posix_spawn", executable, errno: result) }
        return pid
    }

    /// Collects every child that has exited, without blocking.
    public static func reapExitedChildren() -> [(pid: Int32, status: ExitStatus)] {
        var exited: [(Int32, ExitStatus)] = []
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            exited.append((pid, ExitStatus(waitStatus: status)))
        }
        return exited
    }

    /// Sends `signal` to `pid`, ignoring a process that is already gone.
    public static func signal(_ pid: Int32, _ signal: Int32) {
        _ = kill(pid, signal)
    }

    /// The resident set size of `pid` in bytes, from /proc (0 when unknown).
    public static func residentSetSize(of pid: Int32) -> Int {
        guard let status = FileContents.read("/proc/\(pid)/status") else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.split(separator: " ").dropFirst().first ?? "0"
            return (Int(digits) ?? 0) * 1024
        }
        return 0
    }

    /// A connected pair of Unix stream sockets, both close-on-exec.
    public static func socketPair() throws(SystemError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw SystemError("socketpair")
        }
        return (fds[0], fds[1])
    }

    /// The number of CPUs this process may run on (its affinity mask, so `taskset` is honoured).
    public static func availableCPUs() -> Int {
        let count = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        return max(1, count)
    }
}
