//! Drills (see `amber_dr_core::drill`): Neo4j Community has one user database, so a drill
//! restores into a separate, disposable server named by `[drill] neo4j_uri` (or
//! `[drill.targets] NAME`) — same credentials and database name — and empties it afterwards.
//! Without one, the component is reported "not drilled".

use amber_dr_core::drill::{Scratch, ScratchPlan, ScratchRestore};
use amber_dr_core::references::{KeySet, KeyStream};
use amber_dr_core::{Error, Result};

use crate::component::Neo4j;

/// `host:port` of a Bolt URI, lowercased, credentials and scheme left out (`localhost` is
/// `127.0.0.1`), to tell two servers apart.
fn server_of(uri: &str) -> String {
    let rest = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let host_port = rest.split(['/', '?']).next().unwrap_or(rest).to_lowercase();
    host_port.replace("localhost", "127.0.0.1")
}

impl Neo4j {
    /// The configured scratch server, or not drilled.
    pub(crate) fn plan_scratch(&self, scratch: &Scratch) -> ScratchPlan {
        let Some(uri) = &scratch.configured else {
            return ScratchPlan::NotDrilled(
                "Neo4j Community has one database, so a drill needs a separate, disposable server: set [drill] neo4j_uri".into(),
            );
        };
        if let Err(e) = self.check_scratch_server(uri) {
            return ScratchPlan::NotDrilled(e.to_string());
        }
        ScratchPlan::Restores(vec![ScratchRestore {
            items: Vec::new(),
            target: uri.clone(),
        }])
    }

    /// A scratch server must be a URI and another server than the live one.
    fn check_scratch_server(&self, uri: &str) -> Result<()> {
        if !uri.contains("://") {
            return Err(Error::config(
                "drill.neo4j_uri",
                format!(
                    "`{}` is not a bolt:// URI",
                    amber_dr_core::redact::redact(uri)
                ),
            ));
        }
        if server_of(uri) == server_of(&self.cfg.uri) {
            return Err(Error::config(
                "drill.neo4j_uri",
                format!(
                    "names the live server of `{}` ({}): a drill must never write the live graph",
                    self.name,
                    server_of(uri)
                ),
            ));
        }
        Ok(())
    }

    /// The component pointed at scratch server `uri`.
    fn scratch_server(&self, uri: &str) -> Result<Neo4j> {
        self.check_scratch_server(uri)?;
        let mut cfg = self.cfg.clone();
        cfg.uri = uri.to_string();
        Neo4j::new(self.name.clone(), cfg)
    }

    /// Empty the scratch server `uri` (data, constraints, indexes).
    pub(crate) async fn empty_scratch(&self, uri: &str) -> Result<()> {
        let other = self.scratch_server(uri)?;
        let db = other.cfg.database.clone();
        let g = other
            .connect(&db)
            .await
            .map_err(|e| other.err("drill cleanup", e))?;
        other
            .empty(&g, &db)
            .await
            .map_err(|e| other.err("drill cleanup", e))
    }

    /// The keys of `set` (its query) on the scratch server.
    pub(crate) async fn scratch_query_keys(
        &self,
        set: &KeySet,
        restores: &[ScratchRestore],
    ) -> Result<KeyStream> {
        let r = restores.first().ok_or_else(|| {
            Error::Other(format!("`{}` has no scratch copy in this drill", self.name))
        })?;
        self.scratch_server(&r.target)?.live_query_keys(set).await
    }
}

#[cfg(test)]
mod tests {
    use super::server_of;

    #[test]
    fn servers_compare_by_host_and_port() {
        assert_eq!(
            server_of("bolt://neo4j:pw@LocalHost:7687"),
            "127.0.0.1:7687"
        );
        assert_eq!(server_of("neo4j://127.0.0.1:7687/db"), "127.0.0.1:7687");
        assert_ne!(
            server_of("bolt://127.0.0.1:7688"),
            server_of("bolt://127.0.0.1:7687")
        );
    }
}
