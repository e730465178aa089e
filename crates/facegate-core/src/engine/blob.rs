//! The `.fgm` model blob: layout, checked parsing, and running it.
//!
//! ```text
//! header (128 B) | tensor table (16 B each) | op table (64 B each) | data (16-byte aligned arrays)
//!
//! header:  magic "FGM1" | version u16 | header_len u16 | total_len u32 | n_tensors u16 | n_ops u16
//!          | arena_len u32 | input_tensor u16 | output_tensor u16 | input_h u16 | input_w u16
//!          | embedding_dim u16 | reserved u16 | model_hash [u8; 32] | tensors_off u32 | ops_off u32
//!          | data_off u32 | data_len u32 | lut_off u32 (3 × 256 i8, within data) | reserved [u8; 40]
//!          | crc32 u32 (over the whole blob except these 4 bytes)
//! tensor:  h u16 | w u16 | c u16 | zero_point i8 | band_rows u8 | scale f32 | arena_off u32
//! op conv: kind=1 u8 | flags u8 | in u16 | out u16 | groups u16 | kh kw stride pad_t pad_l pad_b pad_r u8
//!          | reserved u8 | weights bias mult shift neg_mult neg_shift: data offsets u32 | reserved
//! op add:  kind=2 u8 | flags u8 | a u16 | out u16 | b u16 | a_mult a_shift b_mult b_shift
//!          out_mult out_shift: i32 | reserved
//! op pool: kind=3 u8 | flags u8 | in u16 | out u16 | reserved u16 | kh kw stride pad_t pad_l pad_b pad_r u8
//!          | reserved (version 3 only: max pooling)
//! ```
//!
//! A tensor with `band_rows` > 0 (version 2) holds only that many rows in the
//! arena: it is a bottleneck's 1×1 expansion, written by exactly one
//! pointwise op and read only by the depthwise op right after it, and the
//! engine runs the two together row band by row band (the expansion's rows
//! are computed as the depthwise window reaches them). The result is the
//! same to the bit; the arena no longer holds the whole expanded map. In
//! version 1 the byte is reserved and must be 0.
//!
//! Version 3 is a *detector* blob (the MTCNN nets): it may hold max-pool
//! ops, its output is any `h × w × c` map (several heads side by side in
//! the channels, e.g. face logits and box offsets), and the header's
//! `out_scales_off` (at byte 84, within data) points to one f32 scale per
//! output channel, so that logits and small box offsets each keep their
//! own resolution: real = `scale[c] · (q − zero_point)`. Embedders keep
//! writing versions 1 and 2, byte for byte as before.
//!
//! The model hash (what templates are bound to) is the SHA-256 of the blob
//! with the hash and CRC fields zeroed, computed by the writer; the board
//! checks the CRC, the host can check both.

use core::ops::Range;

use super::EngineError;
use super::kernels::{AddParams, ChannelParams, ConvGeometry, add, conv2d, max_pool};
use crate::ModelHash;

/// Blob magic.
pub const MAGIC: [u8; 4] = *b"FGM1";
/// Format version written when no tensor is banded (every reader reads it).
pub const VERSION: u16 = 1;
/// Format version written when some tensor is banded (`band_rows` > 0).
pub const VERSION_BANDED: u16 = 2;
/// Header bytes.
pub const HEADER_LEN: usize = 128;
/// Tensor record bytes.
pub const TENSOR_LEN: usize = 16;
/// Op record bytes.
pub const OP_LEN: usize = 64;
/// Offset of the model hash in the header.
pub const HASH_AT: usize = 32;
/// Offset of the CRC in the header.
pub const CRC_AT: usize = 124;
/// Op kinds.
pub const OP_CONV: u8 = 1;
/// Residual add.
pub const OP_ADD: u8 = 2;
/// Max pooling (version 3).
pub const OP_MAX_POOL: u8 = 3;
/// Format version of detector blobs: max pooling, a map output with a
/// scale per channel.
pub const VERSION_DETECTOR: u16 = 3;
/// Offset of `out_scales_off` in a version 3 header.
pub const OUT_SCALES_AT: usize = 84;
/// Bytes of the input table (256 entries per RGB channel).
pub const LUT_LEN: usize = 3 * 256;

