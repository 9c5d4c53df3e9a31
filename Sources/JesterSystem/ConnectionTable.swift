// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// Open client connections of the whole instance, counted in memory every worker shares, for the instance-wide
/// limits (`server.max_connections`, `server.max_connections_per_client`): SO_REUSEPORT spreads clients over
/// workers, so a per-worker count can neither cap the instance nor one client's share of it.
///
/// The master creates the table (an anonymous memfd, passed to each worker like its listeners, and across a
/// binary upgrade) and gives each live worker its own *partition*: a worker only ever changes its partition's
/// counters, and reads all of them. When a worker dies, however it dies, the master zeroes its partition, so a
/// crash never leaves counts behind (counts in one shared counter could not be taken back).
///
/// Per-client counts are kept by hash of the client's address in two rows of buckets (a count-min sketch): an
/// address's count is the smaller of its two bucket sums, which is exact unless both of its buckets collide
/// with other busy addresses, and then too high (a client may be refused early, never admitted over its limit).
///
/// Admission increments first and then checks the sums, so two workers admitting at once can both refuse near
/// the limit, but the limit is never exceeded.
public final class ConnectionTable: @unchecked Sendable {
    /// What admitting a connection found.
    public enum Refusal: Equatable, Sendable {
        case instanceFull(limit: Int)
        case clientFull(limit: Int)
    }

    private static let magic: Int32 = 0x4A43_4E54  // "JCNT"
    private static let layoutVersion: Int32 = 1
    private static let headerWords = 8
    private static let rows = 2

    /// The memfd holding the table (the master's is passed to workers; a worker's is the inherited copy).
    public let fd: Int32
    public let partitions: Int
    public let buckets: Int
    private let words: UnsafeMutablePointer<Int32>
    private let byteCount: Int

    /// A new table (the master, at start): `partitions` live workers at most, `buckets` per row.
    public static func create(partitions: Int, buckets: Int) throws(SystemError) -> ConnectionTable {
        let fd = cjester_memfd_create("jester-connections")
        guard fd >= 0 else { throw SystemError("memfd_create") }
        do throws(SystemError) {
            guard ftruncate(fd, off_t(byteCount(partitions: partitions, buckets: buckets))) == 0 else {
                throw SystemError("ftruncate", "connection table")
            }
            let table = try ConnectionTable(fd: fd, partitions: partitions, buckets: buckets)
            table.words[2] = Int32(partitions)
            table.words[3] = Int32(buckets)
            table.words[1] = layoutVersion
            table.words[0] = magic
            return table
        } catch {
            close(fd)
            throw error
        }
    }

    /// The table behind an inherited descriptor (a worker, or the master after a binary upgrade); it owns `fd`.
    public static func attach(fd: Int32) throws(SystemError) -> ConnectionTable {
        var header = [Int32](repeating: 0, count: headerWords)
        let read = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        var status = stat()
        guard read == headerWords * 4, header[0] == magic, header[1] == layoutVersion, header[2] > 0, header[3] > 0,
            fstat(fd, &status) == 0,
            Int(status.st_size) >= byteCount(partitions: Int(header[2]), buckets: Int(header[3]))
        else { throw SystemError("attach", "connection table (not a table of this layout)", errno: EINVAL) }
        return try ConnectionTable(fd: fd, partitions: Int(header[2]), buckets: Int(header[3]))
    }

    private static func byteCount(partitions: Int, buckets: Int) -> Int {
        (headerWords + partitions + partitions * rows * buckets) * MemoryLayout<Int32>.size
    }

