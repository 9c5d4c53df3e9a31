// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// The shared HTTP cache's index: which keys are stored, with the numbers a lookup and eviction need, and each
/// key's fetching flag for request coalescing, in memory every worker of every generation shares
/// (Docs/cache-design.md, "Index"). The bodies are files (`<cache_dir>/<hash>-<generation>`); the index only
/// names them.
///
/// Like the `RateLimitTable`, the master creates it once (an anonymous memfd, pages allocated as slots are
/// touched) and hands its descriptor to every worker and across a binary upgrade; it belongs to no generation, so
/// a reload keeps every entry.
///
/// Layout: a 128-byte header (magic, layout version, bucket count, the SipHash seed of `CacheKeyHasher`, the
/// byte budget and bytes in use, counters, the body generation counter), the directory of `Vary` field lists
/// (`CacheIndex+VaryNames.swift`, 256 KiB), then buckets of 8 slots of 128 bytes. A
/// key (a 128-bit `CacheKeyHash`) lives in one bucket, chosen by its high half, in any of its slots. Slot words:
///
///     0 key tag (the hash's low half)   8 control (CacheIndexControl)   16 the hash's high half
///     24 flag deadline (monotonic ns)   32 lastUsed   40 bodySize   48 headerSize   56 bodyGeneration
///     64 varyHash   72 status, options   80 requestTime   88 responseTime   96 storedAt   104 lifetime
///     112 correctedInitialAge   120 staleWhileRevalidate, staleIfError
///
/// Concurrency, without locks (a worker killed holding a lock would wedge its bucket for every process): {tag,
/// control} change together by a 16-byte compare-and-swap. The other words are written only by the process that
/// holds the key's fetching flag, while the state is `reserved` (so no reader takes them for an entry), and are
/// published by the swap to `ready` (release: every word written before is visible to whoever sees `ready`).
/// Readers load the control, the words, and the control again: a change in between (its version grows on every
/// swap) means read again, a seqlock. Waiters sleep on the control's low 32 bits with a futex, which every
/// swap changes; every swap that ends a fetch wakes them.
public final class CacheIndex: @unchecked Sendable {
    /// A key: a `CacheKeyHash`'s two halves (JesterSystem does not import JesterCache).
    public struct Key: Sendable, Hashable {
        /// The hash's first eight bytes: the slot's tag (0 is stored as 1: a tag of 0 marks an empty slot).
        public var low: UInt64
        /// The last eight: they choose the bucket.
        public var high: UInt64

        /// A key from a hash's halves.
        public init(low: UInt64, high: UInt64) {
            self.low = low
            self.high = high
        }

        /// The low half as stored in the slot's tag word.
        var tag: UInt64 { low == 0 ? 1 : low }
    }

    /// Counters kept in the header, for metrics and `jesterctl cache` (any process adds to them).
    public enum Counter: Int, Sendable, CaseIterable {
        /// Lookups that served a stored response.
        case hits = 48
        /// Lookups that went upstream.
        case misses = 56
        /// Responses published.
        case stores = 64
        /// Entries dropped to make room (a full bucket or the byte budget).
        case evictions = 72
        /// Requests that waited for another's fetch and were served its response.
        case collapsed = 80
    }

    /// Slots when nothing else is said: 8 MiB of shared memory, touched only where keys land.
    public static let defaultSlots = 65_536
    /// Slots per bucket: the ways a key may take, all scanned per lookup.
    public static let slotsPerBucket = 8

    /// The header's first word: "JCIX".
    static let magic: Int32 = 0x4A43_4958
    /// Changes with any change of the layout: `attach` refuses another.
    static let layoutVersion: Int32 = 1
    /// Bytes of the header.
    static let headerBytes = 128
    /// Bytes of a slot (two cache lines).
    static let slotBytes = 128
    /// Header offset of the bucket count.
    static let bucketsOffset = 8
    /// Header offset of the hash seed (two words).
    static let seedOffset = 16
    /// Header offset of the byte budget.
    static let budgetOffset = 32
    /// Header offset of the bytes in use.
    static let bytesInUseOffset = 40
    /// Header offset of the last body generation handed out.
    static let generationOffset = 88

    /// The memfd holding the index (the master's is passed to workers; a worker's is the inherited copy).
    public let fd: Int32
    /// Buckets of `slotsPerBucket` slots.
    public let buckets: Int
    /// The secret seed of `CacheKeyHasher`, drawn at creation: the same in every process mapping the index.
    public let hashSeed: (UInt64, UInt64)
    /// Where the memfd is mapped in this process.
    let base: UnsafeMutableRawPointer
    private let byteCount: Int

    /// Every slot (a multiple of `slotsPerBucket`).
    public var slots: Int { buckets * Self.slotsPerBucket }

