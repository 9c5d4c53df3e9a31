// SPDX-License-Identifier: Apache-2.0

/// The two text formats a scrape can get, chosen from its Accept header.
public enum ExpositionFormat: Sendable, Equatable {
    /// Prometheus text format 0.0.4: what every Prometheus understands, and the default.
    case prometheusText
    /// OpenMetrics 1.0 text: `# UNIT`, counters' family names without `_total`, `# EOF`.
    case openMetrics

    /// The Content-Type of a response in this format.
    public var contentType: String {
        switch self {
        case .prometheusText: "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// The format for a scrape whose Accept header is `accept` (nil: none sent).
    ///
    /// RFC 9110 §12.5.1: each media range may carry a `q` weight (default 1, 0 meaning "not acceptable"); the
    /// acceptable range of highest weight wins, the first of equals. OpenMetrics is chosen for
    /// `application/openmetrics-text` of version 1.0.0 or 0.0.1 (or none), the text format for `text/plain` of
    /// version 0.0.4 (or none), `text/*` or `*/*`. No acceptable range, or no header: the text format, which
    /// any scraper reads (Prometheus itself asks for OpenMetrics first, then text at q=0.5).
    public static func negotiate(accept: String?) -> ExpositionFormat {
        guard let accept else { return .prometheusText }
        var best: (format: ExpositionFormat, weight: Double)?
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingBlanks().lowercased() }
            guard let type = parts.first, !type.isEmpty else { continue }
            var weight = 1.0
            var version: String?
            for parameter in parts.dropFirst() {
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingBlanks() }
                guard pair.count == 2 else { continue }
                let value = pair[1].trimmingQuotes()
                if pair[0] == "q" {
                    weight = Double(value) ?? 0
                } else if pair[0] == "version" {
                    version = value
                }
            }
            let format: ExpositionFormat
            switch type {
            case "application/openmetrics-text" where version == nil || version == "1.0.0" || version == "0.0.1":
                format = .openMetrics
            case "text/plain" where version == nil || version == "0.0.4", "text/*", "*/*":
                format = .prometheusText
            default: continue
            }
            guard weight > 0 else { continue }
            if best == nil || weight > best!.weight { best = (format, weight) }
        }
        return best?.format ?? .prometheusText
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
    func trimmingBlanks() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = firstIndex(where: { !blank($0) }), let last = lastIndex(where: { !blank($0) }) else {
            return ""
        }
        return String(self[first...last])
    }

    /// Without one pair of surrounding double quotes (a quoted parameter value).
    func trimmingQuotes() -> String {
        count >= 2 && hasPrefix("\"") && hasSuffix("\"") ? String(dropFirst().dropLast()) : String(self)
    }
}
