#if canImport(Glibc)
import Glibc
#endif

/// Runs a blocking call (waiting for a process, spawning one) on a thread of its own, so it
/// never holds one of Swift's cooperative threads (there is one per core).
func onDedicatedThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        startThread { continuation.resume(returning: body()) }
    }
}

/// Starts a detached POSIX thread running `body`.
func startThread(_ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(&thread, nil, { argument in
        let body = Unmanaged<ThreadBody>.fromOpaque(argument!).takeRetainedValue()
        body.run()
        return nil
    }, box)
    precondition(result == 0, "cannot start a thread: \(errnoDescription(result))")
    pthread_detach(thread)
}

private final class ThreadBody: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}

/// One long-lived thread that every sandbox is cloned from. The kernel sends a sandbox's
/// init PR_SET_PDEATHSIG when the *thread* that cloned it exits, and idle pool threads do
/// exit; this one never does.
final class SpawnerThread: @unchecked Sendable {
    // @unchecked: `jobs` is only touched with `mutex` held.
    static let shared = SpawnerThread()

    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    private var jobs: [@Sendable () -> Void] = []

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        startThread { [self] in loop() }
    }

    /// Runs `body` on the spawner thread and waits for its result (synchronously: the
    /// spawn itself takes about a millisecond).
    func run<T>(_ body: () -> T) -> T {
        withoutActuallyEscaping(body) { body in
            var result: T?
            var done = sem_t()
            sem_init(&done, 0, 0)
            defer { sem_destroy(&done) }
            withUnsafeMutablePointer(to: &result) { resultPointer in
                withUnsafeMutablePointer(to: &done) { donePointer in
                    let job = UncheckedJob {
                        resultPointer.pointee = body()
                        sem_post(donePointer)
                    }
                    enqueue { job.run() }
                    while sem_wait(donePointer) != 0 {}  // retried on EINTR
                }
            }
            return result!
        }
    }

    private func enqueue(_ job: @escaping @Sendable () -> Void) {
        pthread_mutex_lock(&mutex)
        jobs.append(job)
        pthread_cond_signal(&condition)
        pthread_mutex_unlock(&mutex)
    }

    private func loop() {
        while true {
            pthread_mutex_lock(&mutex)
            while jobs.isEmpty { pthread_cond_wait(&condition, &mutex) }
            let batch = jobs
            jobs.removeAll()
            pthread_mutex_unlock(&mutex)
            for job in batch { job() }
        }
    }
}

/// A closure that captures pointers into a waiting caller's stack: safe because `run`
/// does not return until the job has finished with them.
private struct UncheckedJob: @unchecked Sendable {
    let run: () -> Void
}
