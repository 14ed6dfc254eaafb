//! The one redaction of amber-dr: every message that can reach an operator (logs, human
//! output, `--json`) or the repository (a manifest's `error` and `warnings`) goes through
//! [`redact`] first.
//!
//! [`redact`] masks, with `***`:
//! - the password of a URL's userinfo (`scheme://user:PASSWORD@host`);
//! - the value of every `key=value` whose key names a credential (`password`, `passwd`, `pwd`,
//!   `secret`, `token`, `credential`, `signature`, `apikey`, in any case and with any prefix
//!   or suffix: `?password=`, `&X-Amz-Signature=`, libpq's `host=h password='a b'`), quoted
//!   values included;
//! - an HTTP `Bearer`/`Basic` credential;
//! - every value registered with [`register`]: each [`crate::Secret`] registers itself when it
//!   is created or deserialised, and the CLI registers every config value whose key names a
//!   credential, so a secret is masked wherever a server or tool echoes it, in any form
//!   (values shorter than 4 characters are not registered: masking every `ab` would make
//!   messages unreadable while hiding nothing).

use std::sync::RwLock;

/// The mask that replaces a secret.
pub const MASK: &str = "***";

/// Registered secret values, longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The shortest value [`register`] keeps.
const MIN_LEN: usize = 4;

/// Register a credential for redaction. A URL or connection string that holds passwords or
/// tokens registers those (and their percent-decoded forms), a URL without any registers
/// nothing, and any other value (a password, a key, a token) registers itself.
pub fn register(value: &str) {
    let parts = credentials_in(value);
    if parts.is_empty() && !value.contains("://") {
        add(vec![value.to_string()]);
    } else {
        add(parts);
    }
}

/// Register only the passwords and tokens inside a URL or connection string (nothing when it
/// holds none): for values that are not secret as a whole, such as an endpoint.
pub fn register_credentials_in(value: &str) {
    add(credentials_in(value));
}

fn add(mut found: Vec<String>) {
    let decoded: Vec<String> = found.iter().filter_map(|p| percent_decode(p)).collect();
    found.extend(decoded);
    let Ok(mut secrets) = SECRETS.write() else {
        return;
    };
    for f in found {
        if f.chars().count() >= MIN_LEN && f != MASK && !secrets.contains(&f) {
            secrets.push(f);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every credential masked (see the module documentation).
pub fn redact(text: &str) -> String {
    let mut s = mask_userinfo(text);
    s = mask_params(&s);
    s = mask_auth_schemes(&s);
    if let Ok(secrets) = SECRETS.read() {
        for secret in secrets.iter() {
            if s.contains(secret.as_str()) {
                s = s.replace(secret.as_str(), MASK);
            }
        }
    }
    s
}

/// Redact every string (and every object key) inside a JSON value, in place.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            let r = redact(s);
            if &r != s {
                *s = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                let rk = redact(&k);
                if rk != k {
                    if let Some(v) = map.remove(&k) {
                        map.insert(rk, v);
                    }
                }
            }
            map.values_mut().for_each(redact_json);
        }
        _ => {}
    }
}

/// True when a config key's name says that its value is a credential (e.g. `password`,
/// `secret_key`, `session_token`, `api_key`).
pub fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "credential",
        "signature",
        "apikey",
        "privatekey",
    ]
    .iter()
    .any(|w| k.contains(w))
        || k.ends_with("pwd")
}

/// The passwords and tokens inside a URL or connection string. A password that is also a
/// visible part of the same string (`postgres://postgres:postgres@...`: the user name) is left
/// out: masking that word in every message would hide the user name, a database name or a
/// driver's kind while keeping nothing secret that the masked URL does not already keep.
fn credentials_in(value: &str) -> Vec<String> {
    let mut ranges = userinfo_passwords(value);
    ranges.extend(param_values(value));
    let visible = replace_ranges(value, &{
        let mut r = ranges.clone();
        r.sort_unstable();
        r
    });
    let words: Vec<&str> = visible
        .split(|c: char| !(c.is_alphanumeric() || "-_.".contains(c)))
        .collect();
    let mut out: Vec<String> = ranges
        .iter()
        .map(|&(s, e)| value[s..e].to_string())
        .collect();
    out.retain(|p| !p.is_empty() && p != MASK && !words.contains(&p.as_str()));
    out
}

fn replace_ranges(text: &str, ranges: &[(usize, usize)]) -> String {
    if ranges.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for &(s, e) in ranges {
        if s < last {
            continue;
        }
        out.push_str(&text[last..s]);
        out.push_str(MASK);
        last = e;
    }
    out.push_str(&text[last..]);
    out
}

fn mask_userinfo(text: &str) -> String {
    replace_ranges(text, &userinfo_passwords(text))
}

