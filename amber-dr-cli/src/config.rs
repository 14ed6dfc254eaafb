//! `amber-dr.toml`: loading, `${VAR}` interpolation, validation, and the `init` template.
//!
//! The file has four sections, and no others:
//!
//! - `[repository]`: deserialised into [`RepositoryConfig`]; a relative local `url` is relative
//!   to the config file's directory.
//! - `[components.NAME]`: one table per component, `kind` plus the driver's keys, kept in file
//!   order; each becomes a [`ComponentSpec`] that the [`Registry`] builds.
//! - `[docker]`: deserialised into [`DockerConfig`] (containers to pause, stop and restart
//!   around backups and restores; see `amber-dr-docker`).
//! - `[options]`: `parallelism` (components at once, default 4).
//!
//! Every string value may use `${VAR}` (the environment variable `VAR`, which must be set);
//! `$$` is a literal `$`. Errors name the file and the key; values are never printed, so a
//! secret in the file cannot end up in a terminal or a log.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use amber_dr_core::{Component, ComponentSpec, Error, Registry, RepositoryConfig};
use amber_dr_docker::DockerConfig;

use crate::exit::Failure;

/// Config errors are usage errors (exit code 2) whose message names the file and the key.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

fn config_error(location: impl Into<String>, message: impl Into<String>) -> Failure {
    Failure::from(Error::config(location, message))
}

/// The top-level sections a config file may have.
const SECTIONS: &[&str] = &["repository", "components", "docker", "options"];

/// Components run at once unless `[options] parallelism` says otherwise.
pub const DEFAULT_PARALLELISM: usize = 4;

/// A loaded and checked `amber-dr.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file, as given (for messages).
    pub path: PathBuf,
    /// The absolute directory of the file: relative paths in it are relative to this.
    pub base_dir: PathBuf,
    /// `[repository]`, if present (its relative local `url` already resolved).
    pub repository: Option<RepositoryConfig>,
    /// `[components.*]`, in file order.
    pub components: Vec<ComponentSpec>,
    /// `[options] parallelism`.
    pub parallelism: usize,
    /// `[docker]`, if present with at least one container.
    pub docker: Option<DockerConfig>,
}

