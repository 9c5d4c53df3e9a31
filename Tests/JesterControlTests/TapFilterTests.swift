// SPDX-License-Identifier: Apache-2.0
import JesterControl
import Testing

@Test func aTapFilterMatchesEveryFieldItSets() {
    let any = TapFilter()
    #expect(any.matches(route: "app", upstream: "pool", status: 200))
    let errors = TapFilter(status: "5xx")
    #expect(errors.matches(route: "app", upstream: "pool", status: 502))
    #expect(!errors.matches(route: "app", upstream: "pool", status: 404))
    let exact = TapFilter(route: "app", upstream: "pool", status: "404")
    #expect(exact.matches(route: "app", upstream: "pool", status: 404))
    #expect(!exact.matches(route: "other", upstream: "pool", status: 404))
    #expect(!exact.matches(route: "app", upstream: "", status: 404))
    #expect(TapFilter(status: "0").matches(route: "app", upstream: "", status: 0))
    #expect(TapFilter.any([errors, TapFilter(route: "admin")], route: "admin", upstream: "", status: 200))
    #expect(!TapFilter.any([], route: "admin", upstream: "", status: 200))
}

@Test func statusFiltersAreCodesOrClasses() {
    for good in ["404", "5xx", "2XX", "0", "100"] { #expect(TapFilter.isValidStatus(good), "\(good)") }
    for bad in ["5x", "6xx", "x00", "abc", "1000", "", "-1"] { #expect(!TapFilter.isValidStatus(bad), "\(bad)") }
}

@Test func tapMessagesRoundTrip() throws {
    let messages: [ControlMessage] = [
        .tap(TapFilter(route: "app", status: "5xx")), .tapFilters([TapFilter(upstream: "pool")]),
        .tapRecords([TapRecord(route: "app", upstream: "pool", status: 502, line: "{\"status\":502}")], dropped: 3),
    ]
    for message in messages {
        var codec = ControlFrameCodec()
        codec.append(ControlFrameCodec.encode(message))
        #expect(try codec.next() == message)
    }
}
