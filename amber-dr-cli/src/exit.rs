//! Exit codes of `amber-dr`, and the error type that carries one.
//!
//! | code | meaning |
//! |---:|---|
//! | 0 | everything asked for was done and checks out |
//! | 1 | failed: a runtime error, a failed component, the repository is locked or unreachable, a restore was aborted at the prompt |
//! | 2 | usage or configuration error: bad arguments, a bad or missing config file, an empty path, an unknown component, a refused `--target`, a refused confirmation without a terminal, an unusable encryption key or a missing private key |
//! | 3 | damage found: an artifact or manifest is corrupt, truncated, missing or tampered with (verify, restore's read-through), or `latest`'s manifest cannot be read |
//! | 4 | references dangle: `verify --references`, a restore's reference check, or a backup whose reference with `fail_on_dangling = true` dangles (see `[[references]]`) |
//! | 130 | interrupted by Ctrl-C or SIGTERM |

use std::fmt;

/// Everything asked for was done and checks out.
pub const OK: i32 = 0;
/// A runtime error: a failed component, a locked or unreachable repository, an aborted restore.
pub const FAILURE: i32 = 1;
/// A usage or configuration error (the user's to fix in arguments or `amber-dr.toml`).
pub const USAGE: i32 = 2;
/// Verification found damaged or missing data.
pub const DAMAGE: i32 = 3;
/// A declared reference dangles (or could not be checked where the check was asked for).
pub const DANGLING: i32 = 4;
/// Interrupted by Ctrl-C (SIGINT) or SIGTERM.
pub const INTERRUPTED: i32 = 130;

/// An error on its way out of a command: a message for the operator and the exit code.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The exit code (one of the constants of this module).
    pub code: i32,
    /// What went wrong, said so that the operator can act on it.
    pub message: String,
}

impl Failure {
    /// A failure with an explicit exit code.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A usage or configuration error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }

    /// A runtime failure (exit code 1).
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(FAILURE, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The exit code for a core error: 2 for usage/config errors, 3 for damage, 130 for an
/// interruption, 1 for everything else.
pub fn code_for(err: &amber_dr_core::Error) -> i32 {
    if err.is_usage() {
        USAGE
    } else if err.is_damage() {
        DAMAGE
    } else if matches!(err, amber_dr_core::Error::Interrupted) {
        INTERRUPTED
    } else {
        FAILURE
    }
}

/// The exit code of a restore plan (a dry run): 0 when every component can be restored, 2
/// when every refusal is the operator's to fix (a bad `--target`, an option), else 1.
pub fn restore_plan_code(plan: &amber_dr_core::RestoreOutcome) -> i32 {
    let mut failed = plan
        .components
        .iter()
        .filter(|c| c.error.is_some())
        .peekable();
    if failed.peek().is_none() && plan.hook_errors.is_empty() {
        OK
    } else if plan.hook_errors.is_empty() && failed.all(|c| c.usage_error) {
        USAGE
    } else {
        FAILURE
    }
}

impl From<amber_dr_core::Error> for Failure {
    fn from(err: amber_dr_core::Error) -> Self {
        let code = code_for(&err);
        let message = err.full_message();
        Self { code, message }
    }
}