impl Config {
    /// Read and check the config file at `path`, interpolating `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(
                &source,
                format!(
                    "cannot read the config file: {e}; write one with `amber-dr init`, or name one with --config FILE"
                ),
            )
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Check the config text `text` of the file `path`, taking `${VAR}` values from `env`.
    pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let source = path.display().to_string();
        let base_dir = absolute_dir_of(path);
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            // Only the message and position: the offending line may hold a secret.
            let location = match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("{source}:{line}:{col}")
                }
                None => source.clone(),
            };
            config_error(location, format!("invalid TOML: {}", e.message().trim()))
        })?;

        for key in table.keys() {
            if !SECTIONS.contains(&key.as_str()) {
                return Err(config_error(
                    format!("{source}: {key}"),
                    format!(
                        "unknown top-level key `{key}`; the sections are: {}",
                        SECTIONS.join(", ")
                    ),
                ));
            }
        }
        for (key, value) in table.iter_mut() {
            interpolate_value(value, key, &source, env)?;
        }

        let repository = match table.get("repository") {
            None => None,
            Some(v) => {
                let json = to_json(v, "repository", &source)?;
                if !json.is_object() {
                    return Err(not_a_table(&source, "repository"));
                }
                let mut repo: RepositoryConfig = serde_json::from_value(json)
                    .map_err(|e| config_error(format!("{source}: [repository]"), e.to_string()))?;
                check_path_value(
                    &source,
                    "repository.url",
                    &toml::Value::String(repo.url.clone()),
                )?;
                repo.url = resolve_local_url(&repo.url, &base_dir);
                // A relative identity file is relative to the config file, like the url.
                if let Some(f) = repo
                    .encryption
                    .as_mut()
                    .and_then(|e| e.identity_file.as_mut())
                {
                    if f.is_relative() {
                        *f = base_dir.join(&*f);
                    }
                }
                Some(repo)
            }
        };

        let mut components = Vec::new();
        if let Some(v) = table.get("components") {
            let Some(comps) = v.as_table() else {
                return Err(not_a_table(&source, "components"));
            };
            for (name, section) in comps {
                let key = format!("components.{name}");
                check_component_name(name, &source)?;
                let Some(section) = section.as_table() else {
                    return Err(not_a_table(&source, &key));
                };
                let kind = match section.get("kind") {
                    Some(toml::Value::String(k)) if !k.trim().is_empty() => k.trim().to_string(),
                    Some(_) => {
                        return Err(config_error(
                            format!("{source}: {key}.kind"),
                            "must be a non-empty string naming a driver kind",
                        ))
                    }
                    None => {
                        return Err(config_error(
                            format!("{source}: {key}"),
                            "has no `kind` (e.g. kind = \"files\")",
                        ))
                    }
                };
                let mut config = serde_json::Map::new();
                for (k, v) in section.iter().filter(|(k, _)| k.as_str() != "kind") {
                    check_path_value(&source, &format!("{key}.{k}"), v)?;
                    config.insert(k.clone(), to_json(v, &format!("{key}.{k}"), &source)?);
                }
                components.push(ComponentSpec {
                    name: name.clone(),
                    kind,
                    config: serde_json::Value::Object(config),
                    base_dir: base_dir.clone(),
                    source: source.clone(),
                });
            }
        }

        let mut docker = None;
        if let Some(v) = table.get("docker") {
            if !v.is_table() {
                return Err(not_a_table(&source, "docker"));
            }
            let json = to_json(v, "docker", &source)?;
            let d: DockerConfig = serde_json::from_value(json)
                .map_err(|e| config_error(format!("{source}: [docker]"), e.to_string()))?;
            if let Err(m) = d.socket_path() {
                return Err(config_error(format!("{source}: docker.host"), m));
            }
            docker = Some(d).filter(|d| !d.is_empty());
        }

        let mut parallelism = DEFAULT_PARALLELISM;
        if let Some(v) = table.get("options") {
            let Some(options) = v.as_table() else {
                return Err(not_a_table(&source, "options"));
            };
            for (k, v) in options {
                match (k.as_str(), v) {
                    ("parallelism", toml::Value::Integer(n)) if *n >= 1 => {
                        parallelism = usize::try_from(*n).unwrap_or(usize::MAX);
                    }
                    ("parallelism", _) => {
                        return Err(config_error(
                            format!("{source}: options.parallelism"),
                            "must be an integer of at least 1",
                        ))
                    }
                    _ => {
                        return Err(config_error(
                            format!("{source}: options.{k}"),
                            format!("unknown key `{k}`; [options] knows: parallelism"),
                        ))
                    }
                }
            }
        }

        Ok(Self {
            path: path.to_path_buf(),
            base_dir,
            repository,
            components,
            parallelism,
            docker,
        })
    }

    /// The file name for messages.
    pub fn source(&self) -> String {
        self.path.display().to_string()
    }

    /// Build every component with `registry`, in file order. Errors name the file and key.
    pub fn build_components(&self, registry: &Registry) -> Result<Vec<Arc<dyn Component>>> {
        let source = self.source();
        let mut built = Vec::with_capacity(self.components.len());
        for spec in &self.components {
            let err = match registry.build(spec) {
                Ok(c) => {
                    built.push(c);
                    continue;
                }
                Err(e) => e,
            };
            return Err(match err {
                Error::UnknownKind { .. } => config_error(
                    format!("{source}: components.{}.kind", spec.name),
                    err.to_string(),
                ),
                Error::Config { location, message } if !location.contains(&source) => {
                    config_error(format!("{source}: {location}"), message)
                }
                other => Failure::from(other),
            });
        }
        Ok(built)
    }
}

