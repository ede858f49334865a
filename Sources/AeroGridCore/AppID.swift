/// One app of one tenant: the pair that names an app everywhere on a server. Its
/// description, "tenant/app", is also the key of the app's checkpoint in the store.
public struct AppID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let tenant: String
    public let name: String

    public init(tenant: String, name: String) {
        self.tenant = tenant
        self.name = name
    }

    public var description: String { "\(tenant)/\(name)" }

    public static func < (lhs: AppID, rhs: AppID) -> Bool {
        (lhs.tenant, lhs.name) < (rhs.tenant, rhs.name)
    }
}
