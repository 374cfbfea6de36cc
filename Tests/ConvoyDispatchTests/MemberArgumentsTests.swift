@testable import ConvoyDispatch
import ConvoyModel
import ConvoySSH
import Foundation
import XCTest

/// A member refuses malformed arguments from the leader before SSH or a remote shell sees them,
/// and what it does send to a shell is quoted.
final class MemberArgumentsTests: XCTestCase {
    private let ed25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

    private func instance(id: String = "i-0abc123", type: String = "m5.large", address: String = "10.1.2.3", port: Int = 22,
                          hostKey: String? = nil) -> CloudInstance {
        CloudInstance(id: id, typeName: type, address: address, sshPort: port, hostKey: hostKey ?? ed25519, tags: [:], createdAt: Date())
    }

    func testWellFormedInstancesAndSettingsPass() throws {
        for address in ["10.1.2.3", "127.0.9.4", "::1", "fe80::1", "worker-1.example.org", "localhost"] {
            XCTAssertNoThrow(try MemberArguments.check(instance(address: address)), address)
        }
        XCTAssertNoThrow(try MemberArguments.check(instance(id: "lo-0123456789", hostKey: ed25519 + " comment")))
        for host in ["api.example:8443", "http://127.0.0.1:8000", "https://[::1]:443"] {
            XCTAssertNoThrow(try MemberArguments.check(RunnerLaunchSettings(apiHost: host, apiToken: "v2/zzzzz-gj3su-000000000000001/abc", runtime: "bwrap")), host)
        }
        XCTAssertEqual(try MemberArguments.containerUUID("zzzzz-dz642-0123456789abcde").rawValue, "zzzzz-dz642-0123456789abcde")
    }

    func testAContainerUUIDThatIsNoContainerUUIDIsRefused() {
        for text in ["", "zzzzz-dz642-0123456789abcde; rm -rf /", "$(reboot)", "zzzzz-gj3su-0123456789abcde", "zzzzz-dz642-0123456789abcd",
                     "zzzzz-dz642-0123456789abcde\n", "'zzzzz-dz642-0123456789abcde'"] {
            XCTAssertThrowsError(try MemberArguments.containerUUID(text), text)
        }
    }

    func testMalformedInstancesAreRefusedWithTheFieldNamed() {
        let cases: [(CloudInstance, String)] = [
            (instance(id: "i-1; rm -rf /"), "instance id"),
            (instance(id: ""), "instance id"),
            (instance(id: String(repeating: "a", count: 129)), "instance id"),
            (instance(type: "large type"), "type"),
            (instance(address: "10.1.2.3 -oProxyCommand=sh"), "address"),
            (instance(address: "-oProxyCommand=x"), "address"),
            (instance(address: "999.1.2.3.4"), "address"),
            (instance(address: ""), "address"),
            (instance(address: "host_name.example"), "address"),
            (instance(port: 0), "SSH port"),
            (instance(port: 70_000), "SSH port"),
            (instance(hostKey: "ssh-ed25519"), "host key"),
            (instance(hostKey: "ssh-ed25519 not*base64"), "host key"),
            // A valid blob under another type's name.
            (instance(hostKey: "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"), "host key"),
            (instance(hostKey: ed25519 + "\nssh-rsa AAAA"), "host key"),
        ]
        for (instance, field) in cases {
            XCTAssertThrowsError(try MemberArguments.check(instance), "\(instance)") { error in
                XCTAssertTrue("\(error)".contains(field), "\(instance): \(error)")
            }
        }
    }

    func testMalformedLaunchSettingsAreRefused() {
        let token = "v2/zzzzz-gj3su-000000000000001/abc"
        let cases: [(RunnerLaunchSettings, String)] = [
            (RunnerLaunchSettings(apiHost: "api.example", apiToken: token), "API host"),
            (RunnerLaunchSettings(apiHost: "api.example:99999", apiToken: token), "API host"),
            (RunnerLaunchSettings(apiHost: "api example:443", apiToken: token), "API host"),
            (RunnerLaunchSettings(apiHost: "ftp://api.example:443", apiToken: token), "API host"),
            (RunnerLaunchSettings(apiHost: "api.example:443", apiToken: ""), "token"),
            (RunnerLaunchSettings(apiHost: "api.example:443", apiToken: "v2/x/a b"), "token"),
            (RunnerLaunchSettings(apiHost: "api.example:443", apiToken: String(repeating: "x", count: 513)), "token"),
            (RunnerLaunchSettings(apiHost: "api.example:443", apiToken: token, runtime: "chroot"), "runtime"),
        ]
        for (settings, field) in cases {
            XCTAssertThrowsError(try MemberArguments.check(settings)) { error in
                XCTAssertTrue("\(error)".contains(field), "\(settings): \(error)")
            }
        }
    }

    func testAQuotedWordReachesTheShellLiterallyWhateverItHolds() throws {
        for word in ["plain", "two words", "it's", "$(touch /tmp/convoy-quote-escape)", "`id`", "a;b|c&d", "'\"'\"", "new\nline", "*"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "printf %s \(ShellWord.quote(word))"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            XCTAssertEqual(String(decoding: output, as: UTF8.self), word)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/tmp/convoy-quote-escape"))
    }
}

extension MemberArgumentsTests {
    func testTheStubCloudsHostKeysAreWellFormedAndDistinct() throws {
        let keys = ["stub-000001", "stub-000002"].map { StubCloud.hostKey(for: $0) }
        XCTAssertNotEqual(keys[0], keys[1])
        for key in keys {
            XCTAssertNoThrow(try MemberArguments.check(CloudInstance(id: "stub-000001", typeName: "small", address: "stub", sshPort: 22,
                                                                     hostKey: key, tags: [:], createdAt: Date())))
        }
    }
}
