// SPDX-License-Identifier: Apache-2.0

/// Where a series' words are in a process's partition of the shared table: counters and histograms in the
/// cumulative region (folded into the retired total when a worker exits), gauges in the gauge region (dropped).
public struct SeriesID: Hashable, Sendable {
    /// Which region of a partition the words are in.
    public enum Region: UInt8, Sendable {
        case cumulative = 0
        case gauge = 1
    }

    public let region: Region
    /// The series' first word in its region; a histogram's buckets follow it, then its sum.
    public let word: Int

    public init(region: Region, word: Int) {
        self.region = region
        self.word = word
    }
}

/// One registered series: a family and one value per label of it.
public struct Series: Sendable, Hashable {
    public let family: MetricFamily
    public let labels: [String]
    public let id: SeriesID
    /// The family's overflow series (every label `other`), where label sets past its limit are counted.
    public var isOther: Bool { !labels.isEmpty && labels.allSatisfy { $0 == MetricLabel.otherValue } }
}

/// Assigns every series (a family and its label values) its words in the shared table, append-only, and keeps
/// the assignment as a *directory* of bytes the table stores beside the words, so every process (workers of any
/// generation, a new binary after an upgrade) reads the same ids.
///
/// Ids stay valid for the life of the table: a reload that changes routes registers the new label sets, which
/// get words after the last ones; the old series keep their words and totals (old-generation workers still
/// count in them while they drain, and their totals never drop). Nothing is ever removed, so a label set that
/// comes back after two reloads finds its old words.
///
/// Cardinality: at most `seriesLimit` series per family whose labels include a configuration name (and no more
/// words or directory bytes than the table has); label sets of fixed values only are bounded by their lists.
/// A label set past a limit is *folded*: counted under the family's `other` series (every label `other`),
/// registered up front so it always has words, and counted in `jester_metrics_series_folded_total{family}`.
/// Label values come only from the configuration or from fixed lists (`MetricLabel.fixedValues`), never from
/// requests.
///
/// Directory record (little-endian): kind (1 series, 2 folded), region, first word (UInt32), width (UInt16),
/// the family name and each label value as UInt16 length + UTF-8 (a UInt8 count before the values). Records
/// carry their word and width, so a binary whose catalog differs (an upgrade) skips a family it does not know,
/// or whose width changed, without reusing its words.
public struct SeriesRegistry: Sendable {
    /// Series per family past which label sets are folded: a route table of hundreds of routes × targets fits.
    public static let defaultSeriesLimit = 2_000
    /// Cumulative words per partition the table is made with (1 MiB; pages are touched only where series are).
    public static let defaultCumulativeWords = 131_072
    /// Gauge words per partition (128 KiB).
    public static let defaultGaugeWords = 16_384
    /// Directory bytes the table is made with (enough for tens of thousands of series).
    public static let defaultDirectoryBytes = 2 << 20

    public let seriesLimit: Int
    public let cumulativeCapacity: Int
    public let gaugeCapacity: Int
    public let directoryCapacity: Int
    /// Every series, in registration order.
    public private(set) var series: [Series] = []
    /// Words in use from the start of each region: what a scrape sums.
    public private(set) var cumulativeWordsUsed = 0
    public private(set) var gaugeWordsUsed = 0
    /// The encoded directory: the table stores it (`MetricsTable.publishDirectory`); it only ever grows.
    public private(set) var directory: [UInt8] = []
    /// Label sets folded into each family's `other` series, by family name.
    public private(set) var foldedCounts: [String: Int] = [:]

    private var index: [Key: Int] = [:]
    private var folded: Set<Key> = []
    private var perFamily: [String: [Int]] = [:]

    private struct Key: Hashable {
        let family: String
        let labels: [String]
    }

