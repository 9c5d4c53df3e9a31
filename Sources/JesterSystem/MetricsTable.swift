// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc
import JesterMetrics

/// The instance's metrics, in memory the master and every worker share, so totals survive worker exits,
/// respawns, reloads and binary upgrades (issue 20): before it, a worker's figures went with it.
///
/// Like the `ConnectionTable`, the master creates it once (an anonymous memfd, pages allocated only where
/// written), passes its descriptor to every worker and across a binary upgrade, and gives each live worker its
/// own *partition*. A partition is two regions of 64-bit words, indexed by the `SeriesID`s a `SeriesRegistry`
/// assigns: the cumulative region (counters, histogram buckets and sums) and the gauge region.
///
/// - A worker adds to its own partition only, one atomic add per counter (two per histogram observation:
///   bucket and sum). It is the partition's only writer, so there is no contention: the add is a `lock xadd`
///   on a cache line no other process writes (measured: see `MetricsWriter`).
/// - Partition 0 is the master's: its own counts (reloads, restarts, generation, health) and the *retired*
///   totals. When a worker has exited (reaped, so nothing writes its partition any more), the master folds
///   its cumulative words into partition 0 and zeroes them, and zeroes its gauges without folding (an exited
///   worker's connections are gone). The partition is then free for the next worker.
/// - A scrape sums partition 0 and every claimed partition, word by word. Every word only grows between folds
///   and a fold moves a value from one partition to another; a fold sequence (odd while one runs) lets a
///   reader in another process retry rather than see a value twice or not at all, which Prometheus would
///   read as a counter reset.
/// - The registry's directory is stored in the table too (`publishDirectory`): workers of any generation and
///   a new binary read the same series ids without another message. A reload appends new series; old ids keep
///   their words and totals.
///
/// Layout: a 64-byte header (magic, version, partitions, the regions' words, directory capacity and length,
/// high-water mark, fold sequence), the directory, then the partitions, each rounded to whole pages so a
/// worker's writes dirty only its own pages. Cost: `(cumulative + gauge words) × 8` bytes of address space per
/// partition (1.2 MiB with the defaults), of which only the pages of registered series are ever touched.
public final class MetricsTable: @unchecked Sendable {
    /// The master's partition: the retired totals and the master's own series.
    public static let masterPartition = 0

    private static let magic: Int32 = 0x4A4D_4554  // "JMET"
    private static let layoutVersion: Int32 = 1
    private static let headerBytes = 64
    private static let pageWords = 512
    // Header offsets (bytes).
    private static let partitionsOffset = 8
    private static let cumulativeOffset = 16
    private static let gaugeOffset = 24
    private static let directoryCapacityOffset = 32
    private static let directoryLengthOffset = 40
    private static let highWaterOffset = 48
    private static let foldSequenceOffset = 56

    /// The memfd holding the table (the master's is passed to workers; a worker's is the inherited copy).
    public let fd: Int32
    /// Partitions, the master's included.
    public let partitions: Int
    /// Words of each region of a partition.
    public let cumulativeWords: Int
    public let gaugeWords: Int
    /// Bytes the directory may take.
    public let directoryCapacity: Int
    private let base: UnsafeMutableRawPointer
    private let byteCount: Int

