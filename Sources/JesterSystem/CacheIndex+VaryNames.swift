// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// The directory of `Vary` field lists: a `varyMarker` slot names its list by a 64-bit hash, and a lookup needs
/// the names themselves to compute the variant's key from the request's values (Docs/cache-design.md, "Vary").
///
/// Append-only and small: an instance sees a handful of distinct lists (`Accept-Encoding`, `Origin`,
/// `Accept-Language`, ...), so 1,024 entries of 256 bytes, open addressing over 16 probes, are plenty, and a list
/// is never removed (the markers naming it may come back). Each entry is {hash, length} (swapped together by a
/// 16-byte compare-and-swap), then up to 240 bytes of text. A writer takes a free entry ({0, 0} to {hash, 0}),
/// copies the text, and publishes the length; readers use an entry only once its length is set. A writer that
/// died between the two leaves {hash, 0}: the next one to register the same list writes the same text again and
/// publishes it, so nothing stays half-written for good.
extension CacheIndex {
    /// Entries of the directory.
    public static let varyNamesEntries = 1_024
    /// The longest list the directory keeps, in bytes of UTF-8 (a response varying on more is not stored).
    public static let varyNamesMaxBytes = 240

    /// Bytes of an entry: {hash, length}, then the text.
    static let varyNamesEntryBytes = 256
    /// Bytes of the directory, between the header and the slots.
    static let varyNamesBytes = varyNamesEntries * varyNamesEntryBytes
    private static let varyNamesProbes = 16

    private func varyNamesEntry(_ index: Int) -> UnsafeMutableRawPointer {
        base + Self.headerBytes + index * Self.varyNamesEntryBytes
    }

    /// Records the field list `names` (the sorted, lowercased, comma-joined `Vary` names) under `hash` (the
    /// marker's `namesHash`; 0 is stored as 1). False when the list is too long or the directory has no room
    /// near its hash: the response is then not stored.
    public func registerVaryNames(_ names: String, hash: UInt64) -> Bool {
        let hash = hash == 0 ? 1 : hash
        let text = Array(names.utf8)
        guard !text.isEmpty, text.count <= Self.varyNamesMaxBytes else { return false }
        let start = Int(hash % UInt64(Self.varyNamesEntries))
        for probe in 0..<Self.varyNamesProbes {
            let entry = varyNamesEntry((start + probe) % Self.varyNamesEntries)
            let words = entry.assumingMemoryBound(to: Int64.self)
            let stored = UInt64(bitPattern: cjester_atomic_load64(words))
            if stored == 0 {
                // Take the free entry; if another process took it first, look at it again.
                guard cjester_atomic_cas128(entry, 0, 0, hash, 0) != 0 else {
                    return registerVaryNames(names, hash: hash)
                }
            } else if stored != hash {
                continue
            } else if cjester_atomic_load64(words + 1) > 0 {
                return true
            }
            // Ours, or a list a writer left unpublished: the same hash means the same text.
            text.withUnsafeBytes { (entry + 16).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            cjester_atomic_store64(words + 1, Int64(text.count))
            return true
        }
        return false
    }

    /// The field list registered under `hash`, or nil when there is none (or it is not yet published).
    public func varyNames(_ hash: UInt64) -> String? {
        let hash = hash == 0 ? 1 : hash
        let start = Int(hash % UInt64(Self.varyNamesEntries))
        for probe in 0..<Self.varyNamesProbes {
            let entry = varyNamesEntry((start + probe) % Self.varyNamesEntries)
            let words = entry.assumingMemoryBound(to: Int64.self)
            let stored = UInt64(bitPattern: cjester_atomic_load64(words))
            if stored == 0 { return nil }
            guard stored == hash else { continue }
            let length = Int(cjester_atomic_load64(words + 1))
            guard length > 0, length <= Self.varyNamesMaxBytes else { return nil }
            return String(decoding: UnsafeRawBufferPointer(start: entry + 16, count: length), as: UTF8.self)
        }
        return nil
    }
}
