//! The few S3 XML documents this client reads (listings, errors, multipart answers), read
//! with quick-xml, and the two it sends.
//!
//! Text is taken exactly: entity and character references resolved, CDATA kept, whitespace
//! and carriage returns kept (S3 keys may hold any of them), so a listed key is the key that
//! was stored.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::not_s3;
use super::{ObjectPage, ObjectSummary};

/// Walk `xml` and call `f(path, text)` as each element closes: `path` holds the local names
/// (namespace prefixes dropped) from the root to the element itself, `text` its own text
/// content. An empty element (`<Key/>`) has the text `""`.
pub(super) fn walk(xml: &str, mut f: impl FnMut(&[String], &str)) -> Result<(), String> {
    let mut reader = Reader::from_str(xml);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.trim_text(false);
    // A bare `&` is kept as it is rather than failing the whole document.
    config.allow_dangling_amp = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let bad = |e: &dyn std::fmt::Display| format!("malformed XML in the response: {e}");
    loop {
        match reader.read_event().map_err(|e| bad(&e))? {
            Event::Start(e) => {
                path.push(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
                text.clear();
            }
            Event::End(_) => {
                f(&path, &text);
                path.pop();
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.decode().map_err(|e| bad(&e))?),
            Event::CData(c) => text.push_str(&c.decode().map_err(|e| bad(&e))?),
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(|e| bad(&e))?;
                let resolved = match &*name {
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    _ => r.resolve_char_ref().ok().flatten(),
                };
                match resolved {
                    Some(c) => text.push(c),
                    // An entity S3 never sends: kept as written.
                    None => {
                        text.push('&');
                        text.push_str(&name);
                        text.push(';');
                    }
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// The root element's name and the text of each of its direct children, in order: enough
/// for S3's small documents (`<Error>`, `<InitiateMultipartUploadResult>`, ...). `None` if
/// `xml` is not an XML document.
pub(super) fn top_fields(xml: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut root = None;
    let mut fields = Vec::new();
    walk(xml, |path, text| match path {
        [r] => root = Some(r.clone()),
        [_, name] => fields.push((name.clone(), text.to_string())),
        _ => {}
    })
    .ok()?;
    root.map(|r| (r, fields))
}

/// The text of the first field called `name` (from [`top_fields`]).
pub(super) fn field(fields: &[(String, String)], name: &str) -> Option<String> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// S3's error document: `(Code, Message)` if `xml` is an `<Error>` document.
pub(super) fn parse_error(xml: &str) -> Option<(Option<String>, Option<String>)> {
    match top_fields(xml) {
        Some((root, fields)) if root == "Error" => {
            Some((field(&fields, "Code"), field(&fields, "Message")))
        }
        _ => None,
    }
}

/// A `ListAllMyBucketsResult` page: bucket names and the continuation token, if any.
pub(super) fn parse_list_buckets(xml: &str) -> Result<(Vec<String>, Option<String>), String> {
    let mut root = None;
    let mut names = Vec::new();
    let mut token = None;
    let mut name: Option<String> = None;
    let mut nameless = false;
    walk(xml, |path, text| match path {
        [r] => root = Some(r.clone()),
        [_, t] if t == "ContinuationToken" => token = Some(text.to_string()),
        [_, b, bucket, n] if b == "Buckets" && bucket == "Bucket" && n == "Name" => {
            name = Some(text.to_string())
        }
        [_, b, bucket] if b == "Buckets" && bucket == "Bucket" => match name.take() {
            Some(n) => names.push(n),
            None => nameless = true,
        },
        _ => {}
    })?;
    if root.as_deref() != Some("ListAllMyBucketsResult") {
        return Err(not_s3(xml));
    }
    if nameless {
        return Err("a <Bucket> without a <Name>".into());
    }
    Ok((names, token.filter(|t| !t.is_empty())))
}

/// Escape text for an XML document we send (`\r` as a character reference, so that the
/// server's XML parser cannot turn it into `\n`).
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// A `ListObjectsV2` page.
pub(super) fn parse_list_objects(xml: &str) -> Result<ObjectPage, String> {
    #[derive(Default)]
    struct Entry {
        key: Option<String>,
        size: Option<String>,
        etag: Option<String>,
        last_modified: Option<String>,
    }
    let mut root = None;
    let mut objects = Vec::new();
    let mut entry = Entry::default();
    let mut truncated = false;
    let mut token = None;
    let mut failure: Option<String> = None;
    walk(xml, |path, text| {
        let [r, rest @ ..] = path else { return };
        if rest.is_empty() {
            root = Some(r.clone());
            return;
        }
        match rest {
            [c, field] if c == "Contents" => {
                let slot = match field.as_str() {
                    "Key" => &mut entry.key,
                    "Size" => &mut entry.size,
                    "ETag" => &mut entry.etag,
                    "LastModified" => &mut entry.last_modified,
                    _ => return,
                };
                *slot = Some(text.to_string());
            }
            [c] if c == "Contents" => {
                let e = std::mem::take(&mut entry);
                let result = match (e.key, e.size) {
                    (None, _) => Err("a <Contents> without a <Key>".to_string()),
                    (Some(key), None) => Err(format!("no <Size> for key {key:?}")),
                    (Some(key), Some(size)) => match size.trim().parse::<u64>() {
                        Ok(size) => Ok(ObjectSummary {
                            key,
                            size,
                            etag: e.etag,
                            last_modified: e.last_modified,
                        }),
                        Err(err) => Err(format!("bad <Size> for key {key:?}: {err}")),
                    },
                };
                match result {
                    Ok(o) => objects.push(o),
                    Err(m) => {
                        failure.get_or_insert(m);
                    }
                }
            }
            [t] if t == "IsTruncated" => truncated = text.trim() == "true",
            [t] if t == "NextContinuationToken" => token = Some(text.to_string()),
            _ => {}
        }
    })?;
    if root.as_deref() != Some("ListBucketResult") {
        return Err(not_s3(xml));
    }
    if let Some(m) = failure {
        return Err(m);
    }
    let continuation = if truncated {
        Some(
            token
                .filter(|t| !t.is_empty())
                .ok_or("the listing is truncated but has no <NextContinuationToken>")?,
        )
    } else {
        None
    };
    Ok(ObjectPage {
        objects,
        continuation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_exact() {
        let mut texts = Vec::new();
        walk(
            "<a><k>a&amp;b&lt;c&gt;d&quot;e&apos;f&#38;g&#x26;h&#x41;</k><k>&amp;lt;</k>\
             <k>&#128512;&#x1F600;</k><k>&bogus;</k><k> sp\r\nce </k><k><![CDATA[<x>]]></k>\
             <k/></a>",
            |path, text| {
                if path.len() == 2 {
                    texts.push(text.to_string());
                }
            },
        )
        .expect("walk");
        assert_eq!(
            texts,
            [
                "a&b<c>d\"e'f&g&hA",
                "&lt;",
                "😀😀",
                "&bogus;",
                " sp\r\nce ",
                "<x>",
                ""
            ]
        );
        assert_eq!(escape("a&b<c>\"'"), "a&amp;b&lt;c&gt;&quot;&apos;");
        let mut back = String::new();
        walk(&format!("<k>{}</k>", escape("x&y<z>'\"\r")), |_, t| {
            back = t.to_string()
        })
        .expect("walk");
        assert_eq!(back, "x&y<z>'\"\r");
    }

    #[test]
    fn small_documents() {
        let err = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                   <Message>The key &amp; more</Message></Error>";
        assert_eq!(
            parse_error(err),
            Some((Some("NoSuchKey".into()), Some("The key & more".into())))
        );
        assert_eq!(parse_error("<Other><Code>x</Code></Other>"), None);
        assert_eq!(parse_error("not xml at all"), None);
        let buckets = "<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                       <Owner><Name>not a bucket</Name></Owner><Buckets><Bucket><Name>a</Name>\
                       </Bucket><Bucket ><Name>b&amp;</Name></Bucket></Buckets>\
                       <ContinuationToken>t</ContinuationToken></ListAllMyBucketsResult>";
        assert_eq!(
            parse_list_buckets(buckets).expect("parse"),
            (
                vec!["a".to_string(), "b&".to_string()],
                Some("t".to_string())
            )
        );
        assert!(parse_list_buckets(
            "<ListAllMyBucketsResult><Buckets><Bucket/></Buckets></ListAllMyBucketsResult>"
        )
        .is_err());
        assert!(parse_list_buckets("<html/>").is_err());
    }

    #[test]
    fn list_objects_parses_pages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>a+b &amp; c/</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>%20&#x3C;</Key><Size>12</Size></Contents>
<NextContinuationToken>tok/+=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_objects(xml).expect("parse");
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "a+b & c/");
        assert_eq!(page.objects[0].etag.as_deref(), Some("\"abc\""));
        assert_eq!(page.objects[0].size, 0);
        assert_eq!(page.objects[1].key, "%20<");
        assert_eq!(page.objects[1].size, 12);
        assert_eq!(page.continuation.as_deref(), Some("tok/+="));

        let last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(
            parse_list_objects(last).expect("parse"),
            ObjectPage::default()
        );
        assert!(parse_list_objects("<html>nope</html>").is_err());
    }
}
