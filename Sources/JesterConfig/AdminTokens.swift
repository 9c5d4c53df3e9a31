// SPDX-License-Identifier: Apache-2.0
import Foundation

/// What an admin API client may do: `read` sees status, configuration, routes and upstreams; `write` also acts
/// (reload, drain or enable targets, drain the instance).
public enum AdminRole: String, Sendable, Codable, CaseIterable {
    case read
    case write

    /// Whether a client with this role may do what needs `required`.
    public func allows(_ required: AdminRole) -> Bool {
        self == .write || required == .read
    }
}

/// The admin API's bearer tokens, from `[admin] tokens_file` (and the control plane's, `--tokens-file`): one
/// `ROLE TOKEN [NAME]` per line (`write 3f9c… alice`), `#` comments and blank lines allowed. The name says who
/// holds the token in the control plane's audit log; without one the token is named by its line.
///
/// Pure apart from `load`: the loader checks the file when the configuration is validated (so a bad line fails
/// `config validate` and the reload with file:line), and the master loads it for serving at start and on every
/// reload.
public struct AdminTokens: Sendable, Equatable {
    /// The shortest token accepted: a short token is guessable over a network, whatever the rate.
    public static let minimumLength = 16

    /// One token and its role.
    public struct Entry: Sendable, Equatable {
        public var token: [UInt8]
        public var role: AdminRole
        /// Who holds it (the line's third word, or `token on line N`), for audit records; never the token.
        public var name: String

        public init(token: [UInt8], role: AdminRole, name: String) {
            self.token = token
            self.role = role
            self.name = name
        }
    }

    /// A bad line of the file.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// 1-based; 0 for the file as a whole (unreadable, readable by everyone, empty).
        public var line: Int
        public var message: String

        public var description: String { line > 0 ? "line \(line): \(message)" : message }
    }

    public private(set) var entries: [Entry] = []

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// Parses the file's text; every problem is reported, and the tokens of good lines are kept.
    public static func parse(_ text: String) -> (tokens: AdminTokens, problems: [Problem]) {
        var tokens = AdminTokens()
        var problems: [Problem] = []
        var seen: [[UInt8]: Int] = [:]
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (index, raw) in lines.enumerated() {
            let number = index + 1
            let words = raw.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            guard let role = AdminRole(rawValue: String(first)) else {
                // Never echo the line: it may be a token written without its role.
                problems.append(Problem(line: number, message: "a line must be 'read TOKEN' or 'write TOKEN'"))
                continue
            }
            guard words.count == 2 || words.count == 3 else {
                problems.append(Problem(line: number,
                    message: words.count == 1
                        ? "'\(role.rawValue)' without a token" : "a line is 'ROLE TOKEN' or 'ROLE TOKEN NAME'"))
                continue
            }
            let token = Array(words[1].utf8)
            guard token.count >= minimumLength else {
                problems.append(Problem(line: number,
                    message: "the token is \(token.count) characters; at least \(minimumLength) are needed "
                        + "(openssl rand -hex 32 makes a good one)"))
                continue
            }
            if let previous = seen[token] {
                // Two roles for one token: which would win is a guess the operator should not have to make.
                problems.append(Problem(line: number, message: "the same token is already on line \(previous)"))
                continue
            }
            seen[token] = number
            tokens.entries.append(Entry(
                token: token, role: role, name: words.count == 3 ? String(words[2]) : "token on line \(number)"))
        }
        return (tokens, problems)
    }

    /// Reads and parses the file at `path`, refusing one other users may read or write (a token anyone on the
    /// host can read protects nothing; one anyone can write lets them add their own), or that holds no token.
    public static func load(path: String) -> (tokens: AdminTokens, problems: [Problem]) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return (AdminTokens(), [Problem(line: 0, message: "cannot read \(path): \(String(cString: strerror(errno)))")])
        }
        if info.st_mode & 0o006 != 0 {
            let mode = String(info.st_mode & 0o777, radix: 8)
            return (AdminTokens(), [Problem(line: 0,
                message: "\(path) is readable or writable by every user (mode \(mode)); chmod o-rw \(path)")])
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            return (AdminTokens(), [Problem(line: 0, message: "cannot read \(path)")])
        }
        var result = parse(String(decoding: data, as: UTF8.self))
        if result.problems.isEmpty, result.tokens.entries.isEmpty {
            result.problems.append(Problem(line: 0, message: "\(path) has no tokens"))
        }
        return result
    }

    /// The role of the token a client presented, or nil for none. Every entry is compared in full, and each
    /// comparison takes the same time whatever bytes differ, so response times tell an attacker nothing about
    /// how close a guess came.
    public func role(for presented: some Collection<UInt8>) -> AdminRole? {
        entry(for: presented)?.role
    }

    /// The entry of the token a client presented (its role and holder), compared as `role(for:)` says.
    public func entry(for presented: some Collection<UInt8>) -> Entry? {
        let candidate = Array(presented)
        var found: Entry?
        for entry in entries {
            if Self.constantTimeEquals(candidate, entry.token) { found = entry }
        }
        return found
    }

    /// Equality in time that depends only on the lengths, never on where the bytes first differ.
    public static func constantTimeEquals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        let length = max(a.count, b.count)
        for index in 0..<length {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0
    }
}
