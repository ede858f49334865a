import AeroGridAPI
import AeroGridRuntime
import AeroGridStore
import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// An app's log wherever the app runs: this node's runner's, or, on a node of a cluster,
/// the log of the node that runs it, asked over the nodes' own route
/// (`GET /internal/v1/apps/<tenant id>/<app>/logs`, with the cluster's peer secret).
/// Lines travel as the API writes them (`LogLine` JSON), so they pass through unchanged.
struct AppLogs: Sendable {
    let apps: AppService

    /// Lines of one run of the app: which run (a new one starts over), the lines after
    /// `after` (or the last `tail` when nil), and how many the run has written in all.
    struct Page: Sendable {
        var run: String
        var lines: [[UInt8]]
        var total: Int
    }

    /// At most this many bytes of lines in one answer from another node.
    static let pageBytes = 4 << 20

    func page(_ app: AppRecord, after: Int?, tail: Int) async -> Page? {
        let view = await apps.supervisor.view(app)
        if !view.runsHere, let cluster = apps.cluster, let (node, remote) = cluster.status.elsewhere(tenant: app.tenant, app: app.name),
            remote.id == app.id
        {
            return await fromNode(node, app, after: after, tail: tail)
        }
        guard let log = await apps.supervisor.runner(tenant: app.tenant, name: app.name)?.log else { return nil }
        return Self.page(of: log, after: after, tail: tail)
    }

    /// A page of this node's log of an app (for a caller here, or another node).
    static func page(of log: AppLog, after: Int?, tail: Int) -> Page {
        let (lines, total) = after.map { log.lines(after: $0) } ?? (log.tail(tail), log.totalLines)
        return Page(run: "\(ObjectIdentifier(log).hashValue)", lines: lines.map { APIJSON.encode(Schemas.LogLine($0)) }, total: total)
    }

    /// The page as the nodes' route answers it: NDJSON, a first line `{"run","total"}`, then
    /// one line of the log each.
    static func ndjson(_ page: Page) -> [UInt8] {
        var bytes = Array(#"{"run":"\#(page.run)","total":\#(page.total)}"#.utf8) + [UInt8(ascii: "\n")]
        for line in page.lines { bytes += line + [UInt8(ascii: "\n")] }
        return bytes
    }

    private func fromNode(_ node: String, _ app: AppRecord, after: Int?, tail: Int) async -> Page? {
        guard let secret = try? await apps.store.peerSecret(), let peers = try? await apps.store.clusterNodes(),
            let peer = peers.first(where: { $0.id == node }), let tenant = try? await apps.store.tenant(app.tenant)
        else { return nil }
        var components = URLComponents(string: "\(peer.url)/internal/v1/apps/\(tenant.id)/\(app.name)/logs")
        components?.queryItems = [URLQueryItem(name: "tail", value: "\(tail)")] + (after.map { [URLQueryItem(name: "after", value: "\($0)")] } ?? [])
        guard let url = components?.url else { return nil }
        var request = URLRequest(url: url, timeoutInterval: 5)
        request.setValue("Bearer \(secret)", forHTTPHeaderField: "Authorization")
        guard let (data, response) = try? await URLSession.shared.data(for: request), (response as? HTTPURLResponse)?.statusCode == 200,
            data.count <= Self.pageBytes
        else { return nil }
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        guard let first = lines.first, let header = try? JSONSerialization.jsonObject(with: Data(first)) as? [String: Any],
            let run = header["run"] as? String, let total = (header["total"] as? NSNumber)?.intValue
        else { return nil }
        // Each line is checked to be a JSON object before it is passed on as one.
        let kept = lines.dropFirst().filter { (try? JSONSerialization.jsonObject(with: Data($0))) is [String: Any] }
        return Page(run: "\(node)/\(run)", lines: kept.map { Array($0) }, total: total)
    }
}
