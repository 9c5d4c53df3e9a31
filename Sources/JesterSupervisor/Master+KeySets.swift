// SPDX-License-Identifier: Apache-2.0
import Foundation
import JesterAuth
import JesterConfig
import JesterControl
import JesterFetch
import JesterLogging
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The key sets of jwt filters with a `jwks_url`: the master fetches them (workers never fetch anything), checks
/// them, keeps the last good one of each and hands it to workers. `KeySetRefresh` decides when and what; this
/// extension does the fetching, the checking, the timers and the messages.
///
/// At start and when a reload or upgrade brings a URL not fetched yet, the master waits for those fetches (at
/// most `KeySetFetches.firstFetchTimeout`) before it spawns workers, so a new generation serves with keys from
/// its first request. A provider that does not answer in time does not stall the start: the workers start
/// without that set and refuse its tokens with 401 (fail closed, like a filter with no keys) until a retry
/// brings it; the failure is logged as an error.
extension Master {
    /// Tracks the sources of `configurations` (the serving one, and a starting one during a reload) and, with
    /// `waiting`, fetches the URLs not fetched before and waits for them, so that workers spawned next get them
    /// in their assignment. Called at start, when a reload or upgrade prepares, and when it commits or rolls back.
    func keySetsConfigured(_ configurations: [Configuration], waiting: Bool) {
        let sources = configurations.flatMap(Self.keySetSources)
        guard !sources.isEmpty || keySetFetches.hasSources else { return }
        keySetFetches.hasSources = !sources.isEmpty
        let actions = keySetFetches.refresh.handle(.configured(sources, now: monotonicNow))
        guard waiting else {
            performKeySetActions(actions)
            return
        }
        let urls = actions.compactMap { action -> String? in
            if case .fetch(let url) = action { return url }
            return nil
        }
        performKeySetActions(actions.filter { if case .fetch = $0 { return false } else { return true } })
        guard !urls.isEmpty else { return }
        let waiter = FetchWaiter()
        for url in urls { fetchKeySet(url, timeout: KeySetFetches.firstFetchTimeout, waiter: waiter) }
        // The fetches time themselves out; the margin only guards against a fetch loop that stopped answering.
        for (url, result) in waiter.wait(for: urls.count, seconds: KeySetFetches.firstFetchTimeout + 2) {
            keySetFetched(url, result)
        }
    }

    /// The jwt filters of `configuration` whose keys come from a URL.
    static func keySetSources(_ configuration: Configuration) -> [KeySetRefresh.Source] {
        configuration.filters.compactMap { filter in
            guard case .jwt(let settings) = filter.kind, let url = settings.jwksURL else { return nil }
            let refresh = settings.jwksRefresh.components
            return KeySetRefresh.Source(
                filter: filter.name, url: url, refresh: Double(refresh.seconds) + Double(refresh.attoseconds) / 1e18)
        }
    }

    /// The sets a worker of `configuration` starts with (`WorkerAssignment.keySets`).
    func fetchedKeySets(for configuration: Configuration) -> [FilterKeySet]? {
        let sources = Self.keySetSources(configuration)
        guard !sources.isEmpty else { return nil }
        return keySetFetches.refresh.keySets(for: sources).map { FilterKeySet(filter: $0.filter, url: $0.url, jwks: Data($0.jwks)) }
    }

    func keySetFetched(_ url: String, _ result: Result<FetchResponse, any Error>) {
        let outcome = Self.judge(result)
        performKeySetActions(keySetFetches.refresh.handle(.fetched(url: url, outcome, now: monotonicNow)))
    }

    /// A fetch's result as a key set or a reason: a 200 whose body JesterAuth reads as a JWK Set with a usable key.
    static func judge(_ result: Result<FetchResponse, any Error>) -> KeySetRefresh.Outcome {
        switch result {
        case .failure(let error):
            return .failed("\(error)")
        case .success(let response):
            guard response.status == 200 else { return .failed("the server answered \(response.status)") }
            do throws(JSONWebKeySet.LoadError) {
                let set = try JSONWebKeySet(json: response.body)
                let maxAge = response.field("cache-control").flatMap(KeySetRefresh.maxAge(cacheControl:))
                return .keySet(response.body, maxAge: maxAge, keys: set.keys.count, skipped: set.skipped)
            } catch {
                return .failed("the answer is not a usable JWK Set: \(error)")
            }
        }
    }