/// Byte ranges of the passwords of every `scheme://user:password@host` in `text`.
fn userinfo_passwords(text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("://") {
        let a = from + i + 3;
        let end = text[a..]
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | ',')
                    || c.is_whitespace()
            })
            .map(|e| a + e)
            .unwrap_or(text.len());
        let authority = &text[a..end];
        if let Some(at) = authority.rfind('@') {
            if let Some(colon) = authority[..at].find(':') {
                if colon + 1 < at && &authority[colon + 1..at] != MASK {
                    ranges.push((a + colon + 1, a + at));
                }
            }
        }
        from = a;
    }
    ranges
}

fn mask_params(text: &str) -> String {
    replace_ranges(text, &param_values(text))
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.')
}

/// Byte ranges of the values of every `key=value` in `text` whose key names a credential.
fn param_values(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'=' {
            i += 1;
            continue;
        }
        // The key: back over spaces, then over key characters.
        let mut k_end = i;
        while k_end > 0 && b[k_end - 1] == b' ' {
            k_end -= 1;
        }
        let mut k_start = k_end;
        while k_start > 0 && is_key_char(b[k_start - 1]) {
            k_start -= 1;
        }
        if k_start == k_end || !is_secret_key(&text[k_start..k_end]) {
            i += 1;
            continue;
        }
        let mut v = i + 1;
        while v < b.len() && b[v] == b' ' {
            v += 1;
        }
        if v >= b.len() {
            break;
        }
        let (start, end) = if b[v] == b'\'' || b[v] == b'"' {
            let q = b[v];
            let mut j = v + 1;
            while j < b.len() && b[j] != q {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            (v + 1, j.min(b.len()))
        } else {
            let mut j = v;
            while j < b.len()
                && !b[j].is_ascii_whitespace()
                && !matches!(
                    b[j],
                    b'&' | b';' | b',' | b'"' | b'\'' | b')' | b'>' | b'}' | b'`'
                )
            {
                j += 1;
            }
            (v, j)
        };
        if start < end && &text[start..end] != MASK {
            ranges.push((start, end));
        }
        i = end.max(i + 1);
    }
    ranges
}

fn mask_auth_schemes(text: &str) -> String {
    let mut ranges = Vec::new();
    for scheme in ["Bearer ", "Basic "] {
        let mut from = 0;
        while let Some(p) = text[from..].find(scheme) {
            let s = from + p + scheme.len();
            let e = text[s..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "+/=._~-".contains(c)))
                .map(|e| s + e)
                .unwrap_or(text.len());
            // Only something that looks like a credential: 12+ token characters.
            if e - s >= 12 {
                ranges.push((s, e));
            }
            from = s;
        }
    }
    ranges.sort_unstable();
    replace_ranges(text, &ranges)
}

/// `%XX`-decoded `s`, when it contains a valid escape and decodes to UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_connection_strings() {
        assert_eq!(
            redact("postgres://amber:s3cr%40t@db:5432/x?sslmode=require"),
            "postgres://amber:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact("postgres://amber@db/x?password=abc&sslmode=verify-full"),
            "postgres://amber@db/x?password=***&sslmode=verify-full"
        );
        assert_eq!(
            redact("host=db port=5 password='a b c' dbname=x"),
            "host=db port=5 password='***' dbname=x"
        );
        assert_eq!(
            redact("host=db PASSWORD = hunter22 user=u"),
            "host=db PASSWORD = *** user=u"
        );
        assert_eq!(
            redact("GET /b?X-Amz-Signature=deadbeef&X-Amz-Credential=AK%2F1 failed"),
            "GET /b?X-Amz-Signature=***&X-Amz-Credential=*** failed"
        );
        assert_eq!(
            redact("Authorization: Bearer abcdefgh1234"),
            "Authorization: Bearer ***"
        );
        // Nothing to mask: unchanged.
        let plain = "component `db` (postgres): snapshot: connection refused at 127.0.0.1:5432";
        assert_eq!(redact(plain), plain);
        assert_eq!(redact("bolt://127.0.0.1:7687"), "bolt://127.0.0.1:7687");
    }

    #[test]
    fn registered_values_in_any_form() {
        register("postgres://u:Reg-Pw%2Fone@h/db?token=Tok-en-9");
        register("plain-Registered-1");
        register("ab");
        let r = redact("echo Reg-Pw/one and Reg-Pw%2Fone, Tok-en-9, plain-Registered-1, ab");
        assert_eq!(r, "echo *** and ***, ***, ***, ab");
        let mut v = serde_json::json!({"error": ["x plain-Registered-1"], "n": 1});
        redact_json(&mut v);
        assert_eq!(v, serde_json::json!({"error": ["x ***"], "n": 1}));
    }

    #[test]
    fn a_password_that_is_also_the_user_name_is_not_masked_everywhere() {
        register("postgres://pgadmin:pgadmin@h/db");
        assert_eq!(redact("role pgadmin"), "role pgadmin");
        assert_eq!(
            redact("postgres://pgadmin:pgadmin@h/db"),
            "postgres://pgadmin:***@h/db"
        );
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "secret_key",
            "session_token",
            "AWS_SECRET_ACCESS_KEY",
            "api_key",
            "pgpwd",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["url", "user", "path", "bucket", "access_key", "sslmode"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
