import ConvoyModel
import Distributed
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// How a replica's actor system behaves on the wire.
public struct ClusterSettings: Sendable {
    /// Default limit for one distributed call (`ClusterSystem.withCallTimeout` overrides).
    public var callTimeout: Duration
    /// Limit for the TCP connect plus the handshake, each way.
    public var handshakeTimeout: Duration
    /// Frames larger than this close the connection.
    public var maxFrameBytes: Int
    /// ... and before the handshake has authenticated the peer, frames larger than this (a hello,
    /// a challenge and a proof are a few hundred bytes).
    public var maxHandshakeFrameBytes: Int
    /// Accepted connections still in their handshake; more are closed at once (strangers cannot
    /// hold a member's memory or its file descriptors; members retry).
    public var maxPendingHandshakes: Int
    /// How long to wait before dialling a member again after failed connections (reset once one
    /// succeeds). Its attempt limit and deadline do not apply: a listed member is always dialled again.
    public var reconnectBackoff: Backoff
    /// Offer the compact encoding of calls and replies in the handshake (used when the peer offers
    /// it too). False only to stand in for a member that predates it: it sends JSON, and peers send
    /// it JSON.
    public var compactEnvelopes: Bool

    public init(callTimeout: Duration = .seconds(5), handshakeTimeout: Duration = .seconds(3), maxFrameBytes: Int = 16 << 20,
                maxHandshakeFrameBytes: Int = 4096, maxPendingHandshakes: Int = 64, reconnectBackoff: Backoff = .memberReconnect,
                compactEnvelopes: Bool = true) {
        self.compactEnvelopes = compactEnvelopes
        self.callTimeout = callTimeout
        self.handshakeTimeout = handshakeTimeout
        self.maxFrameBytes = maxFrameBytes
        self.maxHandshakeFrameBytes = maxHandshakeFrameBytes
        self.maxPendingHandshakes = maxPendingHandshakes
        self.reconnectBackoff = reconnectBackoff
    }
}

/// A member's TCP address.
public struct MemberAddress: Sendable, Hashable, Codable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

/// The replicas' `DistributedActorSystem`: actors on other members are called over one
/// authenticated TCP connection per member pair and direction (see docs/protocol.md).
///
/// Fencing: calls made while `outgoingEpoch` is set (by the leader) carry it; a member refuses a
/// call whose epoch is lower than the highest it has seen (from calls or from `observe(epoch:)`)
/// with `ClusterError.staleEpoch`.
public final class ClusterSystem: DistributedActorSystem, Sendable {
    public typealias ActorID = ClusterActorID
    public typealias InvocationEncoder = ClusterInvocationEncoder
    public typealias InvocationDecoder = ClusterInvocationDecoder
    public typealias ResultHandler = ClusterResultHandler
    public typealias SerializationRequirement = Codable

    public let clusterID: String
    public let memberID: String
    public let settings: ClusterSettings
    let key: HandshakeKey
    let logger: Logger
    let eventLoopGroup: any EventLoopGroup

    /// The name the next actor made in this task gets (see `makeActor(named:_:)`).
    @TaskLocal static var nextActorName: String?
    /// A call timeout for the calls made in this task.
    @TaskLocal public static var callTimeout: Duration?
    /// An epoch to stamp on the calls made in this task instead of `outgoingEpoch` (diagnostics:
    /// showing that members refuse an old one).
    @TaskLocal public static var callEpoch: Int64?

    private struct State {
        var actors: [ClusterActorID: WeakActor] = [:]
        var addresses: [String: MemberAddress] = [:]
        var links: [String: PeerLink] = [:]
        var highestEpoch: Int64 = 0
        var outgoingEpoch: Int64?
        /// Confirms an epoch higher than any seen (see `setEpochAuthority`).
        var epochAuthority: (@Sendable () async throws -> Int64)?
        var nextCallID: UInt64 = 0
        var server: Channel?
        /// Accepted connections, closed at shutdown (closing the listener leaves them open).
        var inbound: [ObjectIdentifier: Channel] = [:]
        /// Accepted connections still in their handshake.
        var pendingHandshakes = 0
        var shutDown = false
    }

    private let state = Mutex(State())

    public init(clusterID: String, memberID: String, secret: String, settings: ClusterSettings = ClusterSettings(),
                logger: Logger = Logger(label: "convoy-cluster"), eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.clusterID = clusterID
        self.memberID = memberID
        self.settings = settings
        self.key = HandshakeKey(secret: secret)
        self.logger = logger
        self.eventLoopGroup = eventLoopGroup
    }

    // MARK: Serving