const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 of a blob, skipping the CRC field itself.
pub fn blob_crc(blob: &[u8]) -> u32 {
    let mut d = CRC.digest();
    d.update(blob.get(..CRC_AT).unwrap_or(blob));
    d.update(blob.get(HEADER_LEN..).unwrap_or(&[]));
    d.finalize()
}

/// Why a blob cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum BlobError {
    /// Shorter than its header or its declared length.
    Truncated,
    /// Not a facegate model blob.
    BadMagic,
    /// Written by another format version.
    UnsupportedVersion {
        /// Version found.
        found: u16,
    },
    /// The CRC does not match: the blob is damaged.
    Crc,
    /// The blob belongs to another model than expected.
    ModelMismatch,
    /// A table, array or tensor lies outside the blob or the arena.
    OutOfBounds,
    /// Op `index` is inconsistent (shapes, groups, kinds, overlapping buffers).
    BadOp {
        /// Op index.
        index: u16,
    },
    /// Tensor `index` is inconsistent.
    BadTensor {
        /// Tensor index.
        index: u16,
    },
}

impl core::fmt::Display for BlobError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("model blob is truncated"),
            Self::BadMagic => f.write_str("not a facegate model blob (bad magic)"),
            Self::UnsupportedVersion { found } => write!(
                f,
                "model blob version {found} is not supported (this build reads {VERSION} to {VERSION_DETECTOR})"
            ),
            Self::Crc => f.write_str("model blob is damaged (CRC mismatch)"),
            Self::ModelMismatch => {
                f.write_str("model blob is not the expected model (hash differs)")
            }
            Self::OutOfBounds => f.write_str("model blob refers outside itself or its arena"),
            Self::BadOp { index } => write!(f, "model blob op {index} is inconsistent"),
            Self::BadTensor { index } => write!(f, "model blob tensor {index} is inconsistent"),
        }
    }
}

impl core::error::Error for BlobError {}

fn u16_at(b: &[u8], at: usize) -> Result<u16, BlobError> {
    b.get(at..at + 2)
        .and_then(|s| s.try_into().ok())
        .map(u16::from_le_bytes)
        .ok_or(BlobError::Truncated)
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, BlobError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(BlobError::Truncated)
}

fn i32_at(b: &[u8], at: usize) -> Result<i32, BlobError> {
    u32_at(b, at).map(|v| i32::from_le_bytes(v.to_le_bytes()))
}

/// A checked tensor: shape, quantisation and place in the arena.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TensorInfo {
    /// Height.
    pub h: u16,
    /// Width.
    pub w: u16,
    /// Channels.
    pub c: u16,
    /// Zero point.
    pub zero_point: i8,
    /// Rows held in the arena when the tensor is banded; 0: all `h` rows.
    pub band_rows: u8,
    /// Scale (real = scale · (q − zero_point)).
    pub scale: f32,
    /// Offset in the arena.
    pub arena_off: u32,
}

impl TensorInfo {
    /// Elements (= bytes) of the whole tensor.
    pub const fn len(&self) -> usize {
        self.h as usize * self.w as usize * self.c as usize
    }

    /// Bytes one row takes (`w · c`).
    pub const fn row_len(&self) -> usize {
        self.w as usize * self.c as usize
    }

    /// Whether only `band_rows` rows live in the arena.
    pub const fn is_banded(&self) -> bool {
        self.band_rows > 0
    }

    /// Bytes the tensor occupies in the arena.
    pub const fn footprint(&self) -> usize {
        if self.is_banded() {
            self.band_rows as usize * self.row_len()
        } else {
            self.len()
        }
    }

    /// Whether the tensor is empty (never, in a parsed blob).
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn range(&self) -> Range<usize> {
        self.arena_off as usize..self.arena_off as usize + self.footprint()
    }
}

/// A parsed, validated model blob, borrowing its bytes (e.g. from flash).
#[derive(Clone, Copy, Debug)]
pub struct Model<'a> {
    blob: &'a [u8],
    version: u16,
    n_tensors: u16,
    n_ops: u16,
    arena_len: u32,
    input: u16,
    output: u16,
    tensors_off: usize,
    ops_off: usize,
    data: &'a [u8],
    lut: &'a [u8],
    /// Version 3: one little-endian f32 scale per output channel.
    out_scales: Option<&'a [u8]>,
    hash: ModelHash,
}

