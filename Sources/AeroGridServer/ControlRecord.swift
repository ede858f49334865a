import AeroGridCore
import AeroGridStore
import Foundation

/// One control-plane write as the config log carries it (docs/cluster.md), and as a single
/// node applies it without a log. JSON: `{"v":1,"type":"tenant.create","write":…,"at":…,
/// "body":{…}}`. Everything the apply needs is in it — ids, times, host uid ranges, the
/// quota defaults admission uses — so every node applying it decides alike; a token's
/// secret never is (its SHA-256 only).
struct ControlRecord: Sendable, Equatable {
    /// The format this node writes. It reads this one and every one before it.
    static let formatVersion = 1

    /// The writer's id for this write: a retry of it carries the same id and is not applied twice.
    var writeID: String
    /// The cluster whose log it was written to (nil on a single node): a node never applies
    /// a record of another cluster's log, which would make its view a mix of two.
    var clusterID: String?
    /// The attempt at the write that this record is (a retry of it is another attempt).
    var attempt: String?
    /// The writer's clock when it wrote, which the apply uses wherever a time is stored.
    var at: Date
    var change: ControlChange

    init(writeID: String, clusterID: String? = nil, at: Date, change: ControlChange) {
        self.writeID = writeID
        self.clusterID = clusterID
        self.at = at
        self.change = change
    }

    /// A new write's id: `w_` and 16 hex digits.
    static func newWriteID() -> String { RandomID.make(prefix: "w_") }

    /// The id of a write made for a request with an idempotency key (`callerKey`: the
    /// caller's token id and its key): the same for every retry of that request, anywhere.
    static func writeID(callerKey: String, type: String) -> String {
        "k_" + String(TokenSecret.sha256Hex("\(callerKey)\n\(type)").prefix(32))
    }
}

/// What one write changes. Each case names its type in the record (`tenant.create` …).
enum ControlChange: Sendable, Equatable {
    /// A new cluster's first record: its id.
    case clusterInit(ClusterInit)
    /// A node says where it is reached, at each start.
    case nodeHello(NodeHello)
    case createTenant(CreateTenant)
    case deleteTenant(TenantName)
    case setTenantQuota(TenantQuotaChange)
    case setTenantACL(TenantACL)
    /// Tenants without a host uid of their own (made before uids were kept) get one.
    case assignHostUIDs(HostUIDRange)
    case createToken(TokenFields)
    case revokeToken(TokenRevocation)
    case deployApp(AppDeploy)
    case startApp(AppStart)
    case stopApp(AppName)
    case setAppQuota(AppQuotaChange)
    case deleteApp(AppName)
    /// One part of a snapshot of the whole control plane (docs/cluster.md, "Snapshots").
    case snapshot(SnapshotPart)

    struct SnapshotPart: Codable, Sendable, Equatable {
        var snapshotId: String
        var clusterId: String
        /// The offset of the first record not in it: a node seeded from it reads on from there.
        var covers: Int64
        var part: Int
        var parts: Int
        var tables: ControlTables
    }

    struct ClusterInit: Codable, Sendable, Equatable {
        var clusterId: String
        /// What the cluster's nodes show each other to fetch a bundle from a peer.
        var peerSecret: String?
    }

    struct NodeHello: Codable, Sendable, Equatable {
        var nodeId: String
        var advertisedUrl: String
    }

    struct TenantName: Codable, Sendable, Equatable {
        var name: String
    }

    struct CreateTenant: Codable, Sendable, Equatable {
        var tenantId: String
        var name: String
        /// Its topic ACL's rules; nil: the default, its own prefix.
        var topics: [String]?
        var hostUids: HostUIDRange
        var token: TokenFields
    }

    struct HostUIDRange: Codable, Sendable, Equatable {
        var low: UInt32
        var high: UInt32
    }

    /// A token as stored: its secret only as a hash.
    struct TokenFields: Codable, Sendable, Equatable {
        var id: String
        /// nil: an operator token.
        var tenant: String?
        var name: String
        var role: String
        var secretSha256: String
    }

    struct TokenRevocation: Codable, Sendable, Equatable {
        var tenant: String
        var id: String
    }

    /// An operator's change to a quota, merged into the stored one when applied (so two
    /// changes to different values both hold).
    struct QuotaChange: Codable, Sendable, Equatable {
        var numbers: [String: Int]
        var cpus: Double?
        var reset: [String]
    }

    struct TenantQuotaChange: Codable, Sendable, Equatable {
        var name: String
        var quota: QuotaChange
    }

    struct TenantACL: Codable, Sendable, Equatable {
        var name: String
        var topics: [String]
    }

    struct AppName: Codable, Sendable, Equatable {
        var tenant: String
        var name: String
    }

    struct AppDeploy: Codable, Sendable, Equatable {
        var tenant: String
        var name: String
        /// The tenant's id when the bundle was stored: bundles are kept per tenant id.
        var tenantId: String
        var bundleDigest: String
        var entrypoint: String
        var runtime: String
        /// A new app's immutable id (the writer's choice; an app that exists keeps its own).
        /// Absent in records written before apps had ids: then derived, alike on every node.
        var appId: String? = nil
    }

    /// The writer's defaults for an app quota's values left unset: admission counts with them.
    struct AppDefaults: Codable, Sendable, Equatable {
        var memoryBytes: UInt64
        var cpus: Double
        var pids: Int
        var gridRows: Int
    }

    struct AppStart: Codable, Sendable, Equatable {
        var tenant: String
        var name: String
        /// Whether a running app restarts (else it keeps running).
        var restart: Bool
        var appDefaults: AppDefaults
    }