    func performKeySetActions(_ actions: [KeySetRefresh.Action]) {
        for action in actions {
            switch action {
            case .fetch(let url):
                fetchKeySet(url, timeout: KeySetFetches.fetchTimeout, waiter: nil)
            case .arm(let url, let seconds):
                keySetFetches.timers[url]?.cancel()
                keySetFetches.timers[url] = eventLoop.scheduleTask(in: .nanoseconds(Int64(seconds * 1e9))) {
                    self.keySetFetches.timers[url] = nil
                    self.performKeySetActions(self.keySetFetches.refresh.handle(.due(url: url, now: self.monotonicNow)))
                }
            case .disarm(let url):
                keySetFetches.timers.removeValue(forKey: url)?.cancel()
            case .deliver(let filter, let url, let jwks):
                let message = ControlMessage.keySet(FilterKeySet(filter: filter, url: url, jwks: Data(jwks)))
                for worker in workers.values { if let channel = worker.channel { send(message, to: channel) } }
            case .reportNewSet(let url, let filters, let keys, let skipped):
                Logger(component: .jwks).notice("JWKS fetched; workers use the new keys", metadata: [
                    "url": "\(url)", "filters": .array(filters.map { .string($0) }),
                    "keys": .stringConvertible(keys),
                ])
                for line in skipped {
                    Logger(component: .jwks).warning("JWKS key skipped", metadata: ["url": "\(url)", "key": "\(line)"])
                }
            case .reportFailure(let url, let reason, let failures, let keeping):
                Logger(component: .jwks).error(
                    keeping ? "JWKS fetch failed; workers keep the last keys" : "JWKS fetch failed; no keys yet: tokens are refused",
                    metadata: ["url": "\(url)", "error": "\(reason)", "failures": .stringConvertible(failures)])
            case .reportRecovery(let url, let failures):
                Logger(component: .jwks).notice("JWKS fetch works again", metadata: [
                    "url": "\(url)", "failures": .stringConvertible(failures),
                ])
            }
        }
    }

    /// Starts fetching `url` on the fetch loop. The result goes to `waiter` if it still waits, else to the master's
    /// loop through the inbox.
    private func fetchKeySet(_ url: String, timeout: Double, waiter: FetchWaiter?) {
        guard let parsed = FetchURL(url) else {
            // The loader checked the URL; this is only reached if the two readings disagree.
            keySetFetched(url, .failure(FetchError(.badURL, "'\(url)' is not an http(s) URL")))
            return
        }
        let inbox = self.inbox!
        keySetFetches.fetcher.get(
            parsed, timeout: .nanoseconds(Int64(timeout * 1e9)), maximumBodySize: KeySetFetches.maximumSize,
            accept: "application/jwk-set+json, application/json"
        ).whenComplete { result in
            let result = result.mapError { $0 as any Error }
            if waiter?.offer(url, result) == true { return }
            inbox.post { self.keySetFetched(url, result) }
        }
    }
}

/// The master's state for fetched key sets (one per master, on its loop), kept apart from `Master`'s own
/// fields so all of it lives here.
final class KeySetFetches {
    /// How long a start or reload waits for a URL it has no set of yet.
    static let firstFetchTimeout = 5.0
    /// The time a refresh may take (connection, TLS and body).
    static let fetchTimeout = 10.0
    /// The largest JWKS accepted: real ones are a few KiB; this bounds what a broken or hostile endpoint can
    /// make the master hold.
    static let maximumSize = 1 << 20

    var refresh = KeySetRefresh()
    var timers: [String: Scheduled<Void>] = [:]
    /// Whether any configuration in use names a URL (nothing is set up, not even the fetch thread, otherwise).
    var hasSources = false

    /// The client, on a thread of its own (made on first use): the master's loop blocks while a start waits for
    /// the first sets, so the fetches cannot run on it.
    lazy var fetcher = HTTPFetcher(
        eventLoop: MultiThreadedEventLoopGroup(numberOfThreads: 1).next(), userAgent: "jester/\(JesterVersion.current)")
}

/// Lets the master's thread wait for fetches it started, without NIO's `wait()` (forbidden on an event loop's
/// thread, which the master's is). A result that arrives after the wait gave up is refused by `offer`, and its
/// caller posts it to the master's loop instead, so none is lost.
final class FetchWaiter: Sendable {
    private struct State {
        var waiting = true
        var results: [(String, Result<FetchResponse, any Error>)] = []
    }

    private let state = Mutex(State())
    private let arrived = DispatchSemaphore(value: 0)

    /// Takes `result` if the waiter still waits (true), or refuses it (false).
    func offer(_ url: String, _ result: Result<FetchResponse, any Error>) -> Bool {
        let taken = state.withLock { state in
            guard state.waiting else { return false }
            state.results.append((url, result))
            return true
        }
        if taken { arrived.signal() }
        return taken
    }

    /// Waits until `count` results arrived or `seconds` passed, and returns those that arrived.
    func wait(for count: Int, seconds: Double) -> [(String, Result<FetchResponse, any Error>)] {
        let deadline = DispatchTime.now() + seconds
        for _ in 0..<count {
            if arrived.wait(timeout: deadline) == .timedOut { break }
        }
        return state.withLock { state in
            state.waiting = false
            return state.results
        }
    }
}
