//! The template database: people, their int8 templates, bound to one model.
//!
//! Layout (version 1, all integers little-endian):
//!
//! ```text
//! header (64 B) | backup copy of the header (64 B) | record 0 | record 1 | ...
//!
//! header:  magic "FGDB" | version u16 | header_len u16 (=64) | dim u16
//!          | max_templates u8 | name_capacity u8 | record_size u32
//!          | record_count u32 | model_hash [u8; 32] | reserved [u8; 8] (zero)
//!          | crc32 u32 (over the 60 bytes before it)
//! record:  tag "PR" | template_count u8 | name_len u8 | person_id u32
//!          | name [u8; name_capacity] (UTF-8, zero-padded)
//!          | max_templates × (scale f32 | values [i8; dim])  (unused slots zero)
//!          | crc32 u32 (over the record bytes before it)
//! ```
//!
//! Records have a fixed size given by the header, so damage inside one record
//! cannot hide where the next one starts: a damaged record reports
//! [`DbError::RecordCrc`] and every other record still reads. The header is
//! stored twice; one damaged copy is reported ([`HeaderHealth`]) and the
//! other is used. CRC-32 detects every single-byte error.

use crate::ModelHash;
use crate::matcher::PersonId;
use crate::template::{Template, TemplateError};

/// File magic.
pub const MAGIC: [u8; 4] = *b"FGDB";
/// Format version written by this crate; the reader accepts exactly this.
pub const VERSION: u16 = 1;
/// Bytes of one header copy.
pub const HEADER_LEN: usize = 64;
/// Bytes of a person's name, UTF-8.
pub const NAME_CAPACITY: usize = 32;
/// Default (and largest supported) number of templates per person.
pub const MAX_TEMPLATES: usize = 8;

const RECORD_TAG: [u8; 2] = *b"PR";
const RECORD_FIXED: usize = 2 + 1 + 1 + 4; // tag, count, name_len, id
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Everything that can be wrong with a database or an operation on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DbError {
    /// Fewer bytes than two headers.
    TooShort,
    /// Neither header copy starts with `FGDB`: this is not a template database.
    BadMagic,
    /// Both header copies fail their CRC.
    HeaderCrc,
    /// Written by a newer (or unknown) format version.
    UnsupportedVersion {
        /// Version found.
        found: u16,
    },
    /// Header fields contradict each other (sizes, capacities).
    BadGeometry,
    /// The database holds embeddings of another width than the reader expects.
    DimensionMismatch {
        /// Width the caller expects.
        expected: u16,
        /// Width in the database.
        found: u16,
    },
    /// The database was made by a different model; its templates are not comparable.
    ModelMismatch {
        /// Hash of the model that made the database.
        found: ModelHash,
    },
    /// Record index past `record_count`.
    NoSuchRecord,
    /// The bytes end before this record does (truncated write or copy).
    RecordTruncated {
        /// Record index.
        index: u32,
    },
    /// The record's CRC does not match: the record is damaged.
    RecordCrc {
        /// Record index.
        index: u32,
    },
    /// CRC-valid but meaningless record (bad tag, lengths, UTF-8 or template).
    RecordMalformed {
        /// Record index.
        index: u32,
    },
    /// The output buffer cannot hold another record.
    BufferFull,
    /// More templates than a record (or the caller's type) can hold.
    TooManyTemplates,
    /// Name longer than [`NAME_CAPACITY`] bytes.
    NameTooLong,
    /// Too many records for a `u32` count.
    TooManyRecords,
    /// A person id above [`PersonId::MAX`].
    BadPersonId,
}

