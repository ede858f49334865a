import AeroGridCluster
import AeroGridCore
import AeroGridKafka
import AeroGridRuntime
import AeroGridServer
import AeroGridStore
import ArgumentParser
import Foundation
import Logging
import Synchronization

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the platform: the REST API and every tenant's apps, until SIGTERM.",
        discussion: """
            The first start creates an operator token and prints it once; set \
            AEROGRID_OPERATOR_TOKEN to choose it instead. See docs/operations.md for the \
            configuration file and docs/api.md for the API.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "The configuration file (TOML).")
    var config: String = "aerogrid.toml"

    @Flag(
        help: """
            With [cluster]: when the cluster's log cannot be followed from this node's view (emptied, replaced, \
            or this node kept its control plane to itself so far), publish the view as the snapshot of a new \
            cluster instead of refusing to start (docs/cluster.md).
            """)
    var seedLog = false

    func run() async throws {
        let logger = global.makeLogger(label: "aerogrid.server")
        let configuration = try ServerConfiguration.load(path: config)
        try await runServer(
            configuration, logger: logger, operatorToken: ProcessInfo.processInfo.environment["AEROGRID_OPERATOR_TOKEN"], seedLogFromView: seedLog)
    }
}

/// Opens the store, makes the operator token on a first start, and serves until stopped.
func runServer(
    _ configuration: ServerConfiguration, logger: Logger, operatorToken: String?,
    outOfRangePolicy: OutOfRangePolicy = .fail, seedLogFromView: Bool = false, afterBootstrap: (ControlWrites) async throws -> Void = { _ in },
    onListening: @escaping @Sendable (String) -> Void = { _ in }
) async throws {
    let data = configuration.dataDirectory
    try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
    // The sandboxed apps (another uid) read their bundles below it.
    chmod(data, 0o755)
    // Token hashes and the audit: the owner's only. Made 0600 before SQLite opens it, which
    // gives its -wal and -shm files the same mode.
    let database = "\(data)/aerogrid.sqlite"
    for path in [database, database + "-wal", database + "-shm"] where FileManager.default.fileExists(atPath: path) {
        chmod(path, 0o600)
    }
    if !FileManager.default.fileExists(atPath: database) {
        _ = FileManager.default.createFile(atPath: database, contents: nil, attributes: [.posixPermissions: 0o600])
    }
    let store = try Store(path: database)
    let writes: ControlWrites
    if let cluster = configuration.cluster {
        // Its view is brought up to the cluster's log before it answers anything.
        let kafka = KafkaConfiguration(bootstrapServers: configuration.kafkaBootstrap, properties: configuration.kafkaProperties)
        writes = ControlWrites(
            store: store, log: try ConfigLog(kafka: kafka, topic: cluster.topics.config, logger: logger),
            snapshotEvery: (cluster.snapshotBytes, cluster.snapshotRecords), nodeID: cluster.nodeID, logger: logger)
        do {
            try await writes.catchUp(seedFromView: seedLogFromView)
        } catch {
            throw AeroGridError(.invalidConfiguration, "node \(cluster.nodeID) of cluster \(cluster.name) cannot start: \(error)")
        }
        writes.startFollowing()
        logger.info("node \(cluster.nodeID) of cluster \(cluster.name) follows \(cluster.topics.config)")
    } else {
        writes = ControlWrites(store: store)
    }
    if let secret = try await ControlPlaneServer.bootstrapOperator(writes: writes, fromEnvironment: operatorToken) {
        printLine("operator token: \(secret)")
        printLine("(shown once: keep it; it creates tenants)")
    }
    try await afterBootstrap(writes)
    var server = ControlPlaneServer(
        configuration: configuration, defaultProfile: try InstallLayout.resource("sandbox-profiles/python.json"),
        defaultSDK: try InstallLayout.resource("python"), logger: logger)
    server.outOfRangePolicy = outOfRangePolicy
    server.sites = WebSites.installed(publicURL: configuration.publicURL)
    try await server.run(writes: writes) { url in
        printLine("listening on \(url)")
        onListening(url)
    }
}

struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run the platform on embedded defaults: in-memory Kafka, ./.aerogrid, a demo tenant with the orders app.",
        discussion: """
            HTTPS (with a certificate authority made for this machine, since Office add-ins load \
            only over HTTPS) and plain HTTP for curl. The demo tenant gets Examples/ordersapp \
            deployed and started, and a producer writes orders at a steady rate (--no-demo \
            leaves both out). The URLs and tokens are printed and kept in .aerogrid/dev-tokens \
            (mode 0600), so a rerun shows the same ones. Ctrl-C stops everything.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: "Where the platform keeps its state.")
    var dir: String = ".aerogrid"

    @Option(help: "HTTPS port.")
    var httpsPort: Int = 8443

    @Option(help: "Plain HTTP port.")
    var httpPort: Int = 8080

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Flag(help: "Leave out the demo: no app deployed, no orders produced.")
    var noDemo = false

    @Option(help: "Orders a second the demo producer writes.")
    var demoRate = 20

    func run() async throws {
        let logger = global.makeLogger(label: "aerogrid.dev")
        let directory = URL(fileURLWithPath: dir).standardizedFileURL.path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        let kafka = try EmbeddedKafka(logger: logger)
        try kafka.createTopic("orders", partitions: 8)
        let tls = try DevCertificates.ensure(in: "\(directory)/tls", host: host)

        var configuration = ServerConfiguration(
            dataDirectory: directory, listen: .init(host: host, port: httpsPort), kafkaBootstrap: kafka.bootstrapServers)
        configuration.httpListen = .init(host: host, port: httpPort)
        configuration.tls = tls
        configuration.publicURL = "https://\(host.contains(":") ? "[\(host)]" : host):\(httpsPort)"
        // A cluster of one on the embedded Kafka, as a production node keeps its control plane.
        // Kafka starts empty on every run: the node publishes its view as a new cluster's.
        var cluster = ClusterSettings(
            name: "dev", nodeID: "dev", advertisedURL: "http://\(host.contains(":") ? "[\(host)]" : host):\(httpPort)")
        cluster.soleNode = true
        for (topic, partitions) in cluster.topics.required { try kafka.createTopic(topic, partitions: partitions) }
        configuration.cluster = cluster

        var tokens = DevTokens(path: "\(directory)/dev-tokens")
        let operatorToken = tokens.values["operator"] ?? AeroGridServer.newTokenSecret()
        tokens.values["operator"] = operatorToken
        try tokens.save()
        let rerun = FileManager.default.fileExists(atPath: "\(directory)/aerogrid.sqlite")
        let demo = DevDemo(
            api: "http://\(host):\(httpPort)", kafka: kafka.bootstrapServers, rate: noDemo ? 0 : demoRate, logger: logger)
        let shared = DevBlock()
        try await runServer(
            configuration, logger: logger, operatorToken: operatorToken, outOfRangePolicy: .resetToEarliest, seedLogFromView: true,
            afterBootstrap: { writes in
                if try await writes.store.tenant("demo") == nil {
                    tokens.values["demo-admin"] = try await writes.createTenant(
                        "demo", topics: ["orders", "fx-prices", "pixels", "demo.*"], hostUIDs: configuration.hostUIDs)
                    tokens.values["demo-developer"] = nil
                    tokens.values["demo-viewer"] = nil
                } else if tokens.values["demo-admin"] == nil {
                    // The tokens file was lost: new tokens for the same tenant (a name is never reused).
                    tokens.values["demo-admin"] = try await writes.createToken(tenant: "demo", name: "admin", role: .admin)
                    tokens.values["demo-developer"] = nil
                    tokens.values["demo-viewer"] = nil
                }
                for role in ["developer", "viewer"] where tokens.values["demo-\(role)"] == nil {
                    tokens.values["demo-\(role)"] = try await writes.createToken(tenant: "demo", name: role, role: Role(rawValue: role)!)
                }
                try tokens.save()
                shared.developerToken.withLock { $0 = tokens.values["demo-developer"]! }
                let ca = "\(directory)/tls/ca.pem"
                let api = "http://\(host):\(httpPort)"
                shared.lines.withLock {
                    $0 = [
                        "AeroGrid dev platform is ready",
                        "  console:          https://\(host):\(httpsPort)/   (sign in with a token below; your browser must trust \(ca))",
                        "  API for curl:     \(api)/api/v1",
                        "  Kafka bootstrap:  \(kafka.bootstrapServers)   (kcat -b \(kafka.bootstrapServers) -L)",
                        "  operator token:   \(operatorToken)",
                        "  admin token:      \(tokens.values["demo-admin"]!)   (tenant demo)",
                        "  developer token:  \(tokens.values["demo-developer"]!)   (tenant demo)",
                        "  viewer token:     \(tokens.values["demo-viewer"]!)   (tenant demo)",
                        "  Excel add-in:     https://\(host):\(httpsPort)/excel/manifest.xml   (Excel must trust \(ca); see docs/excel.md)",
                        "  watch a grid:     AEROGRID_SERVER=\(api) AEROGRID_TOKEN=\(tokens.values["demo-viewer"]!) aerogrid grid watch ordersapp product_sum",
                        noDemo
                            ? "  demo:             left out (--no-demo)"
                            : "  demo:             ordersapp deployed and started; \(demoRate) orders/s into topic orders",
                        rerun ? "  note:             Kafka lives in memory and starts empty: the apps' checkpoints reset, their grids start over" : nil,
                        "  tokens are kept in \(tokens.path); Ctrl-C stops everything",
                    ].compactMap { $0 }
                }
            },
            onListening: { url in
                // Once both listeners answer (they start concurrently): the demo, then the block
                // (it names both ports and says the demo is there).
                let both = shared.listening.withLock { listening in
                    listening.insert(url)
                    return listening.count == 2
                }
                guard both else { return }
                Task {
                    await demo.start(developerToken: shared.developerToken.withLock { $0 })
                    for line in shared.lines.withLock({ $0 }) { printLine(line) }
                }
            })
        await demo.stop()
        withExtendedLifetime(kafka) {}
    }
}

