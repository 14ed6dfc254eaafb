package amberdr;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;
import org.neo4j.io.ByteUnit;

/**
 * Starts one or more Neo4j Community DBMSs embedded in this JVM, each listening on Bolt at
 * 127.0.0.1:PORT with authentication on, and runs until killed (SIGTERM shuts them down
 * cleanly).
 *
 * <pre>
 * java -cp ... amberdr.Neo4jLauncher PLUGIN_DIR HOME_DIR:PORT [HOME_DIR:PORT ...]
 * </pre>
 *
 * The password of the `neo4j` user comes from the environment variable NEO4J_LAUNCHER_PASSWORD
 * (kept off the command line). PLUGIN_DIR holds the APOC core jar (also on the classpath).
 * "READY" is printed once every DBMS is up.
 */
public final class Neo4jLauncher {
    private Neo4jLauncher() {}

    public static void main(String[] args) {
        try {
            run(args);
        } catch (Exception e) {
            // The DBMS threads would keep the JVM alive: exit, so that the stack sees it.
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static void run(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: Neo4jLauncher PLUGIN_DIR HOME_DIR:PORT [HOME_DIR:PORT ...]");
            System.exit(2);
        }
        String password = System.getenv("NEO4J_LAUNCHER_PASSWORD");
        if (password == null || password.length() < 8) {
            System.err.println("NEO4J_LAUNCHER_PASSWORD must be set (at least 8 characters)");
            System.exit(2);
        }
        Path pluginDir = Path.of(args[0]).toAbsolutePath();
        List<DatabaseManagementService> services = new ArrayList<>();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (DatabaseManagementService s : services) {
                try {
                    s.shutdown();
                } catch (RuntimeException e) {
                    System.err.println("shutdown failed: " + e);
                }
            }
        }));
        for (int i = 1; i < args.length; i++) {
            int colon = args[i].lastIndexOf(':');
            Path home = Path.of(args[i].substring(0, colon)).toAbsolutePath();
            int port = Integer.parseInt(args[i].substring(colon + 1));
            Files.createDirectories(home);
            DatabaseManagementService dbms = new DatabaseManagementServiceBuilder(home)
                    .setConfig(BoltConnector.enabled, true)
                    .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                    .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
                    .setConfig(HttpConnector.enabled, false)
                    .setConfig(GraphDatabaseSettings.auth_enabled, true)
                    .setConfig(GraphDatabaseSettings.plugin_dir, pluginDir)
                    .setConfig(GraphDatabaseSettings.procedure_unrestricted, List.of("apoc.*"))
                    .setConfig(GraphDatabaseSettings.pagecache_memory, ByteUnit.mebiBytes(128))
                    .build();
            services.add(dbms);
            // Set the password through the embedded API (no auth there), then Bolt needs it.
            GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
            try {
                system.executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $pw CHANGE NOT REQUIRED",
                        java.util.Map.of("pw", password));
            } catch (RuntimeException e) {
                // A restart with the same password: nothing to change.
                if (!String.valueOf(e.getMessage()).contains("cannot be the same")) {
                    throw e;
                }
            }
            System.out.println("started " + home + " on bolt://127.0.0.1:" + port);
        }
        System.out.println("READY");
        System.out.flush();
        new CountDownLatch(1).await();
    }
}
