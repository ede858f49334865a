import AeroGridCore
import AeroGridStore
import Testing

@testable import AeroGridRuntime

@Suite struct ChangelogTests {
    /// Kafka's own vectors (`UtilsTest.testMurmur2`): a slot is where Kafka's partitioner
    /// would put the app id's records.
    @Test func murmur2IsKafkas() {
        let cases: [(String, Int32)] = [
            ("21", -973_932_308), ("foobar", -790_332_482), ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829), ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            ("abc", 479_470_107),
        ]
        for (text, expected) in cases {
            #expect(Int32(bitPattern: AppSlot.murmur2(Array(text.utf8))) == expected, "\(text)")
        }
        #expect(AppSlot.of(appID: "app_0123456789abcdef", slots: 64) == AppSlot.of(appID: "app_0123456789abcdef", slots: 64))
        #expect((0..<64).contains(AppSlot.of(appID: "abc", slots: 64)))
    }

    private func batch(_ generation: Int64, _ sequence: UInt64, rows: [(String, Int64)], offset: Int64, partBytes: Int = ChangelogRecord.partBytes)
        throws -> [ChangelogRecord]
    {
        let updates = rows.map { ChangelogRecord.Update(grid: "g", key: .string($0.0), row: ["n": .int($0.1)]) }
        let end = ChangelogRecord.End(offsets: [SourcePartition(topic: "orders", partition: 0): offset], versions: ["g": UInt64(sequence)], records: rows.count)
        return try ChangelogRecord.encodeChanges(
            app: "app_1", generation: generation, firstSequence: sequence, snapshot: false, updates: updates, end: end, partBytes: partBytes
        ).map { try ChangelogRecord.decode($0) }
    }

    @Test func aRecordReadsBackAsWritten() throws {
        let records = try batch(7, 1, rows: [("EUR/USD", 3), ("\u{1}é\"", -4)], offset: 12)
        #expect(records.count == 1)
        guard case .changes(let changes) = records[0] else {
            Issue.record("not changes")
            return
        }
        #expect(changes.stamp == .init(app: "app_1", generation: 7, sequence: 1))
        #expect(changes.updates.map(\.key) == [.string("EUR/USD"), .string("\u{1}é\"")])
        #expect(changes.updates[1].row == ["n": .int(-4)])
        #expect(changes.end?.offsets == [SourcePartition(topic: "orders", partition: 0): 12])
        let claim = try ChangelogRecord.decode(ChangelogRecord.encodeClaim(app: "app_1", node: "n1"))
        #expect(claim == .claim(.init(app: "app_1", node: "n1")))
        let values: GridRow = ["d": .double(4.0), "i": .int(4), "b": .bool(true), "z": .null, "s": .string("4")]
        let typed = try ChangelogRecord.encodeChanges(
            app: "a", generation: 1, firstSequence: 1, snapshot: true, updates: [.init(grid: "g", key: .int(9), row: values)],
            end: .init(offsets: [:], versions: [:], records: 0))
        guard case .changes(let back) = try ChangelogRecord.decode(typed[0]) else {
            Issue.record("not changes")
            return
        }
        #expect(back.updates[0].row == values)
        #expect(back.updates[0].key == .int(9))
    }

    @Test func aLargeBatchIsSplitIntoPartsEachUnderTheLimitAndCountsOnlyWhole() throws {
        let rows = (0..<400).map { ("key-\($0)-" + String(repeating: "x", count: 40), Int64($0)) }
        let values = try ChangelogRecord.encodeChanges(
            app: "app_1", generation: 5, firstSequence: 1, snapshot: false,
            updates: rows.map { .init(grid: "g", key: .string($0.0), row: ["n": .int($0.1)]) },
            end: .init(offsets: [:], versions: ["g": 1], records: 400), partBytes: 4096)
        #expect(values.count > 5)
        #expect(values.allSatisfy { $0.count <= 4096 })
        var fold = ChangelogFold(app: "app_1")
        #expect(fold.read(.claim(.init(app: "app_1", node: "n")), at: 5) == .claimed(5))
        var outcomes: [ChangelogFold.Outcome] = []
        for (index, value) in values.enumerated() { outcomes.append(fold.read(try ChangelogRecord.decode(value), at: Int64(6 + index))) }
        #expect(outcomes.dropLast().allSatisfy { $0 == .pending })
        guard case .changes(_, let updates) = outcomes.last else {
            Issue.record("the last part applies nothing")
            return
        }
        #expect(updates.count == 400)
        // One row that no record can hold is refused, not split.
        #expect(throws: ChangelogTooLarge.self) {
            try ChangelogRecord.encodeChanges(
                app: "a", generation: 1, firstSequence: 1, snapshot: false,
                updates: [.init(grid: "g", key: .int(1), row: ["s": .string(String(repeating: "y", count: 5000))])],
                end: .init(offsets: [:], versions: [:], records: 1), partBytes: 4096)
        }
    }

    /// The fencing rules, record by record: what a zombie writes after a newer claim does
    /// not count; a duplicate is dropped; a gap stops the generation.
    @Test func onlyTheLatestClaimsWriterCountsInSequence() throws {
        var fold = ChangelogFold(app: "app_1")
        var image = ChangelogImage()
        func read(_ record: ChangelogRecord, _ offset: Int64) -> ChangelogFold.Outcome {
            let outcome = fold.read(record, at: offset)
            image.apply(outcome, bytes: 1)
            return outcome
        }
        // Before any claim nothing counts.
        #expect(read(try batch(1, 1, rows: [("a", 1)], offset: 1)[0], 0) == .fenced)
        #expect(read(.claim(.init(app: "app_1", node: "n1")), 10) == .claimed(10))
        #expect(read(try batch(10, 1, rows: [("a", 1)], offset: 1)[0], 11) != .fenced)
        #expect(read(try batch(10, 1, rows: [("a", 99)], offset: 1)[0], 12) == .duplicate)
        // Node 2 claims; node 1, not knowing, writes on under generation 10.
        #expect(read(.claim(.init(app: "app_1", node: "n2")), 13) == .claimed(13))
        #expect(read(try batch(10, 2, rows: [("a", 50)], offset: 2)[0], 14) == .fenced)
        #expect(read(try batch(13, 1, rows: [("a", 2)], offset: 2)[0], 15) != .fenced)
        #expect(image.checkpoint.grids["g"]?[.string("a")] == ["n": .int(2)])
        #expect(image.checkpoint.offsets[SourcePartition(topic: "orders", partition: 0)] == 2)
        // A gap: sequence 3 where 2 was next. Nothing more of generation 13 counts.
        #expect(read(try batch(13, 3, rows: [("a", 3)], offset: 3)[0], 16) == .gap(expected: 2, got: 3))
        #expect(read(try batch(13, 2, rows: [("a", 4)], offset: 4)[0], 17) == .fenced)
        #expect(image.checkpoint.grids["g"]?[.string("a")] == ["n": .int(2)])
        // Another app's records in the same partition are not this one's.
        #expect(fold.read(.claim(.init(app: "app_2", node: "n1")), at: 18) == .fenced)
        #expect(fold.generation == 13)
    }

    @Test func aSnapshotReplacesTheGrids() throws {
        var fold = ChangelogFold(app: "app_1")
        var image = ChangelogImage()
        image.apply(fold.read(.claim(.init(app: "app_1", node: "n1")), at: 0), bytes: 1)
        image.apply(fold.read(try batch(0, 1, rows: [("a", 1), ("b", 2)], offset: 5)[0], at: 1), bytes: 100)
        let snapshot = try ChangelogRecord.encodeChanges(
            app: "app_1", generation: 0, firstSequence: 2, snapshot: true, updates: [.init(grid: "g", key: .string("c"), row: ["n": .int(3)])],
            end: .init(offsets: [SourcePartition(topic: "orders", partition: 0): 9], versions: ["g": 4], records: 9))
        image.apply(fold.read(try ChangelogRecord.decode(snapshot[0]), at: 2), bytes: 50)
        #expect(image.checkpoint.grids["g"] == [.string("c"): ["n": .int(3)]])
        #expect(image.checkpoint.versions["g"] == 4)
        #expect(image.records == 9)
        #expect(image.bytesSinceSnapshot == 0)
    }

    /// A reader that starts after the topic's retention dropped the claims: a generation
    /// starts at its snapshot, a newer one's snapshot takes over, an older one stays fenced.
    @Test func aGenerationWhoseClaimIsGoneStartsAtItsSnapshot() throws {
        func snapshot(_ generation: Int64, _ sequence: UInt64, _ value: Int64) throws -> ChangelogRecord {
            try ChangelogRecord.decode(
                ChangelogRecord.encodeChanges(
                    app: "app_1", generation: generation, firstSequence: sequence, snapshot: true,
                    updates: [.init(grid: "g", key: .string("a"), row: ["n": .int(value)])], end: .init(offsets: [:], versions: ["g": 1], records: 1)
                )[0])
        }
        var fold = ChangelogFold(app: "app_1")
        var image = ChangelogImage()
        func read(_ record: ChangelogRecord, _ offset: Int64) -> ChangelogFold.Outcome {
            let outcome = fold.read(record, at: offset)
            image.apply(outcome, bytes: 1)
            return outcome
        }
        // Generation 40's batch, its claim gone: nothing to build it on.
        #expect(read(try batch(40, 7, rows: [("a", 1)], offset: 1)[0], 100) == .fenced)
        #expect(read(try snapshot(40, 8, 2), 101) != .fenced)
        #expect(read(try batch(40, 9, rows: [("a", 3)], offset: 2)[0], 102) != .fenced)
        #expect(image.checkpoint.grids["g"]?[.string("a")] == ["n": .int(3)])
        // Generation 90's snapshot: a newer owner, whose claim is gone too.
        #expect(read(try snapshot(90, 4, 5), 103) != .fenced)
        #expect(fold.generation == 90)
        // Generation 40 writing on is a fenced owner.
        #expect(read(try batch(40, 10, rows: [("a", 99)], offset: 3)[0], 104) == .fenced)
        #expect(read(try snapshot(40, 11, 99), 105) == .fenced)
        #expect(image.checkpoint.grids["g"]?[.string("a")] == ["n": .int(5)])
    }

    @Test func aNewerFormatIsRefusedByName() {
        #expect(throws: NewerFormat.self) { try ChangelogRecord.decode(Array(#"{"v":2,"kind":"batch","app":"a"}"#.utf8)) }
        #expect(throws: ChangelogUnreadable.self) { try ChangelogRecord.decode(Array("not json".utf8)) }
    }
}