impl core::fmt::Display for DbError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooShort => f.write_str("template database is shorter than its header"),
            Self::BadMagic => f.write_str("not a facegate template database (bad magic)"),
            Self::HeaderCrc => {
                f.write_str("template database header is damaged (both copies fail CRC)")
            }
            Self::UnsupportedVersion { found } => {
                write!(
                    f,
                    "template database version {found} is not supported (this build reads {VERSION})"
                )
            }
            Self::BadGeometry => f.write_str("template database header has inconsistent sizes"),
            Self::DimensionMismatch { expected, found } => {
                write!(
                    f,
                    "template database holds {found}-d templates, expected {expected}-d"
                )
            }
            Self::ModelMismatch { found } => write!(
                f,
                "template database was made by model {found}; re-enroll with the current model"
            ),
            Self::NoSuchRecord => f.write_str("no such record"),
            Self::RecordTruncated { index } => write!(f, "record {index} is truncated"),
            Self::RecordCrc { index } => write!(f, "record {index} is damaged (CRC mismatch)"),
            Self::RecordMalformed { index } => write!(f, "record {index} is malformed"),
            Self::BufferFull => f.write_str("database buffer is full"),
            Self::TooManyTemplates => f.write_str("too many templates for one person"),
            Self::NameTooLong => write!(f, "name longer than {NAME_CAPACITY} bytes"),
            Self::TooManyRecords => f.write_str("too many records"),
            Self::BadPersonId => write!(f, "person ids are 0 to {} (31 bits)", PersonId::MAX),
        }
    }
}

impl core::error::Error for DbError {}

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DbHeader {
    /// Embedding width.
    pub dim: u16,
    /// Template slots per record.
    pub max_templates: u8,
    /// Number of records.
    pub record_count: u32,
    /// The model the templates belong to.
    pub model_hash: ModelHash,
}

impl DbHeader {
    /// Bytes of one record with this geometry.
    pub const fn record_size(&self) -> usize {
        record_size(self.dim as usize, self.max_templates as usize)
    }

    /// Total encoded length of the database.
    pub const fn encoded_len(&self) -> usize {
        2 * HEADER_LEN + self.record_count as usize * self.record_size()
    }

    fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out.fill(0);
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&VERSION.to_le_bytes());
        out[6..8].copy_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out[8..10].copy_from_slice(&self.dim.to_le_bytes());
        out[10] = self.max_templates;
        out[11] = NAME_CAPACITY as u8;
        // Fits: dim <= u16::MAX and max_templates <= MAX_TEMPLATES.
        #[allow(clippy::cast_possible_truncation)]
        out[12..16].copy_from_slice(&(self.record_size() as u32).to_le_bytes());
        out[16..20].copy_from_slice(&self.record_count.to_le_bytes());
        out[20..52].copy_from_slice(&self.model_hash.0);
        let crc = CRC.checksum(&out[..60]);
        out[60..64].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Result<Self, DbError> {
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(DbError::TooShort)?;
        if h[0..4] != MAGIC {
            return Err(DbError::BadMagic);
        }
        if CRC.checksum(&h[..60]) != u32::from_le_bytes([h[60], h[61], h[62], h[63]]) {
            return Err(DbError::HeaderCrc);
        }
        let version = u16::from_le_bytes([h[4], h[5]]);
        if version != VERSION {
            return Err(DbError::UnsupportedVersion { found: version });
        }
        let header = Self {
            dim: u16::from_le_bytes([h[8], h[9]]),
            max_templates: h[10],
            record_count: u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
            model_hash: ModelHash(h[20..52].try_into().map_err(|_| DbError::TooShort)?),
        };
        let header_len = u16::from_le_bytes([h[6], h[7]]);
        let stored_record_size = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        if usize::from(header_len) != HEADER_LEN
            || usize::from(h[11]) != NAME_CAPACITY
            || header.dim == 0
            || header.max_templates == 0
            || usize::from(header.max_templates) > MAX_TEMPLATES
            || usize::try_from(stored_record_size).ok() != Some(header.record_size())
            || h[52..60].iter().any(|&b| b != 0)
        {
            return Err(DbError::BadGeometry);
        }
        Ok(header)
    }
}

