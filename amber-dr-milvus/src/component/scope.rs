//! What a backup of the `milvus` component covers on the server, and what the config names
//! that does not exist.

/// What a backup covers on the server.
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// Every database on the server.
    pub(super) server: Vec<String>,
    /// The databases backed up, each with all its collections (selected or not).
    pub(super) listed: Vec<(String, Vec<String>)>,
    /// Configured databases the server does not have.
    pub(super) missing_databases: Vec<String>,
    /// Configured collections (`db`, `name`) that do not exist.
    pub(super) absent: Vec<(String, String)>,
    /// Configured `collections` entries that match no collection at all.
    pub(super) unmatched: Vec<String>,
}

impl Scope {
    /// Why a backup of this scope must fail: something configured does not exist.
    pub(super) fn problem(&self) -> Option<String> {
        if let Some(db) = self.missing_databases.first() {
            return Some(format!(
                "database `{db}` (config `databases`) does not exist; the server has: {}",
                self.server.join(", ")
            ));
        }
        let want = self.unmatched.first()?;
        let backed_up = || {
            let dbs: Vec<&str> = self.listed.iter().map(|(d, _)| d.as_str()).collect();
            dbs.join(", ")
        };
        Some(match want.split_once('/') {
            Some((db, name)) => match self.listed.iter().find(|(d, _)| d == db) {
                Some((_, names)) => format!(
                    "collection `{db}.{name}` does not exist; the database has: {}",
                    names.join(", ")
                ),
                None => format!(
                    "collection `{want}`: database `{db}` is not backed up or does not exist; backed up: {}",
                    backed_up()
                ),
            },
            None => format!(
                "collection `{want}` does not exist in any database backed up ({})",
                backed_up()
            ),
        })
    }
}
