//! The CLI's side of `amber-dr.toml`: the loader with the `[docker]` section registered, and
//! the `init` template. Loading, `${VAR}` interpolation and validation live in core
//! ([`amber_dr_core::config`]), so that a program embedding amber-dr reads the same file with
//! the same rules.

use amber_dr_core::config::{Config, ConfigLoader};
use amber_dr_core::Registry;
use amber_dr_docker::DockerConfig;

use crate::exit::Failure;

pub use amber_dr_core::config::{resolve_local_url, DEFAULT_PARALLELISM};

/// The loader of the CLI: core's sections plus `[docker]` (checked by `amber-dr-docker`).
pub fn loader() -> ConfigLoader {
    ConfigLoader::new().section("docker", DockerConfig::check_section)
}

/// `[docker]`, if the file has it with at least one container.
pub fn docker(cfg: &Config) -> Result<Option<DockerConfig>, Failure> {
    Ok(DockerConfig::from_section(cfg.section("docker"))?)
}

/// One component of the `init` template.
struct TemplateComponent {
    name: &'static str,
    kind: &'static str,
    body: &'static str,
}

const TEMPLATE_COMPONENTS: &[TemplateComponent] = &[
    TemplateComponent {
        name: "postgres",
        kind: "postgres",
        body: r#"url = "postgres://postgres:postgres@127.0.0.1:5432/amber"
# databases = ["amber"]            # default: every non-template database
# via_container = "amber-postgres-1"  # run pg_dump & co. inside this container (Docker exec API)
"#,
    },
    TemplateComponent {
        name: "neo4j",
        kind: "neo4j",
        body: r#"uri = "bolt://127.0.0.1:7687"
user = "neo4j"
password = "${NEO4J_PASSWORD}"
# database = "neo4j"                # the database to back up and restore
"#,
    },
    TemplateComponent {
        name: "minio",
        kind: "minio",
        body: r#"endpoint = "http://127.0.0.1:9000"
access_key = "minioadmin"
secret_key = "${MINIO_SECRET_KEY}"
# buckets = ["documents"]           # default: every bucket
exclude_buckets = ["milvus-bucket"] # Milvus's segment files: backed up by the milvus component
# legacy_data_dir = "/var/lib/docker/volumes/amber_minio_data/_data"  # restores a runbook's minio_data.tar.gz
"#,
    },
    TemplateComponent {
        name: "milvus",
        kind: "milvus",
        body: r#"endpoint = "http://127.0.0.1:19530"
# Milvus's bucket (its minio.* settings): collections are backed up as Milvus's own segment
# files, whatever their state, and restored through Milvus's import, auto-id and keys kept.
# Without it, collections are exported entity by entity (indexed collections only; a restore
# turns auto-id off to keep the keys). See amber-dr-milvus's README.
[components.milvus.storage]
endpoint = "http://127.0.0.1:9000"
bucket = "milvus-bucket"
access_key = "minioadmin"
secret_key = "${MINIO_SECRET_KEY}"
"#,
    },
    TemplateComponent {
        name: "uploads",
        kind: "files",
        body: r#"path = "./uploads"
"#,
    },
];

