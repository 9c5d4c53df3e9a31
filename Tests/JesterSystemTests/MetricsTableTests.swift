// SPDX-License-Identifier: Apache-2.0
import Dispatch
import Glibc
import JesterMetrics
import JesterSystem
import Testing

/// The shared metrics table, as the master and its workers see it: mappings of one memfd, a forked process
/// adding beside this one, and the fold of an exited worker's counts into the master's partition.
@Suite struct MetricsTableTests {
    private static let requests = MetricCatalog.requests
    private static let labels = ["web", "api", "app", "10.0.0.1:80", "http1", "2xx"]

    /// A table with the registry's directory published, and the ids the tests count in.
    private func table(partitions: Int = 4) throws -> (MetricsTable, SeriesRegistry, SeriesID, SeriesID, SeriesID) {
        let table = try MetricsTable.create(partitions: partitions)
        var registry = try table.registry()
        let counter = registry.register(Self.requests, Self.labels)
        let gauge = registry.register(MetricCatalog.activeConnections, ["web", "http1"])
        let histogram = registry.register(MetricCatalog.requestDuration, ["web", "api"])
        #expect(table.publishDirectory(registry.directory))
        return (table, registry, counter, gauge, histogram)
    }

    @Test func workersCountInTheirOwnPartitionsAndAScrapeSumsThem() throws {
        let (master, registry, counter, gauge, histogram) = try table()
        master.partitionClaimed(1)
        master.partitionClaimed(2)
        // Each worker maps the master's descriptor, as passed at spawn, and reads the same ids from it.
        let first = try MetricsTable.attach(fd: dup(master.fd))
        let second = try MetricsTable.attach(fd: dup(master.fd))
        #expect(try first.registry().id(Self.requests, Self.labels) == counter)
        first.writer(partition: 1).add(counter, 3)
        second.writer(partition: 2).add(counter)
        first.writer(partition: 1).add(gauge, 2)
        second.writer(partition: 2).add(gauge, 1)
        second.writer(partition: 2).add(gauge, -1)
        second.writer(partition: 2).observe(histogram, nanoseconds: 30_000_000)
        first.writer(partition: 1).observe(histogram, nanoseconds: 20_000_000_000)
        master.writer(partition: MetricsTable.masterPartition).set(registry.id(MetricCatalog.generation, []), 5)
        let snapshot = master.snapshot(for: registry)
        #expect(snapshot.value(counter) == 4 && snapshot.value(gauge) == 2)
        #expect(snapshot.value(histogram, offset: 3) == 1 && snapshot.value(histogram, offset: 11) == 1)
        #expect(snapshot.value(histogram, offset: 12) == 20_030_000_000)
        #expect(snapshot.value(registry.id(MetricCatalog.generation, [])) == 5)
        // A partition never claimed is not summed: nothing written there can count.
        master.writer(partition: 3).add(counter, 100)
        #expect(master.snapshot(for: registry).value(counter) == 4)
    }

    @Test func anExitedWorkersCountsAreFoldedAndItsGaugesDropped() throws {
        let (master, registry, counter, gauge, histogram) = try table()
        master.partitionClaimed(1)
        master.partitionClaimed(2)
        let worker = master.writer(partition: 1)
        worker.add(counter, 10)
        worker.add(gauge, 4)
        worker.observe(histogram, nanoseconds: 1_000)
        master.writer(partition: 2).add(counter, 1)
        let before = master.snapshot(for: registry)
        master.retire(partition: 1, cumulativeUsed: registry.cumulativeWordsUsed, gaugeUsed: registry.gaugeWordsUsed)
        let after = master.snapshot(for: registry)
        // Counters and histograms keep their totals; the worker's open connections are gone with it.
        #expect(after.cumulative == before.cumulative && after.value(counter) == 11)
        #expect(after.value(gauge) == 0 && before.value(gauge) == 4)
        // The partition reads as new, for the next worker given it.
        #expect(worker.value(counter) == 0 && worker.value(gauge) == 0 && worker.value(histogram) == 0)
        #expect(master.writer(partition: 0).value(counter) == 10)
        worker.add(counter, 2)
        #expect(master.snapshot(for: registry).value(counter) == 13)
    }

    @Test func aReloadAppendsSeriesThatOldMappingsCanStillCountBeside() throws {
        let (master, registry, counter, _, _) = try table()
        master.partitionClaimed(1)
        master.partitionClaimed(2)
        let old = try MetricsTable.attach(fd: dup(master.fd))
        let oldRegistry = try old.registry()
        // Generation 2 adds a route: the master registers and publishes before spawning its workers.
        var next = registry
        let added = next.register(Self.requests, ["web", "new", "app", "10.0.0.1:80", "http1", "2xx"])
        #expect(master.publishDirectory(next.directory))
        let new = try MetricsTable.attach(fd: dup(master.fd))
        let newRegistry = try new.registry()
        #expect(newRegistry.id(Self.requests, Self.labels) == counter)
        #expect(oldRegistry.id(Self.requests, Self.labels) == counter)
        old.writer(partition: 1).add(oldRegistry.id(Self.requests, Self.labels), 5)
        let newLabels = ["web", "new", "app", "10.0.0.1:80", "http1", "2xx"]
        new.writer(partition: 2).add(newRegistry.id(Self.requests, newLabels))
        master.retire(partition: 1, cumulativeUsed: next.cumulativeWordsUsed, gaugeUsed: next.gaugeWordsUsed)
        let snapshot = master.snapshot(for: next)
        #expect(snapshot.value(counter) == 5 && snapshot.value(added) == 1)
        // A new binary after an upgrade attaches the same table and reads the same registry back.
        let upgraded = try MetricsTable.attach(fd: dup(master.fd))
        #expect(try upgraded.registry().directory == next.directory)
        #expect(upgraded.snapshot(for: try upgraded.registry()) == snapshot)
    }

