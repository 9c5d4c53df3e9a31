// SPDX-License-Identifier: Apache-2.0
import CJesterPosix
import Glibc

/// Steers the QUIC datagrams of one UDP address to the worker that owns their connection, in the kernel: an
/// SK_REUSEPORT program attached to the address's SO_REUSEPORT group picks the socket for every datagram by the
/// first bytes of its destination connection ID, which name the owning worker's slot and generation
/// (`WorkerConnectionIDFactory` in JesterHTTP3 makes such IDs). Delivery then follows the connection, not the
/// client's address: a client whose address changes (NAT rebinding, migration) still reaches its worker, and
/// across a reload a draining worker keeps its connections while every new one goes to the new generation
/// (nginx's issue #425: new connections landing on exiting workers).
///
/// Two socket maps: `owners` (a SOCKHASH) from a 4-byte key — the ID's three owner bytes and a zero — to the
/// owner's socket, and `newConnections` (a 256-entry SOCKMAP) holding the serving generation's sockets, each
/// repeated to fill it. An ID that names no live socket (a client's first Initial carries an ID the client
/// chose) picks `newConnections[hash & 255]`, the kernel's hash of the 4-tuple, so a client's first packets all
/// reach one socket. When the program selects nothing (a map being rewritten), the kernel's own hash decides.
///
/// Needs root (CAP_BPF and CAP_NET_ADMIN) and Linux 5.8 (selecting from socket maps): `QUICSteering()` throws
/// otherwise, and the master serves HTTP/3 without it (Docs/http3-design.md, jester(8) HTTP/3). The kernel drops
/// a socket from both maps when it closes; program and maps go when the last socket of the group and this object
/// are gone. Loop-confined to the master.
public final class QUICSteering {
    /// How many first bytes of a server connection ID name its owner.
    public static let ownerBytes = 3
    /// Entries of `newConnections`: the serving generation's sockets, repeated (256 is a multiple of no worker
    /// count but 2^n; the skew for others is at most one entry in 256).
    static let newConnectionEntries: UInt32 = 256

    /// The descriptors of the program and its maps (a binary upgrade hands them to the new program).
    public let program: Int32
    public let owners: Int32
    public let newConnections: Int32

    /// Creates the maps and loads the program, with room for `owners` workers (slots × live generations; a
    /// registration past it fails). Throws when the kernel or the process's privileges refuse.
    public init(owners capacity: Int) throws(SystemError) {
        // Before Linux 5.11 BPF memory counts against RLIMIT_MEMLOCK (64 KiB by default): lift it where allowed.
        var unlimited = rlimit(rlim_cur: rlim_t.max, rlim_max: rlim_t.max)  // RLIM_INFINITY
        _ = setrlimit(__rlimit_resource_t(__RLIMIT_MEMLOCK.rawValue), &unlimited)
        // (linux/bpf.h: BPF_MAP_TYPE_SOCKMAP = 15, BPF_MAP_TYPE_SOCKHASH = 18.)
        let owners = cjester_bpf_map_create(18, 4, 4, UInt32(min(max(capacity, 64), 1 << 16)))
        guard owners >= 0 else { throw SystemError("bpf", "BPF_MAP_CREATE (SOCKHASH) for QUIC steering") }
        let newConnections = cjester_bpf_map_create(15, 4, 4, Self.newConnectionEntries)
        guard newConnections >= 0 else {
            let error = SystemError("bpf", "BPF_MAP_CREATE (SOCKMAP) for QUIC steering")
            Glibc.close(owners)
            throw error
        }
        let instructions = Self.program(owners: owners, newConnections: newConnections).encoded()
        var log = [CChar](repeating: 0, count: 16_384)
        let program = instructions.withUnsafeBytes { bytes in
            cjester_bpf_load_reuseport_program(bytes.baseAddress, UInt32(bytes.count / 8), &log, UInt32(log.count))
        }
        guard program >= 0 else {
            let failure = errno
            let text = String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let verifier = text.split(separator: "\n").suffix(3).joined(separator: "; ")
            let error = SystemError(
                "bpf", "BPF_PROG_LOAD (SK_REUSEPORT)" + (verifier.isEmpty ? "" : " — verifier: \(verifier)"),
                errno: failure)
            Glibc.close(owners)
            Glibc.close(newConnections)
            throw error
        }
        self.owners = owners
        self.newConnections = newConnections
        self.program = program
    }

