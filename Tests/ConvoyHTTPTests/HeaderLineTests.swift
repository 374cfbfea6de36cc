@testable import ConvoyHTTP
import ConvoyModel
import Foundation
import XCTest

/// Response header lines, read from libcurl's bytes without Foundation's trimming.
final class HeaderLineTests: XCTestCase {
    private func line(_ text: String) -> CurlTransfer.HeaderLine { CurlTransfer.headerLine(Array(text.utf8)) }

    func testStatusLinesFieldsAndTheBlankLineAreToldApart() {
        XCTAssertEqual(line("HTTP/1.1 200 OK\r\n"), .statusLine)
        XCTAssertEqual(line("HTTP/2 100\r\n"), .statusLine)
        XCTAssertEqual(line("Content-Type: application/json\r\n"), .field(name: "Content-Type", value: "application/json"))
        XCTAssertEqual(line("X-Empty:\r\n"), .field(name: "X-Empty", value: ""))
        XCTAssertEqual(line("X-Spaces: \t a b \t\r\n"), .field(name: "X-Spaces", value: "a b"))
        XCTAssertEqual(line("Location: http://host:8080/x\r\n"), .field(name: "Location", value: "http://host:8080/x"), "only the first colon splits")
        XCTAssertEqual(line("\r\n"), .other)
        XCTAssertEqual(line(""), .other)
        XCTAssertEqual(line("no colon here\r\n"), .other)
        XCTAssertEqual(line("X-Name: caf\u{e9}\r\n"), .field(name: "X-Name", value: "caf\u{e9}"))
    }

    /// The same split as the Foundation code it replaced, on 5,000 seeded lines of ASCII with
    /// spaces, tabs, colons and line ends anywhere.
    func testSeededLinesSplitAsFoundationsTrimmingDid() {
        func reference(_ text: String) -> CurlTransfer.HeaderLine {
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.hasPrefix("HTTP/") { return .statusLine }
            guard let colon = trimmed.firstIndex(of: ":") else { return .other }
            return .field(name: String(trimmed[..<colon]), value: trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var random = SeededRandom(seed: 4242)
        let alphabet = Array("ab:Z9 \t\r\n-/HTTP".unicodeScalars)
        for _ in 0..<5000 {
            let length = Int.random(in: 0...24, using: &random)
            let text = String(String.UnicodeScalarView((0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] }))
            XCTAssertEqual(line(text), reference(text), "\(text.debugDescription)")
        }
    }
}
