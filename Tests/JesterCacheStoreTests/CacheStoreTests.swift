// SPDX-License-Identifier: Apache-2.0
import Glibc
import JesterCache
import JesterCacheStore
import JesterSystem
import Testing

/// The store over a real index and a real directory: what a worker writes is what a lookup finds, varying
/// responses land under their variants, a body cut short is never published, a new index (after a restart) is
/// rebuilt from the files, and purges remove entry and file.
@Suite struct CacheStoreTests {
    static let now: Int64 = 1_800_000_000

    /// A store over a fresh index in a fresh directory.
    static func makeStore(directory: String? = nil, lockTimeout: Duration = .seconds(5)) throws -> CacheStore {
        let path = directory ?? {
            var template = Array("/tmp/jester-cache-store-XXXXXX".utf8CString)
            return String(cString: mkdtemp(&template)!)
        }()
        let index = try CacheIndex.create(slots: 256, byteBudget: 1 << 20)
        return CacheStore(index: index, directory: path, lockTimeout: lockTimeout, uncacheableHold: .seconds(10))
    }

    static func request(_ fields: CacheFields = [], path: String = "/a") -> (CacheRequest, CacheRequestPlan) {
        let request = CacheRequest(
            method: "GET", scheme: "https", authority: "example.com", target: path, fields: fields)
        guard case .cacheable(let plan) = request.classify(policy: CachePolicy()) else { preconditionFailure() }
        return (request, plan)
    }

    static func response(_ request: CacheRequest, _ plan: CacheRequestPlan, _ fields: CacheFields) -> StoredResponse {
        guard case .store(let stored) = StoreDecision.decide(
            request: request, plan: plan, status: 200, fields: fields, requestTime: now, responseTime: now,
            policy: CachePolicy())
        else { preconditionFailure("not storable") }
        return stored
    }

    /// Claims the key the lookup of `request` names and writes `body` under it; true when published.
    @discardableResult
    static func store(
        _ store: CacheStore, _ request: CacheRequest, _ plan: CacheRequestPlan, fields: CacheFields, body: String,
        declaredLength: Int64? = nil, at time: Int64 = now
    ) -> Bool {
        let found = store.find(request: request, plan: plan)
        let monotonic = CacheIndex.monotonicNanoseconds()
        let (claim, _) = store.index.claim(
            found.flagKey, observed: found.observation, owner: 7, deadline: monotonic + 5_000_000_000, now: now,
            monotonicNow: monotonic)
        guard case .claimed(let ticket) = claim,
            let writer = store.writer(for: response(request, plan, fields), ticket: ticket, maxBodySize: 1 << 16)
        else { return false }
        Array(body.utf8).withUnsafeBytes { _ = writer.append($0) }
        return writer.finish(declaredLength: declaredLength ?? Int64(body.utf8.count), now: time)
    }

