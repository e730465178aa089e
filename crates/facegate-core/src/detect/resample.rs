//! Resampling a window of an RGB frame to another size with a triangle
//! filter, widened when shrinking so that every source pixel counts (the
//! filter the host's detector resizes with), written one tile at a time so
//! that no pyramid level is ever held whole.

/// A packed RGB frame (3 bytes a pixel, row-major).
#[derive(Clone, Copy, Debug)]
pub struct RgbFrame<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

/// Largest frame side the detector takes (as the host, which searches
/// longer photos downscaled).
pub const MAX_FRAME_SIDE: usize = 1280;

impl<'a> RgbFrame<'a> {
    /// A `width × height` frame, or `None` when the sizes do not match the
    /// bytes, a side is 0 or longer than [`MAX_FRAME_SIDE`].
    pub fn new(pixels: &'a [u8], width: usize, height: usize) -> Option<Self> {
        let ok = (1..=MAX_FRAME_SIDE).contains(&width)
            && (1..=MAX_FRAME_SIDE).contains(&height)
            && pixels.len() == width * height * 3;
        ok.then_some(Self {
            pixels,
            width,
            height,
        })
    }

    /// Width in pixels.
    pub const fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub const fn height(&self) -> usize {
        self.height
    }

    /// Row `y`'s pixels, or `None` outside the frame (black).
    fn row(&self, y: i64) -> Option<&'a [u8]> {
        let y = usize::try_from(y).ok().filter(|&y| y < self.height)?;
        self.pixels.get(y * self.width * 3..(y + 1) * self.width * 3)
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

/// Output columns of one tile whose taps are computed once per tile (the
/// P-Net tile is the widest the cascade asks for).
const MAX_TILE_SIDE: usize = 96;

/// Resamples `window` of `frame` to a `grid.0 × grid.1` image and writes
/// its pixels `[tile.0, tile.0 + tile.2) × [tile.1, tile.1 + tile.3)` into
/// `out` (`tile.2 × tile.3 × 3` bytes, row-major); tile pixels past the
/// grid are black. `out` shorter than the tile, a tile wider than 96
/// pixels, an empty window or an empty grid leave `out` as it is.
pub fn resample(
    frame: &RgbFrame<'_>,
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
                for sx in vx.lo..vx.hi {
                    #[allow(clippy::cast_possible_wrap)]
                    let x = window.x0 + sx as i64;
                    let Some(p) = usize::try_from(x)
                        .ok()
                        .and_then(|x| line.get(x * 3..x * 3 + 3))
                    else {
                        continue; // black
                    };
                    let wxy = wy * vx.weight(sx);
                    acc[0] += wxy * f32::from(p[0]);
                    acc[1] += wxy * f32::from(p[1]);
                    acc[2] += wxy * f32::from(p[2]);
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
    fn same_size_is_a_copy_and_tiles_past_the_grid_are_black() {
        let px: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7) as u8).collect();
        let f = RgbFrame::new(&px, 4, 3).unwrap();
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
        let f = RgbFrame::new(&px, 4, 4).unwrap();
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
        assert!(RgbFrame::new(&px, 4, 5).is_none());
        assert!(RgbFrame::new(&[], 0, 0).is_none());
    }
}
