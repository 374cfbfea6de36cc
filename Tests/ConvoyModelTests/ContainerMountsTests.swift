import ConvoyModel
import XCTest

/// Issue 20: the mounts a request may ask for, checked as Arvados defines them, with a reason
/// for each refusal (the API refuses them at commit, the runner before running anything).
final class ContainerMountsTests: XCTestCase {
    private func parse(_ mounts: [String: JSONValue], secret: Bool = false) throws -> [String: ContainerMount] {
        try ContainerMounts.parse(mounts, outputPath: "/out", secret: secret)
    }

    private func refusal(_ mounts: [String: JSONValue], secret: Bool = false) -> String {
        do {
            _ = try parse(mounts, secret: secret)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    func testEachKindIsReadWithItsMembers() throws {
        let hash = "0123456789abcdef0123456789abcdef+42"
        let uuid = "zzzzz-4zz18-000000000000001"
        let parsed = try parse([
            "/scratch": ["kind": "tmp", "capacity": .number(1_073_741_824), "device_type": "ram"],
            "/in": ["kind": "collection", "uuid": .string(uuid), "path": "/sub/file.txt/"],
            "/ref": ["kind": "collection", "portable_data_hash": .string(hash + "/a/b")],
            "/job.json": ["kind": "json", "content": ["x": .number(1)]],
            "/note": ["kind": "text", "content": "hi\n"],
            "/out/seed": ["kind": "collection", "portable_data_hash": .string(hash), "writable": true, "exclude_from_output": true],
        ])
        XCTAssertEqual(parsed["/scratch"], .tmp(capacity: 1 << 30))
        XCTAssertEqual(parsed["/in"], .collection(.uuid(ArvadosUUID(uuid)!), path: "sub/file.txt", writable: false, excludeFromOutput: false))
        XCTAssertEqual(parsed["/ref"], .collection(.portableDataHash(hash), path: "a/b", writable: false, excludeFromOutput: false))
        XCTAssertEqual(parsed["/job.json"]?.fileContent, Array(#"{"x":1}"#.utf8))
        XCTAssertEqual(parsed["/note"]?.fileContent, Array("hi\n".utf8))
        XCTAssertEqual(parsed["/out/seed"]?.excludedFromOutput, true)
        XCTAssertEqual(ContainerMounts.scratchNeeded(["/a": ["kind": "tmp", "capacity": .number(100)], "/b": ["kind": "tmp", "capacity": .number(23)],
                                                      "/c": ["kind": "text", "content": "x"]]), 123)
        let constraints = RuntimeConstraints(vcpus: 1, ram: 1, scratch: 1000).addingScratch(of: ["/t": ["kind": "tmp", "capacity": .number(24)]])
        XCTAssertEqual(constraints.scratch, 1024)
    }

    func testEveryMountThatCannotBeCarriedOutIsRefusedWithItsReason() {
        let hash = "0123456789abcdef0123456789abcdef+42"
        let cases: [([String: JSONValue], String)] = [
            (["relative": ["kind": "tmp"]], "must be an absolute path"),
            (["/a/../b": ["kind": "tmp"]], "must be an absolute path"),
            (["stdout": ["kind": "file", "path": "/out/x"]], "redirecting stdin, stdout or stderr is not supported"),
            (["/x": "tmp"], "must be an object with a kind"),
            (["/x": ["kind": "keep"]], "has kind 'keep': this cluster supports only 'collection', 'json', 'text', 'tmp' mounts"),
            (["/x": ["path": "/y"]], "has no kind"),
            (["/x": ["kind": "tmp", "size": .number(1)]], "unknown member 'size'"),
            (["/x": ["kind": "tmp", "capacity": .number(-1)]], "capacity must be a whole number"),
            (["/x": ["kind": "tmp", "capacity": .number(1.5)]], "capacity must be a whole number"),
            (["/out/t": ["kind": "tmp"]], "a tmp mount cannot be under output_path"),
            (["/x": ["kind": "collection"]], "needs a uuid or a portable_data_hash"),
            (["/x": ["kind": "collection", "uuid": "zzzzz-4zz18-000000000000001", "portable_data_hash": .string(hash)]], "not both"),
            (["/x": ["kind": "collection", "uuid": "zzzzz-dz642-000000000000001"]], "uuid must be a collection uuid"),
            (["/x": ["kind": "collection", "portable_data_hash": "abc+1"]], "is not a portable data hash"),
            (["/x": ["kind": "collection", "portable_data_hash": .string(hash), "path": "a/../b"]], "is not a path within a collection"),
            (["/x": ["kind": "collection", "portable_data_hash": .string(hash), "writable": true]], "must be at or under output_path"),
            (["/x": ["kind": "collection", "portable_data_hash": .string(hash), "writable": "yes"]], "writable must be true or false"),
            (["/x": ["kind": "json"]], "a json mount needs content"),
            (["/x": ["kind": "text", "content": .number(3)]], "a text mount's content must be a string"),
            (["/out": ["kind": "text", "content": "x"]], "output_path must be a directory"),
            (["/x": ["kind": "text", "content": "x", "exclude_from_output": true]], "exclude_from_output applies only to mounts under output_path"),
            (["/x": ["kind": "text", "content": "x"], "/x/y": ["kind": "tmp"]], "mount /x/y is inside the text file mount /x"),
        ]
        for (mounts, message) in cases {
            let reason = refusal(mounts)
            XCTAssertTrue(reason.contains(message), "\(mounts): \(reason)")
        }
        XCTAssertTrue(refusal(["/s": ["kind": "tmp"]], secret: true).contains("secret mounts may only be 'json' or 'text'"))
        XCTAssertTrue(refusal(["/out/s": ["kind": "text", "content": "x"]], secret: true).contains("it would end up in the output"))
        XCTAssertEqual(refusal(["/s": ["kind": "text", "content": "x"]], secret: true), "accepted")
        XCTAssertNil(ContainerMounts.unsupported(["/x": ["kind": "tmp"], "/out": ["kind": "tmp"]], outputPath: "/out"))
    }
}
