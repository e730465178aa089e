//! Resampling a window of a frame to another size with a triangle
//! filter, widened when shrinking so that every source pixel counts (the
//! filter the host's detector resizes with), written one tile at a time so
//! that no pyramid level is ever held whole.

/// How a frame's pixels are stored (row-major, no padding between rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum PixelFormat {
    /// Three bytes a pixel: red, green, blue.
    Rgb888,
    /// Two bytes a pixel, a little-endian `u16` with red in bits 15–11,
    /// green in 10–5 and blue in 4–0 (what DCMI cameras such as the
    /// OV7670 give).
    Rgb565,
    /// One byte a pixel, grey (a monochrome sensor, or a camera's Y plane).
    Grey8,
}

impl PixelFormat {
    /// Bytes a pixel.
    pub const fn bytes(self) -> usize {
        match self {
            Self::Rgb888 => 3,
            Self::Rgb565 => 2,
            Self::Grey8 => 1,
        }
    }

    /// The pixel at the start of `b` as RGB (grey repeated; 5 and 6 bits
    /// widened to 8 by repeating their top bits).
    fn rgb(self, b: &[u8]) -> [u8; 3] {
        match (self, b) {
            (Self::Rgb888, [r, g, bl, ..]) => [*r, *g, *bl],
            (Self::Rgb565, [lo, hi, ..]) => {
                let v = u16::from_le_bytes([*lo, *hi]);
                let (r, g, bl) = ((v >> 11) & 0x1F, (v >> 5) & 0x3F, v & 0x1F);
                #[allow(clippy::cast_possible_truncation)]
                let widen = |x: u16, bits: u32| ((x << (8 - bits)) | (x >> (2 * bits - 8))) as u8;
                [widen(r, 5), widen(g, 6), widen(bl, 5)]
            }
            (Self::Grey8, [y, ..]) => [*y; 3],
            _ => [0; 3],
        }
    }
}

/// A camera frame or photo: pixels, size and format.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
    format: PixelFormat,
}

/// Largest frame side the detector takes (as the host, which searches
/// longer photos downscaled).
pub const MAX_FRAME_SIDE: usize = 1280;

impl<'a> Frame<'a> {
    /// A `width × height` frame, or `None` when the sizes do not match the
    /// bytes, a side is 0 or longer than [`MAX_FRAME_SIDE`].
    pub fn new(pixels: &'a [u8], width: usize, height: usize, format: PixelFormat) -> Option<Self> {
        let ok = (1..=MAX_FRAME_SIDE).contains(&width)
            && (1..=MAX_FRAME_SIDE).contains(&height)
            && pixels.len() == width * height * format.bytes();
        ok.then_some(Self {
            pixels,
            width,
            height,
            format,
        })
    }

    /// A packed RGB frame ([`PixelFormat::Rgb888`]).
    pub fn rgb(pixels: &'a [u8], width: usize, height: usize) -> Option<Self> {
        Self::new(pixels, width, height, PixelFormat::Rgb888)
    }

    /// Width in pixels.
    pub const fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub const fn height(&self) -> usize {
        self.height
    }

    /// The pixel format.
    pub const fn format(&self) -> PixelFormat {
        self.format
    }

    /// The pixel at `(x, y)` as RGB; black outside the frame.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        if x >= self.width || y >= self.height {
            return [0; 3];
        }
        let n = self.format.bytes();
        let at = (y * self.width + x) * n;
        self.pixels
            .get(at..at + n)
            .map_or([0; 3], |b| self.format.rgb(b))
    }

    /// Row `y`'s bytes, or `None` outside the frame (black).
    fn row(&self, y: i64) -> Option<&'a [u8]> {
        let y = usize::try_from(y).ok().filter(|&y| y < self.height)?;
        let len = self.width * self.format.bytes();
        self.pixels.get(y * len..(y + 1) * len)
    }
}

/// One RGB pixel as a DCMI camera's little-endian RGB565 bytes (the top 5,
/// 6 and 5 bits): what [`PixelFormat::Rgb565`] frames hold.
pub fn rgb565(rgb: [u8; 3]) -> [u8; 2] {
    let [r, g, b] = rgb.map(u16::from);
    (((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)).to_le_bytes()
}

/// A source window `[x0, x0 + w) × [y0, y0 + h)` in frame pixels; the
/// parts outside the frame are black.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Left column.
    pub x0: i64,
    /// Top row.
    pub y0: i64,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
}