    /// A registry over a table's directory (empty for a new table), with every series the catalog declares up
    /// front: unlabelled families, families whose labels are all fixed (every combination), and each labelled
    /// family's `other` series.
    public init(
        directory: [UInt8] = [], seriesLimit: Int = defaultSeriesLimit,
        cumulativeCapacity: Int = defaultCumulativeWords,
        gaugeCapacity: Int = defaultGaugeWords, directoryCapacity: Int = defaultDirectoryBytes
    ) throws(MetricsDirectoryError) {
        self.seriesLimit = seriesLimit
        self.cumulativeCapacity = cumulativeCapacity
        self.gaugeCapacity = gaugeCapacity
        self.directoryCapacity = directoryCapacity
        try replay(directory)
        for family in MetricCatalog.families {
            if family.labels.isEmpty {
                register(family, [])
                continue
            }
            register(family, Array(repeating: MetricLabel.otherValue, count: family.labels.count))
            let fixed = family.labels.compactMap(\.fixedValues)
            guard fixed.count == family.labels.count else { continue }
            for combination in Self.product(fixed) { register(family, combination) }
        }
    }

    // MARK: Registering (the master)

    /// The id of `family`'s series with `labels` (one value per label, in the family's order), registered now
    /// if new; folded into the family's `other` series when past the limit or out of room.
    @discardableResult
    public mutating func register(_ family: MetricFamily, _ labels: [String]) -> SeriesID {
        precondition(labels.count == family.labels.count, "\(family.name) takes \(family.labels.count) labels")
        for (label, value) in zip(family.labels, labels) where value != MetricLabel.otherValue {
            if let allowed = label.fixedValues {
                precondition(allowed.contains(value), "\(value) is not a value of label \(label.rawValue)")
            }
        }
        let key = Key(family: family.name, labels: labels)
        if let known = index[key] { return series[known].id }
        if folded.contains(key) { return otherID(family) }
        let isOther = Series(family: family, labels: labels, id: SeriesID(region: .gauge, word: 0)).isOther
        let count = perFamily[family.name, default: []].count - (index[otherKey(family)] == nil ? 0 : 1)
        let region: SeriesID.Region = family.isCumulative ? .cumulative : .gauge
        let start = region == .cumulative ? cumulativeWordsUsed : gaugeWordsUsed
        let capacity = region == .cumulative ? cumulativeCapacity : gaugeCapacity
        var record = Self.record(kind: 1, region: region, word: start, width: family.width, key: key)
        let fits = start + family.width <= capacity && directory.count + record.count <= directoryCapacity
        // Label sets of fixed values only are bounded by the lists themselves: never limited.
        let limited = zip(family.labels, labels).contains { label, _ in label.fixedValues == nil }
        guard fits, isOther || !limited || count < seriesLimit else {
            precondition(!isOther && !labels.isEmpty, "no room for \(family.name)'s first series")
            folded.insert(key)
            foldedCounts[family.name, default: 0] += 1
            record = Self.record(kind: 2, region: region, word: 0, width: 0, key: key)
            if directory.count + record.count <= directoryCapacity { directory += record }
            return otherID(family)
        }
        directory += record
        return add(family, labels, SeriesID(region: region, word: start))
    }

    // MARK: Looking up (workers, once per configuration)

    /// The id a process counts `family`'s `labels` under: its own series, or the family's `other` series when
    /// the label set was folded or never registered (a worker never registers: the master did, before it ran).
    public func id(_ family: MetricFamily, _ labels: [String]) -> SeriesID {
        if let known = index[Key(family: family.name, labels: labels)] { return series[known].id }
        return otherID(family)
    }

    /// The series of `family`, in registration order.
    public func series(of family: MetricFamily) -> [Series] {
        (perFamily[family.name] ?? []).map { series[$0] }
    }

    private func otherKey(_ family: MetricFamily) -> Key {
        Key(family: family.name, labels: Array(repeating: MetricLabel.otherValue, count: family.labels.count))
    }

    private func otherID(_ family: MetricFamily) -> SeriesID {
        // Registered by init for every labelled family; an unlabelled family has its one series.
        guard let other = index[otherKey(family)] else { preconditionFailure("\(family.name) has no other series") }
        return series[other].id
    }

