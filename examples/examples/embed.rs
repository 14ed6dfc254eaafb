//! Embedding one driver in another program (no CLI code): back up a directory, verify it, and
//! restore it into another directory; Ctrl-C or SIGTERM stops it cleanly (exit code 130, the
//! repository lock released). The work is `amber_dr_examples::embed`.
//!
//! ```sh
//! cargo run -p amber-dr-examples --example embed -- SOURCE_DIR REPOSITORY RESTORE_DIR
//! ```

use std::path::PathBuf;

use amber_dr_examples::embed::backup_verify_restore_elsewhere;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(repo), Some(target)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: embed SOURCE_DIR REPOSITORY RESTORE_DIR");
        std::process::exit(2);
    };
    // Cancelled by the first Ctrl-C or SIGTERM: the runner then cleans up after itself.
    let cancel = amber_dr_core::cancel::cancel_on_signals();
    match backup_verify_restore_elsewhere(
        &PathBuf::from(dir),
        &repo,
        &PathBuf::from(target),
        cancel,
    )
    .await
    {
        Ok(o) => {
            println!("backup {}", o.backup_id);
            println!("verify: {}", if o.verified { "ok" } else { "DAMAGED" });
            println!("restored into {}", o.restored_into.display());
            std::process::exit(if o.verified { 0 } else { 3 });
        }
        Err(amber_dr_core::Error::Interrupted) => {
            eprintln!("interrupted: stopped cleanly, the repository lock released");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("error: {}", e.full_message());
            std::process::exit(1);
        }
    }
}
