// SPDX-License-Identifier: Apache-2.0
import JesterConfig
import JesterMetrics
import JesterSystem
import Logging

/// The master's share of the instance's metrics (jester-metrics(7)): the shared table and its directory of
/// series, which partition each live worker counts in, and the master's own writer. Loop-confined to the
/// master's event loop like everything in `Master`.
final class MasterMetrics {
    /// The table every worker of every generation counts in; nil when it could not be made (no metrics then).
    var table: MetricsTable?
    /// The series registered so far (only grows); its directory is what the table stores.
    var registry: SeriesRegistry?
    /// The partition each live worker counts in, by pid (partition 0 is the master's).
    var partitions: [Int32: Int] = [:]
    /// Series of target health registered so far, by upstream then target (registered once a check decides).
    var healthIDs: [String: [String: SeriesID]] = [:]
    /// Policy counters: their series by policy then counter (registered when first reported), and what each
    /// live worker's reports were exported up to, by pid, policy and counter.
    var policyCounterIDs: [String: [String: SeriesID]] = [:]
    var policyCountersExported: [Int32: [String: [String: Int64]]] = [:]

    /// The master's writer (partition 0).
    var writer: MetricsWriter? { table?.writer(partition: MetricsTable.masterPartition) }
}

/// Creating the table, registering a configuration's series, giving workers partitions and retiring them,
/// the master's own series, and the exposition a scrape gets.
extension Master {
    /// Partitions for every worker of the serving generation and of as many draining ones as
    /// `max_draining_generations` allows, with a generation starting beside them (as the connection table),
    /// plus the master's. Each costs address space only until a worker writes in it.
    func metricsPartitionCount() -> Int {
        1 + min(1024, max(16, workerCount * (configuration.server.maxDrainingGenerations + 2)))
    }

    /// Makes the table at start (or when an upgrade's could not be mapped) and registers the configuration;
    /// with `[metrics] enabled = false` there is no table (a reload that turns metrics on makes it).
    func makeMetricsTable() {
        metricsConfigured(configuration)
        setMasterGauges()
    }