/// Which header copies were intact when the database was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HeaderHealth {
    /// Both copies intact and equal.
    Intact,
    /// The primary copy is damaged; the backup was used. Rewrite the database.
    PrimaryDamaged,
    /// The backup copy is damaged (or differs); the primary was used. Rewrite the database.
    BackupDamaged,
}

/// Bytes of one record for embeddings of width `dim` and `max_templates` slots.
pub const fn record_size(dim: usize, max_templates: usize) -> usize {
    RECORD_FIXED + NAME_CAPACITY + max_templates * (4 + dim) + 4
}

/// An enrolled person: id, display name and up to `T` templates.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PersonRecord<const D: usize = { crate::EMBEDDING_DIM }, const T: usize = MAX_TEMPLATES> {
    /// Identifier (unique within a database).
    pub id: PersonId,
    /// Display name, at most [`NAME_CAPACITY`] bytes of UTF-8.
    pub name: heapless::String<NAME_CAPACITY>,
    /// The person's templates; the matcher uses the best one.
    pub templates: heapless::Vec<Template<D>, T>,
}

impl<const D: usize, const T: usize> PersonRecord<D, T> {
    /// A person with no templates yet.
    pub fn new(id: PersonId, name: &str) -> Result<Self, DbError> {
        if !id.is_valid() {
            return Err(DbError::BadPersonId);
        }
        let mut n = heapless::String::new();
        n.push_str(name).map_err(|_| DbError::NameTooLong)?;
        Ok(Self {
            id,
            name: n,
            templates: heapless::Vec::new(),
        })
    }

    /// Adds a template; fails when `T` templates are already there.
    pub fn push_template(&mut self, t: Template<D>) -> Result<(), DbError> {
        self.templates
            .push(t)
            .map_err(|_| DbError::TooManyTemplates)
    }
}

/// Writes a database into a caller-provided buffer.
#[derive(Debug)]
pub struct DbWriter<'a, const D: usize> {
    buf: &'a mut [u8],
    header: DbHeader,
}

impl<'a, const D: usize> DbWriter<'a, D> {
    /// Starts an empty database for `model_hash` with `max_templates` slots per person.
    pub fn new(
        buf: &'a mut [u8],
        model_hash: ModelHash,
        max_templates: u8,
    ) -> Result<Self, DbError> {
        let dim = u16::try_from(D).map_err(|_| DbError::BadGeometry)?;
        if max_templates == 0 || usize::from(max_templates) > MAX_TEMPLATES {
            return Err(DbError::TooManyTemplates);
        }
        let header = DbHeader {
            dim,
            max_templates,
            record_count: 0,
            model_hash,
        };
        let mut w = Self { buf, header };
        w.write_headers()?;
        Ok(w)
    }

    fn write_headers(&mut self) -> Result<(), DbError> {
        let mut h = [0u8; HEADER_LEN];
        self.header.encode(&mut h);
        let both = self
            .buf
            .get_mut(..2 * HEADER_LEN)
            .ok_or(DbError::BufferFull)?;
        both[..HEADER_LEN].copy_from_slice(&h);
        both[HEADER_LEN..].copy_from_slice(&h);
        Ok(())
    }

