import AeroGridCore
import AeroGridIPC
import Foundation
import Testing

/// The supervisor's side of docs/ipc.md, checked against the document's worked examples.
@Suite struct IPCCodecTests {
    /// The hex blocks of docs/ipc.md's "Worked examples", in order.
    static let workedExamples: [[UInt8]] = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let doc = (try? String(contentsOf: url.appendingPathComponent("docs/ipc.md"), encoding: .utf8)) ?? ""
        let section = doc.components(separatedBy: "## Worked examples").last ?? ""
        return section.components(separatedBy: "```").enumerated().filter { $0.offset % 2 == 1 }.map { block in
            block.element.split(separator: "\n").flatMap { line in
                // Hex pairs at the start of a line, up to the explanation.
                line.split(separator: " ", omittingEmptySubsequences: true).prefix { $0.count == 2 && UInt8($0, radix: 16) != nil }.map {
                    UInt8($0, radix: 16)!
                }
            }
        }
    }()

    @Test func aRecordsFrameIsByteForByteTheDocumentsExample() throws {
        var builder = RecordsFrameBuilder()
        builder.append(
            topic: "orders", partition: 3, offset: 42, timestamp: 1_700_000_000_000,
            key: Array("o-1".utf8), value: Array(#"{"product":"Widget","quantity":3}"#.utf8))
        let frame = builder.frame(batchID: 7)
        #expect(frame.count == 95)
        #expect(frame == Self.workedExamples[0])
    }

    @Test func theDocumentsGridUpdateAndBatchDoneDecode() throws {
        var decoder = FrameDecoder()
        decoder.append(Self.workedExamples[1] + Self.workedExamples[2])
        let first = try #require(try decoder.next())
        #expect(
            try AppFrame.decode(type: first.type, payload: first.payload)
                == .gridUpdate(GridUpdate(grid: "product_sum", key: .string("Widget"), row: ["units_sold": .int(3)])))
        let second = try #require(try decoder.next())
        #expect(
            try AppFrame.decode(type: second.type, payload: second.payload)
                == .batchDone(BatchDone(batchID: 7, records: 1, errors: 0, updates: 1, produced: 0)))
        #expect(try decoder.next() == nil)
    }

    @Test func framesSplitAcrossReadsAreReassembled() throws {
        let bytes = Self.workedExamples[2]
        var decoder = FrameDecoder()
        for byte in bytes.dropLast() {
            decoder.append([byte])
            #expect(try decoder.next() == nil)
        }
        decoder.append([bytes.last!])
        #expect(try decoder.next()?.type == FrameType.batchDone.rawValue)
    }

    @Test(arguments: [
        ([0, 0, 0, 0, 1] as [UInt8], "a frame length of 0"),
        ([0x01, 0x00, 0x00, 0x01, 0x02] as [UInt8], "a frame length of 16777217"),
    ])
    func anImpossibleLengthIsAViolation(_ bytes: [UInt8], _ reason: String) {
        var decoder = FrameDecoder()
        decoder.append(bytes)
        #expect { try decoder.next() } throws: { ($0 as? ProtocolViolation)?.message.contains(reason) == true }
    }

    @Test(arguments: [
        (FrameType.gridUpdate, #"{"grid": "g", "key": 1.5, "row": null}"#, "key must be a string or an integer"),
        (FrameType.gridUpdate, #"{"grid": "g", "key": "k", "row": {"c": [1]}}"#, "column 'c'"),
        (FrameType.gridUpdate, #"[1, 2]"#, "not a JSON object"),
        (FrameType.hello, #"{"protocol": "1.0"}"#, "hello frame needs 'app'"),
        (FrameType.log, "not json", "not valid JSON"),
    ])
    func malformedControlFramesAreViolationsThatSayWhy(_ type: FrameType, _ json: String, _ reason: String) {
        #expect {
            try AppFrame.decode(type: type.rawValue, payload: ArraySlice(Array(json.utf8)))
        } throws: { ($0 as? ProtocolViolation)?.message.contains(reason) == true }
    }

    @Test func helloListsTheConsumedTopicsOnce() throws {
        let json = #"""
            {"protocol": "1.0", "sdk": "x", "app": "a",
             "topics": [{"name": "orders", "key_type": "str", "value_type": {"record": "Order", "fields": []}}],
             "grids": [{"name": "g", "columns": ["c1", "c2"]}],
             "streams": [{"name": "s1", "topic": "orders"}, {"name": "s2", "topic": "orders"}, {"name": "s3", "topic": "fx"}],
             "produces": ["out"]}
            """#
        guard case .hello(let hello) = try AppFrame.decode(type: FrameType.hello.rawValue, payload: ArraySlice(Array(json.utf8))) else {
            Issue.record("not a hello")
            return
        }
        #expect(hello.consumedTopics == ["orders", "fx"])
        #expect(hello.topics.first?.valueType == "Order")
        #expect(hello.grids == [Hello.Grid(name: "g", columns: ["c1", "c2"])])
        #expect(hello.produces == ["out"])
    }

    @Test func produceFramesCarryNullKeysAndHeaders() throws {
        // topic "t", null key, value "v", one header "h" with a null value.
        let payload: [UInt8] = [0, 1, 0x74, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 0, 1, 0x76, 0, 1, 0x68, 0xff, 0xff, 0xff, 0xff]
        let frame = try AppFrame.decode(type: FrameType.produce.rawValue, payload: ArraySlice(payload))
        #expect(frame == .produce(ProduceRequest(topic: "t", key: nil, value: [0x76], headers: [KafkaHeader("h", nil)])))
        #expect(throws: ProtocolViolation.self) {
            try AppFrame.decode(type: FrameType.produce.rawValue, payload: ArraySlice(payload + [0]))
        }
    }

    @Test func restoreFramesSplitLargeGridsAndKeepKeyTypes() throws {
        let rows = (0..<3000).map { (GridKey.int(Int64($0)), ["v": GridValue.string(String(repeating: "x", count: 500))]) }
        let frames = SupervisorFrames.restore(grid: "big", rows: rows, maxPayload: 256 << 10)
        #expect(frames.count > 1)
        var total = 0
        for frame in frames {
            #expect(frame[4] == FrameType.restore.rawValue)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(frame[5...])) as? [String: Any])
            #expect(object["grid"] as? String == "big")
            let chunk = try #require(object["rows"] as? [[Any]])
            #expect(chunk.allSatisfy { $0.first is NSNumber })
            total += chunk.count
        }
        #expect(total == 3000)
    }

    @Test func restoreFramesGiveBackWholeDoublesAsDoubles() throws {
        let rows: [(GridKey, GridRow)] = [(.string("EUR/USD"), ["change": .double(4.0), "zero": .double(0), "ticks": .int(2)])]
        let frames = SupervisorFrames.restore(grid: "board", rows: rows)
        #expect(frames.count == 1)
        let text = String(decoding: frames[0][5...], as: UTF8.self)
        #expect(text == #"{"grid":"board","rows":[["EUR/USD",{"change":4.0,"ticks":2,"zero":0.0}]]}"#)
    }
}
