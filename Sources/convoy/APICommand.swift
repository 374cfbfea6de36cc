import ArgumentParser
import ConvoyAPI
import ConvoyModel
import ConvoyPostgres
import Foundation
import Logging
import ServiceLifecycle

/// `convoy api`: the containers API server, and its admin tools.
struct APICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "api",
        abstract: "Serve the containers API (Arvados-compatible), or administer it.",
        subcommands: [Serve.self, Migrate.self, Token.self],
        defaultSubcommand: Serve.self)

    struct ConfigOption: ParsableArguments {
        @Option(name: .long, help: "The Convoy configuration file (YAML).")
        var config = "/etc/convoy/config.yml"

        func load() throws -> ConvoyConfig {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw ValidationError("cannot read the configuration file \(config)")
            }
            do {
                return try ConvoyConfig.parse(yaml: text)
            } catch let error as ConfigError {
                throw ValidationError("\(config): \(error.description)")
            }
        }
    }

    /// `convoy api [serve] --config FILE`
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "serve", abstract: "Run the API server until SIGTERM or SIGINT.")

        @OptionGroup var options: ConfigOption

        @Option(help: "Listen on this host:port instead of the configured API.Listen.")
        var listen: String?

        func run() async throws {
            var config = try options.load()
            if let listen { config.api.listen = listen }
            var logger = Logger(label: "convoy-api")
            logger.logLevel = .info
            let services = try await APIServer.prepare(config, logger: logger)
            let (scheme, host, serverLogger) = (services.scheme, try config.api.listenAddress().host, logger)
            let app = try APIServer.application(services, config: config, logger: logger) { port in
                serverLogger.info("serving", metadata: ["url": "\(scheme)://\(host):\(port)"])
            }
            let sweeper = LogsTableSweeper(logs: services.logs, database: services.database, maxAge: config.containers.logging.maxAge, logger: logger)
            let group = ServiceGroup(configuration: .init(services: [app, sweeper], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            do {
                try await group.run()
            } catch {
                await services.database.close()
                throw error
            }
            await services.database.close()
        }
    }

    /// `convoy api migrate --config FILE`
    struct Migrate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "migrate", abstract: "Apply the database migrations and exit.")

        @OptionGroup var options: ConfigOption

        func run() async throws {
            let config = try options.load()
            let connection = try await PostgresConnection.connect(PostgresConfiguration(keywords: config.postgreSQL.connection))
            let applied = try await PostgresMigrator(migrations: APISchema.migrations).migrate(connection)
            await connection.close()
            print(applied.isEmpty ? "the schema is up to date" : "applied: " + applied.map { "\($0.version) \($0.name)" }.joined(separator: ", "))
        }
    }

    struct Token: CommandGroup {
        static let configuration = CommandConfiguration(commandName: "token", abstract: "Manage API tokens.", subcommands: [Create.self])

        /// `convoy api token create --kind user --scopes … --expires …`
        struct Create: AsyncParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "create",
                abstract: "Create a token and print it (v2/<uuid>/<secret>); the secret is shown only this once.")

            @OptionGroup var options: ConfigOption

            @Option(help: "user, dispatcher or admin.")
            var kind = "user"

            @Option(parsing: .upToNextOption, help: "Arvados-style scopes, e.g. 'GET /arvados/v1/containers'; default: all.")
            var scopes: [String] = []

            @Option(help: "When it stops working: an ISO 8601 time (2027-01-31T00:00:00Z) or a duration (90d, 12h, 30m).")
            var expires: String?

            @Option(help: "For user tokens: the user uuid it acts for (default: a new user).")
            var user: String?

            func run() async throws {
                let config = try options.load()
                guard let kind = TokenKind(rawValue: kind), kind != .container else {
                    throw ValidationError("--kind must be user, dispatcher or admin")
                }
                let expiresAt = try expires.map(Self.parseExpiry)
                var owner: ArvadosUUID?
                if let user {
                    guard let uuid = ArvadosUUID(user), uuid.objectType == .user else { throw ValidationError("--user must be a user uuid (…-tpzed-…)") }
                    owner = uuid
                }
                let connection = try await PostgresConnection.connect(PostgresConfiguration(keywords: config.postgreSQL.connection))
                let created: Result<IssuedToken, Error>
                do {
                    _ = try await PostgresMigrator(migrations: APISchema.migrations).migrate(connection)
                    created = .success(try await TokenStore(clusterID: config.clusterID).create(
                        on: connection, kind: kind, scopes: scopes.isEmpty ? ["all"] : scopes, expiresAt: expiresAt, ownerUUID: owner))
                } catch {
                    created = .failure(error)
                }
                await connection.close()
                print(try created.get().v2)
            }

            static func parseExpiry(_ text: String) throws -> Date {
                if let date = ISO8601Timestamp.parse(text) { return date }
                let units: [Character: Double] = ["d": 86400, "h": 3600, "m": 60, "s": 1]
                if let unit = text.last, let seconds = units[unit], let count = Double(text.dropLast()), count > 0 {
                    return Date().addingTimeInterval(count * seconds)
                }
                throw ValidationError("--expires must be an ISO 8601 time or a duration like 90d, not '\(text)'")
            }
        }
    }
}
