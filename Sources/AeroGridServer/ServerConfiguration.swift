public import AeroGridCluster
public import AeroGridCore
public import AeroGridRuntime
public import AeroGridSandbox
import Foundation
import TOMLKit

/// `aerogrid.toml`: where the server keeps its state, where it listens, its Kafka and the
/// sandbox defaults. Every field is checked when the file is read, with the field named.
public struct ServerConfiguration: Sendable {
    public struct Listener: Sendable, Equatable {
        public var host: String
        public var port: Int
        public var description: String { "\(host):\(port)" }

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public struct TLS: Sendable, Equatable {
        public var certificate: String
        public var key: String

        public init(certificate: String, key: String) {
            self.certificate = certificate
            self.key = key
        }
    }

    public var dataDirectory: String
    /// HTTPS when `tls` is set, else HTTP.
    public var listen: Listener
    /// A second, plain-HTTP listener (for curl on the same host).
    public var httpListen: Listener?
    public var tls: TLS?
    public var kafkaBootstrap: String
    public var kafkaProperties: [String: String] = [:]
    /// Seccomp profile with quota defaults, and the directory holding the Python SDK.
    public var profile: String?
    public var sdk: String?
    public var limits = CgroupLimits()
    /// The host uids (and gids) tenants' apps run as: each tenant gets one of its own.
    public var hostUIDs: ClosedRange<UInt32> = Self.defaultHostUIDs
    public static let defaultHostUIDs: ClosedRange<UInt32> = 900_000_000...900_099_999
    /// Where clients reach the server over HTTPS (`https://host[:port]`): the Excel add-in's
    /// manifest names this address, whatever Host a request carries.
    public var publicURL: String?
    /// What anonymous clients may hold, and the HTTP timeouts.
    public var connections = ConnectionLimits()
    /// What one app may cost the supervisor (`[apps]`), and one stream connection (`[stream]`).
    public var appLimits = AppLimits()
    public var stream = StreamLimits()
    /// `[cluster]`: this node is one of several keeping the control plane in Kafka; nil: a
    /// single node, which keeps it to itself.
    public var cluster: ClusterSettings?

    public init(dataDirectory: String, listen: Listener, kafkaBootstrap: String) {
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.kafkaBootstrap = kafkaBootstrap
    }

    public static func load(path: String) throws(AeroGridError) -> ServerConfiguration {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw AeroGridError(.invalidConfiguration, "cannot read the configuration file \(path)")
        }
        return try parse(text, source: path, relativeTo: (path as NSString).deletingLastPathComponent)
    }

