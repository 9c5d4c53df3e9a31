// SPDX-License-Identifier: Apache-2.0
import Glibc

/// The master's pid file: written at start, removed at exit, refused when another live master owns it.
public enum PidFile {
    /// Writes our pid to `path`, creating its directory. Fails when the file names a live process that is not us.
    public static func write(_ path: String) throws(SystemError) {
        if let text = FileContents.read(path), let existing = Int32(text.split(separator: "\n").first ?? ""),
            existing != getpid(), kill(existing, 0) == 0
        {
            throw SystemError("pid file", "\(path) names running process \(existing)", errno: EEXIST)
        }
        try makeDirectory(forFile: path)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SystemError("open", path) }
        defer { close(fd) }
        let text = "\(getpid())\n"
        _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }
    }

    public static func remove(_ path: String) {
        unlink(path)
    }

    /// Creates the parent directory of `path` (mode 0755) when it is missing, as /run/jester usually is outside
    /// systemd.
    public static func makeDirectory(forFile path: String) throws(SystemError) {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return }
        let directory = String(path[..<slash])
        var components: [Substring] = []
        for component in directory.split(separator: "/") {
            components.append(component)
            let partial = "/" + components.joined(separator: "/")
            if mkdir(partial, 0o755) != 0, errno != EEXIST { throw SystemError("mkdir", partial) }
        }
    }
}