    /// A new index (the master, at start) of at least `slots` slots, rounded up to whole buckets, whose bodies
    /// may take `byteBudget` bytes (`max_size`). `seed`: the hash seed to keep (the one the files on disk are named
    /// under, so a restart finds them where they are); nil: a new one.
    public static func create(
        slots: Int = defaultSlots, byteBudget: Int64, seed: (UInt64, UInt64)? = nil
    ) throws(SystemError) -> CacheIndex {
        let buckets = max(1, (slots + slotsPerBucket - 1) / slotsPerBucket)
        let fd = cjester_memfd_create("jester-cache-index")
        guard fd >= 0 else { throw SystemError("memfd_create") }
        do throws(SystemError) {
            guard ftruncate(fd, off_t(byteCount(buckets: buckets))) == 0 else {
                throw SystemError("ftruncate", "cache index")
            }
            // Written before the magic: an index is only attachable once whole.
            var header = [UInt8](repeating: 0, count: headerBytes)
            header.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: Int64(buckets), toByteOffset: bucketsOffset, as: Int64.self)
                bytes.storeBytes(
                    of: seed?.0 ?? UInt64.random(in: .min ... .max), toByteOffset: seedOffset, as: UInt64.self)
                bytes.storeBytes(
                    of: seed?.1 ?? UInt64.random(in: .min ... .max), toByteOffset: seedOffset + 8, as: UInt64.self)
                bytes.storeBytes(of: max(0, byteBudget), toByteOffset: budgetOffset, as: Int64.self)
                bytes.storeBytes(of: layoutVersion, toByteOffset: 4, as: Int32.self)
                bytes.storeBytes(of: magic, toByteOffset: 0, as: Int32.self)
            }
            guard header.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == headerBytes else {
                throw SystemError("pwrite", "cache index")
            }
            return try CacheIndex(fd: fd, header: header)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The index behind an inherited descriptor (a worker, or the master after a binary upgrade); it owns `fd`
    /// once attached. A descriptor of another layout is refused (a new binary then builds a new index from the
    /// files, Docs/cache-design.md).
    public static func attach(fd: Int32) throws(SystemError) -> CacheIndex {
        var header = [UInt8](repeating: 0, count: headerBytes)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        var status = stat()
        guard read == headerBytes else { throw notAnIndex }
        let (magic, version, buckets) = header.withUnsafeBytes {
            (
                $0.load(fromByteOffset: 0, as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self),
                $0.load(fromByteOffset: bucketsOffset, as: Int64.self)
            )
        }
        guard magic == Self.magic, version == layoutVersion, buckets > 0, buckets <= Int64(Int32.max),
            fstat(fd, &status) == 0, Int(status.st_size) >= byteCount(buckets: Int(buckets))
        else { throw notAnIndex }
        return try CacheIndex(fd: fd, header: header)
    }

    private static var notAnIndex: SystemError {
        SystemError("attach", "cache index (not an index of this layout)", errno: EINVAL)
    }

    private static func byteCount(buckets: Int) -> Int {
        headerBytes + varyNamesBytes + buckets * slotsPerBucket * slotBytes
    }