    struct AppQuotaChange: Codable, Sendable, Equatable {
        var tenant: String
        var name: String
        var quota: QuotaChange
        var appDefaults: AppDefaults
    }

    /// The record's `type`.
    var type: String {
        switch self {
        case .clusterInit: "cluster.init"
        case .nodeHello: "node.hello"
        case .createTenant: "tenant.create"
        case .deleteTenant: "tenant.delete"
        case .setTenantQuota: "tenant.quota"
        case .setTenantACL: "tenant.acl"
        case .assignHostUIDs: "tenant.host-uids"
        case .createToken: "token.create"
        case .revokeToken: "token.revoke"
        case .deployApp: "app.deploy"
        case .startApp: "app.start"
        case .stopApp: "app.stop"
        case .setAppQuota: "app.quota"
        case .deleteApp: "app.delete"
        case .snapshot: "snapshot"
        }
    }
}

extension ControlRecord {
    /// A record this node cannot apply, saying why.
    struct Unreadable: Error, Sendable, CustomStringConvertible {
        /// A format newer than this node reads: the node must not go on past it.
        let newerFormat: Int?
        let description: String
    }

    private struct Envelope<Body: Codable>: Codable {
        var v: Int
        var type: String
        var write: String
        var cluster: String?
        var attempt: String?
        var at: Double
        var body: Body
    }

    private struct Header: Decodable {
        var v: Int
        var type: String
        var write: String
        var cluster: String?
        var attempt: String?
        var at: Double
    }

    // Keys are the fields' names as they are (no case conversion: it would also rewrite a
    // quota's keys, which are data).
    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return encoder
    }()

    private static let decoder = JSONDecoder()

    /// The record's bytes, in the current format.
    func encoded() -> [UInt8] {
        func envelope<Body: Codable>(_ body: Body) -> [UInt8] {
            let value = Envelope(
                v: Self.formatVersion, type: change.type, write: writeID, cluster: clusterID, attempt: attempt, at: at.timeIntervalSince1970, body: body)
            // Encoding these plain structs cannot fail.
            return Array((try? Self.encoder.encode(value)) ?? Data())
        }
        switch change {
        case .clusterInit(let body): return envelope(body)
        case .nodeHello(let body): return envelope(body)
        case .createTenant(let body): return envelope(body)
        case .deleteTenant(let body): return envelope(body)
        case .setTenantQuota(let body): return envelope(body)
        case .setTenantACL(let body): return envelope(body)
        case .assignHostUIDs(let body): return envelope(body)
        case .createToken(let body): return envelope(body)
        case .revokeToken(let body): return envelope(body)
        case .deployApp(let body): return envelope(body)
        case .startApp(let body): return envelope(body)
        case .stopApp(let body): return envelope(body)
        case .setAppQuota(let body): return envelope(body)
        case .deleteApp(let body): return envelope(body)
        case .snapshot(let body): return envelope(body)
        }
    }

    /// Reads a record of this format or an earlier one.
    init(decoding bytes: [UInt8]) throws(Unreadable) {
        let data = Data(bytes)
        guard let header = try? Self.decoder.decode(Header.self, from: data) else {
            throw Unreadable(newerFormat: nil, description: "not a control record (no v, type, write and at)")
        }
        guard header.v >= 1 else { throw Unreadable(newerFormat: nil, description: "format version \(header.v) does not exist") }
        guard header.v <= Self.formatVersion else {
            throw Unreadable(
                newerFormat: header.v, description: "format version \(header.v) is newer than this node reads (\(Self.formatVersion)): upgrade it")
        }
        func body<Body: Codable>(_ type: Body.Type) throws(Unreadable) -> Body {
            do {
                return try Self.decoder.decode(Envelope<Body>.self, from: data).body
            } catch {
                throw Unreadable(newerFormat: nil, description: "a \(header.type) record whose body does not read: \(error)")
            }
        }
        let change: ControlChange =
            switch header.type {
            case "cluster.init": .clusterInit(try body(ControlChange.ClusterInit.self))
            case "node.hello": .nodeHello(try body(ControlChange.NodeHello.self))
            case "tenant.create": .createTenant(try body(ControlChange.CreateTenant.self))
            case "tenant.delete": .deleteTenant(try body(ControlChange.TenantName.self))
            case "tenant.quota": .setTenantQuota(try body(ControlChange.TenantQuotaChange.self))
            case "tenant.acl": .setTenantACL(try body(ControlChange.TenantACL.self))
            case "tenant.host-uids": .assignHostUIDs(try body(ControlChange.HostUIDRange.self))
            case "token.create": .createToken(try body(ControlChange.TokenFields.self))
            case "token.revoke": .revokeToken(try body(ControlChange.TokenRevocation.self))
            case "app.deploy": .deployApp(try body(ControlChange.AppDeploy.self))
            case "app.start": .startApp(try body(ControlChange.AppStart.self))
            case "app.stop": .stopApp(try body(ControlChange.AppName.self))
            case "app.quota": .setAppQuota(try body(ControlChange.AppQuotaChange.self))
            case "app.delete": .deleteApp(try body(ControlChange.AppName.self))
            case "snapshot": .snapshot(try body(ControlChange.SnapshotPart.self))
            default: throw Unreadable(newerFormat: nil, description: "unknown record type '\(header.type.cut(toBytes: 64))'")
            }
        guard header.at.isFinite, header.write.utf8.count <= 128, (header.cluster?.utf8.count ?? 0) <= 128 else {
            throw Unreadable(newerFormat: nil, description: "a bad write id, cluster id or time")
        }
        self.init(writeID: header.write, clusterID: header.cluster, at: Date(timeIntervalSince1970: header.at), change: change)
        attempt = header.attempt?.cut(toBytes: 64)
    }
}
