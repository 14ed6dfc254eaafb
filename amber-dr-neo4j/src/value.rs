//! Property values and graph records as stored in the artifacts, and their exact transport
//! over Bolt.
//!
//! neo4rs is lossy for some Neo4j types (it folds a Duration's months into seconds, and its
//! zone-id DateTime handling is incomplete), so temporal values and points never travel as
//! Bolt structures: the export query decomposes them in Cypher into strings and integers
//! ([`ENCODE_FN`]), and restore rebuilds them in Cypher from the same parts ([`DECODE_FN`]).
//! Integers, floats (as IEEE bits: NaN, ±Infinity and -0.0 included), strings, booleans,
//! byte arrays and lists of those travel as plain Bolt values, which are exact — except that
//! neo4rs 0.8 reads the packstream tiny integers -16..-1 as 240..255, so those integers and
//! integer lists travel as decimal text (`toString`). Only values that need it are decomposed:
//! [`props_column`] sends the plain ones ([`plain_pred`]) as they are.

use std::collections::BTreeMap;

use neo4rs::{BoltBoolean, BoltBytes, BoltFloat, BoltInteger, BoltList, BoltString, BoltType};
use serde::{Deserialize, Serialize};

/// One property value, exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    /// Boolean.
    Bool(bool),
    /// Integer (full i64 range).
    Int(i64),
    /// Float, as its IEEE-754 bits (keeps NaN, ±Infinity and -0.0).
    Float(u64),
    /// String.
    Str(String),
    /// Byte array, hex.
    Bytes(String),
    /// Date, ISO text (`2024-02-29`).
    Date(String),
    /// LocalTime, ISO text.
    LocalTime(String),
    /// Time with offset, ISO text.
    Time(String),
    /// LocalDateTime, ISO text.
    LocalDateTime(String),
    /// DateTime: the instant (epoch seconds and nanoseconds) and the zone (an offset such as
    /// `+01:00`/`Z`, or a zone id such as `Europe/Berlin`); the instant makes a wall time that
    /// daylight saving makes ambiguous exact.
    DateTime {
        /// Seconds since the epoch.
        s: i64,
        /// Nanoseconds of the second.
        n: i64,
        /// Offset or zone id.
        tz: String,
    },
    /// Duration in Neo4j's four parts.
    Duration {
        /// Months.
        months: i64,
        /// Days.
        days: i64,
        /// Seconds.
        seconds: i64,
        /// Nanoseconds of the second (0..1e9).
        nanos: i64,
    },
    /// Point: CRS id and coordinates as IEEE bits; `z` for 3D points.
    Point {
        /// SRID (7203, 9157, 4326, 4979).
        srid: i64,
        /// x / longitude.
        x: u64,
        /// y / latitude.
        y: u64,
        /// z / height, 3D only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        z: Option<u64>,
    },
    /// A list (homogeneous in Neo4j).
    List(Vec<Value>),
}

/// A node as stored: its id in the source database, labels and properties, both sorted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id in the source database (only to link relationships on restore).
    pub id: i64,
    /// Labels, sorted.
    pub labels: Vec<String>,
    /// Properties, by key.
    pub props: BTreeMap<String, Value>,
}

/// A relationship as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelRecord {
    /// Start node id (source database).
    pub s: i64,
    /// End node id (source database).
    pub e: i64,
    /// Type.
    #[serde(rename = "type")]
    pub typ: String,
    /// Properties, by key.
    pub props: BTreeMap<String, Value>,
}

