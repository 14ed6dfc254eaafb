//! [`Secret`]: a configured credential (a password, a key, a token, or a connection string that
//! can hold one) that is never printed.
//!
//! `Debug` and `Display` print `***`; the value is read only through [`Secret::expose`], at
//! the point where it is handed to a server or a tool. Creating or deserialising a `Secret`
//! registers its value (for a URL or connection string: the passwords and tokens inside it)
//! with [`crate::redact`], so that a server or tool message that echoes it is masked before
//! it reaches a log, `--json` output or a manifest.
//!
//! Serialising a `Secret` writes its real value (configs round-trip through JSON on their way
//! to the driver that owns them); never serialise a config into an output.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A credential, or a string that can hold one. Prints as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap `value` and register it for redaction.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        crate::redact::register(&value);
        Self(value)
    }

    /// The value itself: only to hand it to a server or a tool, never to print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value with every credential in it masked (for a URL: the password of its
    /// userinfo and its `?password=`-like parameters), for messages that must name an
    /// endpoint. See [`crate::redact::redact`].
    pub fn redacted(&self) -> String {
        crate::redact::redact(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed_and_registered() {
        let s: Secret = serde_json::from_str("\"Zq9-never-printed\"").expect("json");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "Zq9-never-printed");
        assert_eq!(
            crate::redact::redact("server said: bad Zq9-never-printed"),
            "server said: bad ***"
        );
        let url = Secret::new("postgres://u:Pw-in-url-77@h:5/db?sslmode=require");
        assert_eq!(url.redacted(), "postgres://u:***@h:5/db?sslmode=require");
    }
}
