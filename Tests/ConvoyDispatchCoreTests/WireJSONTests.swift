import ConvoyDispatchCore
import ConvoyModel
import Foundation
import XCTest

/// The sync's hand-written JSON (`WireJSONCodable`) says what Foundation's coders say of the same
/// values, both ways, so members with and without it understand each other in a rolling upgrade;
/// a document that is not the value is refused with the member that is wrong.
final class WireJSONTests: XCTestCase {
    private let instance = CloudInstance(
        id: "i-0abc", typeName: "m5.large", address: "10.0.0.7", sshPort: 2222, hostKey: "ssh-ed25519 AAAA/x+y==",
        tags: ["convoy-cluster": "zzzzz", "quote\"and\\slash/": "line\nbreak\ttab\u{1}é✓"], createdAt: Date(timeIntervalSinceReferenceDate: 786_543_210.123_456))
    private let bare = CloudInstance(id: "i-1", typeName: "t", address: "a", sshPort: 22, hostKey: nil, tags: [:],
                                     createdAt: Date(timeIntervalSinceReferenceDate: 0))
    private let report = WorkerReport(
        instanceID: "i-0abc", member: "replica-2", phase: .ready, containers: ["zzzzz-dz642-000000000000001", "zzzzz-dz642-000000000000002"],
        lastProbe: Date(timeIntervalSinceReferenceDate: 786_543_211.5), bootedAt: Date(timeIntervalSinceReferenceDate: 786_543_100),
        bootSeconds: 12.25, probeSeconds: 0.003_125, hostedSince: Date(timeIntervalSinceReferenceDate: 786_543_000.000_001),
        error: nil, bootProbeFailing: true, lastProbeBeganAge: 1e-7, broken: "disk full")
    private let sparse = WorkerReport(instanceID: "i-1", member: "m", phase: .hostKeyMismatch, containers: [], lastProbe: nil, bootedAt: nil,
                                      bootSeconds: nil, probeSeconds: nil, hostedSince: Date(timeIntervalSinceReferenceDate: -5), error: "no")

    func testFoundationReadsWhatTheWireWritesAndTheWireReadsWhatFoundationWrites() throws {
        let instances = [instance, bare]
        XCTAssertEqual(try JSONDecoder().decode([CloudInstance].self, from: Data(instances.wireJSON())), instances)
        XCTAssertEqual(try [CloudInstance](wireJSON: Array(JSONEncoder().encode(instances))), instances)
        let reports = [report, sparse]
        XCTAssertEqual(try JSONDecoder().decode([WorkerReport].self, from: Data(reports.wireJSON())), reports)
        XCTAssertEqual(try [WorkerReport](wireJSON: Array(JSONEncoder().encode(reports))), reports)
        XCTAssertEqual(try [WorkerReport](wireJSON: [WorkerReport]().wireJSON()), [])
    }

    func testTheWireWritesTheSameMembersAsFoundationAndLeavesNilOnesOut() throws {
        for (wire, foundation) in [(sparse.wireJSON(), try JSONEncoder().encode(sparse)), (bare.wireJSON(), try JSONEncoder().encode(bare))] {
            let written = try JSONValue.parse(wire).objectValue
            let expected = try JSONValue.parse(Array(foundation)).objectValue
            XCTAssertEqual(written, expected)
        }
        XCTAssertNil(try JSONValue.parse(sparse.wireJSON()).objectValue?["lastProbe"], "a nil member is left out, not null")
    }

    func testANullOptionalMemberReadsAsNil() throws {
        let text = #"{"instanceID":"i","member":"m","phase":"booting","containers":[],"lastProbe":null,"hostedSince":1,"bootProbeFailing":false,"extra":[1]}"#
        let read = try WorkerReport(wireJSON: Array(text.utf8))
        XCTAssertNil(read.lastProbe)
        XCTAssertEqual(read.phase, .booting)
        XCTAssertEqual(read.hostedSince, Date(timeIntervalSinceReferenceDate: 1))
    }

