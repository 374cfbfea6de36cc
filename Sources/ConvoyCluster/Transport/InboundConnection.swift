import Foundation
import Logging
import NIOCore

/// An accepted connection and the frame limit its handshake raises.
struct AcceptedConnection: Sendable {
    let framed: FramedChannel
    let limit: FrameLimit
}

/// One accepted connection: the handshake as the acceptor, then calls executed as they come
/// (concurrently) and their replies written back. Anything else — garbage, an oversized frame,
/// a failed handshake, a handshake that never finishes — closes this connection only, with a log
/// line saying why.
struct InboundConnection {
    let system: ClusterSystem

    func serve(_ framed: FramedChannel, limit: FrameLimit) async {
        let channel = framed.channel
        guard system.register(inbound: channel) else {
            await Self.close(framed)
            return
        }
        defer { system.unregister(inbound: channel) }
        // Strangers get a bounded share: so many handshakes at once, small frames until proven.
        guard system.beginHandshake() else {
            system.logger.warning("too many connections in their handshake: closed one",
                                  metadata: ["address": "\(channel.remoteAddress.map { "\($0)" } ?? "unknown")"])
            await Self.close(framed)
            return
        }
        var inHandshake = true
        defer { if inHandshake { system.endHandshake() } }
        let remote = channel.remoteAddress.map { "\($0)" } ?? "unknown"
        let handshakeTimer = Task {
            try? await Task.sleep(for: system.settings.handshakeTimeout)
            if !Task.isCancelled { channel.close(promise: nil) }
        }
        defer { handshakeTimer.cancel() }
        var peer = "unauthenticated peer at \(remote)"
        do {
            try await framed.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                let writer = FrameWriter(outbound)
                let member: String
                let compact: Bool
                do {
                    (member, compact) = try await handshake(&iterator, writer, channel: channel, limit: limit)
                } catch {
                    handshakeTimer.cancel()
                    // The reason goes to the log below, never to a peer that has not proved the secret.
                    try? await writer.send(.refused(WireMessage.handshakeRefusal))
                    throw error
                }
                handshakeTimer.cancel()
                inHandshake = false
                system.endHandshake()
                peer = member
                system.logger.debug("member connected", metadata: ["member": "\(peer)", "address": "\(remote)"])
                try await withThrowingDiscardingTaskGroup { group in
                    while true {
                        guard let frame = try await iterator.next() else { return }
                        let message = try WireChannel.decode(frame)
                        guard case .call(let call) = message else {
                            throw ClusterError.protocolViolation("expected calls, got \(message.kind)")
                        }
                        group.addTask {
                            let reply = await system.execute(call, from: member)
                            // Straight to the channel: replies need no ordering among themselves.
                            if let frame = try? WireChannel.encode(.reply(reply), compact: compact) {
                                channel.writeAndFlush(frame, promise: nil)
                            }
                        }
                    }
                }
            }
        } catch let error as ClusterError {
            system.logger.warning("closed a cluster connection", metadata: ["peer": "\(peer)", "address": "\(remote)", "reason": "\(error)"])
        } catch {
            // The frame decoder's own error (an oversized frame) arrives here, as does a reset.
            system.logger.warning("closed a cluster connection", metadata: ["peer": "\(peer)", "address": "\(remote)", "reason": "\(error)"])
        }
    }

    /// Closes a connection that is not served (its async wrapper must be finished, not dropped).
    private static func close(_ framed: FramedChannel) async {
        try? await framed.executeThenClose { _, _ in }
    }

    /// Checks the dialer's hello and proof, then welcomes it and seals the connection; returns its
    /// member id and whether it reads compact replies.
    private func handshake(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ writer: FrameWriter,
                           channel: Channel, limit: FrameLimit) async throws -> (String, compact: Bool) {
        var machine = AcceptorHandshake(clusterID: system.clusterID, memberID: system.memberID, key: system.key,
                                        compactEnvelopes: system.settings.compactEnvelopes)
        while true {
            switch try machine.receive(try await WireChannel.next(&iterator, from: "dialer")) {
            case .send(let answer):
                try await writer.send(answer)
            case .established(let member, let welcome, let keys):
                // Calls may follow the welcome at once: the limit is raised before it goes out.
                limit.raise(to: system.settings.maxFrameBytes + FrameCipher.overhead)
                try await WireChannel.sendWelcomeThenSeal(channel, welcome: welcome, keys: keys)
                return (member, system.settings.compactEnvelopes && machine.peer?.compactEnvelopes == true)
            }
        }
    }
}
