//! The `[docker]` section of the config.

use serde::Deserialize;

/// The compose label that names a container's service.
pub const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";
/// The compose label that names a container's project.
pub const COMPOSE_PROJECT_LABEL: &str = "com.docker.compose.project";

/// `[docker]`: which containers to pause, stop and restart around backups and restores.
///
/// Each entry is a container name (`amber-api`) or a docker-compose service name (`backend`:
/// every container whose label `com.docker.compose.service` is `backend`, restricted to
/// [`Self::compose_project`] when set). A container name wins over a service of the same name.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine's socket (`unix:///var/run/docker.sock`, or a plain path). Default: the
    /// `DOCKER_HOST` environment variable if it is a `unix://` URL, else
    /// `unix:///var/run/docker.sock`.
    #[serde(default)]
    pub host: Option<String>,
    /// Only match compose services of this project (label `com.docker.compose.project`).
    #[serde(default)]
    pub compose_project: Option<String>,
    /// Paused while the snapshots start, unpaused as soon as every component has reached its
    /// consistent point.
    #[serde(default)]
    pub pause_during_backup: Vec<String>,
    /// Stopped before a restore (and its safety backup), started again after it.
    #[serde(default)]
    pub stop_during_restore: Vec<String>,
    /// Stopped, besides [`Self::stop_during_restore`], only around a restore of a runbook
    /// directory, and started again after it: e.g. MinIO's container while the runbook's
    /// `minio_data.tar.gz` replaces its data volume. (A restore of an amber-dr backup puts
    /// MinIO's objects back through S3, so MinIO must run then.)
    #[serde(default)]
    pub stop_during_runbook_restore: Vec<String>,
    /// Restarted after a restore.
    #[serde(default)]
    pub restart_after_restore: Vec<String>,
    /// Seconds `docker stop` waits before it kills (default 10, as `docker stop`).
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u32,
}

fn default_stop_timeout() -> u32 {
    10
}

/// The default socket.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

impl DockerConfig {
    /// The `[docker]` section of a config file ([`amber_dr_core::config::Config::section`]):
    /// `None` when absent or naming no container.
    pub fn from_section(value: Option<&serde_json::Value>) -> amber_dr_core::Result<Option<Self>> {
        let Some(value) = value else { return Ok(None) };
        let d: DockerConfig = serde_json::from_value(value.clone())
            .map_err(|e| amber_dr_core::Error::config("[docker]", e.to_string()))?;
        if let Err(m) = d.socket_path() {
            return Err(amber_dr_core::Error::config("docker.host", m));
        }
        Ok(Some(d).filter(|d| !d.is_empty()))
    }

    /// Checks a `[docker]` section: register it with
    /// [`amber_dr_core::config::ConfigLoader::section`].
    pub fn check_section(value: &serde_json::Value) -> amber_dr_core::Result<()> {
        Self::from_section(Some(value)).map(|_| ())
    }

    /// True when no container is named: nothing to do.
    pub fn is_empty(&self) -> bool {
        self.pause_during_backup.is_empty()
            && self.stop_during_restore.is_empty()
            && self.stop_during_runbook_restore.is_empty()
            && self.restart_after_restore.is_empty()
    }

    /// The socket path to use (see [`Self::host`]), or an error for a host that is not a
    /// unix socket.
    pub fn socket_path(&self) -> Result<String, String> {
        let host = match &self.host {
            Some(h) => h.trim().to_string(),
            None => match std::env::var("DOCKER_HOST") {
                Ok(h) if h.starts_with("unix://") => h,
                _ => DEFAULT_SOCKET.to_string(),
            },
        };
        if let Some(p) = host.strip_prefix("unix://") {
            return Ok(p.to_string());
        }
        if host.contains("://") {
            return Err(format!(
                "docker host `{host}`: only unix sockets (unix:///path/docker.sock) are supported"
            ));
        }
        Ok(host)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths() {
        let c = |h: &str| DockerConfig {
            host: Some(h.into()),
            ..Default::default()
        };
        assert_eq!(c("unix:///x/d.sock").socket_path().unwrap(), "/x/d.sock");
        assert_eq!(c("/x/d.sock").socket_path().unwrap(), "/x/d.sock");
        assert!(c("tcp://1.2.3.4:2375")
            .socket_path()
            .unwrap_err()
            .contains("only unix sockets"));
    }
}