/// A Cypher expression that turns the property value `v` into `[tag, payload]`: temporal
/// values and points decomposed (tags as in [`Value`]), anything else `['raw', v]`.
/// Used as `ENCODE_FN.replace("v", ...)`: the placeholder is `$V$`.
pub(crate) const ENCODE_FN: &str = "CASE \
  WHEN $V$ IS :: INTEGER THEN ['int', toString($V$)] \
  WHEN $V$ IS :: DATE THEN ['date', toString($V$)] \
  WHEN $V$ IS :: LOCAL TIME THEN ['local_time', toString($V$)] \
  WHEN $V$ IS :: ZONED TIME THEN ['time', toString($V$)] \
  WHEN $V$ IS :: LOCAL DATETIME THEN ['local_date_time', toString($V$)] \
  WHEN $V$ IS :: ZONED DATETIME THEN ['date_time', [toString($V$.epochSeconds), toString($V$.nanosecond), $V$.timezone]] \
  WHEN $V$ IS :: DURATION THEN ['duration', [toString($V$.months), toString($V$.days), toString($V$.seconds), toString($V$.nanosecondsOfSecond)]] \
  WHEN $V$ IS :: POINT THEN ['point', CASE WHEN $V$.srid IN [4979, 9157] THEN [$V$.srid, $V$.x, $V$.y, $V$.z] ELSE [$V$.srid, $V$.x, $V$.y] END] \
  ELSE ['raw', $V$] END";

/// The Cypher expression that rebuilds a decomposed scalar from `$T$` (tag) and `$P$`
/// (payload).
pub(crate) const DECODE_FN: &str = "CASE $T$ \
  WHEN 'date' THEN date($P$) \
  WHEN 'local_time' THEN localtime($P$) \
  WHEN 'time' THEN time($P$) \
  WHEN 'local_date_time' THEN localdatetime($P$) \
  WHEN 'date_time' THEN datetime({epochSeconds: $P$[0], nanosecond: $P$[1], timezone: $P$[2]}) \
  WHEN 'duration' THEN duration({months: $P$[0], days: $P$[1], seconds: $P$[2], nanoseconds: $P$[3]}) \
  WHEN 'point' THEN CASE size($P$) WHEN 4 THEN point({srid: $P$[0], x: $P$[1], y: $P$[2], z: $P$[3]}) \
    ELSE point({srid: $P$[0], x: $P$[1], y: $P$[2]}) END \
  END";

/// The expression that encodes property value `v` (an expression) for export. A list whose
/// first element is temporal or a point is encoded element by element (`['list', [...]]`); a
/// list of integers as `['ints', [text...], v]` (a byte array, which Cypher also sees as a
/// list of integers, then arrives as bytes in `v`).
pub(crate) fn encode_expr(v: &str) -> String {
    let scalar = |x: &str| ENCODE_FN.replace("$V$", x);
    format!(
        "CASE WHEN {v} IS :: LIST<ANY> AND size({v}) > 0 AND {v}[0] IS :: INTEGER \
         THEN ['ints', [e IN {v} | toString(e)], {v}] \
         WHEN {v} IS :: LIST<ANY> AND size({v}) > 0 AND NOT ({v}[0] IS :: FLOAT \
         OR {v}[0] IS :: STRING OR {v}[0] IS :: BOOLEAN) THEN ['list', [e IN {v} | {}]] ELSE {} END",
        scalar("e"),
        scalar(v)
    )
}

/// The expression that rebuilds a property from `c` = `[key, tag, payload]` (restore side):
/// a decomposed scalar, or a list of them.
pub(crate) fn decode_expr(c: &str) -> String {
    let scalar = |t: &str, p: &str| DECODE_FN.replace("$T$", t).replace("$P$", p);
    format!(
        "CASE {c}[1] WHEN 'list' THEN [e IN {c}[2] | {}] ELSE {} END",
        scalar("e[0]", "e[1]"),
        scalar(&format!("{c}[1]"), &format!("{c}[2]"))
    )
}

/// A Cypher predicate, true when property value `v` travels exactly as a plain Bolt value and
/// needs no decomposition: strings, floats, booleans, lists of those, and integers outside
/// -16..-1 (the tiny integers neo4rs 0.8 misreads, see the module docs). It is two-valued
/// (never null), so `NOT` of it selects exactly the other values. Evaluating one type
/// predicate per value is far cheaper on the server than [`encode_expr`]'s chain of them, so
/// the export sends the plain values as they are and encodes only the rest.
pub(crate) fn plain_pred(v: &str) -> String {
    format!(
        "({v} IS :: STRING | FLOAT | BOOLEAN | LIST<STRING | FLOAT | BOOLEAN> \
         OR ({v} IS :: INTEGER AND ({v} >= 0 OR {v} < -16)))"
    )
}

