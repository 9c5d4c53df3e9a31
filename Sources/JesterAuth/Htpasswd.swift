// SPDX-License-Identifier: Apache-2.0
import JesterTLS

/// The users of an htpasswd file and the check of a password against them.
///
/// The file is Apache's format: one `user:hash` per line, `#` comments and blank lines ignored. Only hashes that
/// are still sound are accepted: bcrypt (`$2a$`, `$2b$`, `$2y$`, made by `htpasswd -B`), SHA-256-crypt (`$5$`)
/// and SHA-512-crypt (`$6$`, `openssl passwd -5/-6`, `mkpasswd`). Apache's MD5 (`$apr1$`), `{SHA}`, DES crypt
/// and plain text are refused with the line number: a gateway should not quietly accept hashes that a GPU
/// reverses in minutes.
///
/// Read by the master with the configuration (a reload re-reads it); a worker holds the parsed value.
public struct Htpasswd: Sendable {
    /// A password hashing scheme Jester accepts.
    public enum Scheme: String, Sendable, Hashable {
        case bcrypt
        case sha256Crypt = "sha256-crypt"
        case sha512Crypt = "sha512-crypt"
    }

    /// A line that could not be read: its number (from 1) and why.
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public let line: Int
        public let message: String

        public var description: String { "line \(line): \(message)" }
    }

    /// One user's stored hash.
    struct Entry: Sendable {
        let scheme: Scheme
        /// The whole stored hash: libxcrypt reads the scheme, cost and salt from it as the setting.
        let hash: String
        let hashBytes: [UInt8]
    }

    private let entries: [String: Entry]
    /// The setting an unknown user's password is hashed with (see `verify`).
    private let decoySetting: String
    private let cache: VerifiedPasswordCache

    /// The user names, sorted (for `config validate` and logs).
    public var users: [String] { entries.keys.sorted() }

    /// Each user's scheme, so a loader can warn about, say, a bcrypt cost so high that logins stall a worker.
    public func scheme(of user: String) -> Scheme? { entries[user]?.scheme }

    /// Parses the file's text. `cacheCapacity` bounds the verified-password cache (see `VerifiedPasswordCache`;
    /// 0 turns it off).
    public init(parsing text: String, cacheCapacity: Int = 1024) throws(ParseError) {
        var entries: [String: Entry] = [:]
        var firstByScheme: [Scheme: String] = [:]
        var countByScheme: [Scheme: Int] = [:]
        // "\r\n" is one Character in Swift, so both line ends are named.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        for (index, line) in lines.enumerated() {
            let number = index + 1
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            guard let colon = line.firstIndex(of: ":") else {
                throw ParseError(line: number, message: "expected user:hash")
            }
            let user = String(line[..<colon])
            let hash = String(line[line.index(after: colon)...])
            guard !user.isEmpty, !user.contains(where: { $0 == " " || $0 == "\t" }) else {
                throw ParseError(line: number, message: "the user name is empty or contains white space")
            }
            guard entries[user] == nil else {
                throw ParseError(line: number, message: "user \(user) is listed twice")
            }
            let scheme = try Self.checkHash(hash, line: number)
            entries[user] = Entry(scheme: scheme, hash: hash, hashBytes: Array(hash.utf8))
            if firstByScheme[scheme] == nil { firstByScheme[scheme] = hash }
            countByScheme[scheme, default: 0] += 1
        }
        self.entries = entries
        // An unknown user is hashed like the most common kind of user in the file, so the answer takes about as
        // long either way. With no users at all, a bcrypt hash of cost 10 (htpasswd -B's default).
        let common = countByScheme.max { $0.value < $1.value || ($0.value == $1.value && $0.key.rawValue > $1.key.rawValue) }
        decoySetting = common.flatMap { firstByScheme[$0.key] } ?? Self.defaultDecoy
        cache = VerifiedPasswordCache(capacity: cacheCapacity)
    }

    /// True only if `user` is listed and `password` hashes to the stored hash.
    ///
    /// Timing does not tell who exists: an unknown user's password is hashed all the same (with the setting of
    /// the file's most common scheme) and the result thrown away, and the comparison is constant-time. A pair
    /// that verified before is answered from the cache without hashing (see `VerifiedPasswordCache`).
    ///
    /// Slow by design: a bcrypt check takes tens to hundreds of milliseconds, so the caller must run it off the
    /// event loop, or accept that a cold login stalls the loop's other connections for that long.
    public func verify(user: String, password: String) -> Bool {
        guard let entry = entries[user] else {
            _ = PasswordCrypt.hash(password: password, setting: decoySetting)
            return false
        }
        let fingerprint = cache.fingerprint(user: user, password: password)
        if cache.contains(fingerprint) { return true }
        guard let computed = PasswordCrypt.hash(password: password, setting: entry.hash) else { return false }
        guard ConstantTime.equals(computed, entry.hashBytes) else { return false }
        cache.insert(fingerprint)
        return true
    }

    /// `verify` for parsed Basic credentials.
    public func verify(_ credentials: BasicCredentials) -> Bool {
        verify(user: credentials.user, password: credentials.password)
    }

    /// Whether `verify(user:password:)` would answer from the cache, without hashing (tests, metrics).
    public func isCached(user: String, password: String) -> Bool {
        cache.contains(cache.fingerprint(user: user, password: password))
    }

    // MARK: Reading hashes

    /// A bcrypt hash of "decoy" at cost 10, for files with no users.
    private static let defaultDecoy = "$2b$10$XWDrqwEOhFQwzP5MJN0lmu1vqJB6ZXmhOPRQLuOj75TCnlHCxV3ve"

    /// The scheme of the stored hash on line `line`, after checking its exact shape.
    static func checkHash(_ hash: String, line: Int) throws(ParseError) -> Scheme {
        func refuse(_ message: String) -> ParseError { ParseError(line: line, message: message) }
        let bytes = Array(hash.utf8)
        let scheme: Scheme
        if hash.hasPrefix("$2a$") || hash.hasPrefix("$2b$") || hash.hasPrefix("$2y$") {
            // $2y$NN$ + 22 salt + 31 hash characters = 60 (OpenBSD bcrypt's fixed layout).
            guard bytes.count == 60, bytes[6] == UInt8(ascii: "$"),
                let cost = Int(String(decoding: bytes[4..<6], as: UTF8.self)), (4...31).contains(cost),
                bytes[7...].allSatisfy(isCryptCharacter)
            else { throw refuse("malformed bcrypt hash") }
            scheme = .bcrypt
        } else if hash.hasPrefix("$5$") || hash.hasPrefix("$6$") {
            scheme = hash.hasPrefix("$5$") ? .sha256Crypt : .sha512Crypt
            // $5$[rounds=N$]salt$hash, salt up to 16 characters, hash 43 ($5$) or 86 ($6$) characters.
            var fields = hash.utf8.dropFirst(3).split(separator: UInt8(ascii: "$"), omittingEmptySubsequences: false)
            if let first = fields.first, first.starts(with: "rounds=".utf8) {
                guard let rounds = Int(String(decoding: first.dropFirst(7), as: UTF8.self)),
                    (1000...999_999_999).contains(rounds)
                else { throw refuse("malformed SHA-crypt rounds") }
                fields.removeFirst()
            }
            let hashLength = scheme == .sha256Crypt ? 43 : 86
            guard fields.count == 2, (1...16).contains(fields[0].count), fields[1].count == hashLength,
                fields[0].allSatisfy({ $0 != UInt8(ascii: ":") }), fields[1].allSatisfy(isCryptCharacter)
            else { throw refuse("malformed \(scheme == .sha256Crypt ? "SHA-256" : "SHA-512")-crypt hash") }
        } else if hash.hasPrefix("$apr1$") || hash.hasPrefix("$1$") {
            throw refuse("MD5 password hashes are not accepted; use bcrypt (htpasswd -B), $5$ or $6$")
        } else if hash.hasPrefix("{SHA}") {
            throw refuse("{SHA} password hashes are not accepted; use bcrypt (htpasswd -B), $5$ or $6$")
        } else {
            throw refuse("unsupported password hash; use bcrypt (htpasswd -B), $5$ or $6$")
        }
        // libxcrypt has the last word: a setting it would refuse at login is refused now.
        guard PasswordCrypt.accepts(setting: hash) else { throw refuse("libxcrypt refuses this hash") }
        return scheme
    }

    /// crypt's base-64 alphabet: `./0-9A-Za-z`.
    private static func isCryptCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "."), UInt8(ascii: "/"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"):
            true
        default:
            false
        }
    }
}