/// A decoded op, borrowing its arrays from the blob.
enum Op<'a> {
    Conv {
        g: ConvGeometry,
        input: TensorInfo,
        output: TensorInfo,
        weights: &'a [i8],
        params: ChannelParams<'a>,
    },
    Add {
        p: AddParams,
        a: TensorInfo,
        b: TensorInfo,
        output: TensorInfo,
    },
    MaxPool {
        g: ConvGeometry,
        input: TensorInfo,
        output: TensorInfo,
    },
}

impl<'a> Model<'a> {
    /// Parses and validates `bytes`; nothing in them can make a later run panic.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, BlobError> {
        Self::parse_with(bytes, true)
    }

    /// [`Self::parse`] without the CRC over the whole blob, for bytes that
    /// already passed [`Self::parse`] and have not changed since (a host
    /// keeping the blob in memory and embedding many faces). Every
    /// structural check still runs, so a run cannot panic either way.
    pub fn parse_intact(bytes: &'a [u8]) -> Result<Self, BlobError> {
        Self::parse_with(bytes, false)
    }

    fn parse_with(bytes: &'a [u8], check_crc: bool) -> Result<Self, BlobError> {
        let h = bytes.get(..HEADER_LEN).ok_or(BlobError::Truncated)?;
        if h[..4] != MAGIC {
            return Err(BlobError::BadMagic);
        }
        let version = u16_at(h, 4)?;
        if !matches!(version, VERSION | VERSION_BANDED | VERSION_DETECTOR) {
            return Err(BlobError::UnsupportedVersion { found: version });
        }
        if usize::from(u16_at(h, 6)?) != HEADER_LEN {
            return Err(BlobError::OutOfBounds);
        }
        let total = u32_at(h, 8)? as usize;
        let blob = bytes.get(..total).ok_or(BlobError::Truncated)?;
        if total < HEADER_LEN {
            return Err(BlobError::Truncated);
        }
        if check_crc && blob_crc(blob) != u32_at(h, CRC_AT)? {
            return Err(BlobError::Crc);
        }
        let data_off = u32_at(h, 72)? as usize;
        let data_len = u32_at(h, 76)? as usize;
        let data = data_off
            .checked_add(data_len)
            .and_then(|end| blob.get(data_off..end))
            .ok_or(BlobError::OutOfBounds)?;
        let lut_off = u32_at(h, 80)? as usize;
        let lut = data
            .get(lut_off..lut_off + LUT_LEN)
            .ok_or(BlobError::OutOfBounds)?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&h[HASH_AT..HASH_AT + 32]);
        let mut m = Self {
            blob,
            version,
            n_tensors: u16_at(h, 12)?,
            n_ops: u16_at(h, 14)?,
            arena_len: u32_at(h, 16)?,
            input: u16_at(h, 20)?,
            output: u16_at(h, 22)?,
            tensors_off: u32_at(h, 64)? as usize,
            ops_off: u32_at(h, 68)? as usize,
            data,
            lut,
            out_scales: None,
            hash: ModelHash(hash),
        };
        let tables_fit = |off: usize, n: u16, size: usize| {
            off.checked_add(usize::from(n) * size)
                .is_some_and(|end| end <= total)
        };
        if !tables_fit(m.tensors_off, m.n_tensors, TENSOR_LEN)
            || !tables_fit(m.ops_off, m.n_ops, OP_LEN)
        {
            return Err(BlobError::OutOfBounds);
        }
        for i in 0..m.n_tensors {
            m.tensor(i)?;
        }
        let (input, output) = (m.tensor(m.input)?, m.tensor(m.output)?);
        let output_ok = if version == VERSION_DETECTOR {
            // A map of any size; every channel with a usable scale.
            let scales = m.array(u32_at(h, OUT_SCALES_AT)?, usize::from(output.c) * 4)?;
            let usable = scales.chunks_exact(4).all(|b| {
                let s = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                s.is_finite() && s > 0.0
            });
            m.out_scales = Some(scales);
            usable && output.c == u16_at(h, 28)?
        } else {
            (output.h, output.w, output.c) == (1, 1, u16_at(h, 28)?)
        };
        if (input.h, input.w, input.c) != (u16_at(h, 24)?, u16_at(h, 26)?, 3) || !output_ok {
            return Err(BlobError::BadTensor { index: m.output });
        }
        if input.is_banded() || output.is_banded() {
            return Err(BlobError::BadTensor { index: m.input });
        }
        for i in 0..m.n_ops {
            m.op(i)?;
        }
        m.check_bands()?;
        Ok(m)
    }

    /// Every banded tensor is a pointwise expansion read only by the
    /// depthwise op right after its writer, so that `embed` can run each
    /// such pair together and never needs the whole tensor.
    fn check_bands(&self) -> Result<(), BlobError> {
        if self.version == VERSION {
            return Ok(()); // no banded tensors (checked in `tensor`)
        }
        let banded = |t: TensorInfo| t.is_banded();
        for i in 0..self.n_ops {
            let bad = BlobError::BadOp { index: i };
            match self.op(i)? {
                Op::Add { a, b, output, .. } => {
                    if banded(a) || banded(b) || banded(output) {
                        return Err(bad);
                    }
                }
                Op::MaxPool { input, output, .. } => {
                    if banded(input) || banded(output) {
                        return Err(bad);
                    }
                }
                Op::Conv {
                    g, input, output, ..
                } => {
                    if banded(input) {
                        // Read only right after its writer: checked from the writer's side.
                        let writer_ok = i > 0
                            && matches!(self.op(i - 1)?, Op::Conv { output: o, .. } if o == input);
                        if !writer_ok {
                            return Err(bad);
                        }
                    }
                    if !banded(output) {
                        continue;
                    }
                    let pointwise = g.kh == 1
                        && g.kw == 1
                        && g.stride == 1
                        && g.pad_top == 0
                        && g.pad_left == 0
                        && g.groups == 1
                        && (g.out_h, g.out_w) == (g.in_h, g.in_w);
                    let next = i
                        .checked_add(1)
                        .filter(|&n| n < self.n_ops)
                        .ok_or(bad)
                        .and_then(|n| self.op(n))?;
                    let Op::Conv {
                        g: dw,
                        input: dw_in,
                        output: dw_out,
                        ..
                    } = next
                    else {
                        return Err(bad);
                    };
                    let overlaps =
                        |x: Range<usize>, y: Range<usize>| x.start < y.end && y.start < x.end;
                    let fused_ok = pointwise
                        && dw_in == output
                        && !banded(dw_out)
                        && dw.groups == dw.in_c
                        && dw.out_c == dw.in_c
                        && dw.kh <= usize::from(output.band_rows)
                        && dw.kh > 0
                        // Every output row's window holds at least one real row.
                        && (dw.out_h - 1) * dw.stride < dw.in_h + dw.pad_top
                        // The expansion's input stays live while the pair runs.
                        && !overlaps(input.range(), dw_out.range());
                    if !fused_ok {
                        return Err(bad);
                    }
                }
            }
        }
        Ok(())
    }

    /// Parses and checks that the blob is the model templates were made with.
    pub fn parse_for(bytes: &'a [u8], expected: &ModelHash) -> Result<Self, BlobError> {
        let m = Self::parse(bytes)?;
        if m.hash != *expected {
            return Err(BlobError::ModelMismatch);
        }
        Ok(m)
    }

    /// The model hash (templates are bound to it).
    pub const fn hash(&self) -> ModelHash {
        self.hash
    }

    /// Bytes of arena a run needs.
    pub const fn arena_len(&self) -> usize {
        self.arena_len as usize
    }

    /// Bytes of the blob (flash).
    pub const fn blob_len(&self) -> usize {
        self.blob.len()
    }

    /// `(height, width)` of the RGB input.
    pub fn input_size(&self) -> (usize, usize) {
        let t = self.tensor(self.input).unwrap_or(TensorInfo {
            h: 0,
            w: 0,
            c: 0,
            zero_point: 0,
            band_rows: 0,
            scale: 0.0,
            arena_off: 0,
        });
        (usize::from(t.h), usize::from(t.w))
    }

    /// `(height, width, channels)` of the output (1 × 1 × D for an embedder).
    pub fn output_shape(&self) -> (usize, usize, usize) {
        self.tensor(self.output).map_or((0, 0, 0), |t| {
            (usize::from(t.h), usize::from(t.w), usize::from(t.c))
        })
    }

    /// Embedding width.
    pub fn embedding_dim(&self) -> usize {
        self.tensor(self.output).map_or(0, |t| usize::from(t.c))
    }

    /// Number of ops.
    pub const fn op_count(&self) -> u16 {
        self.n_ops
    }

    /// Number of tensors kept in row bands (computed with their reader).
    pub fn banded_tensors(&self) -> usize {
        (0..self.n_tensors)
            .filter(|&i| self.tensor(i).is_ok_and(|t| t.is_banded()))
            .count()
    }

    /// Multiply-accumulates of one embedding.
    pub fn macs(&self) -> usize {
        (0..self.n_ops)
            .filter_map(|i| match self.op(i) {
                Ok(Op::Conv { g, .. }) => Some(g.macs()),
                _ => None,
            })
            .sum()
    }

    /// Tensor `i`, checked.
    pub fn tensor(&self, i: u16) -> Result<TensorInfo, BlobError> {
        if i >= self.n_tensors {
            return Err(BlobError::BadTensor { index: i });
        }
        let at = self.tensors_off + usize::from(i) * TENSOR_LEN;
        let b = self
            .blob
            .get(at..at + TENSOR_LEN)
            .ok_or(BlobError::OutOfBounds)?;
        let t = TensorInfo {
            h: u16_at(b, 0)?,
            w: u16_at(b, 2)?,
            c: u16_at(b, 4)?,
            zero_point: i8::from_le_bytes([b[6]]),
            band_rows: b[7],
            scale: f32::from_bits(u32_at(b, 8)?),
            arena_off: u32_at(b, 12)?,
        };
        let end = (t.arena_off as usize).checked_add(t.footprint());
        if t.is_empty()
            || (self.version == VERSION && t.is_banded())
            || !(t.scale.is_finite() && t.scale > 0.0)
            || end.is_none_or(|e| e > self.arena_len as usize)
        {
            return Err(BlobError::BadTensor { index: i });
        }
        Ok(t)
    }

    fn array(&self, off: u32, len: usize) -> Result<&'a [u8], BlobError> {
        let off = off as usize;
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or(BlobError::OutOfBounds)
    }

    fn op(&self, i: u16) -> Result<Op<'a>, BlobError> {
        let bad = BlobError::BadOp { index: i };
        let at = self.ops_off + usize::from(i) * OP_LEN;
        let b = self
            .blob
            .get(at..at + OP_LEN)
            .ok_or(BlobError::OutOfBounds)?;
        let overlaps = |x: Range<usize>, y: Range<usize>| x.start < y.end && y.start < x.end;
        match b[0] {
            OP_CONV => {
                let (input, output) = (self.tensor(u16_at(b, 2)?)?, self.tensor(u16_at(b, 4)?)?);
                let groups = usize::from(u16_at(b, 6)?);
                let [kh, kw, stride, pt, pl, pb, pr] =
                    [b[8], b[9], b[10], b[11], b[12], b[13], b[14]].map(usize::from);
                let g = ConvGeometry {
                    in_h: usize::from(input.h),
                    in_w: usize::from(input.w),
                    in_c: usize::from(input.c),
                    out_h: usize::from(output.h),
                    out_w: usize::from(output.w),
                    out_c: usize::from(output.c),
                    kh,
                    kw,
                    stride,
                    pad_top: pt,
                    pad_left: pl,
                    groups,
                };
                let shape_ok = groups > 0
                    && g.in_c % groups == 0
                    && g.out_c % groups == 0
                    && ConvGeometry::out_len(g.in_h, kh, stride, pt, pb) == Some(g.out_h)
                    && ConvGeometry::out_len(g.in_w, kw, stride, pl, pr) == Some(g.out_w)
                    && pt < kh.max(1)
                    && pl < kw.max(1);
                if !shape_ok || overlaps(input.range(), output.range()) {
                    return Err(bad);
                }
                let n_w = g.out_c * g.weights_per_output();
                let weights: &[i8] = bytemuck::cast_slice(self.array(u32_at(b, 16)?, n_w)?);
                let per_c = g.out_c * 4;
                let params = ChannelParams {
                    bias: self.array(u32_at(b, 20)?, per_c)?,
                    mult: self.array(u32_at(b, 24)?, per_c)?,
                    shift: self.array(u32_at(b, 28)?, per_c)?,
                    neg_mult: self.array(u32_at(b, 32)?, per_c)?,
                    neg_shift: self.array(u32_at(b, 36)?, per_c)?,
                };
                Ok(Op::Conv {
                    g,
                    input,
                    output,
                    weights,
                    params,
                })
            }
            OP_ADD => {
                let (a, output, bt) = (
                    self.tensor(u16_at(b, 2)?)?,
                    self.tensor(u16_at(b, 4)?)?,
                    self.tensor(u16_at(b, 6)?)?,
                );
                let dims = |t: &TensorInfo| (t.h, t.w, t.c);
                if dims(&a) != dims(&output)
                    || dims(&bt) != dims(&output)
                    || overlaps(a.range(), output.range())
                    || overlaps(bt.range(), output.range())
                {
                    return Err(bad);
                }
                let p = AddParams {
                    a_zp: i32::from(a.zero_point),
                    b_zp: i32::from(bt.zero_point),
                    out_zp: i32::from(output.zero_point),
                    a_mult: (i32_at(b, 8)?, i32_at(b, 12)?),
                    b_mult: (i32_at(b, 16)?, i32_at(b, 20)?),
                    out_mult: (i32_at(b, 24)?, i32_at(b, 28)?),
                };
                Ok(Op::Add {
                    p,
                    a,
                    b: bt,
                    output,
                })
            }
            OP_MAX_POOL if self.version == VERSION_DETECTOR => {
                let (input, output) = (self.tensor(u16_at(b, 2)?)?, self.tensor(u16_at(b, 4)?)?);
                let [kh, kw, stride, pt, pl, pb, pr] =
                    [b[8], b[9], b[10], b[11], b[12], b[13], b[14]].map(usize::from);
                let c = usize::from(input.c);
                let g = ConvGeometry {
                    in_h: usize::from(input.h),
                    in_w: usize::from(input.w),
                    in_c: c,
                    out_h: usize::from(output.h),
                    out_w: usize::from(output.w),
                    out_c: c,
                    kh,
                    kw,
                    stride,
                    pad_top: pt,
                    pad_left: pl,
                    groups: c,
                };
                // Max commutes with the quantisation only when both sides
                // share it; a pad as large as the kernel would leave a
                // window without a pixel.
                let ok = output.c == input.c
                    && output.scale.to_bits() == input.scale.to_bits()
                    && output.zero_point == input.zero_point
                    && ConvGeometry::out_len(g.in_h, kh, stride, pt, pb) == Some(g.out_h)
                    && ConvGeometry::out_len(g.in_w, kw, stride, pl, pr) == Some(g.out_w)
                    && pt.max(pb) < kh
                    && pl.max(pr) < kw
                    && !overlaps(input.range(), output.range());
                if !ok {
                    return Err(bad);
                }
                Ok(Op::MaxPool { g, input, output })
            }
            _ => Err(bad),
        }
    }

    /// Computes the (not yet normalised) embedding of an `h × w` RGB image
    /// (or, for a detector blob, its output map, dequantised in NHWC order).
    pub fn embed(&self, rgb: &[u8], arena: &mut [i8], out: &mut [f32]) -> Result<(), EngineError> {
        let expected = self.tensor(self.output).map_or(0, |t| t.len());
        if out.len() != expected {
            return Err(EngineError::OutputSize {
                expected: expected as u32,
                found: out.len() as u32,
            });
        }
        let output = self.run(rgb, arena)?;
        for (i, o) in out.iter_mut().enumerate() {
            *o = output.value(i);
        }
        Ok(())
    }

    /// Runs the model on an `h × w` RGB image (row-major, 3 bytes a pixel)
    /// and returns its output where it lies in the arena.
    pub fn run<'r>(&self, rgb: &[u8], arena: &'r mut [i8]) -> Result<Output<'a, 'r>, EngineError> {
        let need = self.arena_len;
        let have = u32::try_from(arena.len()).unwrap_or(u32::MAX);
        if have < need {
            return Err(EngineError::ArenaTooSmall { need, have });
        }
        let input = self
            .tensor(self.input)
            .map_err(|_| EngineError::ArenaTooSmall { need, have })?;
        let output = self
            .tensor(self.output)
            .map_err(|_| EngineError::ArenaTooSmall { need, have })?;
        if rgb.len() != input.len() {
            return Err(EngineError::InputSize {
                expected: input.len() as u32,
                found: rgb.len() as u32,
            });
        }
        let lut: &[i8] = bytemuck::cast_slice(self.lut);
        for (i, (dst, &px)) in arena[input.range()].iter_mut().zip(rgb).enumerate() {
            *dst = lut[(i % 3) * 256 + usize::from(px)];
        }
        let mut i = 0;
        while i < self.n_ops {
            // Validated in `parse`: cannot fail here.
            let Ok(op) = self.op(i) else {
                i += 1;
                continue;
            };
            i += 1;
            match op {
                Op::Conv { output, .. } if output.is_banded() => {
                    // `parse` checked that the next op is its depthwise reader.
                    let Ok(reader) = self.op(i) else { continue };
                    i += 1;
                    run_banded(arena, &op, &reader);
                }
                Op::Conv {
                    g,
                    input,
                    output,
                    weights,
                    params,
                } => {
                    let (dst, [src, _]) =
                        split(arena, output.range(), [input.range(), input.range()]);
                    conv2d(
                        &g,
                        src,
                        i32::from(input.zero_point),
                        weights,
                        &params,
                        i32::from(output.zero_point),
                        dst,
                    );
                }
                Op::Add { p, a, b, output } => {
                    let (dst, [sa, sb]) = split(arena, output.range(), [a.range(), b.range()]);
                    add(&p, sa, sb, dst);
                }
                Op::MaxPool { g, input, output } => {
                    let (dst, [src, _]) =
                        split(arena, output.range(), [input.range(), input.range()]);
                    max_pool(&g, src, dst);
                }
            }
        }
        Ok(Output {
            values: &arena[output.range()],
            info: output,
            channel_scales: self.out_scales,
        })
    }
}

