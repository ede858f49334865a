/// Which placement slot an app belongs to: Kafka's own partitioner (murmur2 of the key,
/// made positive, modulo the partition count) over the app's immutable id. Every node, and
/// any Kafka tool, computes the same slot for the same id; a per-process seeded hasher
/// (Swift's `Hasher`) would not.
public enum AppSlot {
    public static func of(appID: String, slots: Int32) -> Int32 {
        precondition(slots > 0, "a placement needs at least one slot")
        return Int32((murmur2(Array(appID.utf8)) & 0x7fff_ffff) % UInt32(slots))
    }

    /// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), seed 0x9747b28c.
    public static func murmur2(_ data: [UInt8]) -> UInt32 {
        let m: UInt32 = 0x5bd1_e995
        let r: UInt32 = 24
        var h: UInt32 = 0x9747_b28c ^ UInt32(truncatingIfNeeded: data.count)
        let whole = data.count / 4
        for index in 0..<whole {
            let i = index * 4
            var k = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            k &*= m
            k ^= k >> r
            k &*= m
            h &*= m
            h ^= k
        }
        let tail = whole * 4
        switch data.count % 4 {
        case 3:
            h ^= UInt32(data[tail + 2]) << 16
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 2:
            h ^= UInt32(data[tail + 1]) << 8
            h ^= UInt32(data[tail])
            h &*= m
        case 1:
            h ^= UInt32(data[tail])
            h &*= m
        default: break
        }
        h ^= h >> 13
        h &*= m
        h ^= h >> 15
        return h
    }
}
