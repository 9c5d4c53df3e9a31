// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// A rate-limit algorithm whose whole state per key is one timestamp, so the table can keep it. `GCRA` (in
/// JesterCore, which this module does not import: jesterctl links this module and stays small without it) is
/// the one there is; it conforms where both modules are visible.
public protocol RateLimitAlgorithm {
    /// What a request gets (admit, delay, refuse).
    associatedtype Decision
    /// Decides a request at `now` given the key's stored timestamp (nil: none); `newTAT` is what to store, nil
    /// to store nothing. May be called more than once for one request (when another process wins a race).
    func decide(tat: Int64?, now: Int64) -> (newTAT: Int64?, decision: Decision)
}

/// The instance-wide rate-limit state: one timestamp per client key, in memory every worker of every generation
/// shares, so a client gains no allowance because its connections land on different workers, nor by a reload or a
/// binary upgrade (`scope = "instance"` limits, issue 18).
///
/// Like the `ConnectionTable`, the master creates it once (an anonymous memfd, pages allocated lazily) and hands
/// its descriptor to every worker and across a binary upgrade. Unlike it, there are no partitions: any worker may
/// update any key, and nothing needs clearing when a worker dies.
///
/// Layout: a 64-byte header (magic, layout version, bucket count, the hash seed, eviction counters), then
/// buckets of 8 slots of 16 bytes, {key: UInt64, tat: Int64}; key 0 is an empty slot. A key lives in one bucket
/// (chosen from its mixed bits), in any of its slots.
///
/// Updates are lock-free: a 128-bit compare-and-swap of {key, tat} on the slot, retried when another process
/// changed it first (`cjester_atomic_cas128`). Every decision, a refusal too, ends in a successful CAS of the
/// slot it read, so decisions on one key are serialized exactly as in one process. Why not a lock per bucket:
/// a worker killed while holding it (SIGKILL, the OOM killer) would leave the bucket locked for every other
/// process for good, and the holder's preemption stalls the others; a CAS leaves nothing behind. Measured on
/// this 2-vCPU machine (C, 8-way buckets, 5 M operations per thread): one hot key, 1 thread 5.8 ns, 2 threads
/// 38 ns per operation (a spinlock: 3.5 and 12 ns); keys spread over 50k, 27 and 92 ns (spinlock 20 and 87 ns,
/// both dominated by cache misses). Either is noise beside a request's tens of microseconds.
///
/// Eviction: when a new key finds its bucket full, it takes the slot with the oldest TAT. A TAT in the past means
/// that key's allowance is whole, so forgetting it changes nothing; evicting a key whose TAT is still ahead
/// ("live") gives that client fresh allowance. Both are counted in the header (`evictions`, `liveEvictions`):
/// live evictions mean the table is too small for the number of clients being limited at once. The default,
/// 65,536 slots (1 MiB), holds that many limited clients; the hash is keyed (see `RateLimitKeyHasher`), so
/// clients cannot choose keys that crowd one bucket.
///
/// Time: nanoseconds of CLOCK_MONOTONIC (`monotonicNanoseconds()`). It counts from boot, the same clock in
/// every process on the machine, and the memfd cannot outlive the boot, so the master, its workers and a new
/// binary after an upgrade all read timestamps written by the others correctly; wall-clock steps (NTP, an
/// operator) do not move it.
public final class RateLimitTable: @unchecked Sendable {
    /// Slots when nothing else is said: 1 MiB of shared memory, touched only where keys land.
    public static let defaultSlots = 65_536
    /// Slots per bucket: 128 bytes, two cache lines, scanned per request.
    public static let slotsPerBucket = 8

    private static let magic: Int32 = 0x4A52_4C54  // "JRLT"
    private static let layoutVersion: Int32 = 1
    private static let headerBytes = 64
    private static let slotBytes = 16
    // Header offsets (bytes).
    private static let bucketsOffset = 8
    private static let seedOffset = 16
    private static let evictionsOffset = 32
    private static let liveEvictionsOffset = 40

    /// The memfd holding the table (the master's is passed to workers; a worker's is the inherited copy).
    public let fd: Int32
    /// Buckets of `slotsPerBucket` slots.
    public let buckets: Int
    /// The secret seed of the keys' hash, drawn at creation: the same in every process mapping the table.
    public let hashSeed: (UInt64, UInt64)
    private let base: UnsafeMutableRawPointer
    private let byteCount: Int

    /// Every slot (a multiple of `slotsPerBucket`).
    public var slots: Int { buckets * Self.slotsPerBucket }

    /// A new table (the master, at start) of at least `slots` slots, rounded up to whole buckets.
    public static func create(slots: Int = defaultSlots) throws(SystemError) -> RateLimitTable {
        let buckets = max(1, (slots + slotsPerBucket - 1) / slotsPerBucket)
        let fd = cjester_memfd_create("jester-rate-limits")
        guard fd >= 0 else { throw SystemError("memfd_create") }
        do throws(SystemError) {
            guard ftruncate(fd, off_t(byteCount(buckets: buckets))) == 0 else {
                throw SystemError("ftruncate", "rate-limit table")
            }
            // Written before the magic: a table is only attachable once whole.
            var header = [UInt8](repeating: 0, count: headerBytes)
            header.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: Int64(buckets), toByteOffset: bucketsOffset, as: Int64.self)
                bytes.storeBytes(of: UInt64.random(in: .min ... .max), toByteOffset: seedOffset, as: UInt64.self)
                bytes.storeBytes(of: UInt64.random(in: .min ... .max), toByteOffset: seedOffset + 8, as: UInt64.self)
                bytes.storeBytes(of: layoutVersion, toByteOffset: 4, as: Int32.self)
                bytes.storeBytes(of: magic, toByteOffset: 0, as: Int32.self)
            }
            guard header.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == headerBytes else {
                throw SystemError("pwrite", "rate-limit table")
            }
            return try RateLimitTable(fd: fd, header: header)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The table behind an inherited descriptor (a worker, or the master after a binary upgrade); it owns `fd`.
    public static func attach(fd: Int32) throws(SystemError) -> RateLimitTable {
        var header = [UInt8](repeating: 0, count: headerBytes)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        var status = stat()
        guard read == headerBytes else { throw notATable }
        let (magic, version, buckets) = header.withUnsafeBytes {
            (
                $0.load(fromByteOffset: 0, as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self),
                $0.load(fromByteOffset: bucketsOffset, as: Int64.self)
            )
        }
        guard magic == Self.magic, version == layoutVersion, buckets > 0, buckets <= Int64(Int32.max),
            fstat(fd, &status) == 0, Int(status.st_size) >= byteCount(buckets: Int(buckets))
        else { throw notATable }
        return try RateLimitTable(fd: fd, header: header)
    }

