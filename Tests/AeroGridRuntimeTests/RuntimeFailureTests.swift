import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridStore
import Foundation
import Synchronization
import Testing

/// The runtime under failure: each test runs real sandboxed apps against an embedded
/// cluster. One at a time: they start processes and cgroups.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct RuntimeFailureTests {
    @Test func badRecordsGoToTheDeadLetterTopicWithTheirErrorAndTheGridStaysExact() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 4)
        var orders = Orders.random(2000)
        orders.addBad("not json at all")
        orders.addBad(#"{"product": "Widget"}"#)
        orders.addBad(#"{"product": "Widget", "quantity": "3"}"#)
        orders.add("Widget", 5)
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let runner = AppRunner(
            spec: makeSpec(name: "ordersapp", bundle: try makeBundle(name: "ordersapp", code: seedApp), kafka: kafka), store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("all records applied") { runner.grids.appliedRecords == orders.records.count }
        try await stop()
        #expect(unitsSold(runner) == orders.sums)
        #expect(runner.status.failedRecords == 3)

        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(kafka: KafkaConfiguration(bootstrapServers: kafka.bootstrapServers)), logger: runtimeLogger)
        let partitions = try await consumer.metadata().topics.first { $0.name == runner.deadLetterTopic }?.partitions ?? []
        try await consumer.assign(
            Dictionary(uniqueKeysWithValues: partitions.map { (TopicPartition(runner.deadLetterTopic, $0.id), KafkaStartOffset.beginning) }))
        var letters: [KafkaRecord] = []
        let deadline = ContinuousClock.now + .seconds(10)
        while letters.count < 3 && ContinuousClock.now < deadline {
            letters += try await consumer.poll().messages
        }
        await consumer.close()
        let messages = letters.compactMap { letter in
            letter.headers.first { $0.name == "aerogrid.error.message" }?.value.map { String(decoding: $0, as: UTF8.self) }
        }
        #expect(letters.count == 3)
        #expect(messages.contains { $0.contains("invalid JSON") })
        #expect(messages.contains { $0 == "Order.quantity: missing required field" })
        #expect(messages.contains { $0 == "Order.quantity: expected int, got str ('3')" })
        #expect(letters.allSatisfy { letter in letter.headers.contains { $0.name == "aerogrid.source.offset" } && letter.value != nil })
    }

    @Test func aHandlerThatRaisesOnOneProductKeepsProcessingTheOthers() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 2)
        let picky = seedApp.replacingOccurrences(
            of: "        units_sold = product_sum",
            with: "        if order.product == 'Gizmo':\n            raise ValueError('no gizmos here')\n        units_sold = product_sum")
        var orders = Orders.random(1000)
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let runner = AppRunner(
            spec: makeSpec(
                name: "picky", bundle: try makeBundle(name: "picky", code: picky.replacingOccurrences(of: "'ordersapp'", with: "'picky'")), kafka: kafka),
            store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("all records applied") { runner.grids.appliedRecords == orders.records.count }
        try await stop()
        orders.sums["Gizmo"] = nil
        let gizmos = orders.records.filter { $0.value.contains("Gizmo") }.count
        #expect(unitsSold(runner) == orders.sums)
        #expect(runner.status.failedRecords == gizmos)
        #expect(runner.status.lifecycle.restarts == 0, "a raising handler is not a crash")
    }

    @Test func anAppWithASyntaxErrorEndsCrashedWithItsTracebackAndBacksOff() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bundle = try makeBundle(name: "broken", code: "import aerogrid\napp = aerogrid.App('broken', broker=BROKER_URI\n")
        let runner = AppRunner(spec: makeSpec(name: "broken", bundle: bundle, kafka: kafka), store: store, logger: runtimeLogger)
        let stop = start(runner)
        var delays: [Duration] = []
        try await waitFor("two backoffs", timeout: .seconds(30)) {
            if case .backoff(let delay, _) = runner.status.lifecycle.state, delays.last != delay { delays.append(delay) }
            return delays.count >= 2
        }
        try await stop()
        #expect(delays == [.seconds(1), .seconds(2)], "exponential backoff")
        if case .startup(let detail)? = runner.status.lifecycle.lastCrash {
            #expect(detail.contains("failed to load"))
        } else {
            Issue.record("crash reason: \(String(describing: runner.status.lifecycle.lastCrash))")
        }
        let log = runner.log.tail(100).map(\.text).joined(separator: "\n")
        #expect(log.contains("SyntaxError: '(' was never closed"), "the traceback is in the app's log")
        #expect(runner.status.lifecycle.state == .stopped)
    }

    @Test func floodingFramesStopsTheAppWhileASecondAppKeepsItsThroughput() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 4)
        let orders = Orders.random(20_000)
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }

        // Alone first, for the throughput to compare with.
        let alone = AppRunner(
            spec: makeSpec(name: "ordersapp", bundle: try makeBundle(name: "ordersapp", code: seedApp), kafka: kafka, tenant: "alone"), store: store,
            logger: runtimeLogger)
        let aloneStarted = ContinuousClock.now
        let stopAlone = start(alone)
        try await waitFor("the app alone") { alone.grids.appliedRecords == orders.records.count }
        let aloneTime = ContinuousClock.now - aloneStarted
        try await stopAlone()

        // Heartbeat frames as fast as Python can write them, from the moment it loads.
        let flood = """
            import socket
            s = socket.socket(fileno=3)
            frame = b"\\x00\\x00\\x00\\x01\\x20" * 1000
            while True:
                s.sendall(frame)
            """
        let flooder = AppRunner(
            spec: makeSpec(
                name: "flooder", bundle: try makeBundle(name: "flooder", code: flood), kafka: kafka,
                limits: AppLimits(framesPerSecond: 50_000)), store: store, logger: runtimeLogger)
        let neighbour = AppRunner(
            spec: makeSpec(name: "ordersapp", bundle: try makeBundle(name: "ordersapp", code: seedApp), kafka: kafka, tenant: "neighbour"), store: store,
            logger: runtimeLogger)
        let stopFlooder = start(flooder)
        try await waitFor("the flooder's first violation", timeout: .seconds(20)) { flooder.status.lifecycle.lastCrash != nil }
        let started = ContinuousClock.now
        let stopNeighbour = start(neighbour)
        try await waitFor("the neighbour") { neighbour.grids.appliedRecords == orders.records.count }
        let neighbourTime = ContinuousClock.now - started
        try await stopNeighbour()
        try await stopFlooder()

        guard case .protocolViolation(let detail)? = flooder.status.lifecycle.lastCrash else {
            Issue.record("crash reason: \(String(describing: flooder.status.lifecycle.lastCrash))")
            return
        }
        #expect(detail.contains("frames in a second"))
        #expect(unitsSold(neighbour) == orders.sums)
        print("20,000 orders: alone \(aloneTime), next to a flooding app \(neighbourTime)")
        #expect(neighbourTime < aloneTime * 3 + .seconds(2), "the neighbour keeps its throughput")
    }

    @Test func writing100MBToStdoutCostsTheSupervisorABoundedLog() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 2)
        let orders = Orders.random(500)
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let chatty =
            "import sys\nline = 'x' * 1023 + '\\n'\nfor _ in range(102400):\n    sys.stdout.write(line)\nsys.stdout.flush()\n"
            + seedApp.replacingOccurrences(of: "'ordersapp'", with: "'chatty'")
        // Read at 64 MiB and 1,000,000 lines a second here (the defaults, 1 MiB and 1,000 lines,
        // are tested below): this is about what is kept.
        let runner = AppRunner(
            spec: makeSpec(
                name: "chatty", bundle: try makeBundle(name: "chatty", code: chatty), kafka: kafka,
                limits: AppLimits(
                    log: AppLog.Limits(
                        lines: 500, forwardLinesPerSecond: 50, outputBytesPerSecond: 64 << 20,
                        linesPerSecond: 1_000_000))),
            store: store, logger: runtimeLogger)
        let residentBefore = residentBytes()
        let stop = start(runner)
        try await waitFor("100 MB of output and every record", timeout: .seconds(120)) {
            runner.log.totalLines >= 102_400 && runner.grids.appliedRecords == orders.records.count
        }
        let growth = residentBytes() - residentBefore
        try await stop()
        #expect(runner.log.tail(10_000).count <= 500, "the log keeps its last 500 lines")
        #expect(runner.log.linesNotForwarded > 100_000, "the supervisor's own log got at most 50 lines a second")
        #expect(growth < 64 << 20, "the supervisor grew by \(growth >> 20) MiB for 100 MiB of output")
        #expect(unitsSold(runner) == orders.sums)
    }

    /// Output is read at most `outputBytesPerSecond`: an app writing faster blocks on its
    /// pipe (2 MiB at 256 KiB/s takes eight seconds to be read, not a fraction of one).
    @Test func stdoutIsReadAtMostAtItsRate() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let orders = Orders.random(50)
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let chatty =
            "import sys\nline = 'y' * 1023 + '\\n'\nfor _ in range(2048):\n    sys.stdout.write(line)\nsys.stdout.flush()\n"
            + seedApp.replacingOccurrences(of: "'ordersapp'", with: "'paced'")
        let runner = AppRunner(
            spec: makeSpec(
                name: "paced", bundle: try makeBundle(name: "paced", code: chatty), kafka: kafka,
                limits: AppLimits(log: AppLog.Limits(outputBytesPerSecond: 256 << 10, linesPerSecond: 1_000_000))),
            store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("the first lines", timeout: .seconds(30)) { runner.log.totalLines > 0 }
        let first = ContinuousClock.now
        try await Task.sleep(for: .seconds(3))
        let afterThree = runner.log.totalLines
        try await waitFor("every line and record", timeout: .seconds(30)) {
            runner.log.totalLines >= 2048 && runner.grids.appliedRecords == orders.records.count
        }
        let took = ContinuousClock.now - first
        try await stop()
        // Three seconds and the window the first lines came in: at most 4 × 256 lines of 1 KiB.
        #expect(afterThree <= 4 * 256 + 64, "\(afterThree) lines read in 3 s at 256 KiB/s")
        #expect(took >= .seconds(6), "2 MiB read in \(took) at 256 KiB/s")
        #expect(unitsSold(runner) == orders.sums)
    }

    /// Lines cost the supervisor work whatever their length: empty lines are read at most
    /// `linesPerSecond` (here 500) too, the app blocking on its pipe.
    @Test func emptyLinesAreReadAtMostAtTheLineRate() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let empty = "import os\nwhile True:\n    os.write(1, b'\\n' * 65536)\n"
        let runner = AppRunner(
            spec: makeSpec(
                name: "empty", bundle: try makeBundle(name: "empty", code: empty), kafka: kafka,
                limits: AppLimits(log: AppLog.Limits(linesPerSecond: 500))), store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("the first lines", timeout: .seconds(30)) { runner.log.totalLines > 0 }
        try await Task.sleep(for: .seconds(3))
        let lines = runner.log.totalLines
        try await stop()
        // Three seconds, and the second the first lines came in: at most 4 × 500 lines.
        #expect(lines <= 4 * 500 + 10, "\(lines) lines read in about 3 s at 500 a second")
        #expect(lines >= 500)
    }

    @Test func aGridPastItsQuotaStopsTheAppWithTheNumbers() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        var orders = Orders()
        for index in 0..<300 { orders.add("product-\(index)", 1) }
        try await orders.produce(to: kafka)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let runner = AppRunner(
            spec: makeSpec(
                name: "ordersapp", bundle: try makeBundle(name: "ordersapp", code: seedApp), kafka: kafka,
                limits: AppLimits(gridRows: 100)), store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("the quota to stop it", timeout: .seconds(30)) { runner.status.lifecycle.lastCrash != nil }
        try await stop()
        guard case .quota(let detail)? = runner.status.lifecycle.lastCrash else {
            Issue.record("crash reason: \(String(describing: runner.status.lifecycle.lastCrash))")
            return
        }
        #expect(detail.contains("the quota is 100"))
        #expect(runner.grids.footprint.rows <= 100)
    }

    @Test func anOutOfRangeCheckpointFollowsItsPolicy() async throws {
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let bundle = try makeBundle(name: "ordersapp", code: seedApp)
        // A first cluster, processed and checkpointed.
        let first = try EmbeddedKafka(logger: runtimeLogger)
        try first.createTopic("orders", partitions: 2)
        try await Orders.random(600).produce(to: first)
        let before = AppRunner(spec: makeSpec(name: "ordersapp", bundle: bundle, kafka: first), store: store, logger: runtimeLogger)
        let stopBefore = start(before)
        try await waitFor("the first cluster") { before.grids.appliedRecords == 600 }
        try await stopBefore()

        // The cluster is replaced by an empty one (as a restarted embedded cluster is).
        let second = try EmbeddedKafka(logger: runtimeLogger)
        try second.createTopic("orders", partitions: 2)
        let fresh = Orders.random(50)
        try await fresh.produce(to: second)

        let failing = AppRunner(spec: makeSpec(name: "ordersapp", bundle: bundle, kafka: second, outOfRange: .fail), store: store, logger: runtimeLogger)
        let stopFailing = start(failing)
        try await waitFor("the fail policy") { failing.status.lifecycle.lastCrash != nil }
        try await stopFailing()
        guard case .startup(let detail)? = failing.status.lifecycle.lastCrash else {
            Issue.record("crash reason: \(String(describing: failing.status.lifecycle.lastCrash))")
            return
        }
        #expect(detail.contains("out of range") && detail.contains("policy: fail"))
        #expect(failing.grids.appliedRecords == 0)

        let resetting = AppRunner(
            spec: makeSpec(name: "ordersapp", bundle: bundle, kafka: second, outOfRange: .resetToEarliest), store: store, logger: runtimeLogger)
        let stopResetting = start(resetting)
        try await waitFor("the reset") { resetting.grids.appliedRecords == 50 }
        try await stopResetting()
        #expect(unitsSold(resetting) == fresh.sums, "the grids start over from the new cluster's records")
        #expect(resetting.status.resets == 1)
        withExtendedLifetime((first, second)) {}
    }
}

