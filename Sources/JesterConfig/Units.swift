// SPDX-License-Identifier: Apache-2.0

/// Durations and sizes as written in the configuration: the one grammar the loader parses, `jester config schema`
/// publishes as patterns and `jester config dump` writes, so the three cannot disagree.
///
/// A duration is a number and one unit (`"90m"`, `"10s"`, `"500ms"`, `"365d"`); a bare number is refused, since
/// nothing says whether `75` means seconds or milliseconds. A size is a number and a unit (`"16KiB"`, `"10MB"`),
/// or an integer number of bytes written without quotes.
public enum Units {
    /// Duration units and their length in milliseconds, as written.
    public static let durationUnits: [(name: String, milliseconds: Int64)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000),
    ]

    /// Size units and their bytes: binary (KiB, and K/k for short), then decimal (kB, MB, GB).
    public static let sizeUnits: [(name: String, bytes: Int64)] = [
        ("B", 1), ("KiB", 1 << 10), ("K", 1 << 10), ("k", 1 << 10), ("MiB", 1 << 20), ("M", 1 << 20),
        ("m", 1 << 20), ("GiB", 1 << 30), ("G", 1 << 30), ("g", 1 << 30), ("kB", 1000), ("KB", 1000),
        ("MB", 1_000_000), ("GB", 1_000_000_000),
    ]

    /// How durations are described in messages and documentation.
    public static let durationForms = "a number and one unit such as \"90m\", \"10s\", \"500ms\" (ms, s, m, h, d)"

    /// How sizes are described in messages and documentation.
    public static let sizeForms = "a number and a unit such as \"16KiB\", \"10MiB\", \"1GB\", or a number of bytes"

    /// The JSON Schema pattern of a duration string, built from `durationUnits`.
    public static var durationPattern: String {
        "^[0-9]{1,12}(" + durationUnits.map(\.name).joined(separator: "|") + ")$"
    }

    /// The JSON Schema pattern of a size string (digits alone are an integer, written without quotes).
    public static var sizePattern: String {
        "^[0-9]{1,15} ?(" + sizeUnits.map(\.name).joined(separator: "|") + ")$"
    }

    /// `"250ms"`, `"10s"`, `"2m"`, `"1h"`, `"7d"`; nil for anything else (a bare number, two units, blanks).
    public static func duration(_ text: String) -> Duration? {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 12, let value = Int64(digits),
            let unit = durationUnits.first(where: { $0.name == text.dropFirst(digits.count) })
        else { return nil }
        return .milliseconds(value * unit.milliseconds)
    }

    /// `"16KiB"`, `"10MiB"`, `"1GiB"`, `"10kB"`/`"MB"`/`"GB"` (powers of ten), `"512 B"`; nil for anything else,
    /// a bare number included (that is an integer, written without quotes).
    public static func size(_ text: String) -> Int64? {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 15, let value = Int64(digits) else { return nil }
        var unitText = text.dropFirst(digits.count)
        if unitText.first == " " { unitText = unitText.dropFirst() }
        guard let unit = sizeUnits.first(where: { $0.name == unitText }) else { return nil }
        let (result, overflow) = value.multipliedReportingOverflow(by: unit.bytes)
        return overflow ? nil : result
    }

    /// How a duration is written back (`jester config dump`): the largest unit that divides it.
    public static func format(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        if attoseconds == 0 {
            if seconds % 86400 == 0, seconds > 0 { return "\(seconds / 86400)d" }
            if seconds % 3600 == 0, seconds > 0 { return "\(seconds / 3600)h" }
            if seconds % 60 == 0, seconds > 0 { return "\(seconds / 60)m" }
            return "\(seconds)s"
        }
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000)ms"
    }

    /// How a size is written back, as a TOML value: `"16KiB"`, `"10MB"`, or a bare number of bytes.
    public static func formatSize(_ bytes: Int64) -> String {
        guard bytes > 0 else { return "0" }
        for (name, unit) in [("GiB", Int64(1) << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("GB", 1_000_000_000),
            ("MB", 1_000_000), ("kB", 1000)] where bytes % unit == 0
        {
            return "\"\(bytes / unit)\(name)\""
        }
        return "\(bytes)"
    }
}