    /// A new table, or nil (warned) when it cannot be made.
    private func createMetricsTable() -> MetricsTable? {
        do {
            let table = try MetricsTable.create(partitions: metricsPartitionCount())
            metrics.registry = try table.registry()
            metrics.table = table
            return table
        } catch {
            metrics.table = nil
            logger.warning("no shared metrics table; jesterctl metrics and the admin API's /metrics are empty",
                metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// The table a binary upgrade handed over: the adopted workers go on counting in their partitions, and the
    /// directory gives this program the same ids. A table it cannot read is replaced (totals restart).
    func adoptMetricsTable(fd: Int32?, workers adopted: [UpgradeHandOver.AdoptedWorker]) {
        if let fd {
            do {
                let table = try MetricsTable.attach(fd: fd)
                metrics.registry = try table.registry()
                metrics.table = table
                for worker in adopted {
                    if let partition = worker.metricsPartition { metrics.partitions[worker.pid] = partition }
                }
                metricsConfigured(configuration)
                setMasterGauges()
                return
            } catch {
                logger.error("upgrade: cannot read the metrics table; making a new one (totals restart)",
                    metadata: ["error": "\(error)"])
            }
        }
        makeMetricsTable()
    }

    /// Registers every series `configuration` can produce and publishes the directory: before its workers
    /// spawn (start, reload, upgrade), so they find every id they look up. The table is made here the first
    /// time a configuration counts; one that does not count registers nothing (a table made earlier keeps its
    /// series and totals for when metrics are turned on again).
    func metricsConfigured(_ configuration: Configuration) {
        guard configuration.metrics.enabled, let table = metrics.table ?? createMetricsTable(),
            var registry = metrics.registry
        else { return }
        registry.register(configuration)
        metrics.registry = registry
        if !table.publishDirectory(registry.directory) {
            logger.warning("the metrics directory is full: new series are counted under their family's other series")
        }
    }

    /// The lowest free partition for a new worker, or nil when there is no table or no room (it then counts
    /// nothing, and the warning says so).
    func claimMetricsPartition(for pid: Int32) -> Int? {
        guard let table = metrics.table else { return nil }
        let used = Set(metrics.partitions.values)
        guard let free = (1..<table.partitions).first(where: { !used.contains($0) }) else {
            logger.warning("metrics table full: this worker's requests are not counted", metadata: [
                "pid": .stringConvertible(pid), "partitions": .stringConvertible(table.partitions)])
            return nil
        }
        metrics.partitions[pid] = free
        table.partitionClaimed(free)
        return free
    }

    /// A worker was reaped: nothing writes its partition any more, so its counts move into the master's and
    /// the partition is free for the next worker.
    func retireMetricsPartition(of pid: Int32) {
        guard let partition = metrics.partitions.removeValue(forKey: pid), let table = metrics.table,
            let registry = metrics.registry
        else { return }
        table.retire(
            partition: partition, cumulativeUsed: registry.cumulativeWordsUsed, gaugeUsed: registry.gaugeWordsUsed)
    }

    // MARK: The master's own series

    /// The generation gauge, set whenever it may have changed.
    func setMasterGauges() {
        guard let writer = metrics.writer, let registry = metrics.registry else { return }
        writer.set(registry.id(MetricCatalog.generation, []), Int64(generation))
        exportCacheMetrics(writer, registry)
        exportPolicyCounters()
    }

    /// What policies counted, from the totals each worker reports every second, into the master's part of the
    /// table as they grew since the last export. A counter's series is registered when first reported (a
    /// policy names its counters itself, at most 32). Counts a worker made after its last report before it
    /// exited are not seen.
    private func exportPolicyCounters() {
        guard let table = metrics.table, let writer = metrics.writer, var registry = metrics.registry else { return }
        var registered = false
        var live: Set<Int32> = []
        for worker in workers.values {
            live.insert(worker.pid)
            for policy in worker.stats.policies ?? [] {
                for (counter, total) in policy.counters ?? [:] {
                    let before = metrics.policyCountersExported[worker.pid]?[policy.name]?[counter] ?? 0
                    guard total > before else { continue }
                    let id: SeriesID
                    if let known = metrics.policyCounterIDs[policy.name]?[counter] {
                        id = known
                    } else {
                        id = registry.register(MetricCatalog.policyCounter, [policy.name, counter])
                        metrics.policyCounterIDs[policy.name, default: [:]][counter] = id
                        registered = true
                    }
                    writer.add(id, total - before)
                    metrics.policyCountersExported[worker.pid, default: [:]][policy.name, default: [:]][counter] = total
                }
            }
        }
        metrics.policyCountersExported = metrics.policyCountersExported.filter { live.contains($0.key) }
        if registered {
            metrics.registry = registry
            table.publishDirectory(registry.directory)
        }
    }

    /// The shared cache's counts, kept in its index by every worker, into the master's part of the table: its
    /// counters by what they grew since the last scrape (`cacheCountsExported`), its size and entries as set.
    private func exportCacheMetrics(_ writer: MetricsWriter, _ registry: SeriesRegistry) {
        guard let store = cacheStore else { return }
        let status = store.status()
        let counts = [status.hits, status.misses, status.stores, status.evictions, status.collapsed]
        let families = [
            MetricCatalog.cacheHits, MetricCatalog.cacheMisses, MetricCatalog.cacheStores,
            MetricCatalog.cacheEvictions, MetricCatalog.cacheCollapsed,
        ]
        if cacheCountsExported.count != counts.count { cacheCountsExported = Array(repeating: 0, count: counts.count) }
        for (index, family) in families.enumerated() where counts[index] > cacheCountsExported[index] {
            writer.add(registry.id(family, []), Int64(counts[index] - cacheCountsExported[index]))
            cacheCountsExported[index] = counts[index]
        }
        writer.set(registry.id(MetricCatalog.cacheSize, []), status.bytesInUse)
        writer.set(registry.id(MetricCatalog.cacheEntries, []), Int64(status.entries))
    }

    /// A reload (or upgrade) ended: reloads are counted by result, and the generation may have moved.
    func metricsTransactionEnded(_ kind: Machine.Transaction.Kind, success: Bool) {
        if kind == .reload, let writer = metrics.writer, let registry = metrics.registry {
            let result = success ? JesterMetrics.ReloadResult.success : .failure
            writer.add(registry.id(MetricCatalog.reloads, [result.rawValue]))
        }
        setMasterGauges()
    }

    /// A worker that exited unasked is started again.
    func metricsWorkerRestarted() {
        guard let writer = metrics.writer, let registry = metrics.registry else { return }
        writer.add(registry.id(MetricCatalog.workerRestarts, []))
    }

    /// Target health as the health checker sees it: 1 healthy, 0 unhealthy. A target whose health is unknown
    /// (no check, or none decided yet) has no series until a check decides, and keeps its last value if its
    /// check is removed by a reload.
    func updateTargetHealthMetrics() {
        guard let table = metrics.table, let writer = metrics.writer, var registry = metrics.registry else { return }
        var registered = false
        for upstream in configuration.upstreams {
            for target in upstream.targets.map(\.description) {
                let health = healthChecker.health(upstream: upstream.name, target: target)
                guard health == "healthy" || health == "unhealthy" else { continue }
                let id: SeriesID
                if let known = metrics.healthIDs[upstream.name]?[target] {
                    id = known
                } else {
                    id = registry.register(MetricCatalog.targetHealthy, [upstream.name, target])
                    metrics.healthIDs[upstream.name, default: [:]][target] = id
                    registered = true
                }
                writer.set(id, health == "healthy" ? 1 : 0)
            }
        }
        if registered {
            metrics.registry = registry
            table.publishDirectory(registry.directory)
        }
    }

    // MARK: Scrapes

    /// Why a scrape gets no exposition: the serving configuration turned metrics off.
    static let metricsOffReason = "metrics are off in this configuration ([metrics] enabled = false)"

    /// What `GET /metrics` and `jesterctl metrics` answer: the sums of every partition in the format the
    /// `accept` header negotiates (jester-metrics(7), EXPOSITION); empty when there is no table. Nil when the
    /// serving configuration has metrics off (`metricsOffReason`): a 404 and a failure, not zeros.
    func metricsExposition(accept: String?) -> (contentType: String, body: [UInt8])? {
        guard configuration.metrics.enabled else { return nil }
        let format = ExpositionFormat.negotiate(accept: accept)
        guard let table = metrics.table, let registry = metrics.registry else {
            return (format.contentType, format == .openMetrics ? Array("# EOF\n".utf8) : [])
        }
        // The first generation starts without a transaction: the gauge is made right here, at every scrape.
        setMasterGauges()
        let text = MetricsExposition.render(registry, table.snapshot(for: registry), format: format)
        return (format.contentType, Array(text.utf8))
    }
}
