//! The connection string, whole: what the driver's own connection (tokio-postgres, TLS by
//! rustls) and the client tools (`pg_dump`, `pg_restore`, `pg_dumpall`, `psql`, through libpq's
//! `PG*` environment) receive from one URL or `key=value` string.
//!
//! tokio-postgres knows only some libpq parameters (no `sslrootcert`, no `verify-full`), so the
//! string is read here: every parameter reaches the tools, and the TLS ones configure the
//! driver's own connection the way libpq would.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq parameters and the environment variables that carry them to the tools.
/// (`keepalives*`, `tcp_user_timeout` and `sslpassword` have none: they reach the driver's own
/// connection only, or not at all — see the README.)
const ENV: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("dbname", "PGDATABASE"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("passfile", "PGPASSFILE"),
    ("require_auth", "PGREQUIREAUTH"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("service", "PGSERVICE"),
    ("options", "PGOPTIONS"),
    ("application_name", "PGAPPNAME"),
    ("sslmode", "PGSSLMODE"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("sslcompression", "PGSSLCOMPRESSION"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("sslsni", "PGSSLSNI"),
    ("requirepeer", "PGREQUIREPEER"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("gssencmode", "PGGSSENCMODE"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gsslib", "PGGSSLIB"),
    ("gssdelegation", "PGGSSDELEGATION"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("client_encoding", "PGCLIENTENCODING"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
];

/// Environment variables that change how libpq connects, never inherited by the tools.
pub(crate) const CLEARED_ENV: &[&str] = &["PGSERVICEFILE", "PGSYSCONFDIR", "PGTZ", "PGDATESTYLE"];

/// Parameters tokio-postgres reads itself.
const TOKIO_POSTGRES: &[&str] = &[
    "user",
    "password",
    "dbname",
    "options",
    "application_name",
    "sslmode",
    "sslnegotiation",
    "host",
    "hostaddr",
    "port",
    "connect_timeout",
    "tcp_user_timeout",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "target_session_attrs",
    "channel_binding",
    "load_balance_hosts",
];

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// A parsed connection string.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    /// For the driver's own connections.
    pub pg: tokio_postgres::Config,
    /// Every parameter of the string, in order (for the tools' environment).
    pub params: Vec<(String, String)>,
    pub tls: Tls,
}

impl std::fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnInfo")
            .field("sslmode", &self.tls.mode)
            .finish_non_exhaustive()
    }
}

impl ConnInfo {
    /// Read a `postgres://` URL or a libpq `key=value` string. Errors never contain the string.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let (params, rebuild): (Vec<(String, String)>, _) = if is_url(s) {
            let (base, query) = s.split_once('?').unwrap_or((s, ""));
            let mut params = url_base_params(base);
            let query: Vec<(String, String)> = query
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect();
            params.extend(query.iter().cloned());
            let kept: Vec<String> = query
                .iter()
                .filter(|(k, _)| TOKIO_POSTGRES.contains(&k.as_str()))
                .map(|(k, v)| {
                    let v = if k == "sslmode" { tokio_sslmode(v) } else { v };
                    format!("{}={}", percent_encode(k), percent_encode(v))
                })
                .collect();
            let url = if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            };
            (params, url)
        } else {
            let params = key_values(s)?;
            let kv = params
                .iter()
                .filter(|(k, _)| TOKIO_POSTGRES.contains(&k.as_str()))
                .map(|(k, v)| {
                    let v = if k == "sslmode" { tokio_sslmode(v) } else { v };
                    format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
                })
                .collect::<Vec<_>>()
                .join(" ");
            (params, kv)
        };
        for (k, _) in &params {
            if !TOKIO_POSTGRES.contains(&k.as_str()) && !ENV.iter().any(|(p, _)| p == k) {
                return Err(format!("unknown connection parameter `{k}`"));
            }
        }
        let pg = tokio_postgres::Config::from_str(&rebuild).map_err(|e| e.to_string())?;
        let get = |k: &str| {
            params
                .iter()
                .rev()
                .find(|(p, _)| p == k)
                .map(|(_, v)| v.as_str())
        };
        let mode = match get("sslmode").unwrap_or("prefer") {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(format!("sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full")),
        };
        let tls = Tls::new(
            mode,
            get("sslrootcert").map(PathBuf::from),
            get("sslcert").map(PathBuf::from),
            get("sslkey").map(PathBuf::from),
        )?;
        Ok(Self { pg, params, tls })
    }

    /// The tools' environment for these parameters (host, port, user, password and database
    /// are set by the caller from [`ConnInfo::pg`]); every other libpq variable is removed.
    pub(crate) fn tool_env(&self) -> (Vec<(&'static str, String)>, Vec<&'static str>) {
        let mut set = Vec::new();
        let mut remove: Vec<&'static str> = CLEARED_ENV.to_vec();
        for (param, var) in ENV {
            if matches!(*param, "host" | "port" | "user" | "password" | "dbname") {
                continue;
            }
            match self.params.iter().rev().find(|(k, _)| k == param) {
                Some((_, v)) => set.push((*var, v.clone())),
                None => remove.push(var),
            }
        }
        (set, remove)
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The parameters held in a URL's `user:password@host:port/dbname` part.
fn url_base_params(base: &str) -> Vec<(String, String)> {
    let rest = base.split_once("://").map(|(_, r)| r).unwrap_or(base);
    let (auth, rest) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let mut out = Vec::new();
    if let Some(auth) = auth {
        let (u, p) = auth
            .split_once(':')
            .map_or((auth, None), |(u, p)| (u, Some(p)));
        if !u.is_empty() {
            out.push(("user".into(), percent_decode(u)));
        }
        if let Some(p) = p {
            out.push(("password".into(), percent_decode(p)));
        }
    }
    if let Some((_, db)) = rest.split_once('/') {
        if !db.is_empty() {
            out.push(("dbname".into(), percent_decode(db)));
        }
    }
    out
}

/// libpq's `key = value` syntax: values may be single-quoted, `\` escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("connection parameter `{key}` has no `=`"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(format!("unterminated quoted value of `{key}`")),
                    Some('\\') => value.extend(it.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// tokio-postgres knows disable/prefer/require; the verification is done by [`Tls`].
fn tokio_sslmode(v: &str) -> &str {
    match v {
        "verify-ca" | "verify-full" => "require",
        "allow" => "prefer",
        other => other,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| {
            if c.is_ascii_alphanumeric() || b"-._~/".contains(&c) {
                (c as char).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

/// The driver's TLS connector: libpq's `sslmode` semantics with rustls.
#[derive(Clone)]
pub(crate) struct Tls {
    pub mode: SslMode,
    config: Option<Arc<rustls::ClientConfig>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Tls {
    fn new(
        mode: SslMode,
        root: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Self, String> {
        if mode == SslMode::Disable {
            return Ok(Self { mode, config: None });
        }
        let provider = provider();
        let verifier: Arc<dyn ServerCertVerifier> = match (&root, mode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                return Err(format!(
                    "sslmode={} needs sslrootcert=FILE (the CA certificates to verify the server with); the system store (`system`) is not supported yet",
                    if mode == SslMode::VerifyCa { "verify-ca" } else { "verify-full" }
                ))
            }
            (None, _) => Arc::new(NoVerify(provider.clone())),
            (Some(path), _) => {
                let mut roots = RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "sslrootcert {} holds no usable certificate",
                        path.display()
                    ));
                }
                let inner = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                // libpq: with a root certificate, `require` verifies like `verify-ca`.
                Arc::new(Verify {
                    inner,
                    names: mode == SslMode::VerifyFull,
                })
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(&cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read sslcert {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(&key)
                    .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("sslcert/sslkey: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("sslcert and sslkey go together".into()),
        };
        Ok(Self {
            mode,
            config: Some(Arc::new(config)),
        })
    }
}

/// Verifies the chain against the root certificates; the host name only with `verify-full`.
#[derive(Debug)]
struct Verify {
    inner: Arc<WebPkiServerVerifier>,
    names: bool,
}

impl ServerCertVerifier for Verify {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.names => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `sslmode=prefer`/`require` without a root certificate: encrypted, the server not verified
/// (as libpq does).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for Tls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<RustlsConnect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One TLS handshake to come.
pub(crate) struct RustlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::new(io::ErrorKind::Unsupported, "sslmode=disable"))?;
            let s = tokio_rustls::TlsConnector::from(config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(s)))
        })
    }
}

/// A TLS stream for tokio-postgres.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn url_options_reach_the_tools() {
        let c = ConnInfo::parse(
            "postgres://u:p%40ss@db.example:5433/app?sslmode=require&application_name=my%20app&options=-c%20search_path%3Dx&target_session_attrs=read-write&sslcompression=0",
        )
        .unwrap();
        assert_eq!(c.pg.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(c.pg.get_dbname(), Some("app"));
        assert_eq!(c.tls.mode, SslMode::Require);
        let (set, remove) = c.tool_env();
        assert!(set.contains(&("PGSSLMODE", "require".into())), "{set:?}");
        assert!(set.contains(&("PGAPPNAME", "my app".into())), "{set:?}");
        assert!(
            set.contains(&("PGOPTIONS", "-c search_path=x".into())),
            "{set:?}"
        );
        assert!(
            set.contains(&("PGTARGETSESSIONATTRS", "read-write".into())),
            "{set:?}"
        );
        assert!(set.contains(&("PGSSLCOMPRESSION", "0".into())), "{set:?}");
        assert!(remove.contains(&"PGSSLROOTCERT"), "{remove:?}");
        assert!(!set.iter().any(|(k, _)| *k == "PGPASSWORD"), "{set:?}");
    }

    #[test]
    fn key_value_strings() {
        let c = ConnInfo::parse(
            "host=/tmp port = 5433 user=amber password='it\\'s a secret' dbname=x sslmode=disable",
        )
        .unwrap();
        assert_eq!(c.pg.get_password(), Some(&b"it's a secret"[..]));
        assert_eq!(c.pg.get_ports(), &[5433]);
        assert_eq!(c.tls.mode, SslMode::Disable);
    }

    #[test]
    fn verify_needs_a_root_and_errors_hide_the_password() {
        let e = ConnInfo::parse("postgres://u:hunter2@h/db?sslmode=verify-full").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = ConnInfo::parse(
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let e = ConnInfo::parse("postgres://u:hunter2@h/db?bogus=1").unwrap_err();
        assert!(e.contains("bogus") && !e.contains("hunter2"), "{e}");
    }
}
