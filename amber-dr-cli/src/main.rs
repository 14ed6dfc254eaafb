//! The `amber-dr` binary: register the drivers of this build (and the Docker tool runner for
//! drivers whose tools may run in a container), then run.

use amber_dr_core::Registry;

fn main() {
    let mut registry = Registry::new();
    amber_dr_files::register(&mut registry);
    amber_dr_postgres::register(&mut registry);
    amber_dr_neo4j::register(&mut registry);
    amber_dr_minio::register(&mut registry);
    amber_dr_etcd::register(&mut registry);
    amber_dr_milvus::register(&mut registry);
    amber_dr_docker::register_tool_runner();
    std::process::exit(amber_dr_cli::run(std::env::args_os(), registry));
}