    /// Parses the file's text; relative paths in it are relative to `base`.
    public static func parse(_ text: String, source: String, relativeTo base: String) throws(AeroGridError) -> ServerConfiguration {
        func bad(_ message: String) -> AeroGridError { AeroGridError(.invalidConfiguration, "\(source): \(message)") }
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch { throw bad("not valid TOML: \(error)") }
        func absolute(_ path: String) -> String {
            path.hasPrefix("/") || base.isEmpty ? path : "\(base)/\(path)"
        }
        func listener(_ key: String) throws(AeroGridError) -> Listener? {
            guard let value = table[key] else { return nil }
            guard let text = value.string, let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
                (0...65535).contains(port)
            else {
                throw bad("\(key) must be \"HOST:PORT\", e.g. \"0.0.0.0:8443\"")
            }
            return Listener(host: String(text[..<colon]), port: port)
        }
        let sections = ["data_dir", "listen", "http_listen", "public_url", "tls", "kafka", "sandbox", "http", "apps", "stream", "cluster"]
        for key in table.keys where !sections.contains(key) {
            throw bad("unknown key '\(key)' (known: data_dir, listen, http_listen, public_url, [tls], [kafka], [sandbox], [http], [apps], [stream], [cluster])")
        }
        guard let dataDirectory = table["data_dir"]?.string else { throw bad("data_dir = \"…\" is required (where the server keeps its state)") }
        guard let listen = try listener("listen") else { throw bad("listen = \"HOST:PORT\" is required") }
        guard let kafka = table["kafka"]?.table, let bootstrap = kafka["bootstrap"]?.string else {
            throw bad("[kafka] bootstrap = \"host:port\" is required")
        }
        var configuration = ServerConfiguration(dataDirectory: absolute(dataDirectory), listen: listen, kafkaBootstrap: bootstrap)
        configuration.httpListen = try listener("http_listen")
        if let value = table["public_url"] {
            guard let text = value.string, let url = publicURL(text) else {
                throw bad("public_url must be \"https://HOST\" or \"https://HOST:PORT\", where clients reach this server")
            }
            configuration.publicURL = url
        }
        if let apps = table["apps"]?.table {
            var limits = Limits(apps, section: "apps", bad: bad)
            try limits.count("frames_per_second", into: &configuration.appLimits.framesPerSecond)
            try limits.bytes("bytes_per_second", into: &configuration.appLimits.bytesPerSecond)
            try limits.bytes("grid_bytes", into: &configuration.appLimits.gridBytes)
            try limits.bytes("key_bytes", into: &configuration.appLimits.keyBytes)
            try limits.bytes("pending_bytes", into: &configuration.appLimits.pendingBytes)
            try limits.seconds("batch_timeout", into: &configuration.appLimits.batchTimeout)
            try limits.count("grids", into: &configuration.appLimits.grids)
            try limits.count("columns_per_grid", into: &configuration.appLimits.columnsPerGrid)
            try limits.count("log_lines", into: &configuration.appLimits.log.lines)
            try limits.bytes("log_bytes", into: &configuration.appLimits.log.bytes)
            try limits.bytes("log_line_bytes", into: &configuration.appLimits.log.lineBytes)
            try limits.count("log_forward_lines_per_second", into: &configuration.appLimits.log.forwardLinesPerSecond)
            try limits.bytes("log_forward_bytes_per_second", into: &configuration.appLimits.log.forwardBytesPerSecond)
            try limits.bytes("log_frame_bytes", into: &configuration.appLimits.log.frameBytes)
            try limits.bytes("log_frame_bytes_per_second", into: &configuration.appLimits.log.frameBytesPerSecond)
            try limits.bytes("output_bytes_per_second", into: &configuration.appLimits.log.outputBytesPerSecond)
            try limits.count("log_lines_per_second", into: &configuration.appLimits.log.linesPerSecond)
            try limits.finish()
        }
        if let stream = table["stream"]?.table {
            var limits = Limits(stream, section: "stream", bad: bad)
            try limits.bytes("message_bytes", into: &configuration.stream.messageBytes)
            try limits.count("subscriptions_per_connection", into: &configuration.stream.subscriptionsPerConnection)
            try limits.bytes("reply_bytes", into: &configuration.stream.replyBytes)
            try limits.count("operations_per_second", into: &configuration.stream.operationsPerSecond)
            try limits.seconds("auth_timeout", into: &configuration.stream.authTimeout)
            try limits.finish()
        }
        if let http = table["http"]?.table {
            var limits = Limits(http, section: "http", bad: bad)
            try limits.count("max_anonymous_connections", into: &configuration.connections.anonymous)
            try limits.count("max_anonymous_connections_per_network", into: &configuration.connections.anonymousPerNetwork)
            try limits.seconds("header_timeout", into: &configuration.connections.headerTimeout)
            try limits.seconds("anonymous_timeout", into: &configuration.connections.anonymousTimeout)
            try limits.seconds("idle_timeout", into: &configuration.connections.idleTimeout)
            try limits.seconds("body_timeout", into: &configuration.connections.bodyTimeout)
            try limits.finish()
        }
        if let properties = kafka["properties"]?.table {
            for (key, value) in properties {
                guard let text = value.string ?? value.int.map(String.init) ?? value.bool.map(String.init) else {
                    throw bad("[kafka.properties] \(key) must be a string, number or boolean")
                }
                configuration.kafkaProperties[key] = text
            }
        }
        if let cluster = table["cluster"] {
            configuration.cluster = try clusterSettings(cluster.table, bad: bad)
        }
        if let tls = table["tls"]?.table {
            guard let certificate = tls["certificate"]?.string, let key = tls["key"]?.string else {
                throw bad("[tls] needs certificate = \"cert.pem\" and key = \"key.pem\"")
            }
            configuration.tls = TLS(certificate: absolute(certificate), key: absolute(key))
        }
        if let sandbox = table["sandbox"]?.table {
            configuration.profile = sandbox["profile"]?.string.map(absolute)
            configuration.sdk = sandbox["sdk"]?.string.map(absolute)
            if let memory = sandbox["memory"] {
                guard let text = memory.string, let bytes = parseSize(text) else { throw bad("[sandbox] memory must be a size such as \"256M\"") }
                configuration.limits.memoryBytes = bytes
            }
            if let cpu = sandbox["cpu"] {
                guard let cores = cpu.double ?? cpu.int.map(Double.init), cores > 0 else { throw bad("[sandbox] cpu must be a number of cores such as 0.5") }
                configuration.limits.cpus = cores
            }
            if let pids = sandbox["pids"] {
                guard let count = pids.int, count > 0 else { throw bad("[sandbox] pids must be a positive integer") }
                configuration.limits.pids = count
            }
            if let uids = sandbox["host_uids"] {
                let parts = uids.string?.split(separator: "-").compactMap { UInt32($0) } ?? []
                guard parts.count == 2, parts[0] >= 1000, parts[0] <= parts[1], parts[1] < UInt32.max else {
                    throw bad("[sandbox] host_uids must be \"FIRST-LAST\", a range of unused host uids from 1000 up, e.g. \"900000000-900099999\"")
                }
                configuration.hostUIDs = parts[0]...parts[1]
            }
            do { try configuration.limits.validate() } catch { throw bad("[sandbox] \(error.message)") }
        }
        return configuration
    }