/// A relative local repository path is made relative to `base`; URLs and absolute paths stay.
pub fn resolve_local_url(url: &str, base: &Path) -> String {
    let trimmed = url.trim();
    if trimmed.is_empty() || trimmed.contains("://") || Path::new(trimmed).is_absolute() {
        return url.to_string();
    }
    // `components()` drops the `.` segments: `./backups` becomes `<base>/backups`.
    base.join(trimmed)
        .components()
        .collect::<PathBuf>()
        .display()
        .to_string()
}

/// The absolute directory of `path` (the current directory for a bare file name).
fn absolute_dir_of(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    abs.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// An empty or whitespace-only path (`path`, `url`, `*_dir`, `*_path`; also a `${VAR}` set
/// to an empty string) is an error: resolved, it would mean the config file's directory.
fn check_path_value(source: &str, key: &str, value: &toml::Value) -> Result<()> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let path_like =
        matches!(leaf, "path" | "url") || leaf.ends_with("_dir") || leaf.ends_with("_path");
    match value {
        toml::Value::String(s) if path_like && s.trim().is_empty() => {
            Err(Failure::from(Error::config(format!("{source}: {key}"), "is empty: give a path (an empty value, or a ${VAR} set to an empty string, would mean the config file's own directory)")))
        }
        _ => Ok(()),
    }
}

fn not_a_table(source: &str, key: &str) -> Failure {
    config_error(format!("{source}: {key}"), "must be a table")
}

