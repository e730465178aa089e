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
    sum: f32,
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
            sum: 0.0,
        };
        t.sum = (lo..hi).map(|i| t.weight(i)).sum();
        t
    }

    #[allow(clippy::cast_precision_loss)]
    fn weight(&self, i: usize) -> f32 {
        triangle((i as f32 - self.centre) * self.inv_width)
    }
}

/// Adds row `line`'s taps `vx` (pixels of `N` bytes, decoded by `rgb`),
/// weighted by `wy`, to `acc`; pixels left of the frame or past its end are
/// black.
#[inline(always)]
fn accumulate<const N: usize>(
    line: &[u8],
    x0: i64,
    vx: &Taps,
    wy: f32,
    acc: &mut [f32; 3],
    rgb: impl Fn(&[u8]) -> [u8; 3],
) {
    for sx in vx.lo..vx.hi {
        #[allow(clippy::cast_possible_wrap)]
        let x = x0 + sx as i64;
        let Some(b) = usize::try_from(x)
            .ok()
            .and_then(|x| line.get(x * N..x * N + N))
        else {
            continue;
        };
        let p = rgb(b);
        let w = wy * vx.weight(sx);
        acc[0] += w * f32::from(p[0]);
        acc[1] += w * f32::from(p[1]);
        acc[2] += w * f32::from(p[2]);
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
    // Each column's taps once per tile, not once per pixel.
    let mut columns = [None; MAX_TILE_SIDE];
    for (ox, c) in columns.iter_mut().enumerate().take(tw) {
        let gx = tx + ox;
        *c = (gx < gw).then(|| Taps::of(gx, gw, window.w));
    }
    for oy in 0..th {
        let row = &mut out[oy * tw * 3..(oy + 1) * tw * 3];
        let gy = ty + oy;
        if gy >= gh {
            row.fill(0);
            continue;
        }
        let vy = Taps::of(gy, gh, window.h);
        for (px, vx) in row.chunks_exact_mut(3).zip(&columns) {
            let Some(vx) = vx else {
                px.fill(0);
                continue;
            };
            let mut acc = [0.0f32; 3];
            for sy in vy.lo..vy.hi {
                let wy = vy.weight(sy);
                if wy == 0.0 {
                    continue;
                }
                #[allow(clippy::cast_possible_wrap)]
                let Some(line) = frame.row(window.y0 + sy as i64) else {
                    continue; // black
                };
                // One loop per format, so the decoding is not chosen per tap.
                let x0 = window.x0;
                match frame.format {
                    PixelFormat::Rgb888 => {
                        accumulate::<3>(line, x0, vx, wy, &mut acc, |b| [b[0], b[1], b[2]]);
                    }
                    PixelFormat::Rgb565 => {
                        accumulate::<2>(line, x0, vx, wy, &mut acc, |b| PixelFormat::Rgb565.rgb(b));
                    }
                    PixelFormat::Grey8 => {
                        accumulate::<1>(line, x0, vx, wy, &mut acc, |b| [b[0]; 3]);
                    }
                }
            }
            let norm = vx.sum * vy.sum;
            for (d, a) in px.iter_mut().zip(acc) {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = libm::roundf((a / norm).clamp(0.0, 255.0)) as u8;
                *d = v;
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
}
