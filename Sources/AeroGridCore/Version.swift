/// The platform's version, reported by `aerogrid version` and in the IPC `hello` handshake.
public enum AeroGridVersion {
    public static let current = "0.1.0"
}