/// A run's output as it lies in the arena: int8 values (NHWC) and how to
/// read them.
#[derive(Clone, Copy, Debug)]
pub struct Output<'a, 'r> {
    values: &'r [i8],
    info: TensorInfo,
    channel_scales: Option<&'a [u8]>,
}

impl Output<'_, '_> {
    /// `(height, width, channels)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        let t = &self.info;
        (usize::from(t.h), usize::from(t.w), usize::from(t.c))
    }

    /// Number of values.
    pub const fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no values (never, for a parsed blob).
    pub const fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The quantised values.
    pub const fn raw(&self) -> &[i8] {
        self.values
    }

    /// Value `i` (NHWC order) in real units; 0 past the end.
    pub fn value(&self, i: usize) -> f32 {
        let Some(&q) = self.values.get(i) else {
            return 0.0;
        };
        let c = usize::from(self.info.c).max(1);
        let scale = self
            .channel_scales
            .and_then(|s| s.get((i % c) * 4..(i % c) * 4 + 4))
            .map_or(self.info.scale, |b| {
                f32::from_le_bytes([b[0], b[1], b[2], b[3]])
            });
        scale * (f32::from(q) - f32::from(self.info.zero_point))
    }

    /// Value at row `y`, column `x`, channel `c` in real units; 0 outside.
    pub fn at(&self, y: usize, x: usize, c: usize) -> f32 {
        let (h, w, ch) = self.shape();
        if y >= h || x >= w || c >= ch {
            return 0.0;
        }
        self.value((y * w + x) * ch + c)
    }
}