    private mutating func add(_ family: MetricFamily, _ labels: [String], _ id: SeriesID) -> SeriesID {
        let key = Key(family: family.name, labels: labels)
        index[key] = series.count
        perFamily[family.name, default: []].append(series.count)
        series.append(Series(family: family, labels: labels, id: id))
        switch id.region {
        case .cumulative: cumulativeWordsUsed = max(cumulativeWordsUsed, id.word + family.width)
        case .gauge: gaugeWordsUsed = max(gaugeWordsUsed, id.word + family.width)
        }
        return id
    }

    private static func product(_ lists: [[String]]) -> [[String]] {
        lists.reduce([[]]) { partial, list in partial.flatMap { prefix in list.map { prefix + [$0] } } }
    }

    // MARK: The directory's bytes

    private static func record(kind: UInt8, region: SeriesID.Region, word: Int, width: Int, key: Key) -> [UInt8] {
        var bytes: [UInt8] = [kind, region.rawValue]
        bytes += withUnsafeBytes(of: UInt32(word).littleEndian, Array.init)
        bytes += withUnsafeBytes(of: UInt16(width).littleEndian, Array.init)
        func string(_ text: String) {
            let utf8 = Array(text.utf8.prefix(Int(UInt16.max)))
            bytes += withUnsafeBytes(of: UInt16(utf8.count).littleEndian, Array.init)
            bytes += utf8
        }
        string(key.family)
        bytes.append(UInt8(key.labels.count))
        key.labels.forEach(string)
        return bytes
    }

    private mutating func replay(_ bytes: [UInt8]) throws(MetricsDirectoryError) {
        var reader = Reader(bytes: bytes)
        while !reader.atEnd {
            let start = reader.offset
            guard let kind = reader.byte(), let rawRegion = reader.byte(),
                let region = SeriesID.Region(rawValue: rawRegion),
                let word = reader.integer(UInt32.self), let width = reader.integer(UInt16.self),
                let name = reader.string(), let count = reader.byte(), kind == 1 || kind == 2
            else { throw MetricsDirectoryError(offset: start) }
            var labels: [String] = []
            for _ in 0..<count {
                guard let label = reader.string() else { throw MetricsDirectoryError(offset: start) }
                labels.append(label)
            }
            directory += bytes[start..<reader.offset]
            let key = Key(family: name, labels: labels)
            let family = MetricCatalog.family(named: name)
            // Words past the table's regions would be another partition's: refuse the directory outright.
            let capacity = region == .cumulative ? cumulativeCapacity : gaugeCapacity
            guard kind == 2 || Int(word) + Int(width) <= capacity else { throw MetricsDirectoryError(offset: start) }
            if kind == 2 {
                folded.insert(key)
                foldedCounts[name, default: 0] += 1
            } else if let family, family.width == Int(width), family.labels.count == labels.count,
                family.isCumulative == (region == .cumulative)
            {
                _ = add(family, labels, SeriesID(region: region, word: Int(word)))
            } else {
                // Another binary's family: its words stay reserved, never reused.
                switch region {
                case .cumulative: cumulativeWordsUsed = max(cumulativeWordsUsed, Int(word) + Int(width))
                case .gauge: gaugeWordsUsed = max(gaugeWordsUsed, Int(word) + Int(width))
                }
            }
        }
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0
        var atEnd: Bool { offset >= bytes.count }

        mutating func byte() -> UInt8? {
            guard offset < bytes.count else { return nil }
            defer { offset += 1 }
            return bytes[offset]
        }

        mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            let size = MemoryLayout<T>.size
            guard offset + size <= bytes.count else { return nil }
            var value: T = 0
            for index in 0..<size { value |= T(bytes[offset + index]) << (8 * index) }
            offset += size
            return value
        }

        mutating func string() -> String? {
            guard let length = integer(UInt16.self), offset + Int(length) <= bytes.count else { return nil }
            defer { offset += Int(length) }
            return String(decoding: bytes[offset..<offset + Int(length)], as: UTF8.self)
        }
    }
}

/// A directory that is not one this code wrote (cut short, or damaged): the table cannot be trusted.
public struct MetricsDirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where the bad record starts.
    public let offset: Int

    public var description: String { "metrics directory: malformed record at byte \(offset)" }
}
