// SPDX-License-Identifier: Apache-2.0

/// `[metrics]`: whether the instance counts at all (jester-metrics(7)).
///
/// On by default, since counting costs a few atomic adds per request in memory each worker has to itself. Off,
/// the workers count nothing (they attach no metrics table), the master makes no table at start, and
/// `GET /metrics` and `jesterctl metrics` refuse saying why, so a scraper learns that nothing is counted instead
/// of reading zeros. A reload may turn it on or off: the table, once made, keeps its totals while off.
public struct MetricsSettings: Sendable, Codable, Equatable {
    /// Whether workers count and scrapes are answered.
    public var enabled: Bool

    public init(enabled: Bool = true) {
        self.enabled = enabled
    }
}

/// The default of `Configuration.metrics`: on (what a configuration without `[metrics]`, or an older binary's
/// configuration in a binary upgrade, means).
public enum MetricsSettingsDefault: CodableDefault {
    public static let defaultValue = MetricsSettings()
}

extension ConfigDecoder {
    /// `[metrics]`.
    mutating func decodeMetrics(_ node: ConfigNode) -> MetricsSettings {
        var settings = MetricsSettings()
        guard var table = TableReader(node, ConfigSchema.metrics, decoder: &self) else { return settings }
        if let enabled = table.boolean("enabled", decoder: &self) { settings.enabled = enabled }
        table.finish(decoder: &self)
        return settings
    }
}