/// A pointwise expansion and the depthwise convolution that reads it, run
/// together: the expansion's rows are computed into its band (`band_rows`
/// rows) as the depthwise window reaches them, and each depthwise output row
/// is computed from the band. Every output value is computed exactly as in
/// the unbanded run, so the results are the same to the bit.
fn run_banded(arena: &mut [i8], expand: &Op<'_>, depthwise: &Op<'_>) {
    let (
        Op::Conv {
            g: pw,
            input,
            output: band,
            weights: pw_weights,
            params: pw_params,
        },
        Op::Conv {
            g: dw,
            output,
            weights: dw_weights,
            params: dw_params,
            ..
        },
    ) = (expand, depthwise)
    else {
        return;
    };
    let (src, window, dst) = split3(arena, input.range(), band.range(), output.range());
    let (in_row, row, out_row) = (input.row_len(), band.row_len(), output.row_len());
    let (in_zp, band_zp, out_zp) = (
        i32::from(input.zero_point),
        i32::from(band.zero_point),
        i32::from(output.zero_point),
    );
    // Rows lo..hi of the expansion are held in window[0..(hi − lo)·row].
    let (mut lo, mut hi) = (0usize, 0usize);
    for oy in 0..dw.out_h {
        // Window of output row oy: input rows top..top + kh, clipped.
        let top = oy * dw.stride; // + pad_top, to stay unsigned
        let need_lo = top.saturating_sub(dw.pad_top);
        let need_hi = (top + dw.kh).saturating_sub(dw.pad_top).min(dw.in_h);
        if need_lo > lo {
            let keep = need_lo.min(hi);
            window.copy_within((keep - lo) * row..(hi - lo) * row, 0);
            lo = need_lo;
            hi = hi.max(lo);
        }
        if need_hi > hi {
            let g = ConvGeometry {
                in_h: need_hi - hi,
                out_h: need_hi - hi,
                ..*pw
            };
            conv2d(
                &g,
                &src[hi * in_row..need_hi * in_row],
                in_zp,
                pw_weights,
                pw_params,
                band_zp,
                &mut window[(hi - lo) * row..(need_hi - lo) * row],
            );
            hi = need_hi;
        }
        let g = ConvGeometry {
            in_h: hi - lo,
            out_h: 1,
            pad_top: (lo + dw.pad_top) - top,
            ..*dw
        };
        conv2d(
            &g,
            &window[..(hi - lo) * row],
            band_zp,
            dw_weights,
            dw_params,
            out_zp,
            &mut dst[oy * out_row..(oy + 1) * out_row],
        );
    }
}