    @Test func aForkedWorkerAddsConcurrentlyAndIsFoldedWhenItExits() throws {
        let (master, registry, counter, gauge, _) = try table()
        master.partitionClaimed(1)
        master.partitionClaimed(2)
        let adds = 200_000
        let shared = registry.id(MetricCatalog.workerRestarts, [])
        // The child's code runs once here first, so the forked process needs no runtime lock another thread held.
        let warm = try MetricsTable.attach(fd: dup(master.fd))
        warm.writer(partition: 3).add(counter, 0)
        let fd = master.fd
        let child = fork()
        if child == 0 {
            // The worker: maps the descriptor it inherited, adds to its own partition and, to prove the adds
            // atomic across processes, to a word the parent adds to at the same time; exits without cleaning up.
            guard let table = try? MetricsTable.attach(fd: dup(fd)) else { _exit(2) }
            let writer = table.writer(partition: 2)
            writer.add(gauge, 7)
            for _ in 0..<adds {
                writer.add(counter)
                table.writer(partition: 0).add(shared)
            }
            _exit(0)
        }
        #expect(child > 0)
        let mine = master.writer(partition: 1)
        let masters = master.writer(partition: 0)
        for _ in 0..<adds {
            mine.add(counter)
            masters.add(shared)
        }
        var status: Int32 = 0
        #expect(waitpid(child, &status, 0) == child && status == 0)
        #expect(master.snapshot(for: registry).value(gauge) == 7)
        master.retire(partition: 2, cumulativeUsed: registry.cumulativeWordsUsed, gaugeUsed: registry.gaugeWordsUsed)
        let snapshot = master.snapshot(for: registry)
        #expect(snapshot.value(counter) == Int64(2 * adds) && snapshot.value(shared) == Int64(2 * adds))
        #expect(snapshot.value(gauge) == 0)
    }

    @Test func aScrapeDuringFoldsNeverSeesACounterGoBack() throws {
        // One thread counts and folds over and over, as a master reaping workers; another scrapes. Without the
        // fold sequence a scrape could see a value in both partitions or in neither: a "reset" to Prometheus.
        let (master, registry, counter, _, _) = try table()
        master.partitionClaimed(1)
        let rounds = 20_000
        nonisolated(unsafe) var regressions = 0
        nonisolated(unsafe) var last: Int64 = 0
        DispatchQueue.concurrentPerform(iterations: 2) { thread in
            if thread == 0 {
                for _ in 0..<rounds {
                    master.writer(partition: 1).add(counter)
                    master.retire(partition: 1, cumulativeUsed: registry.cumulativeWordsUsed, gaugeUsed: 0)
                }
            } else {
                var seen: Int64 = 0
                for _ in 0..<rounds / 10 {
                    let value = master.snapshot(for: registry).value(counter)
                    if value < seen || value > Int64(rounds) { regressions += 1 }
                    seen = max(seen, value)
                }
                last = seen
            }
        }
        #expect(regressions == 0 && last <= Int64(rounds))
        #expect(master.snapshot(for: registry).value(counter) == Int64(rounds))
    }

    @Test func theDirectoryIsPublishedInPartsAndBoundedByTheTable() throws {
        let table = try MetricsTable.create(partitions: 2, directoryBytes: 8_192)
        #expect(table.directory().isEmpty)
        var registry = try table.registry()
        #expect(registry.directoryCapacity == 8_192 && table.publishDirectory(registry.directory))
        let first = table.directory()
        registry.register(Self.requests, Self.labels)
        #expect(table.publishDirectory(registry.directory))
        #expect(table.directory().starts(with: first) && table.directory() == registry.directory)
        // Publishing the same bytes again changes nothing; more than the table holds is refused.
        #expect(table.publishDirectory(registry.directory) && table.directory() == registry.directory)
        #expect(!table.publishDirectory(registry.directory + [UInt8](repeating: 0, count: 8_192)))
        // A registry made over a full directory folds instead of growing past it.
        for route in 0..<200 { registry.register(Self.requests, ["web", "r\(route)", "app", "t", "http1", "2xx"]) }
        #expect(registry.directory.count <= 8_192 && registry.foldedCounts[Self.requests.name, default: 0] > 0)
        #expect(table.publishDirectory(registry.directory))
    }

    @Test func attachingSomethingElseIsRefused() throws {
        var pipeEnds: [Int32] = [0, 0]
        #expect(pipe(&pipeEnds) == 0)
        defer { close(pipeEnds[0]); close(pipeEnds[1]) }
        #expect(throws: SystemError.self) { try MetricsTable.attach(fd: pipeEnds[0]) }
        // Another table's memfd, of another layout.
        let connections = try ConnectionTable.create(partitions: 2, buckets: 8)
        #expect(throws: SystemError.self) { try MetricsTable.attach(fd: connections.fd) }
        // A metrics table cut short (its header promises more partitions than the file holds).
        let table = try MetricsTable.create(partitions: 2)
        #expect(ftruncate(table.fd, 8_192) == 0)
        #expect(throws: SystemError.self) { try MetricsTable.attach(fd: table.fd) }
    }
}