    /// A new table (the master, at start): `partitions` including the master's.
    public static func create(
        partitions: Int, cumulativeWords: Int = SeriesRegistry.defaultCumulativeWords,
        gaugeWords: Int = SeriesRegistry.defaultGaugeWords, directoryBytes: Int = SeriesRegistry.defaultDirectoryBytes
    ) throws(SystemError) -> MetricsTable {
        precondition(partitions >= 2 && cumulativeWords > 0 && gaugeWords > 0 && directoryBytes > 0)
        let fd = cjester_memfd_create("jester-metrics")
        guard fd >= 0 else { throw SystemError("memfd_create") }
        do throws(SystemError) {
            let sizes = (partitions, cumulativeWords, gaugeWords, directoryBytes)
            guard ftruncate(fd, off_t(byteCount(sizes))) == 0 else { throw SystemError("ftruncate", "metrics table") }
            // Written before the magic: a table is only attachable once whole.
            var header = [UInt8](repeating: 0, count: headerBytes)
            header.withUnsafeMutableBytes { bytes in
                bytes.storeBytes(of: Int64(partitions), toByteOffset: partitionsOffset, as: Int64.self)
                bytes.storeBytes(of: Int64(cumulativeWords), toByteOffset: cumulativeOffset, as: Int64.self)
                bytes.storeBytes(of: Int64(gaugeWords), toByteOffset: gaugeOffset, as: Int64.self)
                bytes.storeBytes(of: Int64(directoryBytes), toByteOffset: directoryCapacityOffset, as: Int64.self)
                bytes.storeBytes(of: Int64(1), toByteOffset: highWaterOffset, as: Int64.self)
                bytes.storeBytes(of: layoutVersion, toByteOffset: 4, as: Int32.self)
                bytes.storeBytes(of: magic, toByteOffset: 0, as: Int32.self)
            }
            guard header.withUnsafeBytes({ pwrite(fd, $0.baseAddress, $0.count, 0) }) == headerBytes else {
                throw SystemError("pwrite", "metrics table")
            }
            return try MetricsTable(fd: fd, sizes)
        } catch {
            close(fd)
            throw error
        }
    }

    /// The table behind an inherited descriptor (a worker, or the master after a binary upgrade); it owns `fd`
    /// once attached (a failed attach leaves it to the caller).
    public static func attach(fd: Int32) throws(SystemError) -> MetricsTable {
        var header = [UInt8](repeating: 0, count: headerBytes)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard read == headerBytes else { throw notATable }
        let fields = header.withUnsafeBytes { bytes in
            [partitionsOffset, cumulativeOffset, gaugeOffset, directoryCapacityOffset].map {
                Int(bytes.load(fromByteOffset: $0, as: Int64.self))
            }
        }
        let (magic, version) = header.withUnsafeBytes {
            ($0.load(fromByteOffset: 0, as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self))
        }
        var status = stat()
        guard magic == Self.magic, version == layoutVersion, fields.allSatisfy({ $0 > 0 && $0 <= Int(Int32.max) }),
            fstat(fd, &status) == 0, Int(status.st_size) >= byteCount((fields[0], fields[1], fields[2], fields[3]))
        else { throw notATable }
        return try MetricsTable(fd: fd, (fields[0], fields[1], fields[2], fields[3]))
    }

    private static var notATable: SystemError {
        SystemError("attach", "metrics table (not a table of this layout)", errno: EINVAL)
    }

    private static func partitionWords(_ cumulative: Int, _ gauge: Int) -> Int {
        (cumulative + gauge + pageWords - 1) / pageWords * pageWords
    }

    private static func directoryPadded(_ bytes: Int) -> Int { (headerBytes + bytes + 4095) / 4096 * 4096 }

    private static func byteCount(_ sizes: (Int, Int, Int, Int)) -> Int {
        directoryPadded(sizes.3) + sizes.0 * partitionWords(sizes.1, sizes.2) * 8
    }

