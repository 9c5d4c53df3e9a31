// SPDX-License-Identifier: Apache-2.0

/// A small assembler for eBPF instructions (the kernel's `struct bpf_insn`), enough for the SK_REUSEPORT program
/// that steers QUIC datagrams (`QUICSteering`). Jester carries its few programs as Swift code rather than as an
/// object file built by clang and loaded by libbpf: nothing to build or ship beside the binary, and the
/// instructions can be read and tested here. The kernel's verifier checks every program at load.
public struct BPFProgram: Sendable {
    /// A register: r0 (return values), r1-r5 (arguments, clobbered by calls), r6-r9 (kept across calls), r10
    /// (the read-only frame pointer; the stack lies below it).
    public enum Register: UInt8, Sendable {
        case r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10
    }

    /// Kernel helpers by their number in `enum bpf_func_id` (linux/bpf.h).
    public enum Helper: Int32, Sendable {
        case mapLookupElement = 1
        case loadBytes = 26  // bpf_skb_load_bytes (for SK_REUSEPORT: bytes from the UDP/TCP header on)
        case selectReuseportSocket = 82  // bpf_sk_select_reuseport
    }

    /// Conditions of conditional jumps, with an immediate operand.
    public enum Condition: UInt8, Sendable {
        case equal = 0x10  // BPF_JEQ
        case notEqual = 0x50  // BPF_JNE
        case anyBitSet = 0x40  // BPF_JSET
        case lessThan = 0xa0  // BPF_JLT (unsigned)
    }

    /// Access sizes of loads and stores.
    public enum Size: UInt8, Sendable {
        case word = 0x00, halfWord = 0x08, byte = 0x10, doubleWord = 0x18
    }

    /// One 8-byte instruction, as the kernel reads it (little-endian fields).
    struct Instruction: Equatable, Sendable {
        var code: UInt8
        var destination: UInt8
        var source: UInt8
        var offset: Int16
        var immediate: Int32

        var bytes: [UInt8] {
            let offsetBits = UInt16(bitPattern: offset)
            let immediateBits = UInt32(bitPattern: immediate)
            return [code, destination | source << 4, UInt8(offsetBits & 0xff), UInt8(offsetBits >> 8)]
                + (0..<4).map { UInt8(truncatingIfNeeded: immediateBits >> (8 * $0)) }
        }
    }

    private(set) var instructions: [Instruction] = []
    /// Jumps waiting for their label: instruction index → label.
    private var pendingJumps: [(index: Int, label: String)] = []
    private var labels: [String: Int] = [:]

    public init() {}

    /// The program as the kernel loads it: 8 bytes per instruction. Every jump's label must be placed.
    public func encoded() -> [UInt8] {
        var resolved = instructions
        for jump in pendingJumps {
            guard let target = labels[jump.label] else { preconditionFailure("BPF label '\(jump.label)' never placed") }
            resolved[jump.index].offset = Int16(target - jump.index - 1)
        }
        return resolved.flatMap(\.bytes)
    }

    /// How many 8-byte instructions the program has (a 64-bit immediate load counts twice).
    public var count: Int { instructions.count }

    // MARK: Instructions

    /// `destination = immediate` (64-bit).
    public mutating func move(_ destination: Register, _ immediate: Int32) {
        emit(0xb7, destination, .r0, immediate: immediate)
    }

    /// `destination = source` (64-bit).
    public mutating func move(_ destination: Register, from source: Register) {
        emit(0xbf, destination, source)
    }

    /// `destination += immediate` (64-bit).
    public mutating func add(_ destination: Register, _ immediate: Int32) {
        emit(0x07, destination, .r0, immediate: immediate)
    }

    /// `destination &= immediate` (64-bit).
    public mutating func and(_ destination: Register, _ immediate: Int32) {
        emit(0x57, destination, .r0, immediate: immediate)
    }

    /// `destination = *(size *)(source + offset)`.
    public mutating func load(_ destination: Register, _ size: Size, from source: Register, offset: Int16) {
        emit(0x61 | size.rawValue, destination, source, offset: offset)  // BPF_LDX | BPF_MEM | size
    }

    /// `*(size *)(destination + offset) = source`.
    public mutating func store(_ source: Register, _ size: Size, to destination: Register, offset: Int16) {
        emit(0x63 | size.rawValue, destination, source, offset: offset)  // BPF_STX | BPF_MEM | size
    }

    /// `*(size *)(destination + offset) = immediate`.
    public mutating func store(_ immediate: Int32, _ size: Size, to destination: Register, offset: Int16) {
        emit(0x62 | size.rawValue, destination, .r0, offset: offset, immediate: immediate)  // BPF_ST | BPF_MEM
    }

    /// `destination = map` for a helper's map argument: a 64-bit immediate load the kernel rewrites from the
    /// map's fd (BPF_PSEUDO_MAP_FD) to the map itself.
    public mutating func loadMap(_ destination: Register, fd: Int32) {
        emit(0x18, destination, .r1, immediate: fd)  // BPF_LD | BPF_DW | BPF_IMM, source = BPF_PSEUDO_MAP_FD
        emit(0x00, .r0, .r0)
    }

    /// Calls `helper` with r1-r5; its result is in r0.
    public mutating func call(_ helper: Helper) {
        emit(0x85, .r0, .r0, immediate: helper.rawValue)
    }

    /// Jumps to `label` when `register condition immediate` holds.
    public mutating func jump(to label: String, if register: Register, _ condition: Condition, _ immediate: Int32) {
        pendingJumps.append((instructions.count, label))
        emit(0x05 | condition.rawValue, register, .r0, immediate: immediate)  // BPF_JMP | condition | BPF_K
    }

    /// Jumps to `label`.
    public mutating func jump(to label: String) {
        pendingJumps.append((instructions.count, label))
        emit(0x05, .r0, .r0)  // BPF_JMP | BPF_JA
    }

    /// Returns r0.
    public mutating func exit() {
        emit(0x95, .r0, .r0)
    }

    /// Marks where `label` is: the next instruction.
    public mutating func place(_ label: String) {
        precondition(labels[label] == nil, "BPF label '\(label)' placed twice")
        labels[label] = instructions.count
    }

    private mutating func emit(
        _ code: UInt8, _ destination: Register, _ source: Register, offset: Int16 = 0, immediate: Int32 = 0
    ) {
        instructions.append(Instruction(
            code: code, destination: destination.rawValue, source: source.rawValue, offset: offset,
            immediate: immediate))
    }
}
