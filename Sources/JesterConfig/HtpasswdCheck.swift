// SPDX-License-Identifier: Apache-2.0
/// The load-time check of an htpasswd file: every line a `user:hash` with a hash scheme Jester verifies.
///
/// The verification itself (libxcrypt, in JesterAuth) happens per request in the workers; this check runs in the
/// master when the configuration is loaded, so a file with an MD5 (`$apr1$`), SHA-1 (`{SHA}`) or plain-text
/// password fails the reload with file:line instead of locking that user out silently at request time.
public enum HtpasswdCheck {
    /// One bad line.
    public struct Problem: Sendable, Equatable {
        /// 1-based, in the htpasswd file.
        public var line: Int
        /// What is wrong, naming the user when there is one.
        public var message: String
    }

    /// What a checked file holds.
    public struct Result: Sendable, Equatable {
        /// The users, in file order.
        public var users: [String] = []
        public var problems: [Problem] = []
    }

    /// The accepted schemes, as said in messages.
    public static let acceptedSchemes = "bcrypt ($2y$, $2b$, $2a$), SHA-256-crypt ($5$) or SHA-512-crypt ($6$)"

    /// Checks every non-empty line that is not a `#` comment.
    public static func check(_ text: String) -> Result {
        var result = Result()
        var seen: [String: Int] = [:]
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            let number = index + 1
            var line = Substring(rawLine)
            if line.last == "\r" { line = line.dropLast() }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                result.problems.append(Problem(line: number, message: "not a user:hash line"))
                continue
            }
            let user = String(line[..<colon])
            let hash = line[line.index(after: colon)...]
            if user.isEmpty || user.contains(where: { $0 == " " || $0 == "\t" }) {
                result.problems.append(Problem(line: number, message: "'\(user)' is not a user name"))
                continue
            }
            if let problem = hashProblem(hash) {
                result.problems.append(Problem(line: number, message: "user '\(user)': \(problem)"))
                continue
            }
            if let first = seen[user] {
                // Which of two lines would win is a guess the operator should not have to make.
                result.problems.append(Problem(line: number, message: "user '\(user)' is already on line \(first)"))
                continue
            }
            seen[user] = number
            result.users.append(user)
        }
        return result
    }

    /// Why `hash` is not a well-formed hash of an accepted scheme, or nil.
    static func hashProblem(_ hash: Substring) -> String? {
        let fields = hash.split(separator: "$", omittingEmptySubsequences: false)
        let prefix = fields.count > 1 && fields[0].isEmpty ? String(fields[1]) : ""
        switch prefix {
        case "2a", "2b", "2y":
            // $2y$10$ + 22 characters of salt + 31 of hash.
            guard fields.count == 4, let cost = Int(fields[2]), (4...31).contains(cost), fields[2].count == 2,
                fields[3].count == 53
            else { return "a malformed bcrypt hash" }
            return nil
        case "5", "6":
            // $5$[rounds=N$]salt$hash; the hash is 43 (SHA-256) or 86 (SHA-512) characters.
            let length = prefix == "5" ? 43 : 86
            guard (4...5).contains(fields.count), fields.last?.count == length,
                fields.count == 4 || fields[2].hasPrefix("rounds=")
            else { return "a malformed SHA-\(prefix == "5" ? "256" : "512")-crypt hash" }
            return nil
        default:
            let scheme: String
            if hash.hasPrefix("{SHA}") {
                scheme = "SHA-1 ({SHA})"
            } else if hash.hasPrefix("$apr1$") {
                scheme = "Apache MD5 ($apr1$)"
            } else if hash.hasPrefix("$1$") {
                scheme = "MD5-crypt ($1$)"
            } else if hash.isEmpty {
                scheme = "an empty hash"
            } else {
                scheme = "plain text or DES crypt"
            }
            return "\(scheme) is not accepted; use \(acceptedSchemes) (htpasswd -B, openssl passwd -5 or -6)"
        }
    }
}
