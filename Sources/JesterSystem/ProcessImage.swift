// SPDX-License-Identifier: Apache-2.0
import Glibc

/// Replacing the running program with another binary in the same process (execve), which is how the master
/// upgrades itself: the PID stays, so systemd's MainPID, the pid file and the parent of every worker stay right,
/// and descriptors marked to survive are still open in the new program.
public enum ProcessImage {
    /// What /proc/self/exe names while the file is replaced or removed.
    private static let deletedSuffix = " (deleted)"

    /// The path this process's binary was started from, also after a package upgrade replaced the file (the
    /// path then names the new binary, which is what an upgrade execs).
    public static func installedPath() -> String {
        var path = ProcessSpawner.currentExecutable()
        if path.hasSuffix(deletedSuffix) { path.removeLast(deletedSuffix.count) }
        return path
    }

    /// Whether the file this process runs has been replaced or removed since it started: a new version is
    /// installed and `jesterctl upgrade` would switch to it.
    public static var binaryReplacedOnDisk: Bool {
        ProcessSpawner.currentExecutable().hasSuffix(deletedSuffix)
    }

    /// Clears close-on-exec on `keep` and sets it on every other descriptor above stderr, so the new program
    /// inherits exactly the hand-over (a stray descriptor, such as a jesterctl connection, would otherwise stay
    /// open forever in the new program and its peer would never see the end).
    public static func prepareDescriptors(keeping keep: Set<Int32>) throws(SystemError) {
        for fd in openDescriptors() where fd > 2 && !keep.contains(fd) {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        for fd in keep {
            guard fcntl(fd, F_SETFD, 0) == 0 else { throw SystemError("fcntl(F_SETFD)", "fd \(fd)") }
        }
    }

    /// Marks `fds` close-on-exec again after an exec that failed.
    public static func restoreCloseOnExec(_ fds: Set<Int32>) {
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }

    /// Replaces this process with `executable`. Returns only by throwing: when the exec failed, and then this
    /// program carries on unchanged. Must be called on the thread that spawned the workers: every other thread
    /// ends at exec, and a worker's PR_SET_PDEATHSIG fires when the thread that spawned it ends.
    public static func replace(
        with executable: String, arguments: [String], environment: [String: String]
    ) throws(SystemError) {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        execve(executable, argv, envp)
        throw SystemError("execve", executable)
    }

    /// The current environment as a dictionary (the variables exec passes on).
    public static func environment() -> [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return result
    }

    private static func openDescriptors() -> [Int32] {
        guard let directory = opendir("/proc/self/fd") else { return [] }
        defer { closedir(directory) }
        let own = dirfd(directory)
        var result: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let fd = Int32(name), fd != own { result.append(fd) }
        }
        return result
    }
}