    /// Takes over the program and maps an earlier program made (`program`, `owners`, `newConnections` of the
    /// instance it handed over across a binary upgrade); their entries stay as they were.
    public init(adoptingProgram program: Int32, owners: Int32, newConnections: Int32) {
        self.program = program
        self.owners = owners
        self.newConnections = newConnections
    }

    deinit {
        Glibc.close(program)
        Glibc.close(owners)
        Glibc.close(newConnections)
    }

    /// The most worker slots an address can have: connection IDs name the slot in one byte.
    public static let maximumSlots = 256

    /// The generation field of connection IDs for the master's `generation` (1, 2, ...): 1-65,535, wrapping
    /// past 0, which names no worker (a Retry's IDs carry it). Only live generations need distinct fields.
    public static func connectionIDGeneration(_ generation: Int) -> UInt16 {
        UInt16(1 + (max(generation, 1) - 1) % 65_535)
    }

    /// The map key of the worker in `slot` of `generation`: the bytes its connection IDs begin with, then a zero.
    public static func ownerKey(slot: Int, generation: Int) -> [UInt8] {
        let field = connectionIDGeneration(generation)
        return [UInt8(truncatingIfNeeded: slot), UInt8(field >> 8), UInt8(field & 0xff), 0]
    }

    /// Attaches the program to the SO_REUSEPORT group `socket` is bound in (one socket is enough; the group keeps
    /// the program while any of its sockets is open). Attaching again replaces the group's program (with itself,
    /// when the group already has it).
    public func attach(to socket: Int32) throws(SystemError) {
        guard cjester_attach_reuseport_program(socket, program) == 0 else {
            throw SystemError("setsockopt", "SO_ATTACH_REUSEPORT_EBPF")
        }
    }