fn check_component_name(name: &str, source: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(config_error(
            format!("{source}: components.{name}"),
            "a component name may only use ASCII letters, digits, `-` and `_` (it names a folder in the repository)",
        ))
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

fn interpolate_value(
    value: &mut toml::Value,
    key: &str,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<()> {
    match value {
        toml::Value::String(s) => {
            *s =
                interpolate(s, env).map_err(|msg| config_error(format!("{source}: {key}"), msg))?;
            register_secrets(key, s);
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_value(item, &format!("{key}[{i}]"), source, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                interpolate_value(v, &format!("{key}.{k}"), source, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Register a config value with core's redaction when its key names a credential (the whole
/// value), or when it is a URL or connection string (the passwords and tokens inside it), so
/// that no output can print it even when a driver keeps it in a plain string.
fn register_secrets(key: &str, value: &str) {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let leaf = leaf.split('[').next().unwrap_or(leaf);
    if amber_dr_core::redact::is_secret_key(leaf) {
        amber_dr_core::redact::register(value);
    } else if value.contains("://") || value.contains('=') {
        amber_dr_core::redact::register_credentials_in(value);
    }
}

/// Replace `${VAR}` by the variable's value and `$$` by `$`. Any other `$` stays as it is.
/// The error message names the variable, never a value.
pub fn interpolate(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err("`${` without a closing `}` (write `$$` for a literal `$`)".into());
            };
            let name = &tail[..end];
            let valid = name
                .chars()
                .next()
                .map(|c| c.is_ascii_alphabetic() || c == '_')
                .unwrap_or(false)
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid variable reference: use ${{NAME}} with letters, digits and `_` (write `$$` for a literal `$`)"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => {
                    return Err(format!(
                        "environment variable `{name}` is not set (it is used as ${{{name}}})"
                    ))
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn to_json(value: &toml::Value, key: &str, source: &str) -> Result<serde_json::Value> {
    Ok(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| config_error(format!("{source}: {key}"), "must be a finite number"))?,
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v, &format!("{key}[{i}]"), source))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(t) => {
            let mut map = serde_json::Map::new();
            for (k, v) in t {
                map.insert(k.clone(), to_json(v, &format!("{key}.{k}"), source)?);
            }
            serde_json::Value::Object(map)
        }
    })
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

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/etc/amber/amber-dr.toml"), &env)
    }

    #[test]
    fn interpolation() {
        assert_eq!(interpolate("a${PW}b", &env).as_deref(), Ok("as3cretb"));
        assert_eq!(interpolate("$$${PW}$$", &env).as_deref(), Ok("$s3cret$"));
        assert_eq!(
            interpolate("$HOME $1 x$", &env).as_deref(),
            Ok("$HOME $1 x$")
        );
        assert_eq!(interpolate("${EMPTY}", &env).as_deref(), Ok(""));
        let err = interpolate("${NOPE}", &env).expect_err("unset");
        assert!(err.contains("`NOPE`"), "{err}");
        assert!(interpolate("${PW", &env).is_err());
        assert!(interpolate("${1X}", &env).is_err());
        // Not recursive: a value containing ${...} stays as it is.
        let nested = |n: &str| (n == "A").then(|| "${B}".to_string());
        assert_eq!(interpolate("${A}", &nested).as_deref(), Ok("${B}"));
    }

    #[test]
    fn full_config_keeps_order_and_resolves_paths() {
        let c = parse(
            r#"
[repository]
url = "./backups"
[components.zeta]
kind = "files"
path = "./z"
[components.alpha]
kind = "neo4j"
password = "${PW}"
list = ["x", "${PW}"]
[docker]
[options]
parallelism = 2
"#,
        )
        .expect("loads");
        assert_eq!(
            c.repository.as_ref().map(|r| r.url.as_str()),
            Some("/etc/amber/backups")
        );
        let names: Vec<&str> = c.components.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["zeta", "alpha"]);
        assert_eq!(c.components[1].config["password"], "s3cret");
        assert_eq!(c.components[1].config["list"][1], "s3cret");
        assert!(c.components[1].config.get("kind").is_none());
        assert_eq!(c.components[0].base_dir, Path::new("/etc/amber"));
        assert_eq!(c.parallelism, 2);
    }

    #[test]
    fn errors_name_file_and_key() {
        let cases = [
            ("x = 1", "/etc/amber/amber-dr.toml: x"),
            ("[repository]\nurl = \"a\"\nbogus = 1", "[repository]"),
            (
                "[components.n]\nkind = \"files\"\np = \"${NOPE}\"",
                "components.n.p",
            ),
            ("[components.n]\npath = \"x\"", "components.n"),
            ("[docker]\npause_during_backup = 1", "[docker]"),
            ("[docker]\nbogus = []", "[docker]"),
            ("[docker]\nhost = \"tcp://h:2375\"", "docker.host"),
            ("[options]\nparallelism = 0", "options.parallelism"),
            ("[options]\nfoo = 1", "options.foo"),
            ("[components.\"a b\"]\nkind = \"files\"", "components.a b"),
            ("[repository\nurl = 1", "amber-dr.toml:1:"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert_eq!(err.code, crate::exit::USAGE, "{text}: {err}");
            let msg = err.to_string();
            assert!(msg.contains("/etc/amber/amber-dr.toml"), "{msg}");
            assert!(msg.contains(want), "{text}: {msg}");
        }
        let msg = parse("[components.n]\nkind = \"files\"\np = \"${NOPE}\"")
            .expect_err("unset")
            .to_string();
        assert!(msg.contains("NOPE"), "{msg}");
    }

    #[test]
    fn parse_errors_do_not_echo_values() {
        let err = parse("[components.n]\nkind = \"files\"\npassword = \"hunter2\" oops")
            .expect_err("bad toml");
        assert!(!err.to_string().contains("hunter2"), "{err}");
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
        let c =
            Config::parse(&text, Path::new("amber-dr.toml"), &|_| None).expect("template loads");
        let names: Vec<&str> = c.components.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["uploads"]);
        assert!(text.contains("# driver not available yet in this build"));
        // With every kind registered, every component is live (and needs its variables).
        for k in ["postgres", "neo4j", "minio", "milvus"] {
            reg.register(k, fake);
        }
        let text = template(&reg, Some("s3://bucket/x"));
        let vars = |n: &str| Some(format!("<{n}>"));
        let c =
            Config::parse(&text, Path::new("amber-dr.toml"), &vars).expect("full template loads");
        assert_eq!(c.components.len(), 5);
        assert_eq!(
            c.repository.map(|r| r.url),
            Some("s3://bucket/x".to_string())
        );
    }
}