/// What the bootstrap learns and the listener callback prints.
final class DevBlock: Sendable {
    let lines = Mutex<[String]>([])
    let developerToken = Mutex("")
    let listening = Mutex<Set<String>>([])
}

/// `aerogrid dev`'s demo: the orders app deployed and started through the API, and orders
/// produced at a steady rate into the embedded Kafka.
final class DevDemo: Sendable {
    let api: String
    let kafka: String
    let rate: Int
    let logger: Logger
    private let producing = Mutex<Task<Void, Never>?>(nil)

    init(api: String, kafka: String, rate: Int, logger: Logger) {
        self.api = api
        self.kafka = kafka
        self.rate = rate
        self.logger = logger
    }

    func start(developerToken: String) async {
        guard rate > 0 else { return }
        do {
            let client = APIClient(base: URL(string: api)!, token: developerToken)
            let bundle = try BundleZip.make(directory: try InstallLayout.resource("Examples/ordersapp"))
            _ = try await client.request("POST", "api/v1/apps", body: bundle, contentType: "application/zip")
            _ = try await client.request("POST", "api/v1/apps/ordersapp/start")
        } catch {
            logger.error("the demo could not deploy Examples/ordersapp: \(error)")
            return
        }
        let producer: KafkaProducer
        do {
            producer = try KafkaProducer(configuration: KafkaConfiguration(bootstrapServers: kafka, properties: ["linger.ms": "20"]), logger: logger)
        } catch {
            logger.error("the demo producer could not start: \(error)")
            return
        }
        let products = [
            "Widget", "Gadget", "Gizmo", "Sprocket", "Doohickey", "Thingamajig", "Flux Capacitor",
            "Left-handed Spanner", "Cable Organizer", "How to Win Friends",
        ]
        let interval = Duration.nanoseconds(1_000_000_000 / Int64(rate))
        producing.withLock {
            $0 = Task { [logger] in
                var next = ContinuousClock.now
                var index = 0
                while !Task.isCancelled {
                    next += interval
                    try? await Task.sleep(until: next)
                    index += 1
                    let product = products.randomElement()!
                    let order = #"{"product":"\#(product)","quantity":\#(Int.random(in: 1...50))}"#
                    do {
                        try await producer.enqueue(topic: "orders", key: Array("demo-\(index)".utf8), value: Array(order.utf8))
                    } catch {
                        logger.warning("demo producer: \(error)")
                    }
                }
                try? await producer.flush(timeout: .seconds(2))
                await producer.close()
            }
        }
    }

