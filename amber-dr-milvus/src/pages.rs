//! Entity artifacts: a header line, then pages, each a `u32` big-endian length and a
//! protobuf `QueryResults` holding the page's columns (`FieldData`) exactly as the server
//! returned them, so every field type the server has — present and future — round-trips
//! without the driver decoding it.
//!
//! The fingerprint is the SHA-256 over the pages' bytes, with columns in name order and field
//! ids cleared; re-exporting the restored collection with the same page size gives the same.

use amber_dr_core::{ArtifactReader, ArtifactRecord, Error, ReadContext, Result};
use milvus::proto::milvus::QueryResults;
use milvus::proto::schema::FieldData;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// First bytes of an entities artifact.
pub(crate) const HEADER: &[u8] = b"amber-dr milvus pages v1\n";
const MAX_PAGE: u32 = 512 * 1024 * 1024;

/// A page in canonical form: columns sorted by name, field ids cleared.
pub(crate) fn canonical(mut fields: Vec<FieldData>) -> QueryResults {
    fields.sort_by(|a, b| a.field_name.cmp(&b.field_name));
    for f in &mut fields {
        f.field_id = 0;
    }
    QueryResults {
        fields_data: fields,
        ..Default::default()
    }
}

/// Running fingerprint of pages.
#[derive(Debug, Clone, Default)]
pub(crate) struct Digest2 {
    hasher: Sha256,
    pub rows: u64,
}

impl Digest2 {
    pub(crate) fn add(&mut self, page: &[u8], rows: u64) {
        self.hasher.update((page.len() as u64).to_be_bytes());
        self.hasher.update(page);
        self.rows += rows;
    }
    pub(crate) fn fingerprint(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

pub(crate) async fn write_page<W: AsyncWrite + Unpin>(
    w: &mut W,
    page: &[u8],
) -> std::io::Result<()> {
    w.write_all(&(page.len() as u32).to_be_bytes()).await?;
    w.write_all(page).await
}

pub(crate) async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<(), String> {
    let mut h = vec![0u8; HEADER.len()];
    r.read_exact(&mut h)
        .await
        .map_err(|e| format!("cannot read the header: {e}"))?;
    if h != HEADER {
        return Err("not a milvus entities artifact".into());
    }
    Ok(())
}

/// The next page's bytes, or `None` at a clean end.
pub(crate) async fn read_page<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the stream ends inside a page header",
            ));
        }
        got += n;
    }
    let n = u32::from_be_bytes(len);
    if n > MAX_PAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("implausible page length {n}"),
        ));
    }
    let mut page = vec![0u8; n as usize];
    r.read_exact(&mut page).await?;
    Ok(Some(page))
}

/// Decode a page.
pub(crate) fn decode(page: &[u8]) -> Result<QueryResults, String> {
    QueryResults::decode(page).map_err(|e| format!("a page does not decode: {e}"))
}

/// The pages of one artifact, read through its checked stream. Every error names the artifact;
/// damage (a bad header, a short or undecodable page) is [`Error::Corrupt`].
pub(crate) struct PageReader {
    r: BufReader<ArtifactReader>,
    path: String,
}

impl PageReader {
    /// Open `art` and read its header.
    pub(crate) async fn open(cx: &ReadContext, art: &ArtifactRecord) -> Result<Self> {
        let reader = cx.open_artifact(art).await?;
        let mut r = BufReader::with_capacity(256 * 1024, reader);
        read_header(&mut r)
            .await
            .map_err(|m| corrupt(&art.path, m))?;
        Ok(Self {
            r,
            path: art.path.clone(),
        })
    }

    /// The artifact's path in the repository.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The next page, as stored and decoded, or `None` at the end.
    pub(crate) async fn next(&mut self) -> Result<Option<(Vec<u8>, QueryResults)>> {
        let Some(page) = read_page(&mut self.r)
            .await
            .map_err(|e| read_err(e, &self.path))?
        else {
            return Ok(None);
        };
        let qr = decode(&page).map_err(|m| corrupt(&self.path, m))?;
        Ok(Some((page, qr)))
    }

    /// Reach the end of the stream: runs its length and SHA-256 checks.
    pub(crate) async fn finish(self) -> Result<()> {
        self.r.into_inner().finish().await
    }
}

/// Damage in `artifact`.
pub(crate) fn corrupt(artifact: &str, message: impl Into<String>) -> Error {
    Error::Corrupt {
        artifact: artifact.to_string(),
        message: message.into(),
    }
}

/// A read error of `artifact`: I/O errors of the stream (a short or damaged stream) are damage.
fn read_err(e: std::io::Error, artifact: &str) -> Error {
    match Error::from_io("read", artifact, e) {
        Error::Io { source, .. } => corrupt(artifact, source.to_string()),
        other => other,
    }
}

/// Milvus 2.3 answers an empty array value with an element that has no data, and its own insert
/// validation then dereferences nil and crashes the server. Give such elements an empty list
/// of the array's element type before inserting.
pub(crate) fn fill_empty_arrays(fields: &mut [FieldData]) {
    use milvus::proto::schema::{
        field_data::Field, scalar_field::Data, BoolArray, DataType, DoubleArray, FloatArray,
        IntArray, LongArray, StringArray,
    };
    for f in fields {
        let Some(Field::Scalars(s)) = &mut f.field else {
            continue;
        };
        let Some(Data::ArrayData(arr)) = &mut s.data else {
            continue;
        };
        let element = DataType::try_from(arr.element_type).unwrap_or(DataType::None);
        for e in &mut arr.data {
            if e.data.is_some() {
                continue;
            }
            e.data = match element {
                DataType::Bool => Some(Data::BoolData(BoolArray::default())),
                DataType::Int8 | DataType::Int16 | DataType::Int32 => {
                    Some(Data::IntData(IntArray::default()))
                }
                DataType::Int64 => Some(Data::LongData(LongArray::default())),
                DataType::Float => Some(Data::FloatData(FloatArray::default())),
                DataType::Double => Some(Data::DoubleData(DoubleArray::default())),
                DataType::VarChar | DataType::String => {
                    Some(Data::StringData(StringArray::default()))
                }
                _ => None,
            };
        }
    }
}