    func testADocumentThatIsNotTheValueIsRefusedNamingTheMember() {
        let cases: [(String, String)] = [
            (#"{"id":"i","typeName":"t","address":"a","tags":{},"createdAt":0}"#, "CloudInstance: 'sshPort' is missing"),
            (#"{"id":"i","typeName":"t","address":"a","sshPort":22.5,"tags":{},"createdAt":0}"#, "CloudInstance: 'sshPort' is not an integer"),
            (#"{"id":"i","typeName":"t","address":"a","sshPort":1e300,"tags":{},"createdAt":0}"#, "CloudInstance: 'sshPort' is not an integer"),
            (#"{"id":7,"typeName":"t","address":"a","sshPort":22,"tags":{},"createdAt":0}"#, "CloudInstance: 'id' is not a string"),
            (#"{"id":"i","typeName":"t","address":"a","sshPort":22,"tags":{"k":1},"createdAt":0}"#, "CloudInstance: 'tags' holds a value that is not a string"),
            (#"{"id":"i","typeName":"t","address":"a","sshPort":22,"tags":[],"createdAt":"2026"}"#, "CloudInstance: 'tags' is not an object"),
            (#"{"id":"i","typeName":"t","address":"a","sshPort":22,"tags":{},"createdAt":"2026"}"#, "CloudInstance: 'createdAt' is not a number"),
            (#""not an object""#, "CloudInstance: not an object"),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try [CloudInstance](wireJSON: Array("[\(text)]".utf8)), text) { error in
                XCTAssertEqual("\(error)", expected, text)
            }
        }
        XCTAssertThrowsError(try [CloudInstance](wireJSON: Array(#"{"id":"i"}"#.utf8))) { error in
            XCTAssertEqual("\(error)", "[CloudInstance]: not an array")
        }
        let badPhase = #"{"instanceID":"i","member":"m","phase":"dancing","containers":[],"hostedSince":1,"bootProbeFailing":false}"#
        XCTAssertThrowsError(try WorkerReport(wireJSON: Array(badPhase.utf8))) { error in
            XCTAssertEqual("\(error)", "WorkerReport: 'phase' is 'dancing', not a Phase")
        }
        let badContainers = #"{"instanceID":"i","member":"m","phase":"ready","containers":["a",null],"hostedSince":1,"bootProbeFailing":false}"#
        XCTAssertThrowsError(try WorkerReport(wireJSON: Array(badContainers.utf8))) { error in
            XCTAssertEqual("\(error)", "WorkerReport: 'containers' holds a value that is not a string")
        }
        XCTAssertThrowsError(try WorkerReport(wireJSON: Array("{\"instanceID\":".utf8))) { error in
            XCTAssertTrue(error is JSONValue.ParseError, "\(error)")
        }
    }

    func testANumberThatJSONCannotSayIsWrittenAsNullAndRefusedWhereANumberIsRequired() throws {
        var nan = report
        nan.bootSeconds = .nan
        nan.hostedSince = Date(timeIntervalSinceReferenceDate: .infinity)
        XCTAssertThrowsError(try WorkerReport(wireJSON: nan.wireJSON())) { error in
            XCTAssertEqual("\(error)", "WorkerReport: 'hostedSince' is missing")
        }
        nan.hostedSince = report.hostedSince
        XCTAssertNil(try WorkerReport(wireJSON: nan.wireJSON()).bootSeconds)
    }

    /// The sync by difference's request and answer: Foundation and the wire read each other's,
    /// with and without their optional members, and a nested value's error names it.
    func testTheSyncByDifferenceReadsAsFoundationWritesItBothWays() throws {
        let requests = [SyncRequest(instances: [instance, bare], base: 17, resend: ["i-1"]), SyncRequest(instances: nil, base: 2_147_483_647),
                        SyncRequest(instances: [], base: nil)]
        for request in requests {
            XCTAssertEqual(try JSONDecoder().decode(SyncRequest.self, from: Data(request.wireJSON())), request)
            XCTAssertEqual(try SyncRequest(wireJSON: Array(JSONEncoder().encode(request))), request)
            XCTAssertEqual(try JSONValue.parse(request.wireJSON()), try JSONValue.parse(Array(JSONEncoder().encode(request))))
        }
        let answers = [SyncAnswer(id: 5, base: 4, reports: [report]), .full([report, sparse]), SyncLedger.needsInstances]
        for answer in answers {
            XCTAssertEqual(try JSONDecoder().decode(SyncAnswer.self, from: Data(answer.wireJSON())), answer)
            XCTAssertEqual(try SyncAnswer(wireJSON: Array(JSONEncoder().encode(answer))), answer)
        }
        XCTAssertNil(try SyncRequest(wireJSON: Array(#"{"instances":null,"base":3}"#.utf8)).instances)
        let refused: [(String, String)] = [
            (#"{"id":1,"reports":[{"instanceID":"i"}],"needsInstances":false}"#, "WorkerReport: 'member' is missing"),
            (#"{"id":1.5,"reports":[],"needsInstances":false}"#, "SyncAnswer: 'id' is not an integer"),
            (#"{"id":1,"reports":[]}"#, "SyncAnswer: 'needsInstances' is missing"),
            (#"{"id":1,"reports":[],"needsInstances":false,"base":"x"}"#, "SyncAnswer: 'base' is not a number"),
        ]
        for (text, expected) in refused {
            XCTAssertThrowsError(try SyncAnswer(wireJSON: Array(text.utf8)), text) { error in XCTAssertEqual("\(error)", expected, text) }
        }
        // After a nested value, an error names the outer type again.
        XCTAssertThrowsError(try SyncAnswer(wireJSON: Array(#"{"reports":[],"id":true,"needsInstances":false}"#.utf8))) { error in
            XCTAssertEqual("\(error)", "SyncAnswer: 'id' is not a number")
        }
    }
}
