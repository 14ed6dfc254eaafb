//! The `amber-dr` binary: register the drivers of this build (and the Docker tool runner for
//! drivers whose tools may run in a container), then run.

use amber_dr_core::Registry;

fn main() {
    cap_malloc_arenas();
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

/// glibc's malloc gives every thread that allocates an arena of its own (up to 8 per core),
/// and memory freed into one arena is not reused by another: with a blocking thread per file
/// being read or written, the peak RSS of a backup of many small files grew far beyond what
/// was ever live at once. Two arenas keep it bounded at no measurable cost in speed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn cap_malloc_arenas() {
    // SAFETY: mallopt only sets a malloc tunable; it is called before any thread is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn cap_malloc_arenas() {}