/// This process's resident memory, from /proc.
func residentBytes() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

/// What a hostile app may send, and what it must not be able to do to the supervisor.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct HostileAppTests {
    /// An app written against the raw protocol: `frames` is Python building the bytes to
    /// send after its hello; it then reads until the socket closes.
    func rawApp(hello: String, frames: String = "b''", afterwards: String = "") -> String {
        """
        import json, os, socket, struct, time
        s = socket.socket(fileno=3)
        def frame(t, payload):
            return struct.pack('>IB', len(payload) + 1, t) + payload
        s.sendall(frame(1, json.dumps(\(hello)).encode()))
        s.sendall(\(frames))
        \(afterwards)
        while s.recv(65536):
            pass
        os._exit(0)
        """
    }

    static let hello =
        #"{"protocol": "1.0", "sdk": "raw", "app": "raw", "topics": [{"name": "orders", "key_type": "str", "value_type": "str"}], "grids": [{"name": "g", "columns": ["c"]}, {"name": "g", "columns": ["d"]}], "streams": [{"name": "s", "topic": "orders"}], "produces": []}"#

    @Test func aHelloDeclaringAGridTwiceIsAViolationNotACrash() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let runner = AppRunner(
            spec: makeSpec(name: "raw", bundle: try makeBundle(name: "raw", code: rawApp(hello: Self.hello)), kafka: kafka), store: store, logger: runtimeLogger
        )
        let stop = start(runner)
        try await waitFor("the violation") { runner.status.lifecycle.lastCrash != nil }
        try await stop()
        #expect(runner.status.lifecycle.lastCrash == .protocolViolation("hello declares grid 'g' twice"))
    }

    /// Whatever the tenant's policy allows (here: no policy at all), an app cannot consume
    /// AeroGrid's internal topics (a cluster's control plane) or Kafka's own.
    @Test(arguments: [("_aerogrid.prod.config", false), ("__consumer_offsets", false), ("_aerogrid.prod.config", true)])
    func anInternalTopicIsRefusedWhateverThePolicy(topic: String, produced: Bool) async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)  // the refusal comes before any look-up
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let oneGrid = Self.hello.replacingOccurrences(of: #", {"name": "g", "columns": ["d"]}"#, with: "")
        let hello =
            produced
            ? oneGrid.replacingOccurrences(of: #""produces": []"#, with: "\"produces\": [\"\(topic)\"]")
            : oneGrid.replacingOccurrences(of: #""orders""#, with: "\"\(topic)\"")
        var spec = makeSpec(name: "raw", bundle: try makeBundle(name: "raw", code: rawApp(hello: hello)), kafka: kafka)
        spec.topicPolicy = { _ in nil }  // a policy that allows everything, as `*` does
        let runner = AppRunner(spec: spec, store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("the refusal") { runner.status.lifecycle.lastCrash != nil }
        try await stop()
        guard case .topicRefused(let message) = runner.status.lifecycle.lastCrash else {
            Issue.record("expected a topic refusal, got \(String(describing: runner.status.lifecycle.lastCrash))")
            return
        }
        #expect(message.contains("'\(topic)' is internal"))
        #expect(runner.grids.appliedRecords == 0)
    }

    @Test func gridUpdatesWithNoBatchOutstandingAreAViolation() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hello = Self.hello.replacingOccurrences(of: #", {"name": "g", "columns": ["d"]}"#, with: "")
        let flood = #"frame(2, json.dumps({"grid": "g", "key": "k", "row": {"c": 1}}).encode()) * 1000"#
        let runner = AppRunner(
            spec: makeSpec(name: "raw", bundle: try makeBundle(name: "raw", code: rawApp(hello: hello, frames: flood)), kafka: kafka), store: store,
            logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("the violation") { runner.status.lifecycle.lastCrash != nil }
        try await stop()
        #expect(runner.status.lifecycle.lastCrash == .protocolViolation("grid-updates with no batch outstanding"))
    }

    @Test func anAppThatIgnoresShutdownIsKilledAfterTheGracePeriod() async throws {
        let kafka = try EmbeddedKafka(logger: runtimeLogger)
        try kafka.createTopic("orders", partitions: 1)
        let (store, path) = try makeStore()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let hello = Self.hello.replacingOccurrences(of: #", {"name": "g", "columns": ["d"]}"#, with: "")
        // Heartbeats for ever, and never reads: shutdown goes unanswered.
        let stubborn = rawApp(hello: hello, afterwards: "while True:\n    s.sendall(frame(0x20, b''))\n    time.sleep(0.5)")
        var spec = makeSpec(name: "raw", bundle: try makeBundle(name: "raw", code: stubborn), kafka: kafka)
        spec.shutdownGrace = .seconds(2)
        let runner = AppRunner(spec: spec, store: store, logger: runtimeLogger)
        let stop = start(runner)
        try await waitFor("running") { runner.status.lifecycle.state == .running }
        let started = ContinuousClock.now
        try await stop()
        #expect(ContinuousClock.now - started < .seconds(12), "stop returned after the grace period and the kill")
        #expect(runner.status.lifecycle.state == .stopped)
    }
}
