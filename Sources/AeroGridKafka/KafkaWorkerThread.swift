import Foundation

/// One dedicated OS thread that runs jobs strictly in submission order.
///
/// librdkafka's calls block (a poll waits for data, a commit for the broker), and they must
/// never run on Swift's cooperative thread pool, which has one thread per core. librdkafka
/// 2.0.2 also mis-handles batch consumption interleaved with seek, pause, resume or a
/// rebalance from other threads, so every call on one consumer goes through one of these.
final class KafkaWorkerThread: @unchecked Sendable {
    // @unchecked: `jobs` and `stopping` are only touched with `condition` held.
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false

    init(name: String) {
        // The thread holds the worker until `stop()` lets its loop end.
        let thread = Thread { self.loop() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Runs `body` on the thread and returns its result to the caller.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            submit { continuation.resume(with: Result { try body() }) }
        }
    }

    func submit(_ job: @escaping @Sendable () -> Void) {
        condition.lock()
        if stopping {
            condition.unlock()
            // Shut down: run inline rather than lose the job (and its continuation).
            job()
            return
        }
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Runs what is queued, then ends the thread. Jobs submitted afterwards run inline.
    func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job() }
        }
    }
}
