// SPDX-License-Identifier: Apache-2.0
import JesterMetrics
import Testing

/// The exposition format a scrape gets, from its Accept header alone.
@Suite struct NegotiationTests {
    @Test(arguments: [
        // What Prometheus 2.x sends: OpenMetrics first.
        ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            + "text/plain;version=0.0.4;q=0.5,*/*;q=0.1", ExpositionFormat.openMetrics),
        // Prometheus with scrape_protocols preferring the text format.
        ("text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5", .prometheusText),
        ("application/openmetrics-text", .openMetrics),
        ("application/openmetrics-text; version=\"1.0.0\"; charset=utf-8", .openMetrics),
        ("APPLICATION/OpenMetrics-Text;Version=0.0.1", .openMetrics),
        // A version we do not speak is not acceptable; the next range decides, or the default.
        ("application/openmetrics-text;version=2.0.0", .prometheusText),
        ("application/openmetrics-text;version=2.0.0, text/plain;q=0.2", .prometheusText),
        // q=0 means "not this one".
        ("application/openmetrics-text;q=0, text/plain", .prometheusText),
        ("text/plain;q=0, application/openmetrics-text;q=0.1", .openMetrics),
        // Equal weights: the first listed.
        ("text/plain, application/openmetrics-text", .prometheusText),
        ("application/openmetrics-text, text/plain", .openMetrics),
        // Browsers and curl.
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", .prometheusText),
        ("*/*", .prometheusText),
        ("", .prometheusText),
        ("garbage;;;=,", .prometheusText),
        ("application/json", .prometheusText),
        ("application/openmetrics-text;q=nonsense, text/plain;q=0.1", .prometheusText),
    ])
    func theAcceptHeaderChoosesTheFormat(accept: String, format: ExpositionFormat) {
        #expect(ExpositionFormat.negotiate(accept: accept) == format)
    }

    @Test func noAcceptHeaderGetsTheTextFormat() {
        #expect(ExpositionFormat.negotiate(accept: nil) == .prometheusText)
        #expect(ExpositionFormat.prometheusText.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(
            ExpositionFormat.openMetrics.contentType == "application/openmetrics-text; version=1.0.0; charset=utf-8")
    }
}
