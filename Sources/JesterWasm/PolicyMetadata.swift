// SPDX-License-Identifier: Apache-2.0

/// One request's metadata bag: how policies pass data to the policies after them (a tenant found at pre-route,
/// read at post-response). Entries are namespaced by policy id (a policy writes only its own, reads anyone's),
/// and the bag is bounded in bytes so a policy cannot grow a request's memory without limit. A value, owned by
/// the request's exchange and lent to each call.
public struct PolicyMetadata: Sendable, Equatable {
    /// The most bytes of keys and values the bag holds.
    public let limit: Int
    /// Entries by "policy-id/key".
    public private(set) var entries: [String: String] = [:]
    /// Bytes of keys and values held.
    public private(set) var byteCount = 0

    /// An empty bag of at most `limit` bytes.
    public init(limit: Int = 16 << 10) {
        self.limit = limit
    }

    /// The value `policy` stored under `key`.
    public func value(policy: String, key: String) -> String? {
        entries["\(policy)/\(key)"]
    }

    /// Stores `value` under `policy`'s `key`; false (and nothing changed) when the bag would exceed its limit.
    public mutating func set(policy: String, key: String, value: String) -> Bool {
        let name = "\(policy)/\(key)"
        let old = entries[name].map { name.utf8.count + $0.utf8.count } ?? 0
        let new = byteCount - old + name.utf8.count + value.utf8.count
        guard new <= limit else { return false }
        entries[name] = value
        byteCount = new
        return true
    }

    /// What `metadata-get` returns to `policy` for `key`: its own entry for a bare key, another policy's for
    /// "policy-id/key".
    func lookup(_ key: String, from policy: String) -> String? {
        key.contains("/") ? entries[key] : value(policy: policy, key: key)
    }
}
