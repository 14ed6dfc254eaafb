//! The S3 calls: buckets, listings, object reads and writes (streamed, multipart).

use std::io;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, Stream, StreamExt, TryStreamExt};
use reqwest::header::HeaderName;
use reqwest::Method;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::io::StreamReader;

use super::error::{error_chain, not_s3, ErrorKind, S3Error};
use super::xml::{escape, field, parse_error, parse_list_buckets, parse_list_objects, top_fields};
use super::{
    header_str, info_from_headers, AbortOnDrop, Ctx, ObjectBody, ObjectHeaders, ObjectInfo,
    ObjectPage, ObjectSummary, Payload, S3Client, CHUNK, LIST_PAGE_KEYS, MAX_PARTS, MIN_PART_SIZE,
};

impl S3Client {
    // ------------------------------------------------------------ buckets

    /// Names of all buckets the credentials can see.
    pub async fn list_buckets(&self) -> Result<Vec<String>, S3Error> {
        let cx = Ctx {
            op: "ListBuckets",
            bucket: None,
            key: None,
        };
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = Vec::new();
            if let Some(t) = &token {
                q.push(("continuation-token", t.as_str()));
            }
            let resp = self
                .send(&cx, Method::GET, &q, vec![], Payload::Empty)
                .await?;
            let xml = self.text(&cx, resp).await?;
            let (page, next) =
                parse_list_buckets(&xml).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))?;
            names.extend(page);
            match next {
                Some(t) if token.as_deref() != Some(t.as_str()) => token = Some(t),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Create `bucket`. A bucket that exists and that these credentials can use is fine.
    pub async fn create_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "CreateBucket",
            bucket: Some(bucket),
            key: None,
        };
        let region = &self.inner.cfg.region;
        let payload = if region == "us-east-1" {
            Payload::Empty
        } else {
            Payload::Bytes(Bytes::from(format!(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
                escape(region)
            )))
        };
        match self.send(&cx, Method::PUT, &[], vec![], payload).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            // Some servers say BucketAlreadyExists (or 409 without a code) to the owner too.
            Err(e) if e.code() == Some("BucketAlreadyExists") || e.status() == Some(409) => {
                if self.head_bucket(bucket).await.unwrap_or(false) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Does `bucket` exist (and may these credentials use it)? `false` on 404; an error
    /// for anything else, e.g. 403 (someone else's bucket, or rejected credentials).
    pub async fn head_bucket(&self, bucket: &str) -> Result<bool, S3Error> {
        let cx = Ctx {
            op: "HeadBucket",
            bucket: Some(bucket),
            key: None,
        };
        match self
            .send(&cx, Method::HEAD, &[], vec![], Payload::Empty)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(404) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Delete an empty bucket.
    pub async fn delete_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "DeleteBucket",
            bucket: Some(bucket),
            key: None,
        };
        self.send(&cx, Method::DELETE, &[], vec![], Payload::Empty)
            .await
            .map(drop)
    }

    // ------------------------------------------------------------ listing

    /// One page (up to 1,000 objects) of `bucket`'s objects in key order, starting after
    /// `continuation` (`None` for the first page).
    pub async fn list_objects(
        &self,
        bucket: &str,
        continuation: Option<&str>,
    ) -> Result<ObjectPage, S3Error> {
        self.list_objects_page(bucket, None, continuation, None)
            .await
    }

    /// One page of the objects whose keys start with `prefix`, at most `max_keys` of them
    /// (the server's default, 1,000, when `None`).
    pub async fn list_objects_page(
        &self,
        bucket: &str,
        prefix: Option<&str>,
        continuation: Option<&str>,
        max_keys: Option<u32>,
    ) -> Result<ObjectPage, S3Error> {
        let cx = Ctx {
            op: "ListObjectsV2",
            bucket: Some(bucket),
            key: None,
        };
        let max = max_keys.map(|m| m.to_string());
        let mut q = vec![("list-type", "2")];
        if let Some(p) = prefix {
            q.push(("prefix", p));
        }
        if let Some(c) = continuation {
            q.push(("continuation-token", c));
        }
        if let Some(m) = &max {
            q.push(("max-keys", m));
        }
        let resp = self
            .send(&cx, Method::GET, &q, vec![], Payload::Empty)
            .await?;
        let xml = self.text(&cx, resp).await?;
        let page = parse_list_objects(&xml).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))?;
        if page
            .continuation
            .as_deref()
            .is_some_and(|c| Some(c) == continuation)
        {
            return Err(self.err(
                &cx,
                ErrorKind::Protocol("the server returned the same continuation token again".into()),
            ));
        }
        Ok(page)
    }

    /// Every object of `bucket` (whose key starts with `prefix`, if given), page by page.
    /// Pages of up to [`LIST_PAGE_KEYS`] keys are asked for (S3 and MinIO send at most 1,000;
    /// servers that send more save round trips), and the next page is fetched by a task of
    /// its own while the current one is consumed, so that a caller working through the
    /// objects never waits for a listing round trip between pages. At most two pages are in
    /// memory: the one consumed and the next (ready or being fetched). Dropping the stream
    /// stops the fetching.
    pub fn list_all(
        &self,
        bucket: &str,
        prefix: Option<&str>,
    ) -> impl Stream<Item = Result<ObjectSummary, S3Error>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ObjectSummary>, S3Error>>(1);
        let client = self.clone();
        let bucket = bucket.to_string();
        let prefix = prefix.map(str::to_string);
        let fetcher = tokio::spawn(async move {
            let mut token: Option<String> = None;
            loop {
                // Fetch a page only once the previous one has been taken: at most one page
                // waits while the caller works through another.
                let Ok(permit) = tx.reserve().await else {
                    return;
                };
                let page = client
                    .list_objects_page(
                        &bucket,
                        prefix.as_deref(),
                        token.as_deref(),
                        Some(LIST_PAGE_KEYS),
                    )
                    .await;
                let (objects, next) = match page {
                    Ok(p) => (Ok(p.objects), p.continuation),
                    Err(e) => (Err(e), None),
                };
                permit.send(objects);
                if next.is_none() {
                    return;
                }
                token = next;
            }
        });
        let guard = AbortOnDrop(fetcher);
        stream::unfold((rx, guard), |(mut rx, guard)| async move {
            rx.recv().await.map(|page| (page, (rx, guard)))
        })
        .map_ok(|objects| stream::iter(objects.into_iter().map(Ok)))
        .try_flatten()
    }

    // ------------------------------------------------------------ objects

    /// Size, ETag, content headers and user metadata of an object.
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<ObjectInfo, S3Error> {
        let cx = Ctx {
            op: "HeadObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let resp = self
            .send(&cx, Method::HEAD, &[], vec![], Payload::Empty)
            .await?;
        info_from_headers(resp.headers()).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))
    }

    /// An object's info and its body as a stream.
    pub async fn get_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectInfo, ObjectBody), S3Error> {
        let cx = Ctx {
            op: "GetObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let resp = self
            .send(&cx, Method::GET, &[], vec![], Payload::Empty)
            .await?;
        let info =
            info_from_headers(resp.headers()).map_err(|m| self.err(&cx, ErrorKind::Protocol(m)))?;
        let what = format!(
            "reading s3://{bucket}/{key:?} from {}",
            self.inner.cfg.endpoint
        );
        let stream = resp
            .bytes_stream()
            .map_err(move |e| io::Error::other(format!("{what}: {}", error_chain(&e))))
            .boxed();
        Ok((
            info,
            ObjectBody {
                inner: StreamReader::new(stream),
            },
        ))
    }

    /// Upload `body`, exactly `len` bytes, as one PUT (up to 5 GiB). The body is streamed;
    /// a body shorter or longer than `len` fails the upload. Returns the new ETag.
    pub async fn put_object<R>(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: R,
        len: u64,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + 'static,
    {
        let cx = Ctx {
            op: "PutObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        let h = self.object_headers(&cx, headers)?;
        let payload = if len == 0 {
            Payload::Empty
        } else {
            Payload::Stream(reqwest::Body::wrap_stream(exact_stream(body, len)), len)
        };
        let resp = self.send(&cx, Method::PUT, &[], h, payload).await?;
        Ok(header_str(resp.headers(), "etag"))
    }

    /// Upload a body of any (unknown) length in parts of `part_size` bytes (at least
    /// [`MIN_PART_SIZE`]); one part is held in memory at a time. A body that fits in one part
    /// is sent as a plain PUT. On any failure the multipart upload is aborted, so no parts are
    /// left behind. Returns the new ETag.
    pub async fn put_object_multipart<R>(
        &self,
        bucket: &str,
        key: &str,
        headers: &ObjectHeaders,
        body: R,
        part_size: usize,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + Unpin,
    {
        let mut body = body;
        let cx = Ctx {
            op: "multipart upload",
            bucket: Some(bucket),
            key: Some(key),
        };
        if part_size < MIN_PART_SIZE {
            return Err(self.err(
                &cx,
                ErrorKind::Invalid(format!(
                    "part size {part_size} is below S3's minimum of {MIN_PART_SIZE} bytes"
                )),
            ));
        }
        let first = read_part(&mut body, part_size)
            .await
            .map_err(|e| self.err(&cx, ErrorKind::Body(e)))?;
        if first.len() < part_size {
            let len = first.len() as u64;
            return self
                .put_object(bucket, key, headers, io::Cursor::new(first), len)
                .await;
        }

        let h = self.object_headers(&cx, headers)?;
        let create = Ctx {
            op: "CreateMultipartUpload",
            ..cx
        };
        let resp = self
            .send(&create, Method::POST, &[("uploads", "")], h, Payload::Empty)
            .await?;
        let xml = self.text(&create, resp).await?;
        let upload_id = top_fields(&xml)
            .and_then(|(_, fields)| field(&fields, "UploadId"))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| self.err(&create, ErrorKind::Protocol(not_s3(&xml))))?;

        let result = self
            .upload_parts(bucket, key, &upload_id, first, &mut body, part_size)
            .await;
        match result {
            Ok(etag) => Ok(etag),
            Err(e) => {
                let abort = Ctx {
                    op: "AbortMultipartUpload",
                    ..cx
                };
                // Best effort: the original error is the one that matters.
                let _ = self
                    .send(
                        &abort,
                        Method::DELETE,
                        &[("uploadId", &upload_id)],
                        vec![],
                        Payload::Empty,
                    )
                    .await;
                Err(e)
            }
        }
    }

    async fn upload_parts<R>(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        first: BytesMut,
        body: &mut R,
        part_size: usize,
    ) -> Result<Option<String>, S3Error>
    where
        R: AsyncRead + Send + Unpin,
    {
        let cx = Ctx {
            op: "UploadPart",
            bucket: Some(bucket),
            key: Some(key),
        };
        let mut parts: Vec<(u32, String)> = Vec::new();
        let mut part = first;
        let mut number: u32 = 1;
        loop {
            let n = number.to_string();
            let resp = self
                .send(
                    &cx,
                    Method::PUT,
                    &[("partNumber", &n), ("uploadId", upload_id)],
                    vec![],
                    Payload::Bytes(part.freeze()),
                )
                .await?;
            let etag = header_str(resp.headers(), "etag").ok_or_else(|| {
                self.err(
                    &cx,
                    ErrorKind::Protocol(format!("part {number} was answered without an ETag")),
                )
            })?;
            parts.push((number, etag));
            let full = part_size;
            part = read_part(body, full)
                .await
                .map_err(|e| self.err(&cx, ErrorKind::Body(e)))?;
            if part.is_empty() {
                break;
            }
            if number >= MAX_PARTS {
                return Err(self.err(
                    &cx,
                    ErrorKind::Invalid(format!(
                        "the body needs more than {MAX_PARTS} parts of {part_size} bytes; \
                         use a larger part size"
                    )),
                ));
            }
            number += 1;
        }

        let complete = Ctx {
            op: "CompleteMultipartUpload",
            ..cx
        };
        let mut doc = String::from("<CompleteMultipartUpload>");
        for (n, etag) in &parts {
            doc.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
                escape(etag)
            ));
        }
        doc.push_str("</CompleteMultipartUpload>");
        let resp = self
            .send(
                &complete,
                Method::POST,
                &[("uploadId", upload_id)],
                vec![("content-type".into(), "application/xml".into())],
                Payload::Bytes(Bytes::from(doc)),
            )
            .await?;
        let xml = self.text(&complete, resp).await?;
        // S3 may answer 200 and still fail, with an <Error> document in the body.
        if let Some((code, message)) = parse_error(&xml) {
            return Err(self.err(
                &complete,
                ErrorKind::Service {
                    status: 200,
                    code,
                    message,
                },
            ));
        }
        Ok(top_fields(&xml).and_then(|(_, fields)| field(&fields, "ETag")))
    }

    /// Delete an object. Deleting a key that does not exist succeeds (S3 semantics); a
    /// bucket that does not exist is an error.
    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let cx = Ctx {
            op: "DeleteObject",
            bucket: Some(bucket),
            key: Some(key),
        };
        self.send(&cx, Method::DELETE, &[], vec![], Payload::Empty)
            .await
            .map(drop)
    }

    fn object_headers(
        &self,
        cx: &Ctx<'_>,
        h: &ObjectHeaders,
    ) -> Result<Vec<(String, String)>, S3Error> {
        let mut out = Vec::new();
        for (name, v) in [
            ("content-type", &h.content_type),
            ("cache-control", &h.cache_control),
            ("content-disposition", &h.content_disposition),
            ("content-encoding", &h.content_encoding),
            ("content-language", &h.content_language),
        ] {
            if let Some(v) = v {
                out.push((name.to_string(), v.clone()));
            }
        }
        for (k, v) in &h.metadata {
            let k = k.to_ascii_lowercase();
            if k.is_empty() || HeaderName::from_bytes(format!("x-amz-meta-{k}").as_bytes()).is_err()
            {
                return Err(self.err(
                    cx,
                    ErrorKind::Invalid(format!("user metadata name {k:?} is not a valid header")),
                ));
            }
            out.push((format!("x-amz-meta-{k}"), v.clone()));
        }
        Ok(out)
    }
}

