// SPDX-License-Identifier: Apache-2.0
private import CJesterCrypt

/// libxcrypt's `crypt_rn`, the one place Jester computes a password hash (bcrypt, SHA-256-crypt, SHA-512-crypt).
///
/// Why `crypt_rn` with a scratch area per call: plain `crypt` keeps its result in static storage, so two event
/// loops checking passwords at once would overwrite each other's hash. `crypt_rn` works only in the memory it is
/// given, and returns nil instead of a magic "*0" string on failure.
enum PasswordCrypt {
    /// The scratch area's size (`sizeof(struct crypt_data)`, 32 KiB), read once.
    private static let scratchSize = Int(cjester_crypt_data_size())

    /// The hash of `password` under `setting` (a stored hash, whose prefix, cost and salt are reused), or nil if
    /// libxcrypt refuses the setting or the password (longer than libxcrypt's 512-byte phrase limit, or holding a
    /// NUL byte, which C strings cannot carry).
    static func hash(password: String, setting: String) -> [UInt8]? {
        guard !password.utf8.contains(0) else { return nil }
        // Zeroed, as libxcrypt asks of a fresh area; it erases its own internal state before returning.
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: scratchSize, alignment: 16)
        scratch.initializeMemory(as: UInt8.self, repeating: 0, count: scratchSize)
        defer {
            // The area held the password (and intermediate state); clear it before giving the memory back.
            scratch.initializeMemory(as: UInt8.self, repeating: 0, count: scratchSize)
            scratch.deallocate()
        }
        guard let output = crypt_rn(password, setting, scratch, Int32(scratchSize)) else { return nil }
        // crypt_rn never returns a failure token, but the documented convention is that one starts with '*'.
        guard output.pointee != 0x2A else { return nil }
        return Array(String(cString: output).utf8)  // crypt output is ASCII
    }

    /// Whether libxcrypt can compute hashes with `setting` (`crypt_checksalt`): cheap, so the htpasswd parser
    /// can refuse a corrupt line at load time instead of at the first login. "Legacy" is accepted: Debian's
    /// libxcrypt files SHA-256-crypt (`$5$`) under it, and htpasswd files use it.
    static func accepts(setting: String) -> Bool {
        let status = crypt_checksalt(setting)
        return status == CRYPT_SALT_OK || status == CRYPT_SALT_METHOD_LEGACY
    }
}