    /// Appends a person. Nothing is written if it does not fit.
    pub fn push<const T: usize>(&mut self, person: &PersonRecord<D, T>) -> Result<(), DbError> {
        let slots = usize::from(self.header.max_templates);
        if person.templates.len() > slots {
            return Err(DbError::TooManyTemplates);
        }
        let count = self
            .header
            .record_count
            .checked_add(1)
            .ok_or(DbError::TooManyRecords)?;
        let size = self.header.record_size();
        let start = self.header.encoded_len();
        let rec = self
            .buf
            .get_mut(start..start + size)
            .ok_or(DbError::BufferFull)?;
        rec.fill(0);
        rec[0..2].copy_from_slice(&RECORD_TAG);
        // Both fit in u8: templates <= MAX_TEMPLATES, name <= NAME_CAPACITY.
        #[allow(clippy::cast_possible_truncation)]
        {
            rec[2] = person.templates.len() as u8;
            rec[3] = person.name.len() as u8;
        }
        rec[4..8].copy_from_slice(&person.id.0.to_le_bytes());
        let name_at = RECORD_FIXED;
        rec[name_at..name_at + person.name.len()].copy_from_slice(person.name.as_bytes());
        let mut at = name_at + NAME_CAPACITY;
        for t in &person.templates {
            rec[at..at + 4].copy_from_slice(&t.scale().to_le_bytes());
            for (dst, &v) in rec[at + 4..at + 4 + D].iter_mut().zip(t.values()) {
                *dst = v.to_le_bytes()[0];
            }
            at += 4 + D;
        }
        let crc = CRC.checksum(&rec[..size - 4]);
        rec[size - 4..].copy_from_slice(&crc.to_le_bytes());
        self.header.record_count = count;
        self.write_headers()
    }

    /// Number of records written so far.
    pub const fn len(&self) -> u32 {
        self.header.record_count
    }

    /// Whether no record was written yet.
    pub const fn is_empty(&self) -> bool {
        self.header.record_count == 0
    }

    /// Finishes; returns the number of bytes of the database at the start of the buffer.
    pub const fn finish(self) -> usize {
        self.header.encoded_len()
    }
}

/// A zero-copy reader over database bytes (e.g. straight from flash).
#[derive(Clone, Copy, Debug)]
pub struct DbReader<'a, const D: usize> {
    bytes: &'a [u8],
    header: DbHeader,
    health: HeaderHealth,
}

impl<'a, const D: usize> DbReader<'a, D> {
    /// Opens a database of `D`-wide templates; bytes after the last record are ignored.
    pub fn open(bytes: &'a [u8]) -> Result<Self, DbError> {
        let primary = bytes.get(..HEADER_LEN).ok_or(DbError::TooShort)?;
        let backup = bytes
            .get(HEADER_LEN..2 * HEADER_LEN)
            .ok_or(DbError::TooShort)?;
        let (header, health) = match (DbHeader::decode(primary), DbHeader::decode(backup)) {
            (Ok(p), Ok(b)) if p == b => (p, HeaderHealth::Intact),
            (Ok(p), _) => (p, HeaderHealth::BackupDamaged),
            (Err(_), Ok(b)) => (b, HeaderHealth::PrimaryDamaged),
            (Err(e), Err(_)) => return Err(e),
        };
        let expected = u16::try_from(D).map_err(|_| DbError::BadGeometry)?;
        if header.dim != expected {
            return Err(DbError::DimensionMismatch {
                expected,
                found: header.dim,
            });
        }
        Ok(Self {
            bytes,
            header,
            health,
        })
    }

    /// Opens a database and checks that it belongs to `model`.
    pub fn open_for_model(bytes: &'a [u8], model: &ModelHash) -> Result<Self, DbError> {
        let r = Self::open(bytes)?;
        if r.header.model_hash != *model {
            return Err(DbError::ModelMismatch {
                found: r.header.model_hash,
            });
        }
        Ok(r)
    }

    /// The header in use.
    pub const fn header(&self) -> &DbHeader {
        &self.header
    }

    /// Which header copies were intact.
    pub const fn header_health(&self) -> HeaderHealth {
        self.health
    }

    /// Number of records the header announces.
    pub const fn len(&self) -> u32 {
        self.header.record_count
    }

    /// Whether the database has no records.
    pub const fn is_empty(&self) -> bool {
        self.header.record_count == 0
    }

