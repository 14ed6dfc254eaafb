//! `amber-dr.toml`: loading, `${VAR}` interpolation and validation — for the CLI and for any
//! program that embeds amber-dr and wants the same file with the same rules.
//!
//! The file has these sections, and no others:
//!
//! - `[repository]`: deserialised into [`RepositoryConfig`]; a relative local `url` (and
//!   `encryption.identity_file`) is relative to the config file's directory.
//! - `[components.NAME]`: one table per component, `kind` plus the driver's keys, kept in file
//!   order; each becomes a [`ComponentSpec`] that the [`Registry`] builds.
//! - `[options]`: `parallelism` (components at once, default 4).
//! - `[[references]]`: references between the components' keys, checked at backup, verify and
//!   restore ([`crate::references::ReferenceSpec`]; checked against the components by
//!   [`crate::Runner::with_references`]).
//! - sections registered with [`ConfigLoader::section`] by the program (the CLI registers
//!   `[docker]`, checked by `amber-dr-docker`); kept as JSON in [`Config::sections`].
//!
//! Every string value may use `${VAR}` (the environment variable `VAR`, which must be set);
//! `$$` is a literal `$`. Errors ([`Error::Config`]) name the file and the key; values are
//! never printed, so a secret in the file cannot end up in a terminal or a log. Values of keys
//! that name credentials, and the credentials inside URLs, are registered with
//! [`crate::redact`] as they are read.
//!
//! ```no_run
//! # fn main() -> amber_dr_core::Result<()> {
//! use amber_dr_core::config::Config;
//! let registry = amber_dr_core::Registry::new(); // register the drivers you link
//! let config = Config::load(std::path::Path::new("amber-dr.toml"))?;
//! let components = config.build_components(&registry)?;
//! # let _ = components; Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::component::{Component, ComponentSpec, Registry};
use crate::repository::RepositoryConfig;
use crate::{Error, Result};

/// The sections every config may have.
const BUILTIN_SECTIONS: &[&str] = &["repository", "components", "options", "references", "drill"];

/// Components run at once unless `[options] parallelism` says otherwise.
pub const DEFAULT_PARALLELISM: usize = 4;

/// Checks a registered section's value (interpolated, as JSON). An [`Error::Config`] it returns
/// gets the file name put in front of its location.
pub type SectionCheck = fn(&serde_json::Value) -> Result<()>;

/// Loads config files, with the extra sections a program registers.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    sections: Vec<(&'static str, SectionCheck)>,
}

impl ConfigLoader {
    /// A loader that knows the built-in sections only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accept the top-level table `[name]`, checked by `check`.
    pub fn section(mut self, name: &'static str, check: SectionCheck) -> Self {
        self.sections.push((name, check));
        self
    }

    /// Read and check the config file at `path`, interpolating `${VAR}` from the environment.
    pub fn load(&self, path: &Path) -> Result<Config> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(
                &source,
                format!(
                    "cannot read the config file: {e}; write one with `amber-dr init`, or name one with --config FILE"
                ),
            )
        })?;
        self.parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Check the config text `text` of the file `path`, taking `${VAR}` values from `env`.
    pub fn parse(
        &self,
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
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
            Error::config(location, format!("invalid TOML: {}", e.message().trim()))
        })?;

        let known: Vec<&str> = BUILTIN_SECTIONS
            .iter()
            .copied()
            .chain(self.sections.iter().map(|(n, _)| *n))
            .collect();
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                return Err(Error::config(
                    format!("{source}: {key}"),
                    format!(
                        "unknown top-level key `{key}`; the sections are: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        for (key, value) in table.iter_mut() {
            interpolate_value(value, key, &source, env)?;
        }

        let repository = match table.get("repository") {
            None => None,
            Some(v) => Some(parse_repository(v, &source, &base_dir)?),
        };
        let components = match table.get("components") {
            None => Vec::new(),
            Some(v) => parse_components(v, &source, &base_dir)?,
        };
        let parallelism = match table.get("options") {
            None => DEFAULT_PARALLELISM,
            Some(v) => parse_options(v, &source)?,
        };
        let references = match table.get("references") {
            None => Vec::new(),
            Some(v) => parse_references(v, &source)?,
        };
        let drill = match table.get("drill") {
            None => crate::drill::DrillConfig::default(),
            Some(v) => parse_drill(v, &source, &base_dir)?,
        };
        let mut sections = BTreeMap::new();
        for (name, check) in &self.sections {
            let Some(v) = table.get(*name) else { continue };
            if !v.is_table() {
                return Err(not_a_table(&source, name));
            }
            let json = to_json(v, name, &source)?;
            check(&json).map_err(|e| match e {
                Error::Config { location, message } => {
                    Error::config(format!("{source}: {location}"), message)
                }
                other => other,
            })?;
            sections.insert(name.to_string(), json);
        }

        Ok(Config {
            path: path.to_path_buf(),
            base_dir,
            repository,
            components,
            parallelism,
            references,
            drill,
            sections,
        })
    }
}

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
    /// `[[references]]`, in file order.
    pub references: Vec<crate::references::ReferenceSpec>,
    /// `[drill]`: where drills restore (see [`crate::drill`]).
    pub drill: crate::drill::DrillConfig,
    /// The registered sections present in the file (see [`ConfigLoader::section`]), as JSON.
    pub sections: BTreeMap<String, serde_json::Value>,
}