    /// Stops producing and waits for the producer's last flush, before Kafka goes.
    func stop() async {
        let task = producing.withLock { $0 }
        task?.cancel()
        await task?.value
    }
}

/// `.aerogrid/dev-tokens`: `name=secret` lines, readable by the owner only.
struct DevTokens {
    let path: String
    var values: [String: String] = [:]

    init(path: String) {
        self.path = path
        for line in ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
    }

    func save() throws {
        let text = values.keys.sorted().map { "\($0)=\(values[$0]!)" }.joined(separator: "\n") + "\n"
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        chmod(path, 0o600)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }
}

/// A certificate authority and a server certificate for this machine, made once with
/// openssl: browsers and Excel trust the server once the CA is trusted.
enum DevCertificates {
    static func ensure(in directory: String, host: String) throws -> ServerConfiguration.TLS {
        let tls = ServerConfiguration.TLS(certificate: "\(directory)/server.pem", key: "\(directory)/server.key")
        if FileManager.default.fileExists(atPath: tls.certificate) && FileManager.default.fileExists(atPath: tls.key) { return tls }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o700)
        let names = host == "127.0.0.1" || host == "localhost" ? "DNS:localhost,IP:127.0.0.1" : "DNS:localhost,IP:127.0.0.1,IP:\(host)"
        try "subjectAltName=\(names)\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try openssl(
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "825",
                "-subj", "/CN=AeroGrid development CA",
            ], in: directory)
        try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"], in: directory)
        try openssl(
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
                "-days", "825", "-extfile", "server.ext",
            ], in: directory)
        return tls
    }

    private static func openssl(_ arguments: [String], in directory: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        do { try process.run() } catch {
            throw ValidationError("cannot run /usr/bin/openssl (apt-get install openssl): \(error)")
        }
        let output = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(String(decoding: output, as: UTF8.self))")
        }
    }
}

