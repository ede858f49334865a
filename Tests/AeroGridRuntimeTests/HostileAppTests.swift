import AeroGridCore
import AeroGridIPC
import AeroGridKafka
import AeroGridStore
import Foundation
import Logging
import Synchronization
import Testing

@testable import AeroGridRuntime

/// What one app can make the supervisor hold is bounded in bytes: its log lines, the lines
/// passed on to the supervisor's own log, the frames it sends for a batch before confirming
/// it, and what its hello declares.
@Suite struct AppLogBoundsTests {
    /// One Character of 8 MiB ("a" and four million combining accents) is one line that a
    /// cap counted in Characters lets through whole.
    @Test func aLineIsCutInBytesAndTheLogIsBoundedInBytes() {
        let forwarded = ForwardedBytes()
        let log = AppLog(limits: AppLog.Limits(), logger: Logger(label: "test") { _ in forwarded })
        let grapheme = "a" + String(repeating: "\u{301}", count: 4 << 20)
        #expect(grapheme.count == 1)
        #expect(grapheme.utf8.count == (8 << 20) + 1)
        let started = ContinuousClock.now
        for _ in 0..<100 { log.append(grapheme, source: "stdout") }
        let seconds = Int((ContinuousClock.now - started).components.seconds) + 1

        let lines = log.tail(10_000)
        #expect(lines.allSatisfy { $0.text.utf8.count <= (16 << 10) + 3 }, "a line is cut at 16 KiB (plus the …)")
        #expect(log.keptBytes <= 1 << 20, "the log keeps 1 MiB, not \(log.keptBytes) bytes")
        #expect(lines.count < 100)
        #expect(log.totalLines == 100)
        // At most 64 KiB a second went on to the supervisor's log (plus one cut line).
        #expect(forwarded.bytes <= seconds * (64 << 10) + (16 << 10), "forwarded \(forwarded.bytes) bytes in \(seconds) s")
        #expect(forwarded.bytes > 0)
        // Cut on a scalar boundary: valid UTF-8 with no replacement character.
        #expect(lines.allSatisfy { !$0.text.unicodeScalars.contains("\u{FFFD}") && $0.text.utf8.starts(with: "a\u{301}".utf8) })
    }

    @Test func cuttingNeverSplitsAScalar() {
        for text in ["héllo wörld", String(repeating: "€", count: 10), "🇫🇷🇩🇪", "ab"] {
            for limit in 0...12 {
                let cut = text.cut(toBytes: limit)
                #expect(!cut.contains("\u{FFFD}"))
                #expect(cut == text || cut.utf8.count <= limit + 3)
            }
        }
    }
}

/// A log handler that only counts the bytes of the messages it is given.
final class ForwardedBytes: LogHandler, Sendable {
    private let total = Mutex(0)
    var bytes: Int { total.withLock { $0 } }
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }
    subscript(metadataKey _: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }
    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String, function: String, line: UInt) {
        total.withLock { $0 += message.description.utf8.count }
    }
}

@Suite struct PendingFramesTests {
    final class Detail: Sendable {
        let text = Mutex<String?>(nil)
    }

    private func session(limits: AppLimits, over: Detail) -> AppSession {
        AppSession(
            grids: GridState(), log: AppLog(limits: AppLog.Limits(), logger: runtimeLogger), limits: limits,
            onQuotaExceeded: { detail in over.text.withLock { $0 = detail } }, onRecordErrors: { _, _ in }, onProduce: { _ in })
    }

    private func hello(grids: [Hello.Grid]) -> Hello {
        Hello(
            protocolVersion: "1.0", sdk: "test", app: "hoarder", topics: [], grids: grids,
            streams: [Hello.Stream(name: "s", topic: "orders")], produces: [])
    }