    /// `[cluster]`: name and advertised_url required, node_id the host name by default.
    static func clusterSettings(_ table: TOMLTable?, bad: @escaping (String) -> AeroGridError) throws(AeroGridError) -> ClusterSettings {
        guard let table else { throw bad("[cluster] must be a table") }
        let known = [
            "name", "node_id", "advertised_url", "snapshot_bytes", "snapshot_records", "slots", "session_timeout", "heartbeat_interval",
            "changelog_retention_bytes",
        ]
        for key in table.keys where !known.contains(key) {
            throw bad("[cluster] unknown key '\(key)' (known: \(known.joined(separator: ", ")))")
        }
        guard let name = table["name"]?.string else { throw bad("[cluster] name = \"…\" is required (the prefix of the cluster's topics)") }
        if let problem = ClusterSettings.nameProblem(name) { throw bad("[cluster] \(problem)") }
        let nodeID = table["node_id"].map { $0.string ?? "" } ?? ProcessInfo.processInfo.hostName
        if let problem = ClusterSettings.nodeIDProblem(nodeID) { throw bad("[cluster] \(problem)") }
        guard let url = table["advertised_url"]?.string else {
            throw bad("[cluster] advertised_url = \"http://HOST:PORT\" is required (where the other nodes reach this one)")
        }
        if let problem = ClusterSettings.advertisedURLProblem(url) { throw bad("[cluster] \(problem)") }
        var settings = ClusterSettings(name: name, nodeID: nodeID, advertisedURL: url)
        var limits = Limits(table, section: "cluster", bad: bad)
        limits.known = known
        try limits.bytes("snapshot_bytes", into: &settings.snapshotBytes)
        try limits.count("snapshot_records", into: &settings.snapshotRecords)
        var slots = Int(settings.slots)
        try limits.count("slots", into: &slots)
        guard slots <= 10_000 else { throw bad("[cluster] slots must be 1 to 10000 (the placement and changelog topics' partitions)") }
        settings.slots = Int32(slots)
        try limits.seconds("session_timeout", into: &settings.sessionTimeout)
        try limits.seconds("heartbeat_interval", into: &settings.heartbeatInterval)
        guard settings.heartbeatInterval < settings.sessionTimeout else {
            throw bad("[cluster] heartbeat_interval must be shorter than session_timeout (Kafka wants a third of it or less)")
        }
        try limits.bytes("changelog_retention_bytes", into: &settings.changelogRetentionBytes)
        return settings
    }

    /// Reads the limits of one section, each checked (a size such as "32M", a whole count, a
    /// number of seconds), and refuses a key it does not know.
    struct Limits {
        let table: TOMLTable
        let section: String
        let bad: (String) -> AeroGridError
        var known: [String] = []

        init(_ table: TOMLTable, section: String, bad: @escaping (String) -> AeroGridError) {
            self.table = table
            self.section = section
            self.bad = bad
        }

        mutating func count(_ key: String, into value: inout Int) throws(AeroGridError) {
            try read(key, into: &value, "a whole number from 1 to 1000000000") { entry -> Int? in
                guard let number = entry.int, (1...1_000_000_000).contains(number) else { return nil }
                return number
            }
        }

        mutating func bytes(_ key: String, into value: inout Int) throws(AeroGridError) {
            try read(key, into: &value, "a size from 1 byte to 1T, such as \"64K\" or \"32M\"") { entry -> Int? in
                guard let size: UInt64 = entry.string.flatMap(parseSize) ?? entry.int.flatMap(UInt64.init(exactly:)),
                    (1...(UInt64(1) << 40)).contains(size)
                else { return nil }
                return Int(size)
            }
        }

        mutating func seconds(_ key: String, into value: inout Duration) throws(AeroGridError) {
            try read(key, into: &value, "a number of seconds above 0 and at most 86400") { entry -> Duration? in
                guard let seconds: Double = entry.double ?? entry.int.map(Double.init), seconds > 0, seconds <= 86_400 else { return nil }
                return .milliseconds(Int64(seconds * 1000))
            }
        }

        /// The key's value, converted and checked by `convert` (nil: refused with `rule`).
        private mutating func read<Value>(
            _ key: String, into value: inout Value, _ rule: String,
            _ convert: (any TOMLValueConvertible) -> Value?
        ) throws(AeroGridError) {
            known.append(key)
            guard let entry = table[key] else { return }
            guard let converted = convert(entry) else { throw bad("[\(section)] \(key) must be \(rule)") }
            value = converted
        }

        func finish() throws(AeroGridError) {
            for key in table.keys where !known.contains(key) {
                throw bad("[\(section)] unknown key '\(key)' (known: \(known.joined(separator: ", ")))")
            }
        }
    }

    /// `https://host[:port]` with nothing after it (it is written into the add-in's XML).
    static func publicURL(_ text: String) -> String? {
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        guard trimmed.hasPrefix("https://"), trimmed.utf8.count <= 255 else { return nil }
        let authority = trimmed.dropFirst("https://".count)
        var host = Substring(authority)
        if let colon = authority.lastIndex(of: ":"), !authority.hasSuffix("]") {
            guard let port = Int(authority[authority.index(after: colon)...]), (1...65535).contains(port) else { return nil }
            host = authority[..<colon]
        }
        guard isPlainURLHost(host) else { return nil }
        return trimmed
    }
}
