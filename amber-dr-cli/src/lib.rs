#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod args;
pub mod commands;
pub mod config;
pub mod exit;
pub mod hints;
pub mod key;
pub mod output;

use std::ffi::OsString;
use std::time::Duration;

use amber_dr_core::Registry;
use clap::Parser;

use crate::args::Cli;
use crate::exit::Failure;
use crate::output::Output;

/// Run `amber-dr` with the command line `args` (program name first) and the drivers in
/// `registry`; returns the process exit code (see [`exit`]).
///
/// Builds a multi-threaded tokio runtime, sets up logging on stderr, runs the command and
/// prints its result. Everything the binary does happens here, so that tests and other
/// front ends can call it.
pub fn run<I, T>(args: I, registry: Registry) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return clap_error(e, &args),
    };
    output::init_logging(cli.verbose, cli.quiet);
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&Failure::failed(format!(
                "cannot start the async runtime: {e}"
            )));
            return exit::FAILURE;
        }
    };
    let result = runtime.block_on(commands::dispatch(cli, registry));
    // Blocking tasks of an interrupted command (a file being read, a prompt) cannot be
    // cancelled: do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(failure) => {
            out.error(&failure);
            failure.code
        }
    }
}

/// `--help` and `--version` print and exit 0; any other parse error is a usage error (2),
/// printed as JSON when `--json` was among the arguments.
fn clap_error(err: clap::Error, args: &[OsString]) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return exit::OK;
    }
    let json = args
        .iter()
        .skip(1)
        .take_while(|a| a.as_os_str() != "--")
        .any(|a| a.as_os_str() == "--json");
    if json {
        let text = err.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ")
            .to_string();
        Output {
            json: true,
            quiet: false,
        }
        .error(&Failure::usage(message));
    } else {
        let _ = err.print();
    }
    exit::USAGE
}