/// Tap weights are fixed point with the triangle's peak at this value, so
/// that the inner loops are integer multiply-accumulates (one instruction
/// each on a Cortex-M) and give the same sums on every machine.
const WEIGHT_ONE: f32 = 4096.0;

/// Weights cached per tile column: enough to shrink by up to 31 (every
/// pyramid level of a QVGA frame or a 250-pixel photo, down to 12 pixels);
/// wider filters compute the same weights on the fly.
const MAX_TAPS: usize = 64;

/// The taps of one output sample along an axis: source range, the
/// output-to-source ratio of the filter's width, the sample's centre and
/// the sum of its weights.
#[derive(Clone, Copy, Debug)]
struct Taps {
    lo: usize,
    hi: usize,
    centre: f32,
    /// 1 / the filter's width in source pixels.
    inv_width: f32,
    sum: u32,
}

fn triangle(x: f32) -> f32 {
    (1.0 - x.abs()).max(0.0)
}

impl Taps {
    /// Output sample `o` of `out` samples resampled from `len` source ones.
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn of(o: usize, out: usize, len: usize) -> Self {
        let ratio = len as f32 / out as f32;
        let width = ratio.max(1.0);
        let centre = (o as f32 + 0.5) * ratio;
        let lo = libm::floorf(centre - width).max(0.0) as usize;
        let lo = lo.min(len - 1);
        let hi = (libm::ceilf(centre + width).max(0.0) as usize).clamp(lo + 1, len);
        let centre = centre - 0.5;
        let mut t = Self {
            lo,
            hi,
            centre,
            inv_width: 1.0 / width,
            sum: 0,
        };
        t.sum = (lo..hi).map(|i| t.weight(i)).sum();
        t
    }

    /// Weight of source sample `i` (fixed point, [`WEIGHT_ONE`] at the peak).
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    fn weight(&self, i: usize) -> u32 {
        libm::roundf(triangle((i as f32 - self.centre) * self.inv_width) * WEIGHT_ONE) as u32
    }
}

/// One output column of a tile: its taps, those inside the frame
/// (`x0..x1` in frame pixels, from tap `k0`), and whether its weights are
/// in the tile's cache.
#[derive(Clone, Copy, Debug)]
struct Column {
    taps: Taps,
    x0: usize,
    x1: usize,
    k0: usize,
    cached: bool,
}

/// `Σ w·pixel` per channel over one row's pixels (of `N` bytes, decoded by
/// `rgb`) and their weights.
#[inline(always)]
fn row_sum<const N: usize>(
    pixels: &[u8],
    weights: impl Iterator<Item = u32>,
    rgb: impl Fn(&[u8]) -> [u8; 3],
) -> [u32; 3] {
    let mut s = [0u32; 3];
    for (b, w) in pixels.chunks_exact(N).zip(weights) {
        let p = rgb(b);
        s[0] += w * u32::from(p[0]);
        s[1] += w * u32::from(p[1]);
        s[2] += w * u32::from(p[2]);
    }
    s
}

/// Adds one source row (`line`, pixels of `N` bytes) weighted by `wy` to
/// every column's accumulator.
#[inline(always)]
#[allow(clippy::cast_precision_loss)]
fn add_row<const N: usize>(
    line: &[u8],
    wy: f32,
    columns: &[Option<Column>],
    cache: &[[u16; MAX_TAPS]],
    acc: &mut [[f32; 3]],
    rgb: impl Fn(&[u8]) -> [u8; 3] + Copy,
) {
    for ((c, w), a) in columns.iter().zip(cache).zip(acc) {
        let Some(c) = c else { continue };
        let Some(pixels) = line.get(c.x0 * N..c.x1 * N) else {
            continue;
        };
        let s = if c.cached {
            let n = c.x1 - c.x0;
            let w = w.get(c.k0..c.k0 + n).unwrap_or(&[]);
            row_sum::<N>(pixels, w.iter().map(|&w| u32::from(w)), rgb)
        } else {
            let first = c.taps.lo + c.k0;
            row_sum::<N>(pixels, (first..).map(|i| c.taps.weight(i)), rgb)
        };
        a[0] += wy * s[0] as f32;
        a[1] += wy * s[1] as f32;
        a[2] += wy * s[2] as f32;
    }
}

