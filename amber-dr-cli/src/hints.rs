//! Commands printed for the operator to run next (e.g. the rollback after a restore): they
//! name the same config file and repository as the run that printed them, so they work from
//! any directory.

use std::path::Path;

/// `s` quoted for a POSIX shell when it needs it.
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./,:=@%+".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `amber-dr --config FILE [--repo URL] restore ID --only A,B --yes`: the restore of backup
/// `id`'s `names` (the safety backup's, to undo a restore; the same backup's, to retry one).
pub fn restore_command(config: &Path, repo: Option<&str>, id: &str, names: &[&str]) -> String {
    let config = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
    let mut cmd = format!(
        "amber-dr --config {}",
        shell_quote(&config.display().to_string())
    );
    if let Some(r) = repo {
        cmd.push_str(&format!(" --repo {}", shell_quote(r)));
    }
    cmd.push_str(&format!(
        " restore {id} --only {} --yes",
        shell_quote(&names.join(","))
    ));
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_names_the_config() {
        let c = restore_command(
            Path::new("/etc/amber dr/a.toml"),
            None,
            "20260101_000000",
            &["db", "up"],
        );
        assert_eq!(
            c,
            "amber-dr --config '/etc/amber dr/a.toml' restore 20260101_000000 --only db,up --yes"
        );
    }
}