impl Config {
    /// [`ConfigLoader::load`] without extra sections.
    pub fn load(path: &Path) -> Result<Self> {
        ConfigLoader::new().load(path)
    }

    /// [`ConfigLoader::parse`] without extra sections.
    pub fn parse(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        ConfigLoader::new().parse(text, path, env)
    }

    /// The file name for messages.
    pub fn source(&self) -> String {
        self.path.display().to_string()
    }

    /// A registered section, if the file has it.
    pub fn section(&self, name: &str) -> Option<&serde_json::Value> {
        self.sections.get(name)
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
                Error::UnknownKind { .. } => Error::config(
                    format!("{source}: components.{}.kind", spec.name),
                    err.to_string(),
                ),
                Error::Config { location, message } if !location.contains(&source) => {
                    Error::config(format!("{source}: {location}"), message)
                }
                other => other,
            });
        }
        Ok(built)
    }
}

fn parse_repository(v: &toml::Value, source: &str, base_dir: &Path) -> Result<RepositoryConfig> {
    let json = to_json(v, "repository", source)?;
    if !json.is_object() {
        return Err(not_a_table(source, "repository"));
    }
    let mut repo: RepositoryConfig = serde_json::from_value(json)
        .map_err(|e| Error::config(format!("{source}: [repository]"), e.to_string()))?;
    check_path_value(
        source,
        "repository.url",
        &toml::Value::String(repo.url.clone()),
    )?;
    repo.url = resolve_local_url(&repo.url, base_dir);
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
    Ok(repo)
}

fn parse_components(v: &toml::Value, source: &str, base_dir: &Path) -> Result<Vec<ComponentSpec>> {
    let Some(comps) = v.as_table() else {
        return Err(not_a_table(source, "components"));
    };
    let mut components = Vec::new();
    for (name, section) in comps {
        let key = format!("components.{name}");
        check_component_name(name, source)?;
        let Some(section) = section.as_table() else {
            return Err(not_a_table(source, &key));
        };
        let kind = match section.get("kind") {
            Some(toml::Value::String(k)) if !k.trim().is_empty() => k.trim().to_string(),
            Some(_) => {
                return Err(Error::config(
                    format!("{source}: {key}.kind"),
                    "must be a non-empty string naming a driver kind",
                ))
            }
            None => {
                return Err(Error::config(
                    format!("{source}: {key}"),
                    "has no `kind` (e.g. kind = \"files\")",
                ))
            }
        };
        let mut config = serde_json::Map::new();
        for (k, v) in section.iter().filter(|(k, _)| k.as_str() != "kind") {
            check_path_value(source, &format!("{key}.{k}"), v)?;
            config.insert(k.clone(), to_json(v, &format!("{key}.{k}"), source)?);
        }
        components.push(ComponentSpec {
            name: name.clone(),
            kind,
            config: serde_json::Value::Object(config),
            base_dir: base_dir.to_path_buf(),
            source: source.to_string(),
        });
    }
    Ok(components)
}

fn parse_drill(
    v: &toml::Value,
    source: &str,
    base_dir: &Path,
) -> Result<crate::drill::DrillConfig> {
    if !v.is_table() {
        return Err(not_a_table(source, "drill"));
    }
    let json = to_json(v, "drill", source)?;
    let mut d: crate::drill::DrillConfig = serde_json::from_value(json)
        .map_err(|e| Error::config(format!("{source}: [drill]"), e.to_string()))?;
    if let Some(dir) = &d.dir {
        if dir.as_os_str().is_empty() {
            return Err(Error::config(
                format!("{source}: drill.dir"),
                "is empty; name a directory for scratch copies, or leave it out (the temporary directory)",
            ));
        }
        let joined = if dir.is_relative() {
            base_dir.join(dir)
        } else {
            dir.clone()
        };
        // `./scratch` shows as `/etc/amber-dr/scratch`, not `/etc/amber-dr/./scratch`.
        d.dir = Some(
            joined
                .components()
                .filter(|c| !matches!(c, std::path::Component::CurDir))
                .collect(),
        );
    }
    if let Some(b) = d.rto_budget_seconds {
        if b.is_nan() || b <= 0.0 {
            return Err(Error::config(
                format!("{source}: drill.rto_budget_seconds"),
                "must be a positive number of seconds",
            ));
        }
    }
    Ok(d)
}