/// The commented `amber-dr.toml` that `init` writes: the Amber docker-compose defaults.
/// Components whose kind `registry` does not provide are written commented out, so that the
/// file loads with this build. `repo_url` replaces the default `./backups`.
pub fn template(registry: &Registry, repo_url: Option<&str>) -> String {
    let kinds = registry.kinds();
    let url = repo_url.unwrap_or("./backups");
    let url = serde_json::Value::String(url.to_string()).to_string();
    let mut out = String::new();
    out.push_str(
        "# amber-dr configuration: the Amber docker-compose defaults.\n\
         #\n\
         # Any value may use ${VAR} for an environment variable (which must then be set);\n\
         # write $$ for a literal $. Relative paths are relative to this file's directory.\n\
         # Check it with `amber-dr doctor`, then take a backup with `amber-dr backup`.\n\
         \n\
         [repository]\n\
         # A local path, file:///path, or s3://bucket/prefix (then also endpoint, region,\n\
         # access_key_id, secret_access_key; AWS_* environment variables work too).\n",
    );
    out.push_str(&format!("url = {url}\n"));
    out.push_str("# compression_level = 3             # zstd level 1-19\n");
    for c in TEMPLATE_COMPONENTS {
        out.push('\n');
        if c.name == "uploads" {
            // The etcd note sits before the uploads directory, as in the design brief.
            out.push_str(ETCD_NOTE);
            out.push('\n');
        }
        if kinds.contains(&c.kind) {
            out.push_str(&format!("[components.{}]\nkind = \"{}\"\n", c.name, c.kind));
            out.push_str(c.body);
        } else {
            out.push_str(&format!(
                "# driver not available yet in this build: the `{}` kind is not registered.\n",
                c.kind
            ));
            out.push_str(&format!(
                "# [components.{}]\n# kind = \"{}\"\n",
                c.name, c.kind
            ));
            for line in c.body.lines() {
                if line.starts_with('#') {
                    out.push_str(&format!("#{line}\n"));
                } else {
                    out.push_str(&format!("# {line}\n"));
                }
            }
        }
    }
    out.push_str(
        "\n[options]\n\
         # parallelism = 4                   # components backed up or restored at once\n\
         \n\
         # [drill]                            # `amber-dr drill`: where the scratch copies go\n\
         # dir = \"/var/tmp/amber-dr-drill\"   # scratch directories (default: the temporary directory)\n\
         # neo4j_uri = \"bolt://127.0.0.1:7688\"  # a separate, disposable Neo4j (Community has one database)\n\
         # rto_budget_seconds = 1800\n\
         \n\
         [docker]                             # optional, needs a Docker engine\n\
         # host = \"unix:///var/run/docker.sock\"  # default: $DOCKER_HOST, else this socket\n\
         # Container names, or docker-compose service names (label com.docker.compose.service):\n\
         # pause_during_backup = [\"amber-api\", \"amber-worker\"]\n\
         # stop_during_restore = [\"amber-api\", \"amber-worker\"]\n\
         # stop_during_runbook_restore = [\"minio\"]  # also stopped for `restore RUNBOOK_DIR`\n\
         # restart_after_restore = [\"milvus\", \"minio\"]\n",
    );
    out
}

const ETCD_NOTE: &str = r#"# [components.etcd]                 # etcd data the application keeps itself. Milvus's own etcd
# kind = "etcd"                     # prefix is NOT selected here: it is only consistent with
# endpoints = ["http://127.0.0.1:2379"]   # Milvus's bucket, restored together, Milvus stopped.
# prefix = "app/"
# conflicts_with = ["milvus"]       # if this prefix ever covers Milvus's root path: never
#                                   # restore it together with the logical Milvus backup
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use amber_dr_core::{Component, ComponentSpec, Error};
    use std::path::Path;
    use std::sync::Arc;

    #[test]
    fn docker_section_is_checked() {
        for (text, want) in [
            ("[docker]\npause_during_backup = 1", "[docker]"),
            ("[docker]\nbogus = []", "[docker]"),
            ("[docker]\nhost = \"tcp://h:2375\"", "docker.host"),
        ] {
            let err = loader()
                .parse(text, Path::new("/etc/amber/amber-dr.toml"), &|_| None)
                .expect_err(text);
            let msg = err.to_string();
            assert!(msg.contains("/etc/amber/amber-dr.toml"), "{msg}");
            assert!(msg.contains(want), "{text}: {msg}");
        }
        let c = loader()
            .parse(
                "[docker]\npause_during_backup = [\"api\"]",
                Path::new("a.toml"),
                &|_| None,
            )
            .expect("loads");
        let d = docker(&c).expect("docker").expect("present");
        assert_eq!(d.pause_during_backup, ["api"]);
        let empty = loader()
            .parse("[docker]", Path::new("a.toml"), &|_| None)
            .expect("loads");
        assert!(docker(&empty).expect("docker").is_none());
    }

    #[test]
    fn template_loads_and_comments_out_unregistered_kinds() {
        #[allow(clippy::result_large_err)] // the signature of a driver factory
        fn fake(_: &ComponentSpec) -> amber_dr_core::Result<Arc<dyn Component>> {
            Err(Error::NotSupported("test".into()))
        }
        let mut reg = Registry::new();
        reg.register("files", fake);
        let text = template(&reg, None);
        let c = loader()
            .parse(&text, Path::new("amber-dr.toml"), &|_| None)
            .expect("template loads");
        let names: Vec<&str> = c.components.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["uploads"]);
        assert!(text.contains("# driver not available yet in this build"));
        // With every kind registered, every component is live (and needs its variables).
        for k in ["postgres", "neo4j", "minio", "milvus"] {
            reg.register(k, fake);
        }
        let text = template(&reg, Some("s3://bucket/x"));
        let vars = |n: &str| Some(format!("<{n}>"));
        let c = loader()
            .parse(&text, Path::new("amber-dr.toml"), &vars)
            .expect("full template loads");
        assert_eq!(c.components.len(), 5);
        assert_eq!(
            c.repository.map(|r| r.url),
            Some("s3://bucket/x".to_string())
        );
    }
}