/// Read up to `size` bytes (fewer only at the end of the body).
async fn read_part<R: AsyncRead + Unpin>(body: &mut R, size: usize) -> io::Result<BytesMut> {
    let mut buf = BytesMut::with_capacity(size);
    while buf.len() < size {
        let want = (size - buf.len()).min(CHUNK);
        let n = (&mut *body).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf)
}

/// Stream exactly `len` bytes of `body`: an early end or extra bytes are errors, so the
/// server never stores a truncated object under the announced length.
fn exact_stream<R>(body: R, len: u64) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static
where
    R: AsyncRead + Send + 'static,
{
    let reader = Box::pin(body);
    stream::try_unfold(
        (reader, len, false),
        move |(mut r, left, done)| async move {
            if done {
                return Ok(None);
            }
            if left == 0 {
                let mut probe = [0u8; 1];
                if r.read(&mut probe).await? != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the body is longer than the {len} bytes announced"),
                    ));
                }
                return Ok(None);
            }
            let want = left.min(CHUNK as u64) as usize;
            let mut buf = BytesMut::with_capacity(want);
            let n = (&mut r).take(want as u64).read_buf(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "the body ended after {} of the {len} bytes announced",
                        len - left
                    ),
                ));
            }
            let left = left - n as u64;
            Ok(Some((buf.freeze(), (r, left, false))))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exact_stream_checks_the_length() {
        let ok: Vec<_> = exact_stream(io::Cursor::new(vec![1u8; 100_000]), 100_000)
            .try_collect::<Vec<_>>()
            .await
            .expect("exact");
        assert_eq!(ok.iter().map(|b| b.len()).sum::<usize>(), 100_000);
        let short = exact_stream(io::Cursor::new(vec![1u8; 10]), 11)
            .try_collect::<Vec<_>>()
            .await;
        assert!(short.is_err());
        let long = exact_stream(io::Cursor::new(vec![1u8; 12]), 11)
            .try_collect::<Vec<_>>()
            .await;
        assert!(long.is_err());
    }
}