    private static var notATable: SystemError {
        SystemError("attach", "rate-limit table (not a table of this layout)", errno: EINVAL)
    }

    private static func byteCount(buckets: Int) -> Int {
        headerBytes + buckets * slotsPerBucket * slotBytes
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
            throw SystemError("mmap", "rate-limit table")
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

    /// Now, in nanoseconds of CLOCK_MONOTONIC: the time every caller of the table must use (see the type).
    public static func monotonicNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }

    // MARK: Counters

    /// Keys forgotten to make room for others, since the table was created (by any process).
    public var evictions: Int { Int(cjester_atomic_load64(word(at: Self.evictionsOffset))) }

    /// Of those, keys whose allowance was not yet whole: each of those clients got fresh allowance.
    public var liveEvictions: Int { Int(cjester_atomic_load64(word(at: Self.liveEvictionsOffset))) }

    private func word(at offset: Int) -> UnsafeMutablePointer<Int64> {
        (base + offset).assumingMemoryBound(to: Int64.self)
    }

    // MARK: Deciding

    /// Decides a request for `key` (from `RateLimitKeyHasher`; 0 is read as 1) at `now` under `limit`, and
    /// stores the key's new state.
    @inlinable
    public func acquire<Limit: RateLimitAlgorithm>(key: UInt64, now: Int64, limit: Limit) -> Limit.Decision {
        var decision: Limit.Decision?
        update(key: key, now: now) { tat in
            let (newTAT, latest) = limit.decide(tat: tat, now: now)
            decision = latest
            return newTAT
        }
        // update calls decide at least once.
        return decision!
    }

    /// The compare-and-swap loop under `acquire`: finds `key`'s slot (or the slot it will take), calls `decide`
    /// with the stored TAT (nil when the key is not there), and stores the TAT it returns, or re-checks that the
    /// slot did not change when it returns nil; when another process changed the slot meanwhile, starts over.
    public func update(key: UInt64, now: Int64, _ decide: (_ tat: Int64?) -> Int64?) {
        let key = key == 0 ? 1 : key
        // The key's own bits choose the bucket after mixing (SplitMix64's finalizer), so any hash will do.
        var mixed = key
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        mixed ^= mixed >> 31
        let first = base + Self.headerBytes + Int(mixed % UInt64(buckets)) * Self.slotsPerBucket * Self.slotBytes
        while true {
            var found: (slot: UnsafeMutableRawPointer, tat: Int64)?
            var victim: (slot: UnsafeMutableRawPointer, key: UInt64, tat: Int64)?
            for index in 0..<Self.slotsPerBucket {
                let slot = first + index * Self.slotBytes
                // Two loads, possibly torn apart by another writer: the CAS below compares both words, so a
                // torn pair only costs a retry.
                let slotKey = UInt64(bitPattern: cjester_atomic_load64(slot.assumingMemoryBound(to: Int64.self)))
                let slotTAT = cjester_atomic_load64((slot + 8).assumingMemoryBound(to: Int64.self))
                if slotKey == key {
                    guard let earlier = found else {
                        found = (slot, slotTAT)
                        continue
                    }
                    // Two processes inserted the key at once into different slots (each saw the bucket before
                    // the other wrote). Keep the later TAT, the stricter; free the other slot.
                    let later = slotTAT > earlier.tat
                    let drop: (slot: UnsafeMutableRawPointer, tat: Int64) = later ? earlier : (slot, slotTAT)
                    _ = cjester_atomic_cas128(drop.slot, key, UInt64(bitPattern: drop.tat), 0, 0)
                    if later { found = (slot, slotTAT) }
                } else if slotKey == 0 {
                    // The first empty slot; it beats any occupied one.
                    if victim == nil || victim!.key != 0 { victim = (slot, 0, slotTAT) }
                } else if victim == nil || (victim!.key != 0 && slotTAT < victim!.tat) {
                    victim = (slot, slotKey, slotTAT)
                }
            }
            if let (slot, tat) = found {
                let stored = decide(tat) ?? tat
                if cjester_atomic_cas128(slot, key, UInt64(bitPattern: tat), key, UInt64(bitPattern: stored)) != 0 {
                    return
                }
            } else if let victim {
                guard let stored = decide(nil) else { return }
                let swapped = cjester_atomic_cas128(
                    victim.slot, victim.key, UInt64(bitPattern: victim.tat), key, UInt64(bitPattern: stored))
                if swapped != 0 {
                    if victim.key != 0 {
                        cjester_atomic_add64(word(at: Self.evictionsOffset), 1)
                        if victim.tat > now { cjester_atomic_add64(word(at: Self.liveEvictionsOffset), 1) }
                    }
                    return
                }
            }
        }
    }
}
