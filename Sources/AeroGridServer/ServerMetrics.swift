import AeroGridCore
import AeroGridFanout
import AeroGridRuntime
import Hummingbird
import Prometheus
import Synchronization

/// `/metrics`: the Prometheus text format, from swift-prometheus. The apps' numbers are
/// read from their runners when scraped: per app records (total and per second), lag,
/// batch latency, restarts, OOM kills, cpu, memory and pids; per server the HTTP requests,
/// the stream's connections, subscriptions and clients that do not read.
public final class ServerMetrics: Sendable {
    private let registry = PrometheusCollectorRegistry()
    /// Per app: what the runner's counters were at the last scrape, and when.
    private let last = Mutex<[AppID: (records: Int, restarts: Int, oomKills: Int, at: ContinuousClock.Instant)]>([:])
    private let requestsInFlight: Gauge
    private let perApp = Mutex<[AppID: AppMetrics]>([:])

    /// One app's series, kept so they can be removed with the app.
    struct AppMetrics: Sendable {
        let records, restarts, oomKills: Counter
        let recordsPerSecond, running, lag, cpuSeconds, memoryBytes, pids: Gauge
        let batchLatency: DurationHistogram

        func unregister(from registry: PrometheusCollectorRegistry) {
            for counter in [records, restarts, oomKills] { registry.unregisterCounter(counter) }
            for gauge in [recordsPerSecond, running, lag, cpuSeconds, memoryBytes, pids] { registry.unregisterGauge(gauge) }
            registry.unregisterDurationHistogram(batchLatency)
        }
    }