    private init(fd: Int32, _ sizes: (Int, Int, Int, Int)) throws(SystemError) {
        let byteCount = Self.byteCount(sizes)
        guard let mapped = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SystemError("mmap", "metrics table")
        }
        self.fd = fd
        self.byteCount = byteCount
        (partitions, cumulativeWords, gaugeWords, directoryCapacity) = sizes
        base = mapped
    }

    deinit {
        munmap(base, byteCount)
        close(fd)
    }

    // MARK: Layout

    private func header(_ offset: Int) -> UnsafeMutablePointer<Int64> {
        (base + offset).assumingMemoryBound(to: Int64.self)
    }

    private var directoryBase: UnsafeMutablePointer<UInt8> {
        (base + Self.headerBytes).assumingMemoryBound(to: UInt8.self)
    }

    /// The first word of `region` of `partition`.
    fileprivate func words(_ partition: Int, _ region: SeriesID.Region) -> UnsafeMutablePointer<Int64> {
        let first = (base + Self.directoryPadded(directoryCapacity)).assumingMemoryBound(to: Int64.self)
            + partition * Self.partitionWords(cumulativeWords, gaugeWords)
        return region == .cumulative ? first : first + cumulativeWords
    }

    /// How many partitions are (or were lately) in use: sums stop there. Kept by the master.
    public var highWater: Int { Int(cjester_atomic_load64(header(Self.highWaterOffset))) }

    // MARK: The directory

    /// Stores the registry's directory (`SeriesRegistry.directory`), which only grows: the bytes past what is
    /// stored are written, then the new length, so a process reading it never sees a half-written record.
    /// False when it does not fit (the registry was made with a larger capacity than this table's).
    @discardableResult
    public func publishDirectory(_ bytes: [UInt8]) -> Bool {
        let stored = Int(cjester_atomic_load64(header(Self.directoryLengthOffset)))
        guard bytes.count <= directoryCapacity else { return false }
        guard bytes.count > stored else { return true }
        bytes.withUnsafeBufferPointer { source in
            (directoryBase + stored).update(from: source.baseAddress! + stored, count: bytes.count - stored)
        }
        cjester_atomic_add64(header(Self.directoryLengthOffset), Int64(bytes.count - stored))
        return true
    }

    /// The stored directory (a worker at start, or a new binary's master, decodes it into a registry).
    public func directory() -> [UInt8] {
        let length = min(Int(cjester_atomic_load64(header(Self.directoryLengthOffset))), directoryCapacity)
        return Array(UnsafeBufferPointer(start: directoryBase, count: length))
    }

    /// A registry over the stored directory and this table's capacities: the master at start (empty) and after
    /// an upgrade, a worker at start. Throws when the directory is damaged.
    public func registry(seriesLimit: Int = SeriesRegistry.defaultSeriesLimit) throws(MetricsDirectoryError)
        -> SeriesRegistry
    {
        try SeriesRegistry(
            directory: directory(), seriesLimit: seriesLimit, cumulativeCapacity: cumulativeWords,
            gaugeCapacity: gaugeWords, directoryCapacity: directoryCapacity)
    }

    // MARK: The master's side

    /// Partition `partition` is given to a new worker: sums include it from now on.
    public func partitionClaimed(_ partition: Int) {
        precondition(partition > Self.masterPartition && partition < partitions)
        // Only the master writes the mark, from one thread; it never goes down (retired partitions read as 0).
        let mark = header(Self.highWaterOffset)
        let current = cjester_atomic_load64(mark)
        if current <= Int64(partition) { cjester_atomic_add64(mark, Int64(partition) + 1 - current) }
    }

    /// The worker that had `partition` has exited (reaped: nothing writes the partition any more): its counts
    /// move into the master's partition, its gauges are dropped, and the partition reads as new. `used` is the
    /// registry's words in use (words past it were never written, and reading them would allocate pages).
    public func retire(partition: Int, cumulativeUsed: Int, gaugeUsed: Int) {
        precondition(partition > Self.masterPartition && partition < partitions)
        let sequence = header(Self.foldSequenceOffset)
        cjester_atomic_add64(sequence, 1)
        let dead = words(partition, .cumulative)
        let retired = words(Self.masterPartition, .cumulative)
        for word in 0..<min(cumulativeUsed, cumulativeWords) {
            let value = cjester_atomic_load64(dead + word)
            guard value != 0 else { continue }
            cjester_atomic_add64(retired + word, value)
            cjester_atomic_add64(dead + word, -value)
        }
        let gauges = words(partition, .gauge)
        for word in 0..<min(gaugeUsed, gaugeWords) {
            let value = cjester_atomic_load64(gauges + word)
            if value != 0 { cjester_atomic_add64(gauges + word, -value) }
        }
        cjester_atomic_add64(sequence, 1)
    }

    /// Every claimed partition summed, word by word, over the words `registry` uses: what a scrape renders.
    public func snapshot(for registry: SeriesRegistry) -> MetricsSnapshot {
        let cumulativeCount = min(registry.cumulativeWordsUsed, cumulativeWords)
        let gaugeCount = min(registry.gaugeWordsUsed, gaugeWords)
        let sequence = header(Self.foldSequenceOffset)
        // A fold takes microseconds; a sequence odd for 10,000 tries means a master died inside one (it then
        // takes its workers with it), and an approximate scrape is better than none.
        for attempt in 0...10_000 {
            let before = cjester_atomic_load64(sequence)
            var snapshot = MetricsSnapshot(
                cumulative: Array(repeating: 0, count: cumulativeCount), gauges: Array(repeating: 0, count: gaugeCount))
            if before & 1 == 0 || attempt == 10_000 {
                for partition in 0..<min(highWater, partitions) {
                    sum(words(partition, .cumulative), cumulativeCount, into: &snapshot.cumulative)
                    sum(words(partition, .gauge), gaugeCount, into: &snapshot.gauges)
                }
                // No fold ran meanwhile: no value was seen in two partitions, or in none.
                if cjester_atomic_load64(sequence) == before || attempt == 10_000 { return snapshot }
            }
            sched_yield()
        }
        preconditionFailure("unreachable: the last attempt returns")
    }

    private func sum(_ source: UnsafeMutablePointer<Int64>, _ count: Int, into target: inout [Int64]) {
        for word in 0..<count { target[word] &+= cjester_atomic_load64(source + word) }
    }

    // MARK: Writers

    /// The writer of `partition`: a worker's own, or the master's (`masterPartition`).
    public func writer(partition: Int) -> MetricsWriter {
        precondition(partition >= 0 && partition < partitions)
        return MetricsWriter(table: self, partition: partition)
    }
}

