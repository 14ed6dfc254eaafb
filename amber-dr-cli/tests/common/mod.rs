//! What the CLI tests against the local stack share: the stack's environment, the rule for a
//! missing server, and running the binary.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// A variable of the stack's env file, if set and not empty.
pub fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// A server the test needs is missing: panics under AMBER_DR_REQUIRE_SERVICES=1, otherwise
/// says the test is skipped.
pub fn missing(what: &str) {
    if env("AMBER_DR_REQUIRE_SERVICES").as_deref() == Some("1") {
        panic!("{what} not available and AMBER_DR_REQUIRE_SERVICES=1: run scripts/stack.sh up");
    }
    eprintln!("SKIPPED: {what} not available (scripts/stack.sh up)");
}

/// `amber-dr ARGS` run in `dir`: exit code, stdout, stderr.
pub fn amber(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_amber-dr"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
