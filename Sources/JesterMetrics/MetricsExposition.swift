// SPDX-License-Identifier: Apache-2.0

/// Renders a registry's series with a snapshot's values as Prometheus text 0.0.4 or OpenMetrics 1.0.
///
/// Families come in catalog order, series in registration order, labels in the family's order (`le` last). A
/// family's `other` series is left out while it is all zeros (nothing was folded into it), so a scrape shows
/// only series that exist. Series of routes a reload removed stay, with their totals, for the life of the
/// table: a counter that vanished would read as a reset. No `_created` samples (optional in OpenMetrics):
/// totals outlive the processes that counted them, so no one creation time is true of them.
public enum MetricsExposition {
    /// The whole exposition, ending in `# EOF` for OpenMetrics.
    public static func render(_ registry: SeriesRegistry, _ snapshot: MetricsSnapshot, format: ExpositionFormat)
        -> String
    {
        var out = ""
        out.reserveCapacity(registry.series.count * 96)
        for family in MetricCatalog.families {
            header(family, format: format, into: &out)
            for series in registry.series(of: family) {
                samples(series, registry, snapshot, into: &out)
            }
        }
        if format == .openMetrics { out += "# EOF\n" }
        return out
    }

    private static func header(_ family: MetricFamily, format: ExpositionFormat, into out: inout String) {
        switch format {
        case .prometheusText:
            // 0.0.4 names the family after its samples: a counter's with `_total`.
            out += "# HELP \(family.sampleName) \(escapeHelp(family.help, quotes: false))\n"
            out += "# TYPE \(family.sampleName) \(family.type.rawValue)\n"
        case .openMetrics:
            out += "# TYPE \(family.name) \(family.type.rawValue)\n"
            if family.unit != .none { out += "# UNIT \(family.name) \(family.unit.rawValue)\n" }
            out += "# HELP \(family.name) \(escapeHelp(family.help, quotes: true))\n"
        }
    }

    private static func samples(
        _ series: Series, _ registry: SeriesRegistry, _ snapshot: MetricsSnapshot, into out: inout String
    ) {
        let family = series.family
        let labels = zip(family.labels, series.labels).map { "\($0.rawValue)=\"\(escapeLabel($1))\"" }
        switch family.type {
        case .counter, .gauge:
            let value: Int64
            if family == MetricCatalog.seriesFolded {
                // Kept by the registry (the directory), not in words: only the master folds.
                value = Int64(registry.foldedCounts[series.labels.first ?? ""] ?? 0)
            } else {
                value = snapshot.value(series.id)
            }
            if series.isOther, value == 0 { return }
            out += "\(family.sampleName)\(braced(labels)) \(value)\n"
        case .histogram:
            let buckets = (0...family.buckets.count).map { snapshot.value(series.id, offset: $0) }
            if series.isOther, buckets.allSatisfy({ $0 == 0 }) { return }
            var cumulative: Int64 = 0
            for (index, count) in buckets.enumerated() {
                cumulative += count
                let bound = index < family.buckets.count ? "\(family.buckets[index])" : "+Inf"
                out += "\(family.name)_bucket\(braced(labels + ["le=\"\(bound)\""])) \(cumulative)\n"
            }
            let sum = Double(snapshot.value(series.id, offset: family.buckets.count + 1)) / 1e9
            out += "\(family.name)_sum\(braced(labels)) \(sum)\n"
            out += "\(family.name)_count\(braced(labels)) \(cumulative)\n"
        }
    }

    private static func braced(_ labels: [String]) -> String {
        labels.isEmpty ? "" : "{" + labels.joined(separator: ",") + "}"
    }

    /// A label value: backslash, double quote and newline escaped (both formats).
    static func escapeLabel(_ value: String) -> String {
        guard value.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return value }
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Help text: backslash and newline escaped, and double quotes too in OpenMetrics.
    static func escapeHelp(_ help: String, quotes: Bool) -> String {
        var escaped = ""
        for character in help {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\"" where quotes: escaped += "\\\""
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