/// The export's property column of an entity whose `properties(...)` is bound to `p`: one
/// entry per key, `[key, value]` for a [`plain_pred`] value (sent as it is) and
/// `[key, [tag, payload], 1]` ([`encode_expr`]) for the others. The type test runs once per
/// value and the decomposition only where it is needed. `skip` names a key left out (the
/// restore's temporary id).
pub(crate) fn props_column(p: &str, skip: Option<&str>) -> String {
    let keys = match skip {
        Some(k) => format!("[k IN keys({p}) WHERE k <> '{k}']"),
        None => format!("keys({p})"),
    };
    let v = format!("{p}[k]");
    format!(
        "[k IN {keys} | CASE WHEN {plain} THEN [k, {v}] ELSE [k, {enc}, 1] END]",
        plain = plain_pred(&v),
        enc = encode_expr(&v)
    )
}

/// A value the export query returned that this driver cannot represent exactly.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unrepresentable(pub String);

/// An integer sent as decimal text (see the module docs).
fn int(b: &BoltType, what: &str) -> Result<i64, Unrepresentable> {
    match b {
        BoltType::String(s) => s
            .value
            .parse()
            .map_err(|e| Unrepresentable(format!("{what}: `{}` is not an integer: {e}", s.value))),
        other => Err(Unrepresentable(format!(
            "{what}: expected an integer, got {other:?}"
        ))),
    }
}

fn float_bits(b: &BoltType, what: &str) -> Result<u64, Unrepresentable> {
    match b {
        BoltType::Float(f) => Ok(f.value.to_bits()),
        other => Err(Unrepresentable(format!(
            "{what}: expected a float, got {other:?}"
        ))),
    }
}

fn string(b: &BoltType, what: &str) -> Result<String, Unrepresentable> {
    match b {
        BoltType::String(s) => Ok(s.value.clone()),
        other => Err(Unrepresentable(format!(
            "{what}: expected a string, got {other:?}"
        ))),
    }
}

fn list<'a>(b: &'a BoltType, what: &str) -> Result<&'a [BoltType], Unrepresentable> {
    match b {
        BoltType::List(l) => Ok(&l.value),
        other => Err(Unrepresentable(format!(
            "{what}: expected a list, got {other:?}"
        ))),
    }
}

/// A point's SRID (a positive integer, so the tiny-integer misreading cannot hit it).
fn srid_of(b: &BoltType) -> Result<i64, Unrepresentable> {
    match b {
        BoltType::Integer(i) if i.value > 0 => Ok(i.value),
        other => Err(Unrepresentable(format!("point srid: got {other:?}"))),
    }
}

/// A plain Bolt value (from a `raw` encoding) as a [`Value`].
fn from_raw(b: &BoltType) -> Result<Value, Unrepresentable> {
    Ok(match b {
        BoltType::Boolean(x) => Value::Bool(x.value),
        BoltType::Float(x) => Value::Float(x.value.to_bits()),
        BoltType::String(x) => Value::Str(x.value.clone()),
        BoltType::Bytes(x) => Value::Bytes(hex::encode(&x.value)),
        BoltType::List(l) => Value::List(l.value.iter().map(from_raw).collect::<Result<_, _>>()?),
        other => {
            return Err(Unrepresentable(format!(
                "a property value of a type this driver cannot store exactly: {other:?}"
            )))
        }
    })
}