fn parse_options(v: &toml::Value, source: &str) -> Result<usize> {
    let Some(options) = v.as_table() else {
        return Err(not_a_table(source, "options"));
    };
    let mut parallelism = DEFAULT_PARALLELISM;
    for (k, v) in options {
        match (k.as_str(), v) {
            ("parallelism", toml::Value::Integer(n)) if *n >= 1 => {
                parallelism = usize::try_from(*n).unwrap_or(usize::MAX);
            }
            ("parallelism", _) => {
                return Err(Error::config(
                    format!("{source}: options.parallelism"),
                    "must be an integer of at least 1",
                ))
            }
            _ => {
                return Err(Error::config(
                    format!("{source}: options.{k}"),
                    format!("unknown key `{k}`; [options] knows: parallelism"),
                ))
            }
        }
    }
    Ok(parallelism)
}

/// `[[references]]`: each table deserialised (unknown keys refused, naming the entry).
fn parse_references(
    v: &toml::Value,
    source: &str,
) -> Result<Vec<crate::references::ReferenceSpec>> {
    let Some(list) = v.as_array() else {
        return Err(Error::config(
            format!("{source}: references"),
            "must be an array of tables: write each one as [[references]]",
        ));
    };
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            r.clone().try_into().map_err(|e: toml::de::Error| {
                Error::config(
                    format!("{source}: references[{i}]"),
                    e.message().trim().to_string(),
                )
            })
        })
        .collect()
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
            Err(Error::config(format!("{source}: {key}"), "is empty: give a path (an empty value, or a ${VAR} set to an empty string, would mean the config file's own directory)"))
        }
        _ => Ok(()),
    }
}

fn not_a_table(source: &str, key: &str) -> Error {
    Error::config(format!("{source}: {key}"), "must be a table")
}

fn check_component_name(name: &str, source: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::config(
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
            *s = interpolate(s, env)
                .map_err(|msg| Error::config(format!("{source}: {key}"), msg))?;
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
    if crate::redact::is_secret_key(leaf) {
        crate::redact::register(value);
    } else if value.contains("://") || value.contains('=') {
        crate::redact::register_credentials_in(value);
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
            .ok_or_else(|| Error::config(format!("{source}: {key}"), "must be a finite number"))?,
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

    #[test]
    fn drill_section_is_read_and_checked() {
        let path = Path::new("/etc/amber/amber-dr.toml");
        let c = Config::parse(
            "[drill]\ndir = \"./scratch\"\nneo4j_uri = \"bolt://h:7688\"\nrto_budget_seconds = 60\n[drill.targets]\nuploads = \"/mnt/x\"",
            path,
            &env,
        )
        .expect("parses");
        assert_eq!(
            c.drill.dir.as_deref(),
            Some(Path::new("/etc/amber/scratch"))
        );
        assert_eq!(c.drill.neo4j_uri.as_deref(), Some("bolt://h:7688"));
        assert_eq!(c.drill.targets["uploads"], "/mnt/x");
        for (text, want) in [
            ("[drill]\nbogus = 1", "[drill]"),
            (
                "[drill]\nrto_budget_seconds = -1",
                "drill.rto_budget_seconds",
            ),
            ("[drill]\ndir = \"\"", "drill.dir"),
        ] {
            let e = Config::parse(text, path, &env).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    fn check_x(v: &serde_json::Value) -> Result<()> {
        match v.get("n") {
            None | Some(serde_json::Value::Number(_)) => Ok(()),
            Some(_) => Err(Error::config("x.n", "must be a number")),
        }
    }

    fn parse(text: &str) -> Result<Config> {
        ConfigLoader::new().section("x", check_x).parse(
            text,
            Path::new("/etc/amber/amber-dr.toml"),
            &env,
        )
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
[x]
n = 3
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
        assert_eq!(c.section("x").and_then(|x| x.get("n")), Some(&3.into()));
        // A section nobody registered is an unknown key.
        let err = Config::parse("[x]\nn = 1", Path::new("a.toml"), &env).expect_err("x");
        assert!(
            err.to_string().contains("unknown top-level key `x`"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let cases = [
            ("x = 1", "/etc/amber/amber-dr.toml: x"),
            ("y = 1", "/etc/amber/amber-dr.toml: y"),
            ("[repository]\nurl = \"a\"\nbogus = 1", "[repository]"),
            (
                "[components.n]\nkind = \"files\"\np = \"${NOPE}\"",
                "components.n.p",
            ),
            ("[components.n]\npath = \"x\"", "components.n"),
            ("[x]\nn = \"a\"", "x.n"),
            ("[options]\nparallelism = 0", "options.parallelism"),
            ("[options]\nfoo = 1", "options.foo"),
            ("[components.\"a b\"]\nkind = \"files\"", "components.a b"),
            ("[repository\nurl = 1", "amber-dr.toml:1:"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(matches!(err, Error::Config { .. }), "{text}: {err}");
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
}