    /// The frames for one batch are held until its batch-done: 8 MiB grid-updates stop the
    /// app at the fourth (32 MiB), where a count of frames would have let 100 through.
    @Test func framesHeldForABatchAreBoundedInBytes() throws {
        let over = Detail()
        let session = session(limits: AppLimits(), over: over)
        let greeting = hello(grids: [Hello.Grid(name: "g", columns: ["c"])])
        try session.handle(AppFrame.hello(greeting))
        session.accept(greeting)
        session.registerBatch(AppSession.InFlight(id: 1, records: 1, offsets: [:], frame: []))
        let big = String(repeating: "x", count: 8 << 20)
        var accepted = 0
        var refusal: ProtocolViolation?
        for index in 0..<100 where refusal == nil {
            let update = AppFrame.gridUpdate(GridUpdate(grid: "g", key: .string("k\(index)"), row: ["c": .string(big)]))
            refusal = Self.violation { () throws(ProtocolViolation) in try session.handle(update, bytes: (8 << 20) + 40) }
            if refusal == nil { accepted += 1 }
        }
        #expect(refusal?.message.contains("the limit is 33554432") == true, "\(String(describing: refusal))")
        #expect(accepted == 3)
        #expect(over.text.withLock { $0 }?.contains("batch 1") == true)
    }

    private static func violation(_ body: () throws(ProtocolViolation) -> Void) -> ProtocolViolation? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }

    @Test func helloIsBoundedInGridsColumnsAndNames() throws {
        let limits = AppLimits()
        let cases: [(Hello, String)] = [
            (hello(grids: (0..<10_000).map { Hello.Grid(name: "g\($0)", columns: ["c"]) }), "declares 10000 grids"),
            (hello(grids: [Hello.Grid(name: "g", columns: (0..<5_000).map { "c\($0)" })]), "declares 5000 columns"),
            (hello(grids: [Hello.Grid(name: "g", columns: [String(repeating: "c", count: 300)])]), "column name of 300 bytes"),
            (hello(grids: [Hello.Grid(name: "../etc", columns: ["c"])]), "grid name '../etc' is not valid"),
            (hello(grids: [Hello.Grid(name: "Grid", columns: ["c"])]), "is not valid"),
            (hello(grids: [Hello.Grid(name: "g", columns: ["c", "c"])]), "declares a column twice"),
        ]
        for (greeting, expected) in cases {
            let session = session(limits: limits, over: Detail())
            let refusal = Self.violation { () throws(ProtocolViolation) in try session.handle(AppFrame.hello(greeting)) }
            #expect(refusal?.message.contains(expected) == true, "\(String(describing: refusal)) should say \(expected)")
        }
    }

    @Test func aKeyOverItsBoundIsAViolation() throws {
        let session = session(limits: AppLimits(), over: Detail())
        let greeting = hello(grids: [Hello.Grid(name: "g", columns: ["c"])])
        try session.handle(AppFrame.hello(greeting))
        session.accept(greeting)
        session.registerBatch(AppSession.InFlight(id: 1, records: 1, offsets: [:], frame: []))
        let long = AppFrame.gridUpdate(GridUpdate(grid: "g", key: .string(String(repeating: "k", count: 2_000)), row: ["c": .int(1)]))
        let refusal = Self.violation { () throws(ProtocolViolation) in try session.handle(long, bytes: 2_100) }
        #expect(refusal?.message.contains("a key is at most 1024") == true, "\(String(describing: refusal))")
    }

    /// The grid quota counts bytes as a message writes them: a control character is six.
    @Test func gridBytesAreCountedAsJSON() {
        let grids = GridState()
        var batch = GridState.Batch()
        batch.updates = [("g", .string("k"), ["c": .string(String(repeating: "\u{1}", count: 1_000))])]
        #expect(grids.apply(batch, maxBytes: 5_000) != nil, "1,000 control characters are 6,000 bytes in a message")
        #expect(grids.apply(batch, maxBytes: 7_000) == nil)
    }

    @Test func gridsAnEarlierProcessDeclaredDoNotAccumulate() {
        let grids = GridState()
        for run in 0..<100 { grids.declare([("run-\(run)", ["c"])]) }
        #expect(grids.gridNames == ["run-99"])
        var batch = GridState.Batch()
        batch.updates = [("run-99", .string("k"), ["c": .int(1)])]
        grids.apply(batch)
        grids.declare([("other", ["c"])])
        #expect(grids.gridNames == ["other", "run-99"], "a grid with rows stays")
    }
}