    private init(fd: Int32, header: [UInt8]) throws(SystemError) {
        let (buckets, seed) = header.withUnsafeBytes {
            (
                Int($0.load(fromByteOffset: Self.bucketsOffset, as: Int64.self)),
                (
                    $0.load(fromByteOffset: Self.seedOffset, as: UInt64.self),
                    $0.load(fromByteOffset: Self.seedOffset + 8, as: UInt64.self)
                )
            )
        }
        let byteCount = Self.byteCount(buckets: buckets)
        guard let mapped = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SystemError("mmap", "cache index")
        }
        self.fd = fd
        self.byteCount = byteCount
        self.buckets = buckets
        hashSeed = seed
        base = mapped
    }

    deinit {
        munmap(base, byteCount)
        close(fd)
    }

    // MARK: Header

    /// The bytes the bodies may take (`max_size`); `makeRoom` evicts down to it.
    public var byteBudget: Int64 {
        get { cjester_atomic_load64(word(Self.budgetOffset)) }
        set { cjester_atomic_store64(word(Self.budgetOffset), max(0, newValue)) }
    }

    /// The bytes of every published entry (`CacheIndexEntry.fileSize`), kept by publish, remove and eviction.
    public var bytesInUse: Int64 { cjester_atomic_load64(word(Self.bytesInUseOffset)) }

    /// A counter's value since the index was created (by any process).
    public func count(_ counter: Counter) -> Int { Int(cjester_atomic_load64(word(counter.rawValue))) }

    /// Adds one to a counter (hits, misses and collapsed are the caller's to count).
    public func increment(_ counter: Counter) { cjester_atomic_add64(word(counter.rawValue), 1) }

    /// A body generation no process has used with this index: the writer names its file with it.
    public func nextBodyGeneration() -> UInt64 {
        UInt64(bitPattern: cjester_atomic_add64(word(Self.generationOffset), 1))
    }

    /// Makes every later `nextBodyGeneration` greater than `generation` (a rebuild, before any worker writes:
    /// the files kept from before hold generations the new index must not hand out again for their keys).
    public func raiseBodyGeneration(past generation: UInt64) {
        let current = UInt64(bitPattern: cjester_atomic_load64(word(Self.generationOffset)))
        guard current < generation else { return }
        cjester_atomic_add64(word(Self.generationOffset), Int64(bitPattern: generation - current))
    }

    /// Adds to (or, negative, subtracts from) the bytes in use.
    func addBytes(_ bytes: Int64) { cjester_atomic_add64(word(Self.bytesInUseOffset), bytes) }

    /// The header word at `offset`.
    func word(_ offset: Int) -> UnsafeMutablePointer<Int64> {
        (base + offset).assumingMemoryBound(to: Int64.self)
    }

    /// Now, in nanoseconds of CLOCK_MONOTONIC: the clock of fetching deadlines (the same in every process).
    public static func monotonicNanoseconds() -> Int64 {
        RateLimitTable.monotonicNanoseconds()
    }

    // MARK: Slot words

    /// The first slot of `key`'s bucket.
    func firstSlot(of key: Key) -> Int {
        // The high half chooses the bucket, the low half is the tag: the two are independent bits of SipHash.
        Int(key.high % UInt64(buckets)) * Self.slotsPerBucket
    }

    /// The first byte of `slot`.
    func slotPointer(_ slot: Int) -> UnsafeMutableRawPointer {
        base + Self.headerBytes + Self.varyNamesBytes + slot * Self.slotBytes
    }

    /// Reads the word at `offset` of `slot` (sequentially consistent).
    func load(_ slot: Int, _ offset: Int) -> Int64 {
        cjester_atomic_load64((slotPointer(slot) + offset).assumingMemoryBound(to: Int64.self))
    }

    /// Writes the word at `offset` of `slot` (sequentially consistent).
    func store(_ slot: Int, _ offset: Int, _ value: Int64) {
        cjester_atomic_store64((slotPointer(slot) + offset).assumingMemoryBound(to: Int64.self), value)
    }

    /// The tag of `slot` (0: empty).
    func tag(_ slot: Int) -> UInt64 { UInt64(bitPattern: load(slot, 0)) }

    /// The control word of `slot`.
    func control(_ slot: Int) -> CacheIndexControl { CacheIndexControl(raw: UInt64(bitPattern: load(slot, 8))) }

    /// Swaps {tag, control} of `slot` from what was read to the new pair; false when another process changed
    /// either first. Wakes every waiter on the slot when it succeeds and `wake` says so.
    func swap(
        _ slot: Int, from: (tag: UInt64, control: CacheIndexControl), to: (tag: UInt64, control: CacheIndexControl),
        wake: Bool = false
    ) -> Bool {
        let swapped =
            cjester_atomic_cas128(slotPointer(slot), from.tag, from.control.raw, to.tag, to.control.raw) != 0
        if swapped && wake {
            _ = cjester_futex_wake((slotPointer(slot) + 8).assumingMemoryBound(to: UInt32.self), Int32.max)
        }
        return swapped
    }

    /// The entry words of `slot`; consistent only under a seqlock read or while holding its flag.
    func readEntry(_ slot: Int) -> CacheIndexEntry {
        let statusWord = UInt64(bitPattern: load(slot, 72))
        let staleWord = UInt64(bitPattern: load(slot, 120))
        var entry = CacheIndexEntry(
            status: Int32(bitPattern: UInt32(truncatingIfNeeded: statusWord)),
            options: .init(rawValue: UInt32(truncatingIfNeeded: statusWord >> 32)),
            requestTime: load(slot, 80), responseTime: load(slot, 88), storedAt: load(slot, 96),
            lifetime: load(slot, 104), correctedInitialAge: load(slot, 112),
            staleWhileRevalidate: Int32(bitPattern: UInt32(truncatingIfNeeded: staleWord)),
            staleIfError: Int32(bitPattern: UInt32(truncatingIfNeeded: staleWord >> 32)),
            bodySize: load(slot, 40), headerSize: load(slot, 48),
            bodyGeneration: UInt64(bitPattern: load(slot, 56)), varyHash: UInt64(bitPattern: load(slot, 64)))
        entry.lastUsed = load(slot, 32)
        return entry
    }

    /// Writes the entry words of `slot`: only its flag's owner, while the slot is `reserved`.
    func writeEntry(_ slot: Int, _ entry: CacheIndexEntry) {
        store(slot, 32, entry.lastUsed)
        store(slot, 40, entry.bodySize)
        store(slot, 48, entry.headerSize)
        store(slot, 56, Int64(bitPattern: entry.bodyGeneration))
        store(slot, 64, Int64(bitPattern: entry.varyHash))
        let statusWord = UInt64(UInt32(bitPattern: entry.status)) | UInt64(entry.options.rawValue) << 32
        store(slot, 72, Int64(bitPattern: statusWord))
        store(slot, 80, entry.requestTime)
        store(slot, 88, entry.responseTime)
        store(slot, 96, entry.storedAt)
        store(slot, 104, entry.lifetime)
        store(slot, 112, entry.correctedInitialAge)
        let staleWord =
            UInt64(UInt32(bitPattern: entry.staleWhileRevalidate))
            | UInt64(UInt32(bitPattern: entry.staleIfError)) << 32
        store(slot, 120, Int64(bitPattern: staleWord))
    }
}
