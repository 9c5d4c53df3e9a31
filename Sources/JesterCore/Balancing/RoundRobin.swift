/// Plain round-robin over a pool's targets: each pick is the next index, wrapping.
///
/// Per worker by design: with N workers each cycling independently, every target still gets 1/count of the
/// requests. Weighted and stateful algorithms arrive with the load-balancing issue as siblings of this type.
public struct RoundRobin: Sendable {
    private var nextIndex = 0

    /// Starts at `offset` so that workers do not all send their first request to the same target.
    public init(offset: Int = 0) {
        nextIndex = max(0, offset)
    }

    /// The index of the next target among `count` (which must be positive).
    public mutating func next(count: Int) -> Int {
        precondition(count > 0, "a pool without targets is rejected by configuration validation")
        let picked = nextIndex % count
        nextIndex = picked + 1
        return picked
    }
}