    /// Takes the program off `socket`'s group again (after a failed set-up), so the kernel's hash decides.
    public static func detach(from socket: Int32) {
        var unused: Int32 = 0
        _ = setsockopt(socket, SOL_SOCKET, 68 /* SO_DETACH_REUSEPORT_BPF */, &unused, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Datagrams whose connection ID begins with the owner bytes of `slot` and `generation` go to `socket`.
    public func route(owner slot: Int, generation: Int, to socket: Int32) throws(SystemError) {
        var fd = UInt32(bitPattern: socket)
        let key = Self.ownerKey(slot: slot, generation: generation)
        let result = key.withUnsafeBytes { cjester_bpf_map_update(owners, $0.baseAddress, &fd) }
        guard result == 0 else { throw SystemError("bpf", "BPF_MAP_UPDATE_ELEM (owner \(slot)/\(generation))") }
    }

    /// Datagrams of connections not yet known (and IDs of owners that are gone) go to `sockets`, spread by the
    /// kernel's hash of their addresses: the serving generation's sockets, one per slot.
    public func routeNewConnections(to sockets: [Int32]) throws(SystemError) {
        guard !sockets.isEmpty else { return }
        for index in 0..<Self.newConnectionEntries {
            var key = index
            var fd = UInt32(bitPattern: sockets[Int(index) % sockets.count])
            guard cjester_bpf_map_update(newConnections, &key, &fd) == 0 else {
                throw SystemError("bpf", "BPF_MAP_UPDATE_ELEM (new connections, entry \(index))")
            }
        }
    }

    /// The program: the destination connection ID's owner bytes select the socket from `owners`; a miss picks
    /// from `newConnections` by the 4-tuple hash; everything else (too short to parse) is left to the kernel.
    ///
    /// The program's context is `struct sk_reuseport_md`, whose packet bytes start at the UDP header (8 bytes);
    /// `bpf_skb_load_bytes` reads them wherever the kernel keeps them, so nothing depends on the linear part.
    static func program(owners: Int32, newConnections: Int32) -> BPFProgram {
        let udpHeader: Int32 = 8
        let hashField: Int16 = 32  // offsetof(struct sk_reuseport_md, hash)
        let key: Int16 = -8  // the 4-byte map key on the stack (zeroed first; 3 bytes loaded into it)
        let scratch: Int16 = -16  // one byte read from the packet
        var p = BPFProgram()
        p.move(.r6, from: .r1)  // the context, kept across calls
        p.store(0, .doubleWord, to: .r10, offset: key)

        // The first byte: bit 7 set is a long header (version, then the ID's length), clear a short one.
        p.loadPacketBytes(offset: .immediate(udpHeader), count: 1, into: scratch)
        p.jump(to: "miss", if: .r0, .notEqual, 0)
        p.load(.r7, .byte, from: .r10, offset: scratch)
        p.move(.r8, udpHeader + 1)  // a short header's ID follows the first byte
        p.jump(to: "long", if: .r7, .anyBitSet, 0x80)
        p.jump(to: "lookup")

        p.place("long")  // first byte, 4-byte version, ID length, ID
        p.loadPacketBytes(offset: .immediate(udpHeader + 5), count: 1, into: scratch)
        p.jump(to: "miss", if: .r0, .notEqual, 0)
        p.load(.r7, .byte, from: .r10, offset: scratch)
        p.jump(to: "miss", if: .r7, .lessThan, Int32(ownerBytes))
        p.move(.r8, udpHeader + 6)

        p.place("lookup")  // the owner bytes at r8 into the key, then the owner's socket
        p.loadPacketBytes(offset: .register(.r8), count: Int32(ownerBytes), into: key)
        p.jump(to: "miss", if: .r0, .notEqual, 0)
        p.selectSocket(map: owners, key: key)
        p.jump(to: "pass", if: .r0, .equal, 0)

        p.place("miss")  // a new connection (or an owner gone): the serving generation, by the 4-tuple hash
        p.load(.r2, .word, from: .r6, offset: hashField)
        p.and(.r2, Int32(newConnectionEntries) - 1)
        p.store(.r2, .word, to: .r10, offset: key)
        p.selectSocket(map: newConnections, key: key)

        p.place("pass")
        p.move(.r0, 1)  // SK_PASS: the selected socket, or the kernel's own choice when none was selected
        p.exit()
        return p
    }
}

extension BPFProgram {
    /// Where `loadPacketBytes` reads from.
    enum PacketOffset {
        case immediate(Int32)
        case register(Register)
    }

    /// `r0 = bpf_skb_load_bytes(ctx = r6, offset, r10 + stackOffset, count)`: 0 when the bytes were there.
    mutating func loadPacketBytes(offset: PacketOffset, count: Int32, into stackOffset: Int16) {
        move(.r1, from: .r6)
        switch offset {
        case .immediate(let value): move(.r2, value)
        case .register(let register): move(.r2, from: register)
        }
        move(.r3, from: .r10)
        add(.r3, Int32(stackOffset))
        move(.r4, count)
        call(.loadBytes)
    }

    /// `r0 = bpf_sk_select_reuseport(ctx = r6, map, r10 + keyOffset, 0)`: 0 when a socket was selected.
    mutating func selectSocket(map fd: Int32, key keyOffset: Int16) {
        move(.r1, from: .r6)
        loadMap(.r2, fd: fd)
        move(.r3, from: .r10)
        add(.r3, Int32(keyOffset))
        move(.r4, 0)
        call(.selectReuseportSocket)
    }
}
