import ConvoyAPI
import XCTest

final class ByteRangeTests: XCTestCase {
    func testRangeHeadersParseAsRFC9110Says() {
        XCTAssertEqual(ByteRange.parse(nil, size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=0-0", size: 10), .part(0...0))
        XCTAssertEqual(ByteRange.parse("bytes=5-", size: 10), .part(5...9))
        XCTAssertEqual(ByteRange.parse("bytes=-3", size: 10), .part(7...9))
        XCTAssertEqual(ByteRange.parse("bytes=-30", size: 10), .part(0...9))
        XCTAssertEqual(ByteRange.parse("bytes=3-100", size: 10), .part(3...9))
        XCTAssertEqual(ByteRange.parse("bytes=10-", size: 10), .unsatisfiable)
        XCTAssertEqual(ByteRange.parse("bytes=-0", size: 10), .unsatisfiable)
        XCTAssertEqual(ByteRange.parse("bytes=0-", size: 0), .unsatisfiable)
        XCTAssertEqual(ByteRange.parse("bytes=5-2", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=a-b", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("items=0-1", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=0-1,3-4", size: 10), .whole)
    }

    func testByteRangesBeyondInt64AreServedWholeNotTrapped() {
        XCTAssertEqual(ByteRange.parse("bytes=99999999999999999999-", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=0-99999999999999999999", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=-99999999999999999999", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=1e300-", size: 10), .whole)
        XCTAssertEqual(ByteRange.parse("bytes=-9223372036854775807", size: 10), .part(0...9))
        XCTAssertEqual(ByteRange.parse("bytes=9223372036854775807-", size: 10), .unsatisfiable)
        XCTAssertEqual(ByteRange.parse("bytes=0-9223372036854775807", size: Int64.max), .part(0...(Int64.max - 1)))
    }
}
