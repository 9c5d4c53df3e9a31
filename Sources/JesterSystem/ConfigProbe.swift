// SPDX-License-Identifier: Apache-2.0
#if canImport(Glibc)
import Glibc
#endif

/// Runs the configuration parser on a file in a child process first, so that a parser crash costs a failed
/// check, never the master.
///
/// Why: the TOML library under the loader (toml++ inside TOMLKit 0.6.0) aborts on some malformed input, such as
/// `hosts = ["a", }` (an assertion in its parser, found by Tests/Fuzz). A typo in a reload must fail the reload
/// and keep the old configuration serving; it must not take the master down. The child is this same binary in
/// `jester config validate --probe` mode, which parses and exits 0 or 1; only when it exits normally does the
/// caller parse the file itself, which then is known not to crash. Parsing is deterministic, so the second parse
/// sees what the first did (bar an edit between the two, which at worst repeats the probe's outcome).
public enum ConfigProbe {
    public enum Outcome: Equatable, Sendable {
        /// The file is a valid configuration.
        case valid
        /// The parser ran to completion and rejected the file: parse it in-process to get the diagnostics.
        case invalid
        /// The parser crashed; `detail` is what it printed (an assertion message, typically).
        case parserCrashed(detail: String)
        /// The probe could not run (no such binary, a binary that does not start); the caller decides.
        case couldNotRun(detail: String)
    }

    /// Probes `file` with `executable`: by default the running binary; a binary upgrade probes the new file
    /// this way before switching to it, which also proves that the new binary starts at all.
    public static func check(file: String, executable: String = ProcessSpawner.runningImage) -> Outcome {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { return .couldNotRun(detail: "pipe: \(SystemError("pipe"))") }
        // Close-on-exec, so no other child the master spawns meanwhile holds the write end open.
        for fd in pipeFDs { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
        // No crash report from the child: the assertion line is what matters, and a long report could fill the pipe.
        let spawned = try? ProcessSpawner.spawn(
            executable: executable, arguments: ["config", "validate", "--probe", file],
            environment: ["SWIFT_BACKTRACE=enable=no"], actions: &actions)
        close(pipeFDs[1])
        guard let pid = spawned else {
            close(pipeFDs[0])
            return .couldNotRun(detail: "cannot start \(executable)")
        }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(pipeFDs[0], &chunk, chunk.count)
            if count > 0 {
                if output.count < 16_384 { output += chunk[0..<count] }
            } else if count == 0 || errno != EINTR {
                break
            }
        }
        close(pipeFDs[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        let exit = ExitStatus(waitStatus: status)
        let lines = String(decoding: output, as: UTF8.self).split(separator: "\n")
        switch exit {
        case .exited(code: 0): return .valid
        case .exited(code: 1): return .invalid
        case .exited:
            // 126/127: the shell or the loader could not run it (a missing library, a broken script).
            return .couldNotRun(detail: lines.first.map(String.init) ?? "\(executable) \(exit)")
        case .signaled:
            let text = lines.first { $0.contains("Assertion") || $0.contains("error") }.map(String.init) ?? "\(exit)"
            return .parserCrashed(detail: text)
        }
    }
}