/// The web console at `/`, the Excel add-in at `/excel/` and the stream client both load at
/// `/shared/`, from the installation.
enum WebSites {
    static let consolePolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    /// Office hosts frame the add-in and it loads Office.js from Microsoft's CDN.
    static let excelPolicy =
        "default-src 'self'; script-src 'self' https://appsforoffice.microsoft.com; "
        + "style-src 'self' 'unsafe-inline'; img-src 'self' data: https:; connect-src 'self' https://appsforoffice.microsoft.com; "
        + "object-src 'none'; base-uri 'none'; "
        + "frame-ancestors 'self' https://*.office.com https://*.office365.com https://*.officeapps.live.com https://*.microsoft.com"

    /// `publicURL`: where clients reach the server over HTTPS, which the add-in's manifest
    /// names (Office loads add-ins over HTTPS only). Without it the manifest is refused.
    static func installed(publicURL: String?) -> [StaticSite] {
        var sites: [StaticSite] = []
        if let console = try? InstallLayout.resource("console") {
            sites.append(StaticSite(root: console, prefix: "/", contentSecurityPolicy: consolePolicy))
        }
        if let excel = try? InstallLayout.resource("clients/excel") {
            sites.append(StaticSite.excelAddIn(root: excel, contentSecurityPolicy: excelPolicy, publicURL: publicURL))
        }
        // One file for both: the console's modules import it and the add-in's pages load it,
        // from this same origin (no CORS header needed). A script runs under its page's
        // Content-Security-Policy, not the one it is served with.
        if let shared = try? InstallLayout.resource("clients/shared") {
            sites.append(StaticSite(root: shared, prefix: "/shared/", contentSecurityPolicy: consolePolicy))
        }
        return sites
    }
}