/// The same bounds with real sandboxed apps that speak the protocol themselves.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RawProtocolAppTests {
    /// A raw-protocol app (Tests/raw_protocol_app.py.template): hello, then, for the first
    /// batch, `body` (Python) instead of confirming it; heartbeats keep it alive.
    private func rawApp(_ name: String, grids: String, body: String) throws -> String {
        try String(contentsOfFile: "\(repositoryRoot)/Tests/raw_protocol_app.py.template", encoding: .utf8)
            .replacingOccurrences(of: "@APP@", with: name).replacingOccurrences(of: "@TOPIC@", with: "orders")
            .replacingOccurrences(of: "@GRIDS@", with: grids).replacingOccurrences(of: "@BODY@", with: body)
    }

    /// The review's case: one batch taken and never confirmed, heartbeats, and 8 MiB
    /// grid-updates five a second (under the bytes-per-second cap). Before, the supervisor
    /// held all 100 (800 MiB) and the app stayed "running".
    @Test func anAppHoardingGridUpdatesIsStoppedAtThePendingBound() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        try await Orders.random(10).produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let code = try rawApp(
            "hoarder", grids: #"[{"name": "g", "columns": ["c"]}]"#,
            body: """
                big = 'x' * (8 << 20)
                for i in range(100):
                    send(2, json.dumps({"grid": "g", "key": "k%d" % i, "row": {"c": big}}).encode())
                    send(0x20, b'')
                    time.sleep(0.2)
                """)
        let runner = AppRunner(
            spec: makeSpec(name: "hoarder", bundle: try makeBundle(name: "hoarder", code: code), kafka: kafka),
            store: store, logger: runtimeLogger)
        let before = residentBytes()
        let stop = start(runner)
        var peak = before
        try await waitFor("the pending bound to stop the app", timeout: .seconds(40)) {
            peak = max(peak, residentBytes())
            return runner.status.lifecycle.lastCrash != nil
        }
        try await stop()
        guard case .quota(let detail)? = runner.status.lifecycle.lastCrash else {
            Issue.record("crash reason: \(String(describing: runner.status.lifecycle.lastCrash))")
            return
        }
        #expect(detail.contains("the limit is 33554432"), "\(detail)")
        #expect(peak - before < 200 << 20, "the supervisor grew by \((peak - before) >> 20) MiB")
        #expect(runner.grids.snapshot("g")?.grid.rows.isEmpty != false, "nothing of the batch was applied")
    }

    @Test func anAppDeclaringTenThousandGridsIsStopped() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        try await Orders.random(10).produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let grids = "[" + (0..<10_000).map { #"{"name": "g\#($0)", "columns": ["c"]}"# }.joined(separator: ",") + "]"
        let runner = AppRunner(
            spec: makeSpec(
                name: "declarer", bundle: try makeBundle(name: "declarer", code: try rawApp("declarer", grids: grids, body: "pass")),
                kafka: kafka), store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("hello to be refused", timeout: .seconds(30)) { runner.status.lifecycle.lastCrash != nil }
        try await stop()
        guard case .protocolViolation(let detail)? = runner.status.lifecycle.lastCrash else {
            Issue.record("crash reason: \(String(describing: runner.status.lifecycle.lastCrash))")
            return
        }
        #expect(detail.contains("declares 10000 grids; an app may have 64"), "\(detail)")
        #expect(runner.grids.gridNames.count <= 64)
    }
}