    /// Starts accepting members' connections; returns the bound port (useful with port 0).
    @discardableResult
    public func listen(host: String, port: Int) async throws -> Int {
        let handshakeLimit = settings.maxHandshakeFrameBytes
        let server = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                let limit = FrameLimit(handshakeLimit)
                return WireChannel.configure(channel, limit: limit).map { AcceptedConnection(framed: $0, limit: limit) }
            }
        state.withLock { $0.server = server.channel }
        Task {
            await withDiscardingTaskGroup { group in
                do {
                    try await server.executeThenClose { connections in
                        for try await connection in connections {
                            group.addTask { await InboundConnection(system: self).serve(connection.framed, limit: connection.limit) }
                        }
                    }
                } catch {
                    self.logger.error("the cluster listener stopped", metadata: ["error": "\(error)"])
                }
            }
        }
        guard let bound = server.channel.localAddress?.port else { throw ClusterError.shutdown }
        return bound
    }

    /// Stops listening, closes every connection and fails calls in flight.
    public func shutdown() async {
        let (server, links, inbound) = state.withLock { state -> (Channel?, [PeerLink], [Channel]) in
            state.shutDown = true
            defer {
                state.links.removeAll()
                state.inbound.removeAll()
            }
            return (state.server, Array(state.links.values), Array(state.inbound.values))
        }
        try? await server?.close()
        for channel in inbound { try? await channel.close() }
        for link in links { await link.close() }
    }

    // MARK: Members and epochs

    /// Where `member` listens (from the members table).
    public func setAddress(_ address: MemberAddress?, of member: String) {
        state.withLock { $0.addresses[member] = address }
    }

    /// Counts a connection into its handshake; false (close it) when `maxPendingHandshakes` are.
    func beginHandshake() -> Bool {
        state.withLock { state in
            guard state.pendingHandshakes < settings.maxPendingHandshakes else { return false }
            state.pendingHandshakes += 1
            return true
        }
    }

    func endHandshake() {
        state.withLock { $0.pendingHandshakes -= 1 }
    }

    /// Tracks an accepted connection until it ends; false if the system is shut down.
    func register(inbound channel: Channel) -> Bool {
        state.withLock { state in
            guard !state.shutDown else { return false }
            state.inbound[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    func unregister(inbound channel: Channel) {
        _ = state.withLock { $0.inbound.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    func address(of member: String) -> MemberAddress? {
        state.withLock { $0.addresses[member] }
    }

    /// Raises the highest epoch this member has seen (e.g. read from PostgreSQL).
    public func observe(epoch: Int64) {
        state.withLock { $0.highestEpoch = max($0.highestEpoch, epoch) }
    }

    public var highestEpochSeen: Int64 { state.withLock { $0.highestEpoch } }

    /// Where a call's epoch higher than any this member has seen is confirmed before it is
    /// accepted: PostgreSQL's `cluster_epoch` (the member sets it). Without one, a call's epoch is
    /// taken as sent; with one, a peer or a ping cannot raise the epoch past what the cluster's
    /// election made, and lock the real leader out.
    public func setEpochAuthority(_ authority: @escaping @Sendable () async throws -> Int64) {
        state.withLock { $0.epochAuthority = authority }
    }

    /// Set while this member is the leader: its calls carry the epoch. Nil otherwise.
    public var outgoingEpoch: Int64? {
        get { state.withLock { $0.outgoingEpoch } }
        set { state.withLock { $0.outgoingEpoch = newValue } }
    }

    // MARK: Actors

    /// Makes an actor with a well-known name on this member (its id is `name@memberID`).
    public func makeActor<Act: DistributedActor>(named name: String, _ make: () throws -> Act) rethrows -> Act where Act.ID == ActorID {
        try Self.$nextActorName.withValue(name) { try make() }
    }

    /// The id of the actor `name` on `member`, for `resolve`.
    public func id(of name: String, on member: String) -> ClusterActorID {
        ClusterActorID(memberID: member, name: name)
    }

    public func resolve<Act: DistributedActor>(id: ActorID, as actorType: Act.Type) throws -> Act? where Act.ID == ActorID {
        guard id.memberID == memberID else { return nil }  // a remote proxy
        guard let actor = state.withLock({ $0.actors[id]?.actor }) as? Act else {
            throw ClusterError.unknownActor("\(id)")
        }
        return actor
    }

    public func assignID<Act: DistributedActor>(_ actorType: Act.Type) -> ActorID where Act.ID == ActorID {
        ClusterActorID(memberID: memberID, name: Self.nextActorName ?? "\(Act.self)-\(UUID().uuidString.lowercased())")
    }

    public func actorReady<Act: DistributedActor>(_ actor: Act) where Act.ID == ActorID {
        state.withLock { $0.actors[actor.id] = WeakActor(actor) }
    }

    public func resignID(_ id: ActorID) {
        state.withLock { $0.actors[id] = nil }
    }

    // MARK: Calls out

    public func makeInvocationEncoder() -> InvocationEncoder {
        ClusterInvocationEncoder()
    }

    public func remoteCall<Act: DistributedActor, Err: Error, Res: Codable>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder, throwing: Err.Type, returning: Res.Type
    ) async throws -> Res where Act.ID == ActorID {
        let reply = try await send(to: actor.id, target: target, arguments: invocation.arguments)
        guard let value = reply.value else { throw ClusterError.protocolViolation("a reply without a value from \(actor.id.memberID)") }
        do {
            return try WireValueCoding.decode(Res.self, from: value)
        } catch {
            throw ClusterError.protocolViolation("the reply from \(actor.id.memberID) is not a \(Res.self): \(error)")
        }
    }

    public func remoteCallVoid<Act: DistributedActor, Err: Error>(
        on actor: Act, target: RemoteCallTarget, invocation: inout InvocationEncoder, throwing: Err.Type
    ) async throws where Act.ID == ActorID {
        _ = try await send(to: actor.id, target: target, arguments: invocation.arguments)
    }

    private func send(to id: ActorID, target: RemoteCallTarget, arguments: [Data]) async throws -> ReplyEnvelope {
        let (link, callID, epoch) = try state.withLock { state -> (PeerLink, UInt64, Int64?) in
            guard !state.shutDown else { throw ClusterError.shutdown }
            state.nextCallID += 1
            let link = state.links[id.memberID] ?? PeerLink(memberID: id.memberID, system: self)
            state.links[id.memberID] = link
            return (link, state.nextCallID, Self.callEpoch ?? state.outgoingEpoch)
        }
        let call = CallEnvelope(callID: callID, target: id, method: target.identifier, arguments: arguments, epoch: epoch)
        let reply = try await link.call(call, timeout: Self.callTimeout ?? settings.callTimeout)
        if let error = reply.error { throw error }
        return reply
    }

    // MARK: Calls in

    /// Runs a call received from `member` on the local actor it names.
    func execute(_ call: CallEnvelope, from member: String) async -> ReplyEnvelope {
        if let epoch = call.epoch {
            var refusal = state.withLock { state -> ClusterError? in
                epoch < state.highestEpoch ? .staleEpoch(sent: epoch, seen: state.highestEpoch) : nil
            }
            if refusal == nil, let authority = state.withLock({ $0.highestEpoch < epoch ? $0.epochAuthority : nil }) {
                do {
                    let confirmed = try await authority()
                    observe(epoch: confirmed)
                    if epoch > confirmed { refusal = .epochUnconfirmed(sent: epoch, reason: "cluster_epoch is \(confirmed)") }
                } catch {
                    refusal = .epochUnconfirmed(sent: epoch, reason: "cannot read cluster_epoch: \(error)")
                }
            }
            if refusal == nil {
                refusal = state.withLock { state -> ClusterError? in
                    if epoch < state.highestEpoch { return .staleEpoch(sent: epoch, seen: state.highestEpoch) }
                    state.highestEpoch = epoch
                    return nil
                }
            }
            if let refusal {
                logger.warning("refused a call for its epoch", metadata: ["member": "\(member)", "epoch": "\(epoch)", "reason": "\(refusal)"])
                return ReplyEnvelope(callID: call.callID, error: refusal)
            }
        }
        guard call.target.memberID == memberID, let actor = state.withLock({ $0.actors[call.target]?.actor }) else {
            return ReplyEnvelope(callID: call.callID, error: .unknownActor("\(call.target)"))
        }
        let reply = ReplyBox()
        var decoder = ClusterInvocationDecoder(arguments: call.arguments)
        let handler = ClusterResultHandler(callID: call.callID) { reply.set($0) }
        do {
            try await executeDistributedTarget(on: actor, target: RemoteCallTarget(call.method), invocationDecoder: &decoder, handler: handler)
        } catch {
            return ReplyEnvelope(callID: call.callID, error: ClusterError.reporting(error))
        }
        return reply.value ?? ReplyEnvelope(callID: call.callID, error: .protocolViolation("the call produced no result"))
    }
}

/// A registered local actor, held weakly so that the system never keeps one alive.
final class WeakActor: Sendable {
    // `weak let` is not allowed; `nonisolated(unsafe)` because it is written only in init.
    nonisolated(unsafe) weak var actor: (any DistributedActor)?

    init(_ actor: any DistributedActor) {
        self.actor = actor
    }
}

/// Where the result handler leaves a call's reply.
final class ReplyBox: Sendable {
    private let reply = Mutex<ReplyEnvelope?>(nil)

    var value: ReplyEnvelope? { reply.withLock { $0 } }

    func set(_ reply: ReplyEnvelope) {
        self.reply.withLock { $0 = reply }
    }
}
