// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterConfig
import Testing

/// `[metrics]`: the off switch of jester-metrics(7). On unless turned off; the dump, the schema and an older
/// binary's configuration agree.

private func load(_ text: String) -> Result<Configuration, ConfigError> {
    do {
        return .success(try ConfigLoader(environment: [:]).load(text: text, file: "/etc/jester/jester.toml"))
    } catch {
        return .failure(error)
    }
}

private func messages(_ text: String) -> [String] {
    guard case .failure(let error) = load(text) else { return [] }
    return error.diagnostics.map(\.description)
}

private let plain = """
    [[listeners]]
    name = "web"
    address = "127.0.0.1:8080"

    """

@Test func metricsAreOnUnlessTurnedOff() throws {
    #expect(try load(plain).get().metrics.enabled)
    #expect(try load(plain + "[metrics]\n").get().metrics.enabled)
    #expect(try load(plain + "[metrics]\nenabled = true\n").get().metrics.enabled)
    #expect(try !load(plain + "[metrics]\nenabled = false\n").get().metrics.enabled)
}

@Test func theDumpWritesTheSwitchBackAsItMeansIt() throws {
    for enabled in [true, false] {
        let configuration = try load(plain + "[metrics]\nenabled = \(enabled)\n").get()
        let dump = configuration.renderTOML()
        #expect(dump.contains("\n[metrics]\nenabled = \(enabled)\n"))
        #expect(try load(dump).get().metrics == configuration.metrics)
    }
}

@Test func metricsMistakesAreLocated() {
    #expect(messages(plain + "[metrics]\nenabled = \"no\"\n").contains {
        $0.contains("jester.toml:5:") && $0.contains("enabled")
    })
    // An unknown key is reported with the closest known one.
    #expect(messages(plain + "[metrics]\nenable = false\n").contains {
        $0.contains("jester.toml:5:") && $0.contains("enable") && $0.contains("enabled")
    })
    #expect(!messages(plain + "metrics = 1\n").isEmpty)
}

@Test func theSchemaAndTheManualKnowTheKey() {
    #expect(ConfigSchema.metrics.field("enabled")?.defaultValue == "true")
    #expect(ConfigSchema.root.field("metrics") != nil)
    #expect(ConfigSchema.manualReference().contains(".SS [metrics]\n.TP\n.B enabled\n"))
    #expect(ConfigSchema.jsonSchema(.main).contains("\"metrics\""))
}

@Test func anOlderBinarysConfigurationCountsAsBefore() throws {
    // A binary from before the switch sends no `metrics` in a binary upgrade: it counted, so counting goes on.
    var encoded = try JSONSerialization.jsonObject(
        with: JSONEncoder().encode(try load(plain + "[metrics]\nenabled = false\n").get())) as! [String: Any]
    #expect(encoded["metrics"] != nil)
    encoded.removeValue(forKey: "metrics")
    let decoded = try JSONDecoder().decode(Configuration.self, from: JSONSerialization.data(withJSONObject: encoded))
    #expect(decoded.metrics.enabled)
}