/// Three disjoint ranges of the arena: the first shared, the others mutable
/// (the parser checked that they do not overlap).
fn split3(
    arena: &mut [i8],
    a: Range<usize>,
    b: Range<usize>,
    c: Range<usize>,
) -> (&[i8], &mut [i8], &mut [i8]) {
    // Cut the arena at the starts of the later ranges, in address order.
    let mut order = [(a.clone(), 0usize), (b.clone(), 1), (c.clone(), 2)];
    order.sort_unstable_by_key(|(r, _)| r.start);
    let (first, rest) = arena.split_at_mut(order[1].0.start);
    let (second, third) = rest.split_at_mut(order[2].0.start - order[1].0.start);
    let mut parts: [Option<&mut [i8]>; 3] = [None, None, None];
    for ((r, k), (part, base)) in order.iter().zip([
        (first, 0usize),
        (second, order[1].0.start),
        (third, order[2].0.start),
    ]) {
        let (_, tail) = part.split_at_mut(r.start - base);
        parts[*k] = Some(tail.split_at_mut(r.len()).0);
    }
    let [pa, pb, pc] = parts;
    (
        pa.map_or(&[][..], |p| &*p),
        pb.unwrap_or_default(),
        pc.unwrap_or_default(),
    )
}

/// The output range mutably and two input ranges shared; the parser
/// guarantees the output does not overlap the inputs.
fn split(arena: &mut [i8], out: Range<usize>, ins: [Range<usize>; 2]) -> (&mut [i8], [&[i8]; 2]) {
    let (lo, rest) = arena.split_at_mut(out.start);
    let (dst, hi) = rest.split_at_mut(out.end - out.start);
    let pick = |r: &Range<usize>| -> &[i8] {
        if r.end <= out.start {
            &lo[r.clone()]
        } else {
            &hi[r.start - out.end..r.end - out.end]
        }
    };
    let srcs = [pick(&ins[0]), pick(&ins[1])];
    (dst, srcs)
}