/// Output columns of one tile whose taps are computed once per tile (the
/// P-Net tile is the widest the cascade asks for).
const MAX_TILE_SIDE: usize = 96;

/// Resamples `window` of `frame` to a `grid.0 × grid.1` image and writes
/// its pixels `[tile.0, tile.0 + tile.2) × [tile.1, tile.1 + tile.3)` into
/// `out` (`tile.2 × tile.3 × 3` bytes, row-major); tile pixels past the
/// grid are black. `out` shorter than the tile, a tile wider than 96
/// pixels, an empty window or an empty grid leave `out` as it is.
///
/// Each column's taps and weights are computed once per tile; each
/// source row is found once per output row and added to every column.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]
pub fn resample(
    frame: &Frame<'_>,
    window: Window,
    grid: (usize, usize),
    tile: (usize, usize, usize, usize),
    out: &mut [u8],
) {
    let (gw, gh) = grid;
    let (tx, ty, tw, th) = tile;
    if window.w == 0
        || window.h == 0
        || gw == 0
        || gh == 0
        || tw > MAX_TILE_SIDE
        || out.len() < tw * th * 3
    {
        return;
    }
    let mut columns = [None; MAX_TILE_SIDE];
    let mut cache = [[0u16; MAX_TAPS]; MAX_TILE_SIDE];
    let frame_w = frame.width() as i64;
    for (ox, (c, w)) in columns.iter_mut().zip(&mut cache).enumerate().take(tw) {
        let gx = tx + ox;
        if gx >= gw {
            continue; // black
        }
        let taps = Taps::of(gx, gw, window.w);
        // The taps inside the frame; the rest are black.
        let start = window.x0 + taps.lo as i64;
        let x0 = start.clamp(0, frame_w);
        let x1 = (window.x0 + taps.hi as i64).clamp(x0, frame_w);
        // Taps left of the frame are skipped; right of it, none are left.
        let k0 = (x0 - start).max(0) as usize;
        let cached = taps.hi - taps.lo <= MAX_TAPS;
        if cached {
            for (k, v) in w.iter_mut().enumerate().take(taps.hi - taps.lo) {
                *v = taps.weight(taps.lo + k) as u16;
            }
        }
        *c = Some(Column {
            taps,
            x0: x0 as usize,
            x1: x1 as usize,
            k0,
            cached,
        });
    }
    let columns = &columns[..tw];
    let mut acc = [[0.0f32; 3]; MAX_TILE_SIDE];
    for oy in 0..th {
        let row = &mut out[oy * tw * 3..(oy + 1) * tw * 3];
        let gy = ty + oy;
        if gy >= gh {
            row.fill(0);
            continue;
        }
        let vy = Taps::of(gy, gh, window.h);
        let acc = &mut acc[..tw];
        acc.fill([0.0; 3]);
        for sy in vy.lo..vy.hi {
            let wy = vy.weight(sy);
            if wy == 0 {
                continue;
            }
            let Some(line) = frame.row(window.y0 + sy as i64) else {
                continue; // black
            };
            let wy = wy as f32;
            // One loop per format, so the decoding is not chosen per tap.
            match frame.format {
                PixelFormat::Rgb888 => {
                    add_row::<3>(line, wy, columns, &cache, acc, |b| [b[0], b[1], b[2]]);
                }
                PixelFormat::Rgb565 => {
                    add_row::<2>(line, wy, columns, &cache, acc, |b| {
                        PixelFormat::Rgb565.rgb(b)
                    });
                }
                PixelFormat::Grey8 => {
                    add_row::<1>(line, wy, columns, &cache, acc, |b| [b[0]; 3]);
                }
            }
        }
        for ((px, c), a) in row.chunks_exact_mut(3).zip(columns).zip(acc.iter()) {
            let Some(c) = c else {
                px.fill(0);
                continue;
            };
            let norm = c.taps.sum as f32 * vy.sum as f32;
            for (d, &v) in px.iter_mut().zip(a) {
                *d = libm::roundf((v / norm).clamp(0.0, 255.0)) as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_rgb565_frames_resample_as_their_rgb() {
        // One frame in three formats: the same picture, the same tile.
        let rgb: Vec<u8> = (0..6 * 5)
            .flat_map(|i| {
                let (r, g, b) = (
                    (i * 37 % 32) as u16,
                    (i * 11 % 64) as u16,
                    (i * 5 % 32) as u16,
                );
                let v = (r << 11) | (g << 5) | b;
                PixelFormat::Rgb565.rgb(&v.to_le_bytes())
            })
            .collect();
        let rgb565: Vec<u8> = (0..6 * 5)
            .flat_map(|i| {
                let (r, g, b) = (
                    (i * 37 % 32) as u16,
                    (i * 11 % 64) as u16,
                    (i * 5 % 32) as u16,
                );
                ((r << 11) | (g << 5) | b).to_le_bytes()
            })
            .collect();
        let grey: Vec<u8> = (0..6 * 5).map(|i| (i * 9 % 256) as u8).collect();
        let grey_rgb: Vec<u8> = grey.iter().flat_map(|&y| [y; 3]).collect();
        let whole = Window {
            x0: -1,
            y0: 0,
            w: 6,
            h: 5,
        };
        let tile = |f: &Frame<'_>| {
            let mut out = [0u8; 4 * 3 * 3];
            resample(f, whole, (4, 3), (0, 0, 4, 3), &mut out);
            out
        };
        let f565 = Frame::new(&rgb565, 6, 5, PixelFormat::Rgb565).unwrap();
        assert_eq!(tile(&f565), tile(&Frame::rgb(&rgb, 6, 5).unwrap()));
        let fgrey = Frame::new(&grey, 6, 5, PixelFormat::Grey8).unwrap();
        assert_eq!(tile(&fgrey), tile(&Frame::rgb(&grey_rgb, 6, 5).unwrap()));
        assert_eq!(f565.pixel(1, 0), [rgb[3], rgb[4], rgb[5]]);
        assert_eq!(fgrey.pixel(9, 9), [0; 3]);
        // Full-scale 565 white is 8-bit white; black is black.
        assert_eq!(PixelFormat::Rgb565.rgb(&[0xFF, 0xFF]), [255; 3]);
        assert_eq!(PixelFormat::Rgb565.rgb(&[0, 0]), [0; 3]);
    }

    #[test]
    fn same_size_is_a_copy_and_tiles_past_the_grid_are_black() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7) as u8).collect();
        let f = Frame::rgb(&px, 4, 3).unwrap();
        let whole = Window {
            x0: 0,
            y0: 0,
            w: 4,
            h: 3,
        };
        let mut out = [0u8; 4 * 3 * 3];
        resample(&f, whole, (4, 3), (0, 0, 4, 3), &mut out);
        assert_eq!(&out[..], &px[..]);
        let mut tile = [9u8; 3 * 2 * 3];
        resample(&f, whole, (4, 3), (2, 1, 3, 2), &mut tile);
        assert_eq!(&tile[..6], &px[(4 + 2) * 3..(4 + 4) * 3]);
        assert_eq!(&tile[6..9], &[0, 0, 0]);
        assert_eq!(&tile[9..15], &px[(8 + 2) * 3..(8 + 4) * 3]);
    }

    #[test]
    fn shrinking_averages_and_windows_outside_the_frame_are_black() {
        // 4×4 grey 100 frame shrunk to 2×2: all 100; a window hanging half
        // off the left edge darkens the left column only.
        let px = [100u8; 4 * 4 * 3];
        let f = Frame::rgb(&px, 4, 4).unwrap();
        let mut out = [0u8; 2 * 2 * 3];
        let whole = Window {
            x0: 0,
            y0: 0,
            w: 4,
            h: 4,
        };
        resample(&f, whole, (2, 2), (0, 0, 2, 2), &mut out);
        assert!(out.iter().all(|&v| v == 100));
        let half_off = Window { x0: -4, ..whole };
        let mut out = [0u8; 8 * 4 * 3];
        resample(
            &f,
            Window { w: 8, ..half_off },
            (8, 4),
            (0, 0, 8, 4),
            &mut out,
        );
        assert_eq!(out[0], 0);
        assert_eq!(out[7 * 3], 100);
        assert!(Frame::rgb(&px, 4, 5).is_none());
        assert!(Frame::new(&px[..32], 4, 4, PixelFormat::Rgb565).is_some());
        assert!(Frame::rgb(&[], 0, 0).is_none());
    }

    #[allow(
        clippy::cast_possible_wrap,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    /// The triangle filter in f64, straight from its definition: every
    /// output pixel the normalised weighted mean of the window's pixels
    /// (black outside the frame).
    fn reference(
        frame: &Frame<'_>,
        window: Window,
        grid: (usize, usize),
        tile: (usize, usize, usize, usize),
    ) -> Vec<u8> {
        let axis = |o: usize, out: usize, len: usize| -> Vec<(usize, f64)> {
            let ratio = len as f64 / out as f64;
            let width = ratio.max(1.0);
            let centre = (o as f64 + 0.5) * ratio - 0.5;
            (0..len)
                .map(|i| (i, (1.0 - ((i as f64 - centre) / width).abs()).max(0.0)))
                .filter(|&(_, w)| w > 0.0)
                .collect()
        };
        let (tx, ty, tw, th) = tile;
        let mut out = vec![0u8; tw * th * 3];
        for oy in 0..th {
            for ox in 0..tw {
                let (gx, gy) = (tx + ox, ty + oy);
                if gx >= grid.0 || gy >= grid.1 {
                    continue;
                }
                let (wx, wy) = (axis(gx, grid.0, window.w), axis(gy, grid.1, window.h));
                let (mut acc, mut norm) = ([0.0f64; 3], 0.0);
                for &(sy, a) in &wy {
                    for &(sx, b) in &wx {
                        norm += a * b;
                        let (x, y) = (window.x0 + sx as i64, window.y0 + sy as i64);
                        if x < 0 || y < 0 {
                            continue;
                        }
                        let p = frame.pixel(x as usize, y as usize);
                        for c in 0..3 {
                            acc[c] += a * b * f64::from(p[c]);
                        }
                    }
                }
                for c in 0..3 {
                    out[(oy * tw + ox) * 3 + c] = (acc[c] / norm).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        out
    }

    #[test]
    fn rgb565_keeps_the_top_bits_and_reads_back() {
        assert_eq!(rgb565([255, 255, 255]), [0xFF, 0xFF]);
        assert_eq!(rgb565([0, 0, 0]), [0, 0]);
        for v in [[200u8, 100, 50], [7, 3, 7], [248, 252, 248]] {
            let back = PixelFormat::Rgb565.rgb(&rgb565(v));
            // 5/6/5 bits kept: each channel within its dropped bits.
            assert!(
                back.iter().zip(v).all(|(&b, o)| b.abs_diff(o) <= 7),
                "{v:?} → {back:?}"
            );
            assert_eq!(rgb565(back), rgb565(v));
        }
    }

    proptest::proptest! {
        /// The fixed-point taps stay within one level of the filter's
        /// definition: shrinking by up to 40 (cached and on-the-fly
        /// weights), growing, windows hanging off any edge, all formats.
        #[test]
        fn fixed_point_taps_match_the_filter(
            seed in 0u64..1_000_000,
            (fw, fh) in (1usize..90, 1usize..90),
            (x0, y0) in (-30i64..60, -30i64..60),
            (ww, wh) in (1usize..200, 1usize..200),
            (gw, gh) in (1usize..40, 1usize..40),
            format in 0usize..3,
        ) {
            let format = [PixelFormat::Rgb888, PixelFormat::Rgb565, PixelFormat::Grey8][format];
            let mut state = seed;
            let px: Vec<u8> = (0..fw * fh * format.bytes())
                .map(|_| {
                    state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    (state >> 56) as u8
                })
                .collect();
            let frame = Frame::new(&px, fw, fh, format).unwrap();
            let window = Window { x0, y0, w: ww, h: wh };
            let tile = (0, 0, gw, gh);
            let mut out = vec![0u8; gw * gh * 3];
            resample(&frame, window, (gw, gh), tile, &mut out);
            let want = reference(&frame, window, (gw, gh), tile);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                proptest::prop_assert!(a.abs_diff(*b) <= 1, "sample {i}: {a} vs {b}");
            }
        }
    }
}