/// One `[tag, payload]` pair from [`encode_expr`] as a [`Value`].
pub(crate) fn from_encoded(b: &BoltType) -> Result<Value, Unrepresentable> {
    let parts = list(b, "encoded value")?;
    if let [tag, texts, raw] = parts {
        if string(tag, "encoded value tag")? == "ints" {
            return Ok(match raw {
                BoltType::Bytes(x) => Value::Bytes(hex::encode(&x.value)),
                _ => Value::List(
                    list(texts, "integer list")?
                        .iter()
                        .map(|t| int(t, "integer list element").map(Value::Int))
                        .collect::<Result<_, _>>()?,
                ),
            });
        }
    }
    let [tag, payload] = parts else {
        return Err(Unrepresentable(format!(
            "encoded value: expected [tag, payload], got {b:?}"
        )));
    };
    let tag = string(tag, "encoded value tag")?;
    Ok(match tag.as_str() {
        "raw" => from_raw(payload)?,
        "int" => Value::Int(int(payload, "integer")?),
        "list" => Value::List(
            list(payload, "list")?
                .iter()
                .map(from_encoded)
                .collect::<Result<_, _>>()?,
        ),
        "date" => Value::Date(string(payload, "date")?),
        "local_time" => Value::LocalTime(string(payload, "local time")?),
        "time" => Value::Time(string(payload, "time")?),
        "local_date_time" => Value::LocalDateTime(string(payload, "local datetime")?),
        "date_time" => match list(payload, "datetime")? {
            [s, n, tz] => Value::DateTime {
                s: int(s, "datetime seconds")?,
                n: int(n, "datetime nanoseconds")?,
                tz: string(tz, "datetime zone")?,
            },
            _ => return Err(Unrepresentable(format!("datetime parts: {payload:?}"))),
        },
        "duration" => match list(payload, "duration")? {
            [m, d, s, n] => Value::Duration {
                months: int(m, "duration months")?,
                days: int(d, "duration days")?,
                seconds: int(s, "duration seconds")?,
                nanos: int(n, "duration nanoseconds")?,
            },
            _ => return Err(Unrepresentable(format!("duration parts: {payload:?}"))),
        },
        "point" => match list(payload, "point")? {
            [srid, x, y] => Value::Point {
                srid: srid_of(srid)?,
                x: float_bits(x, "point x")?,
                y: float_bits(y, "point y")?,
                z: None,
            },
            [srid, x, y, z] => Value::Point {
                srid: srid_of(srid)?,
                x: float_bits(x, "point x")?,
                y: float_bits(y, "point y")?,
                z: Some(float_bits(z, "point z")?),
            },
            _ => return Err(Unrepresentable(format!("point parts: {payload:?}"))),
        },
        other => {
            return Err(Unrepresentable(format!(
                "unknown encoded value tag `{other}`"
            )))
        }
    })
}

/// A plain value ([`plain_pred`]) as a [`Value`]: an integer as itself (never one of the
/// tiny integers neo4rs misreads), anything else as [`from_raw`] reads it.
fn from_plain(b: &BoltType) -> Result<Value, Unrepresentable> {
    match b {
        BoltType::Integer(i) => Ok(Value::Int(i.value)),
        other => from_raw(other),
    }
}

/// The column of [`props_column`] as a property map.
pub(crate) fn props_from_column(b: &BoltType) -> Result<BTreeMap<String, Value>, Unrepresentable> {
    let mut out = BTreeMap::new();
    for kv in list(b, "properties")? {
        let (key, value) = match list(kv, "property")? {
            [BoltType::String(k), v] => (k, from_plain(v)),
            [BoltType::String(k), v, _] => (k, from_encoded(v)),
            _ => return Err(Unrepresentable(format!("property: {kv:?}"))),
        };
        let value =
            value.map_err(|e| Unrepresentable(format!("property `{}`: {}", key.value, e.0)))?;
        out.insert(key.value.clone(), value);
    }
    Ok(out)
}

fn bolt_str(s: &str) -> BoltType {
    BoltType::String(BoltString::new(s))
}

fn bolt_int(i: i64) -> BoltType {
    BoltType::Integer(BoltInteger::new(i))
}

fn bolt_float(bits: u64) -> BoltType {
    BoltType::Float(BoltFloat::new(f64::from_bits(bits)))
}

fn bolt_list(v: Vec<BoltType>) -> BoltType {
    BoltType::List(BoltList::from(v))
}

impl Value {
    /// True for values that travel as plain Bolt values (no Cypher rebuilding).
    fn is_plain(&self) -> bool {
        match self {
            Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bytes(_) => {
                true
            }
            Value::List(items) => items.iter().all(Value::is_plain),
            _ => false,
        }
    }