    static func body(_ found: CacheStore.Found) -> String? {
        guard let file = found.body else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(file.bodySize))
        let count = bytes.withUnsafeMutableBytes { file.read(into: $0, at: 0) }
        return count == bytes.count ? String(decoding: bytes, as: UTF8.self) : nil
    }

    @Test func whatIsWrittenIsFound() throws {
        let store = try Self.makeStore()
        let (request, plan) = Self.request()
        #expect(Self.store(store, request, plan, fields: [("Cache-Control", "max-age=60")], body: "hello"))
        let found = store.find(request: request, plan: plan)
        #expect(found.stored?.key == plan.key)
        #expect(Self.body(found) == "hello")
        #expect(store.status().entries == 1 && store.status().stores == 1)
    }

    @Test func varyingResponsesLandUnderTheirVariants() throws {
        let store = try Self.makeStore()
        let fields: CacheFields = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]
        let (english, plan) = Self.request([("Accept-Language", "en")])
        #expect(Self.store(store, english, plan, fields: fields, body: "hello"))
        let (german, germanPlan) = Self.request([("Accept-Language", "de")])
        let missed = store.find(request: german, plan: germanPlan)
        #expect(missed.stored == nil && missed.primaryFound)
        #expect(Self.store(store, german, germanPlan, fields: fields, body: "hallo"))
        #expect(Self.body(store.find(request: english, plan: plan)) == "hello")
        #expect(Self.body(store.find(request: german, plan: germanPlan)) == "hallo")
    }

    @Test func aBodyCutShortIsNeverPublishedAndFreesItsKey() throws {
        let store = try Self.makeStore()
        let (request, plan) = Self.request()
        #expect(!Self.store(store, request, plan, fields: [("Cache-Control", "max-age=60")], body: "hel",
            declaredLength: 5))
        #expect(store.find(request: request, plan: plan).stored == nil)
        // The flag went back: the next fetch claims the key and stores.
        #expect(Self.store(store, request, plan, fields: [("Cache-Control", "max-age=60")], body: "hello"))
        // No temporary file is left behind.
        var leftovers = 0
        store.walkFiles { _ in leftovers += 1 }
        #expect(leftovers == 1)
    }

    @Test func aNewIndexIsRebuiltFromTheFiles() throws {
        let first = try Self.makeStore()
        let (request, plan) = Self.request()
        #expect(Self.store(first, request, plan, fields: [("Cache-Control", "max-age=60")], body: "kept"))
        let (varying, varyingPlan) = Self.request([("Accept-Language", "en")], path: "/v")
        #expect(Self.store(first, varying, varyingPlan,
            fields: [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")], body: "varied"))
        // A restart: a new index (a new hash seed) over the same directory.
        let second = try Self.makeStore(directory: first.directory)
        #expect(second.rebuild(now: Self.now) == 2)
        #expect(Self.body(second.find(request: request, plan: plan)) == "kept")
        #expect(Self.body(second.find(request: varying, plan: varyingPlan)) == "varied")
    }

    @Test func aSlowTransferKeepsItsFlagWhileItMakesProgress() throws {
        // Three lock timeouts of arrival, a piece every half of one: the writer renews the flag as it goes.
        let store = try Self.makeStore(lockTimeout: .milliseconds(200))
        let (request, plan) = Self.request()
        let found = store.find(request: request, plan: plan)
        let monotonic = CacheIndex.monotonicNanoseconds()
        let (claim, _) = store.index.claim(
            found.flagKey, observed: found.observation, owner: 7, deadline: monotonic + 200_000_000, now: Self.now,
            monotonicNow: monotonic)
        guard case .claimed(let ticket) = claim,
            let writer = store.writer(
                for: Self.response(request, plan, [("Cache-Control", "max-age=60")]), ticket: ticket, maxBodySize: nil)
        else {
            Issue.record("no writer")
            return
        }
        for _ in 0..<6 {
            usleep(100_000)
            Array("piece".utf8).withUnsafeBytes { _ = writer.append($0) }
        }
        #expect(writer.finish(declaredLength: 30, now: Self.now))
        #expect(Self.body(store.find(request: request, plan: plan)) == String(repeating: "piece", count: 6))
    }

    @Test func invalidatingAVaryingURIHidesEveryVariantStoredBefore() throws {
        let store = try Self.makeStore()
        let fields: CacheFields = [("Cache-Control", "max-age=60"), ("Vary", "Accept-Language")]
        let (english, plan) = Self.request([("Accept-Language", "en")])
        #expect(Self.store(store, english, plan, fields: fields, body: "old"))
        store.invalidate(plan.key)
        #expect(store.find(request: english, plan: plan).stored == nil)
        // Another variant is fetched and stored (a new marker): the English one stored before stays hidden.
        let (german, germanPlan) = Self.request([("Accept-Language", "de")])
        #expect(Self.store(store, german, germanPlan, fields: fields, body: "neu", at: Self.now + 1))
        #expect(store.find(request: english, plan: plan).stored == nil)
        #expect(Self.body(store.find(request: german, plan: germanPlan)) == "neu")
    }

    @Test func aRestartWithTheSameSeedKeepsEveryFileWhereItIs() throws {
        let first = try Self.makeStore()
        let (request, plan) = Self.request()
        #expect(Self.store(first, request, plan, fields: [("Cache-Control", "max-age=60")], body: "kept"))
        var before: [String] = []
        first.walkFiles { before.append($0.path) }
        let index = try CacheIndex.create(slots: 256, byteBudget: 1 << 20, seed: first.index.hashSeed)
        let second = CacheStore(
            index: index, directory: first.directory, lockTimeout: .seconds(5), uncacheableHold: .seconds(10))
        #expect(second.rebuild(now: Self.now) == 1)
        var after: [String] = []
        second.walkFiles { after.append($0.path) }
        #expect(after == before)
        #expect(Self.body(second.find(request: request, plan: plan)) == "kept")
        // A new store of the key takes a generation the kept file does not have.
        #expect(Self.store(second, request, plan, fields: [("Cache-Control", "max-age=60")], body: "newer"))
        #expect(Self.body(second.find(request: request, plan: plan)) == "newer")
    }

    @Test func purgesRemoveEntryAndFile() throws {
        let store = try Self.makeStore()
        for path in ["/img/a", "/img/b", "/other"] {
            let (request, plan) = Self.request(path: path)
            #expect(Self.store(store, request, plan, fields: [("Cache-Control", "max-age=60")], body: path))
        }
        #expect(store.purge { $0.uri.hasPrefix("https://example.com/img/") } == 2)
        #expect(store.find(request: Self.request(path: "/img/a").0, plan: Self.request(path: "/img/a").1).stored == nil)
        #expect(Self.body(store.find(request: Self.request(path: "/other").0, plan: Self.request(path: "/other").1))
            == "/other")
        var files = 0
        store.walkFiles { _ in files += 1 }
        #expect(files == 1)
    }
}
