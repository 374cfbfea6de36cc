import ConvoyIO
import Foundation
import XCTest

/// A confined directory lists and opens only what is really inside it: links are never followed,
/// wherever they are and whenever they were swapped in.
final class ConfinedDirectoryTests: XCTestCase {
    private var root: URL!
    private var outside: URL!

    override func setUp() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("convoy-confined-\(UUID().uuidString)")
        root = base.appendingPathComponent("output")
        outside = base.appendingPathComponent("host")
        try FileManager.default.createDirectory(at: root.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: true)
        try write("host secret\n", outside.appendingPathComponent("secret"))
        try write("kept\n", root.appendingPathComponent("a.txt"))
        try write("deeper\n", root.appendingPathComponent("sub/b.txt"))
    }

    override func tearDown() async throws {
        try? FileManager.default.removeItem(at: root.deletingLastPathComponent())
    }

    private func write(_ text: String, _ url: URL) throws {
        try text.write(to: url, atomically: false, encoding: .utf8)
    }

    private func link(_ path: String, to target: URL) throws {
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent(path).path, withDestinationPath: target.path)
    }

    private func contents(_ descriptor: Int32) -> String {
        defer { close(descriptor) }
        return String(decoding: FileHandle(fileDescriptor: descriptor, closeOnDealloc: false).readDataToEndOfFile(), as: UTF8.self)
    }

    func testRegularFilesAreListedWithSizesAndLinksToHostFilesOrDirectoriesAreLeftOut() throws {
        try link("secret-link", to: outside.appendingPathComponent("secret"))
        try link("host-link", to: outside)
        try link("sub/etc", to: URL(fileURLWithPath: "/etc"))
        let entries = try ConfinedDirectory(path: root.path).regularFiles()
        XCTAssertEqual(entries.map(\.path), ["a.txt", "sub/b.txt"])
        XCTAssertEqual(entries.map(\.size), [5, 7])
        let opened = try ConfinedDirectory(path: root.path).openFile("sub/b.txt")
        XCTAssertEqual(opened.size, 7)
        XCTAssertEqual(contents(opened.descriptor), "deeper\n")
    }

    func testAFileSwappedForALinkAfterTheListingIsRefusedNotFollowed() throws {
        let confined = ConfinedDirectory(path: root.path)
        XCTAssertEqual(try confined.regularFiles().map(\.path), ["a.txt", "sub/b.txt"])
        try FileManager.default.removeItem(at: root.appendingPathComponent("a.txt"))
        try link("a.txt", to: outside.appendingPathComponent("secret"))
        XCTAssertThrowsError(try confined.openFile("a.txt")) { error in
            XCTAssertTrue("\(error)".contains("symbolic link"), "\(error)")
        }
    }

    func testADirectorySwappedForALinkAfterTheListingIsRefusedNotFollowed() throws {
        let confined = ConfinedDirectory(path: root.path)
        XCTAssertEqual(try confined.regularFiles().map(\.path), ["a.txt", "sub/b.txt"])
        try FileManager.default.removeItem(at: root.appendingPathComponent("sub"))
        // The host directory holds a file named like the listed one.
        try write("host file\n", outside.appendingPathComponent("b.txt"))
        try link("sub", to: outside)
        XCTAssertThrowsError(try confined.openFile("sub/b.txt")) { error in
            XCTAssertTrue("\(error)".contains("symbolic link"), "\(error)")
        }
    }

    func testTheDirectoryItselfAsALinkIsRefused() throws {
        let linked = root.deletingLastPathComponent().appendingPathComponent("linked-output")
        try FileManager.default.createSymbolicLink(at: linked, withDestinationURL: outside)
        XCTAssertThrowsError(try ConfinedDirectory(path: linked.path).regularFiles())
        XCTAssertThrowsError(try ConfinedDirectory(path: linked.path).openFile("secret"))
    }

    func testPathsThatClimbOutOrAreNotPlainAreRefused() throws {
        let confined = ConfinedDirectory(path: root.path)
        for path in ["../host/secret", "sub/../../host/secret", "/etc/passwd", "", "sub//b.txt", "./a.txt"] {
            XCTAssertThrowsError(try confined.openFile(path), path)
        }
    }

    func testAFifoOrAnEmptyNamedDirectoryIsNotListedAsAFile() throws {
        XCTAssertEqual(mkfifo(root.appendingPathComponent("pipe").path, 0o600), 0)
        try FileManager.default.createDirectory(at: root.appendingPathComponent("empty"), withIntermediateDirectories: false)
        XCTAssertEqual(try ConfinedDirectory(path: root.path).regularFiles().map(\.path), ["a.txt", "sub/b.txt"])
        XCTAssertThrowsError(try ConfinedDirectory(path: root.path).openFile("pipe"))
    }
}
