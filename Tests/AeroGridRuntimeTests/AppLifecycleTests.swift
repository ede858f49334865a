import AeroGridRuntime
import Testing

@Suite struct AppLifecycleTests {
    @Test func crashesBackOffExponentiallyUpToTheCap() {
        var lifecycle = AppLifecycle(policy: BackoffPolicy(initial: .seconds(1), cap: .seconds(10), healthyAfter: .seconds(60)))
        var delays: [Duration] = []
        for _ in 0..<6 {
            lifecycle.startProcess()
            delays.append(lifecycle.processEnded(.exit(1), uptime: .seconds(2))!)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10), .seconds(10)])
        #expect(lifecycle.restarts == 5)
        #expect(lifecycle.state == .backoff(.seconds(10), after: .exit(1)))
    }

    @Test func aHealthyMinuteResetsTheBackoff() {
        var lifecycle = AppLifecycle()
        lifecycle.startProcess()
        _ = lifecycle.processEnded(.oom, uptime: .seconds(1))
        lifecycle.startProcess()
        #expect(lifecycle.processEnded(.oom, uptime: .seconds(1)) == .seconds(2))
        lifecycle.startProcess()
        lifecycle.processRunning()
        #expect(lifecycle.state == .running)
        #expect(lifecycle.processEnded(.signal(9), uptime: .seconds(61)) == .seconds(1))
        #expect(lifecycle.lastCrash == .signal(9))
    }

    @Test func aStoppedAppIsNotRestarted() {
        var lifecycle = AppLifecycle()
        lifecycle.startProcess()
        lifecycle.processRunning()
        lifecycle.stop()
        #expect(lifecycle.state == .stopping)
        #expect(lifecycle.processEnded(.exit(0), uptime: .seconds(5)) == nil)
        #expect(lifecycle.state == .stopped)
        lifecycle.startProcess()
        #expect(lifecycle.state == .stopped, "no start after a stop")
    }

    @Test(arguments: [
        (CrashReason.exit(1), "exit"), (.signal(9), "signal"), (.oom, "oom"), (.seccomp, "seccomp"),
        (.protocolViolation("x"), "protocol"), (.heartbeatTimeout, "heartbeat"), (.startup("y"), "startup"),
    ])
    func everyCrashReasonHasACodeAndWords(_ reason: CrashReason, _ code: String) {
        #expect(reason.code == code)
        #expect(!reason.description.isEmpty)
    }
}
