import AeroGridAPI
import AeroGridKafka
import AeroGridRuntime
import AeroGridSandbox
import AeroGridStore
import Foundation
import Hummingbird
import Logging
import Testing

@testable import AeroGridServer

private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

@Suite struct OpenAPIRoutesTests {
    /// Every served route is documented and every documented route is served.
    @Test func servedRoutesAndTheDocumentMatchBothWays() async throws {
        let fixture = try await RouteContractTests.Fixture.make()
        defer { try? FileManager.default.removeItem(atPath: fixture.directory) }
        let router = fixture.router

        // The stream is served by the WebSocket upgrade, beside the router.
        let served = Set(["GET \(StreamGateway.path)"]).union(
            router.routes.map { route in
                let path = route.path.description.split(separator: "/").map { component in
                    component.hasPrefix(":") ? "{\(component.dropFirst())}" : String(component)
                }.joined(separator: "/")
                return "\(route.method.rawValue) /\(path)"
            })
        let document = try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.bytes)) as! [String: Any]
        let paths = document["paths"] as! [String: [String: Any]]
        let documented = Set(
            paths.flatMap { path, operations in
                operations.keys.filter { ["get", "post", "put", "patch", "delete"].contains($0) }.map { "\($0.uppercased()) \(path)" }
            })
        #expect(served.subtracting(documented).sorted() == [], "served but not in openapi.json")
        #expect(documented.subtracting(served).sorted() == [], "in openapi.json but not served")
        #expect(served.count > 15)
    }
}

@Suite struct ConfigurationTests {
    @Test func aMinimalFileParses() throws {
        let configuration = try ServerConfiguration.parse(
            """
            data_dir = "state"
            listen = "0.0.0.0:8443"
            [kafka]
            bootstrap = "k1:9092"
            [kafka.properties]
            "fetch.wait.max.ms" = 10
            [sandbox]
            memory = "128M"
            """, source: "aerogrid.toml", relativeTo: "/etc/aerogrid")
        #expect(configuration.dataDirectory == "/etc/aerogrid/state")
        #expect(configuration.listen == .init(host: "0.0.0.0", port: 8443))
        #expect(configuration.kafkaProperties == ["fetch.wait.max.ms": "10"])
        #expect(configuration.limits.memoryBytes == 128 << 20)
    }

    /// docs/operations.md shows every [http], [stream] and [apps] key at its default: the
    /// example parses, and gives exactly the defaults.
    @Test func theDocumentedLimitsAreTheDefaults() throws {
        let document = try String(contentsOfFile: "\(repository)/docs/operations.md", encoding: .utf8)
        let start = try #require(document.range(of: "An example with every one of these keys at its default:\n\n```toml\n"))
        let end = try #require(document.range(of: "```", range: start.upperBound..<document.endIndex))
        let example = String(document[start.upperBound..<end.lowerBound])
        let configuration = try ServerConfiguration.parse(
            "data_dir = \"d\"\nlisten = \"a:1\"\n[kafka]\nbootstrap = \"k\"\n" + example, source: "operations.md", relativeTo: "")
        #expect(configuration.connections == ConnectionLimits())
        #expect(configuration.stream == StreamLimits())
        #expect(configuration.appLimits == AppLimits())
        for key in ["max_anonymous_connections", "subscriptions_per_connection", "pending_bytes", "output_bytes_per_second"] {
            #expect(example.contains(key + " = "))
        }
    }

    @Test func limitsAreReadFromTheirSections() throws {
        let configuration = try ServerConfiguration.parse(
            """
            data_dir = "state"
            listen = "0.0.0.0:8443"
            public_url = "https://aerogrid.example.com:8443/"
            [kafka]
            bootstrap = "k1:9092"
            [sandbox]
            host_uids = "500000-500999"
            [http]
            max_anonymous_connections = 10
            header_timeout = 2.5
            [apps]
            pending_bytes = "8M"
            batch_timeout = 60
            log_bytes = 65536
            [stream]
            reply_bytes = "256K"
            subscriptions_per_connection = 20
            """, source: "aerogrid.toml", relativeTo: "/etc/aerogrid")
        #expect(configuration.publicURL == "https://aerogrid.example.com:8443")
        #expect(configuration.hostUIDs == 500_000...500_999)
        #expect(configuration.connections.anonymous == 10 && configuration.connections.headerTimeout == .milliseconds(2500))
        #expect(configuration.connections.anonymousPerNetwork == ConnectionLimits().anonymousPerNetwork)
        #expect(configuration.appLimits.pendingBytes == 8 << 20 && configuration.appLimits.batchTimeout == .seconds(60))
        #expect(configuration.appLimits.log.bytes == 65536 && configuration.appLimits.log.lines == AppLog.Limits().lines)
        #expect(configuration.stream.replyBytes == 256 << 10 && configuration.stream.subscriptionsPerConnection == 20)
    }

    @Test(arguments: [
        ("listen = \"x\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"", "listen must be"),
        ("listen = \"a:1\"\n[kafka]\nbootstrap = \"k\"", "data_dir"),
        ("listen = \"a:1\"\ndata_dir = \"d\"", "[kafka] bootstrap"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\nport = 3\n[kafka]\nbootstrap = \"k\"", "unknown key 'port'"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[sandbox]\nmemory = \"lots\"", "[sandbox] memory"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[apps]\npending_bytes = \"2T\"", "[apps] pending_bytes must be a size"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[apps]\npending = 3", "[apps] unknown key 'pending'"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[stream]\noperations_per_second = 0", "[stream] operations_per_second"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[http]\nheader_timeout = -1", "[http] header_timeout"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\npublic_url = \"http://x\"\n[kafka]\nbootstrap = \"k\"", "public_url must be"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\npublic_url = \"https://x/<script>\"\n[kafka]\nbootstrap = \"k\"", "public_url must be"),
        ("listen = \"a:1\"\ndata_dir = \"d\"\n[kafka]\nbootstrap = \"k\"\n[sandbox]\nhost_uids = \"0-10\"", "[sandbox] host_uids"),
    ])
    func mistakesAreNamed(text: String, expected: String) {
        #expect { try ServerConfiguration.parse(text, source: "aerogrid.toml", relativeTo: "") } throws: { error in
            "\(error)".contains(expected)
        }
    }
}

@Suite struct ManifestAndTokenTests {
    @Test func manifestRules() throws {
        #expect(try BundleManifest.parse("name = \"ordersapp\"") == BundleManifest(name: "ordersapp", entrypoint: "app.py", runtime: "python3.11"))
        for (text, expected) in [
            ("entrypoint = \"a.py\"", "needs name"),
            ("name = \"Orders\"", "not valid"),
            ("name = \"a\"\nruntime = \"ruby\"", "unknown runtime 'ruby'"),
            ("name = \"a\"\nentrypoint = \"../x.py\"", "relative path inside the bundle"),
            ("name = [", "not valid TOML"),
        ] {
            #expect { try BundleManifest.parse(text) } throws: { error in "\(error)".contains(expected) }
        }
    }

    @Test func tokensAreRandomAndOnlyTheirHashIsKept() {
        let first = TokenSecret.generate()
        let second = TokenSecret.generate()
        #expect(first != second)
        #expect(first.hasPrefix("agt_") && first.count == 47)
        #expect(TokenSecret.isWellFormed(first))
        #expect(!TokenSecret.isWellFormed("short"))
        #expect(TokenSecret.sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(Role.viewer < Role.developer && Role.developer < Role.admin)
    }
}
