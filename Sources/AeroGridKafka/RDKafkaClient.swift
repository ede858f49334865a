import CRdKafka
import Logging

/// What every librdkafka callback needs to reach: the logger, and for a consumer or a
/// producer its own state. librdkafka hands it back as the instance's opaque pointer.
class RDKafkaContext: @unchecked Sendable {
    // @unchecked: the logger is immutable and Sendable; subclasses guard their own state.
    let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    static func from(_ rk: OpaquePointer?) -> RDKafkaContext? {
        guard let rk, let opaque = rd_kafka_opaque(rk) else { return nil }
        return Unmanaged<RDKafkaContext>.fromOpaque(opaque).takeUnretainedValue()
    }
}

/// Owns one `rd_kafka_t` and destroys it in `deinit`. The context it was created with
/// lives as long as the handle, because librdkafka calls back into it until destroyed.
final class RDKafkaClient: @unchecked Sendable {
    // @unchecked: librdkafka's handle is thread-safe for the calls made from several
    // threads here (metadata, poll); consumer calls are serialized by `KafkaWorkerThread`.
    let handle: OpaquePointer
    let context: RDKafkaContext

    enum Role {
        case consumer, producer

        var rdType: rd_kafka_type_t { self == .consumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER }
    }

    init(
        role: Role, properties: [(String, String)], context: RDKafkaContext,
        configure: (OpaquePointer) -> Void = { _ in }
    ) throws(KafkaError) {
        let conf = rd_kafka_conf_new()!
        for (key, value) in properties {
            var errstr = [CChar](repeating: 0, count: 512)
            if rd_kafka_conf_set(conf, key, value, &errstr, errstr.count) != RD_KAFKA_CONF_OK {
                rd_kafka_conf_destroy(conf)
                // The setting's name only: its value may be a password (and a mistyped key
                // is not known to be secret).
                throw KafkaError(
                    code: .invalidArgument,
                    message: "Kafka setting '\(key)' is refused: \(string(fromBuffer: errstr))")
            }
        }
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, message in
            guard let context = RDKafkaContext.from(rk), let facility, let message else { return }
            context.logger.log(
                level: Logger.Level(syslog: level), "\(String(cString: message))",
                metadata: ["kafka.facility": "\(String(cString: facility))"])
        }
        configure(conf)
        var errstr = [CChar](repeating: 0, count: 512)
        guard let handle = rd_kafka_new(role.rdType, conf, &errstr, errstr.count) else {
            // rd_kafka_new frees the configuration only when it succeeds.
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .invalidArgument, message: "cannot create the Kafka client: \(string(fromBuffer: errstr))")
        }
        self.handle = handle
        self.context = context
    }

    deinit {
        rd_kafka_destroy(handle)
    }
}

extension Logger.Level {
    /// librdkafka logs with syslog levels.
    init(syslog level: Int32) {
        switch level {
        case ...2: self = .critical
        case 3: self = .error
        case 4: self = .warning
        case 5: self = .notice
        case 6: self = .info
        default: self = .debug
        }
    }
}

/// The text in a C error buffer that librdkafka filled in.
func string(fromBuffer buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
