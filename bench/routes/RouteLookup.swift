// SPDX-License-Identifier: Apache-2.0
// Route lookup cost at 10, 1,000 and 10,000 routes (host + path), built by bench/routes/run with JesterCore's
// sources. Prints nanoseconds per lookup; not a test (no time is asserted), a figure for BENCHMARKS.md.

#if canImport(Glibc)
import Glibc
#endif

@main
struct RouteLookupBenchmark {
    static func nanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    static func main() {
        print("| routes | hosts | ns per lookup (host + path, best of 5) |")
        print("|---:|---:|---:|")
        for count in [10, 1_000, 10_000] {
            // A realistic mix: a tenth of the routes on their own host, the rest path prefixes of depth 1 to 3
            // under a shared host and the catch-all.
            var entries: [RouteTable<Int>.Entry] = []
            for index in 0..<count {
                let host = index % 10 == 0 ? "site\(index).example.com" : "api.example.com"
                let path = "/v\(index % 7)/service\(index)/" + (index % 3 == 0 ? "items/" : "")
                entries.append(.init(hosts: [HostPattern(host)], pathPrefix: path, value: index))
            }
            entries.append(.init(hosts: [], pathPrefix: "/", value: -1))
            let table = RouteTable(entries)
            let requests: [(host: [UInt8], path: [UInt8])] = (0..<1024).map { index in
                let route = (index * 7919) % count
                let host = route % 10 == 0 ? "site\(route).example.com" : "api.example.com"
                return (Array(host.utf8), Array("/v\(route % 7)/service\(route)/items/42?x=1".utf8))
            }
            let buffers = requests.map { $0.host + $0.path }
            var best = UInt64.max
            var checksum = 0
            for _ in 0..<5 {
                let start = nanoseconds()
                for round in 0..<200 {
                    for (index, buffer) in buffers.enumerated() {
                        let hostLength = requests[index].host.count
                        buffer.withUnsafeBytes { raw in
                            checksum &+= table.match(raw, host: 0..<hostLength, path: hostLength..<raw.count) ?? round
                        }
                    }
                }
                best = min(best, nanoseconds() - start)
            }
            let hosts = count / 10 + 2
            let perLookup = Int((Double(best) / Double(200 * buffers.count)).rounded())
            // The checksum keeps the optimiser from dropping the lookups.
            print("| \(count) | \(hosts) | \(perLookup) |" + (checksum == 42 ? " " : ""))
        }
    }
}