    /// A checked, zero-copy view of record `index`.
    pub fn record(&self, index: u32) -> Result<RecordView<'a, D>, DbError> {
        if index >= self.header.record_count {
            return Err(DbError::NoSuchRecord);
        }
        let size = self.header.record_size();
        let start = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_mul(size))
            .and_then(|o| o.checked_add(2 * HEADER_LEN))
            .ok_or(DbError::RecordTruncated { index })?;
        let rec = start
            .checked_add(size)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(DbError::RecordTruncated { index })?;
        RecordView::parse(rec, index, usize::from(self.header.max_templates))
    }

    /// Every record in order, each checked on its own.
    pub fn records(&self) -> impl Iterator<Item = Result<RecordView<'a, D>, DbError>> + '_ {
        (0..self.header.record_count).map(|i| self.record(i))
    }
}

/// A CRC-checked record inside database bytes.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a, const D: usize> {
    id: PersonId,
    name: &'a str,
    templates: &'a [u8],
    count: usize,
}

impl<'a, const D: usize> RecordView<'a, D> {
    fn parse(rec: &'a [u8], index: u32, slots: usize) -> Result<Self, DbError> {
        let malformed = DbError::RecordMalformed { index };
        let (body, crc) = rec.split_last_chunk::<4>().ok_or(malformed)?;
        if CRC.checksum(body) != u32::from_le_bytes(*crc) {
            return Err(DbError::RecordCrc { index });
        }
        let fixed: &[u8; RECORD_FIXED] = body.first_chunk().ok_or(malformed)?;
        let (count, name_len) = (usize::from(fixed[2]), usize::from(fixed[3]));
        if fixed[0..2] != RECORD_TAG || count > slots || name_len > NAME_CAPACITY {
            return Err(malformed);
        }
        let id = PersonId(u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]));
        if !id.is_valid() {
            return Err(malformed);
        }
        let name_bytes = body
            .get(RECORD_FIXED..RECORD_FIXED + name_len)
            .ok_or(malformed)?;
        let name = core::str::from_utf8(name_bytes).map_err(|_| malformed)?;
        let tpl_at = RECORD_FIXED + NAME_CAPACITY;
        let templates = body
            .get(tpl_at..tpl_at + count * (4 + D))
            .ok_or(malformed)?;
        let view = Self {
            id,
            name,
            templates,
            count,
        };
        // Validate every template now so iteration after this point is infallible.
        for i in 0..count {
            view.decode_template(i).map_err(|_| malformed)?;
        }
        Ok(view)
    }

    fn decode_template(&self, i: usize) -> Result<Template<D>, TemplateError> {
        let chunk = self
            .templates
            .get(i * (4 + D)..(i + 1) * (4 + D))
            .ok_or(TemplateError::ZeroVector)?;
        let (scale, values) = chunk
            .split_first_chunk::<4>()
            .ok_or(TemplateError::ZeroVector)?;
        let mut v = [0i8; D];
        for (dst, &b) in v.iter_mut().zip(values) {
            *dst = i8::from_le_bytes([b]);
        }
        Template::from_parts(v, f32::from_le_bytes(*scale))
    }

    /// The person's id.
    pub const fn id(&self) -> PersonId {
        self.id
    }

    /// The person's name.
    pub const fn name(&self) -> &'a str {
        self.name
    }

    /// Number of templates.
    pub const fn template_count(&self) -> usize {
        self.count
    }

    /// The templates, decoded one at a time.
    pub fn templates(&self) -> impl Iterator<Item = Template<D>> + '_ {
        // Validated in `parse`; `ok()` cannot drop anything.
        (0..self.count).filter_map(|i| self.decode_template(i).ok())
    }

    /// Copies the record into an owned [`PersonRecord`] with room for `T` templates.
    pub fn to_record<const T: usize>(&self) -> Result<PersonRecord<D, T>, DbError> {
        let mut p = PersonRecord::new(self.id, self.name)?;
        for t in self.templates() {
            p.push_template(t)?;
        }
        Ok(p)
    }
}