/// Counts into one partition of a `MetricsTable`: what a worker keeps for its partition, and the master for
/// its own. Each call is one atomic add on the caller's own words (`cjester_atomic_add64`: a call and a
/// `lock xadd` on x86-64; relaxed ordering would be the same instruction there). Measured on the 2-vCPU
/// development machine, C at -O2 calling the shim as Swift does, 10⁸ adds on a MAP_SHARED memfd: 3.8 ns per
/// add alone, 7.6–7.9 ns while another process adds to its own partition at once (the two vCPUs share a
/// core's caches). A request makes about ten (requests, duration bucket and sum, bytes in and out, upstream
/// times): under 0.1 µs, against a 2 % budget of about 0.6 µs for a keep-alive request's ~30 µs of CPU.
public struct MetricsWriter: @unchecked Sendable {
    private let table: MetricsTable
    private let cumulative: UnsafeMutablePointer<Int64>
    private let gauges: UnsafeMutablePointer<Int64>

    fileprivate init(table: MetricsTable, partition: Int) {
        self.table = table
        cumulative = table.words(partition, .cumulative)
        gauges = table.words(partition, .gauge)
    }

    private func word(_ id: SeriesID, _ offset: Int) -> UnsafeMutablePointer<Int64> {
        switch id.region {
        case .cumulative:
            precondition(id.word + offset < table.cumulativeWords)
            return cumulative + id.word + offset
        case .gauge:
            precondition(id.word + offset < table.gaugeWords)
            return gauges + id.word + offset
        }
    }

    /// Adds `value` to a counter (never negative) or a gauge (either sign: +1 on open, -1 on close).
    @inline(__always)
    public func add(_ id: SeriesID, _ value: Int64 = 1) {
        cjester_atomic_add64(word(id, 0), value)
    }

    /// Sets a gauge this partition owns (the master's generation, a target's health). Only the partition's one
    /// writer may set: it reads its own value and adds the difference.
    public func set(_ id: SeriesID, _ value: Int64) {
        precondition(id.region == .gauge, "only gauges are set")
        let pointer = word(id, 0)
        cjester_atomic_add64(pointer, value - cjester_atomic_load64(pointer))
    }

    /// Counts one observation of `nanoseconds` in histogram `id`, whose bucket bounds are `bounds`
    /// (`HistogramBuckets.durationNanoseconds` for every duration family): its bucket, then its sum.
    @inline(__always)
    public func observe(_ id: SeriesID, nanoseconds: Int64, bounds: [Int64] = HistogramBuckets.durationNanoseconds) {
        cjester_atomic_add64(word(id, HistogramBuckets.index(of: nanoseconds, in: bounds)), 1)
        cjester_atomic_add64(word(id, bounds.count + 1), max(0, nanoseconds))
    }

    /// This partition's value of `id`'s word `offset` (tests; a scrape sums every partition instead).
    public func value(_ id: SeriesID, offset: Int = 0) -> Int64 {
        cjester_atomic_load64(word(id, offset))
    }
}