    private init(fd: Int32, partitions: Int, buckets: Int) throws(SystemError) {
        let byteCount = Self.byteCount(partitions: partitions, buckets: buckets)
        guard let mapped = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SystemError("mmap", "connection table")
        }
        self.fd = fd
        self.byteCount = byteCount
        self.partitions = partitions
        self.buckets = buckets
        words = mapped.bindMemory(to: Int32.self, capacity: byteCount / 4)
    }

    deinit {
        munmap(words, byteCount)
        close(fd)
    }

    // MARK: Layout

    /// How many partitions are (or were lately) in use: sums stop there. Kept by the master.
    private var highWater: UnsafeMutablePointer<Int32> { words + 4 }

    private func total(_ partition: Int) -> UnsafeMutablePointer<Int32> { words + Self.headerWords + partition }

    private func bucket(_ partition: Int, row: Int, index: Int) -> UnsafeMutablePointer<Int32> {
        words + Self.headerWords + partitions + (partition * Self.rows + row) * buckets + index
    }

    /// The two bucket indices of a client address (FNV-1a, 64 bits, one half per row).
    public func buckets(of client: String) -> (Int, Int) {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in client.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return (Int(hash % UInt64(buckets)), Int((hash >> 32) % UInt64(buckets)))
    }

    // MARK: The master's side

    /// Partition `partition` is given to a new worker: sums include it from now on.
    public func partitionClaimed(_ partition: Int) {
        precondition(partition < partitions)
        // Only the master writes the high-water mark, from its one thread; it never goes down (cleared
        // partitions read as zero).
        if Int(cjester_atomic_load32(highWater)) <= partition { cjester_atomic_store32(highWater, Int32(partition + 1)) }
    }

    /// The worker that had `partition` is gone (its process has exited): its connections went with it.
    public func clear(partition: Int) {
        cjester_atomic_store32(total(partition), 0)
        for row in 0..<Self.rows {
            for index in 0..<buckets where cjester_atomic_load32(bucket(partition, row: row, index: index)) != 0 {
                cjester_atomic_store32(bucket(partition, row: row, index: index), 0)
            }
        }
    }

    // MARK: A worker's side

    /// Counts a new connection from `client` in `partition`, unless that takes the instance over `maxTotal` or the
    /// client over `maxPerClient` (0: no limit): then nothing is counted and the refusal says which.
    public func admit(_ client: String, partition: Int, maxTotal: Int, maxPerClient: Int) -> Refusal? {
        let (first, second) = buckets(of: client)
        cjester_atomic_add32(total(partition), 1)
        cjester_atomic_add32(bucket(partition, row: 0, index: first), 1)
        cjester_atomic_add32(bucket(partition, row: 1, index: second), 1)
        var refusal: Refusal?
        if maxTotal > 0, instanceConnections > maxTotal {
            refusal = .instanceFull(limit: maxTotal)
        } else if maxPerClient > 0, connections(first, second) > maxPerClient {
            refusal = .clientFull(limit: maxPerClient)
        }
        if refusal != nil { release(client, partition: partition) }
        return refusal
    }

    /// A counted connection from `client` closed.
    public func release(_ client: String, partition: Int) {
        let (first, second) = buckets(of: client)
        cjester_atomic_add32(total(partition), -1)
        cjester_atomic_add32(bucket(partition, row: 0, index: first), -1)
        cjester_atomic_add32(bucket(partition, row: 1, index: second), -1)
    }

    /// A counted connection turned out to come from `newClient` (a PROXY protocol header): it counts there now,
    /// unless that takes `newClient` over `maxPerClient` (then it still counts under `oldClient`).
    public func reassign(from oldClient: String, to newClient: String, partition: Int, maxPerClient: Int) -> Refusal? {
        let (first, second) = buckets(of: newClient)
        cjester_atomic_add32(bucket(partition, row: 0, index: first), 1)
        cjester_atomic_add32(bucket(partition, row: 1, index: second), 1)
        if maxPerClient > 0, connections(first, second) > maxPerClient {
            cjester_atomic_add32(bucket(partition, row: 0, index: first), -1)
            cjester_atomic_add32(bucket(partition, row: 1, index: second), -1)
            return .clientFull(limit: maxPerClient)
        }
        let (oldFirst, oldSecond) = buckets(of: oldClient)
        cjester_atomic_add32(bucket(partition, row: 0, index: oldFirst), -1)
        cjester_atomic_add32(bucket(partition, row: 1, index: oldSecond), -1)
        return nil
    }

    // MARK: Reading

    /// Open connections of every worker.
    public var instanceConnections: Int {
        let used = min(Int(cjester_atomic_load32(highWater)), partitions)
        var sum = 0
        for partition in 0..<used { sum += Int(cjester_atomic_load32(total(partition))) }
        return sum
    }

    /// Open connections from `client`, over every worker (never less than the truth; see the type's comment).
    public func connections(from client: String) -> Int {
        let (first, second) = buckets(of: client)
        return connections(first, second)
    }

    private func connections(_ first: Int, _ second: Int) -> Int {
        let used = min(Int(cjester_atomic_load32(highWater)), partitions)
        var sums = (0, 0)
        for partition in 0..<used {
            sums.0 += Int(cjester_atomic_load32(bucket(partition, row: 0, index: first)))
            sums.1 += Int(cjester_atomic_load32(bucket(partition, row: 1, index: second)))
        }
        return min(sums.0, sums.1)
    }
}
