import ConvoyRunner
import XCTest

final class LineSplitterTests: XCTestCase {
    func testLinesSplitAtNewlinesAcrossChunks() {
        var splitter = LineSplitter()
        XCTAssertEqual(splitter.feed(Array("hel".utf8)), [])
        XCTAssertEqual(splitter.feed(Array("lo\nwor".utf8)), [.init("hello")])
        XCTAssertEqual(splitter.feed(Array("ld\n\n".utf8)), [.init("world"), .init("")])
        XCTAssertNil(splitter.finish())
        XCTAssertEqual(splitter.feed(Array("tail".utf8)), [])
        XCTAssertEqual(splitter.finish(), .init("tail"), "a last line without a newline is kept")
    }

    func testOverlongLinesAreCutAndMarkedWithoutSplittingACharacter() {
        var splitter = LineSplitter(maxLineBytes: 4)
        XCTAssertEqual(splitter.feed(Array("abcdefghij\n".utf8)),
                       [.init("abcd", continued: true), .init("efgh", continued: true), .init("ij")])
        // "aéé" is 5 bytes: a cut at 4 would split the second é, so the piece is "aé".
        XCTAssertEqual(splitter.feed(Array("aéé\n".utf8)), [.init("aé", continued: true), .init("é")])
    }

    func testInvalidUTF8IsReplacedNotDropped() {
        var splitter = LineSplitter()
        let lines = splitter.feed([0x61, 0xFF, 0x62, 0x0A])
        XCTAssertEqual(lines.first?.text, "a\u{FFFD}b")
    }
}
