import ConvoyCluster
import ConvoyModel
import Foundation
import NIOCore
import XCTest

/// Issue 19: calls and replies in their compact encoding read back as they were written, in
/// either encoding, and anything malformed is a protocol violation, never a crash or a guess.
final class CompactEnvelopeTests: XCTestCase {
    private var generator = SeededRandom(seed: 19)

    func testRandomCallsAndRepliesReadBackTheSameInBothEncodings() throws {
        for _ in 0..<2000 {
            let message = randomMessage()
            let compact = try message.frame(compact: true)
            let json = try message.frame(compact: false)
            XCTAssertNotEqual(compact.getInteger(at: 0, as: UInt8.self), UInt8(ascii: "{"))
            XCTAssertEqual(json.getInteger(at: 0, as: UInt8.self), UInt8(ascii: "{"))
            XCTAssertEqual(try WireMessage(frame: compact), message)
            XCTAssertEqual(try WireMessage(frame: json), message)
            XCTAssertLessThan(compact.readableBytes, json.readableBytes, "compact is smaller than JSON")
        }
    }

    func testHandshakeMessagesStayJSONWhateverIsAsked() throws {
        let hello = WireMessage.hello(Hello(clusterID: "zzzzz", memberID: "a", nonce: Data(count: 32), keyShare: Data(count: 32)))
        let frame = try hello.frame(compact: true)
        XCTAssertEqual(frame.getInteger(at: 0, as: UInt8.self), UInt8(ascii: "{"))
        XCTAssertEqual(try WireMessage(frame: frame), hello)
    }

    /// A hello from a member that predates the compact encoding has no such key: it reads as nil,
    /// and the connection carries JSON.
    func testAnOlderMembersHelloSaysNothingOfCompactEnvelopes() throws {
        let old = #"{"hello":{"_0":{"protocolVersion":2,"clusterID":"zzzzz","memberID":"a","nonce":"","keyShare":""}}}"#
        guard case .hello(let hello) = try WireMessage(frame: ByteBuffer(string: old)) else { return XCTFail("not a hello") }
        XCTAssertNil(hello.compactEnvelopes)
        XCTAssertEqual(Hello(clusterID: "zzzzz", memberID: "a").compactEnvelopes, true)
    }

    func testEveryTruncationOfACompactFrameIsAProtocolViolation() throws {
        for _ in 0..<200 {
            let frame = try randomMessage().frame(compact: true)
            let bytes = Array(frame.readableBytesView)
            for length in 1..<bytes.count {
                assertViolation(Array(bytes.prefix(length)), "cut to \(length) of \(bytes.count) bytes")
            }
            assertViolation(bytes + [0], "a byte left over")
        }
    }

    func testMalformedCompactFramesAreProtocolViolations() throws {
        let call = WireMessage.call(CallEnvelope(callID: 7, target: ClusterActorID(memberID: "b", name: "greeter"), method: "m",
                                                 arguments: [Data("1".utf8)], epoch: 3))
        let bytes = Array(try call.frame(compact: true).readableBytesView)
        // tag 1, callID 8, flags at 9.
        var flags = bytes
        flags[9] = 0x80
        assertViolation(flags, "unknown call flags")
        // The member's length (after the 8-byte epoch, at 18) says more than there is.
        var long = bytes
        long[18] = 0x7F
        assertViolation(long, "a length past the end")
        // The member's one byte ("b", at 22) is not UTF-8.
        var notText = bytes
        notText[22] = 0xFF
        assertViolation(notText, "text that is not UTF-8")
        // An argument count the rest cannot hold (the count sits before the last argument's 4 + 1 bytes).
        var count = bytes
        count[bytes.count - 7] = 0xFF
        count[bytes.count - 6] = 0xFF
        assertViolation(count, "65,535 arguments in 5 bytes")
        assertViolation([0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0x04], "unknown reply flags")
        assertViolation([0x02, 0, 0, 0, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 2, 0x7B, 0x7D], "an error that is no ClusterError")
    }

    private func assertViolation(_ bytes: [UInt8], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try WireMessage(frame: ByteBuffer(bytes: bytes)), what, file: file, line: line) { error in
            guard case ClusterError.protocolViolation = error else {
                return XCTFail("\(what): \(error) is not a protocol violation", file: file, line: line)
            }
        }
    }

    private func randomText() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789-_.@é€🚀")
        return String((0..<Int.random(in: 0...40, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
    }

    private func randomBytes() -> Data {
        Data((0..<Int.random(in: 0...300, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) })
    }

    private func randomMessage() -> WireMessage {
        let callID = UInt64.random(in: 0...UInt64.max, using: &generator)
        if Bool.random(using: &generator) {
            let arguments = (0..<Int.random(in: 0...4, using: &generator)).map { _ in randomBytes() }
            let epoch: Int64? = Bool.random(using: &generator) ? Int64.random(in: Int64.min...Int64.max, using: &generator) : nil
            return .call(CallEnvelope(callID: callID, target: ClusterActorID(memberID: randomText(), name: randomText()),
                                      method: randomText(), arguments: arguments, epoch: epoch))
        }
        let errors: [ClusterError?] = [nil, .staleEpoch(sent: 3, seen: 4), .remote(type: "Failure", message: randomText()),
                                       .timeout(member: "b", target: randomText(), seconds: 0.25), .shutdown]
        return .reply(ReplyEnvelope(callID: callID, value: Bool.random(using: &generator) ? randomBytes() : nil,
                                    error: errors.randomElement(using: &generator)!))
    }
}