    private func appMetrics(_ key: AppID, labels: [(String, String)]) -> AppMetrics {
        if let known = perApp.withLock({ $0[key] }) { return known }
        let metrics = AppMetrics(
            records: registry.makeCounter(name: "aerogrid_app_records_total", labels: labels, help: "Records delivered to the app"),
            restarts: registry.makeCounter(
                name: "aerogrid_app_restarts_total", labels: labels, help: "Times the app's process was started again after a crash"),
            oomKills: registry.makeCounter(name: "aerogrid_app_oom_kills_total", labels: labels, help: "App processes ended by the OOM killer"),
            recordsPerSecond: registry.makeGauge(
                name: "aerogrid_app_records_per_second", labels: labels, help: "Records delivered per second since the last scrape"),
            running: registry.makeGauge(name: "aerogrid_app_running", labels: labels, help: "1 while the app should run and its runner runs"),
            lag: registry.makeGauge(name: "aerogrid_app_lag_records", labels: labels, help: "Records in Kafka not yet applied to the grids"),
            cpuSeconds: registry.makeGauge(name: "aerogrid_app_cpu_seconds", labels: labels, help: "CPU time used by the app's current process"),
            memoryBytes: registry.makeGauge(name: "aerogrid_app_memory_bytes", labels: labels, help: "Memory used by the app's sandbox"),
            pids: registry.makeGauge(name: "aerogrid_app_pids", labels: labels, help: "Processes and threads in the app's sandbox"),
            batchLatency: registry.makeDurationHistogram(
                name: "aerogrid_app_batch_latency_seconds", labels: labels,
                buckets: [
                    .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                    .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5),
                ],
                help: "Time from a batch sent to the app to its grid changes applied"))
        perApp.withLock { $0[key] = metrics }
        return metrics
    }

    private let gate: ConnectionGate?
    private let hub: FanoutHub?
    /// What was already counted into the monotonic counters read from elsewhere.
    private let counted = Mutex<(ticks: Int, refused: Int)>((0, 0))

    init(gate: ConnectionGate? = nil, hub: FanoutHub? = nil) {
        self.gate = gate
        self.hub = hub
        requestsInFlight = registry.makeGauge(name: "aerogrid_http_requests_in_flight", help: "HTTP requests being answered")
    }

    func requestStarted() { requestsInFlight.increment() }

    /// Methods are labels: anything but the usual few is "other", or every made-up method a
    /// client sent would be a series of its own.
    static let methods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]

    func requestEnded(method: String, status: Int) {
        requestsInFlight.decrement()
        let label = Self.methods.contains(method) ? method : "other"
        registry.makeCounter(
            name: "aerogrid_http_requests_total", labels: [("method", label), ("status", String(min(max(status, 100), 599)))],
            help: "HTTP requests answered"
        ).increment()
    }

    func scrape(_ supervisor: AppSupervisor, stream: (connections: Int, subscriptions: Int, blocked: Int)) async -> [UInt8] {
        registry.makeGauge(name: "aerogrid_stream_connections", help: "Open stream (WebSocket) connections").set(Double(stream.connections))
        registry.makeGauge(name: "aerogrid_stream_subscriptions", help: "Grid subscriptions on the stream").set(Double(stream.subscriptions))
        registry.makeGauge(name: "aerogrid_stream_connections_not_writable", help: "Stream connections whose client has not read for 5 s or more")
            .set(Double(stream.blocked))
        let connections = gate?.counts
        let (ticks, refused) = (hub?.stats.tickCount ?? 0, connections?.refused ?? 0)
        let (newTicks, newRefused) = counted.withLock { counted in
            defer { counted = (ticks, refused) }
            return (ticks - counted.ticks, refused - counted.refused)
        }
        registry.makeCounter(name: "aerogrid_stream_ticks_total", help: "Ticks of the stream's subscription groups (each after a grid change)")
            .increment(by: Int64(newTicks))
        if let counts = connections {
            registry.makeGauge(name: "aerogrid_http_connections_anonymous", help: "Open connections that have not authenticated a request")
                .set(Double(counts.anonymous))
            registry.makeGauge(name: "aerogrid_http_connections_authenticated", help: "Open connections counted against a tenant's max_connections")
                .set(Double(counts.perTenant.values.reduce(0, +)))
            registry.makeCounter(name: "aerogrid_http_connections_refused_total", help: "Connections closed as they opened: over the anonymous caps")
                .increment(by: Int64(newRefused))
        }
        var running = 0
        var seen = Set<AppID>()
        for (key, runner, isRunning) in await supervisor.runners {
            seen.insert(key)
            let metrics = appMetrics(key, labels: [("tenant", key.tenant), ("app", key.name)])
            let status = runner.status
            let progress = await runner.progress()
            let now = ContinuousClock.now
            let previous = last.withLock { table in
                defer { table[key] = (status.deliveredRecords, status.lifecycle.restarts, status.oomKills, now) }
                return table[key]
            }
            // A new runner (after a delete and deploy) starts its counters from zero.
            func delta(_ current: Int, _ before: Int?) -> Int64 { Int64(current >= (before ?? 0) ? current - (before ?? 0) : current) }
            metrics.records.increment(by: delta(status.deliveredRecords, previous?.records))
            metrics.restarts.increment(by: delta(status.lifecycle.restarts, previous?.restarts))
            metrics.oomKills.increment(by: delta(status.oomKills, previous?.oomKills))
            let seconds = previous.map { Double((now - $0.at).components.seconds) + Double((now - $0.at).components.attoseconds) / 1e18 } ?? 0
            metrics.recordsPerSecond.set(seconds > 0 ? Double(delta(status.deliveredRecords, previous?.records)) / seconds : 0)
            metrics.running.set(isRunning ? 1.0 : 0.0)
            metrics.lag.set(Double(progress.lag ?? 0))
            let usage = isRunning ? runner.usage() : nil
            metrics.cpuSeconds.set(Double(usage?.cpuNanoseconds ?? 0) / 1e9)
            metrics.memoryBytes.set(Double(usage?.memoryBytes ?? 0))
            metrics.pids.set(Double(usage?.pids ?? 0))
            for latency in runner.takeBatchLatencies() { metrics.batchLatency.record(latency) }
            if isRunning { running += 1 }
        }
        // A deleted app's series go with it.
        for (key, metrics) in perApp.withLock({ table in table.filter { !seen.contains($0.key) } }) {
            metrics.unregister(from: registry)
            perApp.withLock { $0[key] = nil }
            last.withLock { $0[key] = nil }
        }
        registry.makeGauge(name: "aerogrid_apps_running", help: "Apps whose runner runs").set(Double(running))
        return registry.emitToBuffer()
    }
}

/// Counts requests for the metrics (in flight, and answered by method and status).
struct RequestCountingMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        metrics.requestStarted()
        do {
            let response = try await next(request, context)
            metrics.requestEnded(method: request.method.rawValue, status: response.status.code)
            return response
        } catch let error as any HTTPResponseError {
            metrics.requestEnded(method: request.method.rawValue, status: error.status.code)
            throw error
        } catch {
            metrics.requestEnded(method: request.method.rawValue, status: 500)
            throw error
        }
    }
}