    /// The plain Bolt value (only for [`Self::is_plain`] values).
    fn to_plain(&self) -> Result<BoltType, Unrepresentable> {
        Ok(match self {
            Value::Bool(b) => BoltType::Boolean(BoltBoolean::new(*b)),
            Value::Int(i) => bolt_int(*i),
            Value::Float(bits) => bolt_float(*bits),
            Value::Str(s) => bolt_str(s),
            Value::Bytes(h) => BoltType::Bytes(BoltBytes::new(
                hex::decode(h)
                    .map_err(|e| Unrepresentable(format!("byte array: {e}")))?
                    .into(),
            )),
            Value::List(items) => bolt_list(
                items
                    .iter()
                    .map(Value::to_plain)
                    .collect::<Result<_, _>>()?,
            ),
            other => return Err(Unrepresentable(format!("not a plain value: {other:?}"))),
        })
    }

    /// `[tag, payload]` of a decomposed scalar, as [`DECODE_FN`] reads it.
    fn to_encoded(&self) -> Result<BoltType, Unrepresentable> {
        let (tag, payload) = match self {
            Value::Date(s) => ("date", bolt_str(s)),
            Value::LocalTime(s) => ("local_time", bolt_str(s)),
            Value::Time(s) => ("time", bolt_str(s)),
            Value::LocalDateTime(s) => ("local_date_time", bolt_str(s)),
            Value::DateTime { s, n, tz } => (
                "date_time",
                bolt_list(vec![bolt_int(*s), bolt_int(*n), bolt_str(tz)]),
            ),
            Value::Duration {
                months,
                days,
                seconds,
                nanos,
            } => (
                "duration",
                bolt_list(vec![
                    bolt_int(*months),
                    bolt_int(*days),
                    bolt_int(*seconds),
                    bolt_int(*nanos),
                ]),
            ),
            Value::Point { srid, x, y, z } => {
                let mut parts = vec![bolt_int(*srid), bolt_float(*x), bolt_float(*y)];
                if let Some(z) = z {
                    parts.push(bolt_float(*z));
                }
                ("point", bolt_list(parts))
            }
            other => {
                return Err(Unrepresentable(format!(
                    "a list mixing plain and temporal values: {other:?}"
                )))
            }
        };
        Ok(bolt_list(vec![bolt_str(tag), payload]))
    }
}

/// Properties as restore parameters: a map of the plain ones, and `[key, tag, payload]` for
/// the ones rebuilt in Cypher ([`decode_expr`]).
pub(crate) fn props_to_params(
    props: &BTreeMap<String, Value>,
) -> Result<(BoltType, BoltType), Unrepresentable> {
    let mut plain = neo4rs::BoltMap::new();
    let mut rebuilt = Vec::new();
    for (k, v) in props {
        if v.is_plain() {
            plain.put(BoltString::new(k), v.to_plain()?);
        } else if let Value::List(items) = v {
            let enc = items
                .iter()
                .map(Value::to_encoded)
                .collect::<Result<Vec<_>, _>>()?;
            rebuilt.push(bolt_list(vec![
                bolt_str(k),
                bolt_str("list"),
                bolt_list(enc),
            ]));
        } else {
            let BoltType::List(pair) = v.to_encoded()? else {
                unreachable!("to_encoded returns a list")
            };
            let mut c = vec![bolt_str(k)];
            c.extend(pair.value);
            rebuilt.push(bolt_list(c));
        }
    }
    Ok((BoltType::Map(plain), bolt_list(rebuilt)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_keep_their_bits_through_json() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1.5e-310] {
            let v = Value::Float(f.to_bits());
            let s = serde_json::to_string(&v).unwrap_or_default();
            let back: Value = serde_json::from_str(&s).unwrap_or(Value::Int(0));
            assert_eq!(back, v, "{s}");
        }
    }

    #[test]
    fn unknown_bolt_types_are_refused() {
        let node = bolt_list(vec![bolt_str("raw"), BoltType::Null(neo4rs::BoltNull)]);
        let err = from_encoded(&node).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("cannot store exactly"), "{err}");
    }
}
