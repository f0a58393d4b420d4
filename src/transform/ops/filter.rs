//! Neighbourhood and tone filters: Gaussian blur, sharpening, unsharp mask and contrast stretch.

use image::RgbaImage;

use super::super::plan::{Sharpen, UnsharpMask};

/// Above this sigma the blur runs as three successive box blurs, which approximate the Gaussian
/// closely at a cost that does not grow with the radius.
const MAX_EXACT_SIGMA: f32 = 3.0;
/// Sigma of `e-sharpen`'s blur, in pixels.
const SHARPEN_SIGMA: f32 = 1.0;
/// `e-sharpen` without a number behaves as `e-sharpen-5`.
const DEFAULT_SHARPEN_STRENGTH: f64 = 5.0;
/// Share of the darkest and of the brightest pixels that `e-contrast` lets clip.
const CONTRAST_CLIP_SHARE: f64 = 0.01;

/// Applies `bl-N`: a Gaussian blur with sigma `N / 2`, so that `N` is roughly the radius within
/// which the blur gathers 95% of its weight.
pub fn blur(image: &RgbaImage, radius: u8) -> RgbaImage {
    gaussian_blur(image, f32::from(radius) / 2.0)
}

/// Blurs with a Gaussian of standard deviation `sigma` pixels, weighting colours by alpha and
/// extending the edge pixels outwards.
pub fn gaussian_blur(image: &RgbaImage, sigma: f32) -> RgbaImage {
    if sigma <= 0.0 || image.width() == 0 || image.height() == 0 {
        return image.clone();
    }
    let (width, height) = (image.width() as usize, image.height() as usize);
    let mut planes = Planes::premultiplied(image);
    if sigma <= MAX_EXACT_SIGMA {
        let kernel = gaussian_kernel(sigma);
        planes.convolve(width, height, &kernel);
    } else {
        for size in box_sizes(sigma) {
            planes.box_blur(width, height, size);
        }
    }
    planes.into_image(image.width(), image.height())
}

/// Applies `e-sharpen[-N]`: an unsharp mask with a 1 px sigma and amount `N / 10`, so a higher
/// number sharpens more. Without a number N is 5.
pub fn sharpen(image: &RgbaImage, sharpen: Sharpen) -> RgbaImage {
    let strength = sharpen.amount.unwrap_or(DEFAULT_SHARPEN_STRENGTH).max(0.0);
    unsharp(image, SHARPEN_SIGMA, (strength / 10.0) as f32, 0.0)
}

/// Applies `e-usm-RADIUS-SIGMA-AMOUNT-THRESHOLD` as ImageMagick defines `-unsharp`: the
/// difference from a Gaussian blur of `sigma` is added `amount` times (1 = 100%) where it
/// exceeds `threshold`, a share of the full 0–255 range. `radius` only matters when `sigma` is
/// 0, in which case sigma becomes radius / 2.
pub fn unsharp_mask(image: &RgbaImage, mask: UnsharpMask) -> RgbaImage {
    let sigma = if mask.sigma > 0.0 {
        mask.sigma
    } else {
        mask.radius / 2.0
    };
    unsharp(
        image,
        sigma as f32,
        mask.amount as f32,
        (mask.threshold * 255.0) as f32,
    )
}

fn unsharp(image: &RgbaImage, sigma: f32, amount: f32, threshold: f32) -> RgbaImage {
    if sigma <= 0.0 || amount <= 0.0 {
        return image.clone();
    }
    let blurred = gaussian_blur(image, sigma);
    let mut out = image.clone();
    for (pixel, soft) in out.pixels_mut().zip(blurred.pixels()) {
        for c in 0..3 {
            let difference = f32::from(pixel.0[c]) - f32::from(soft.0[c]);
            if difference.abs() > threshold {
                let value = f32::from(pixel.0[c]) + amount * difference;
                pixel.0[c] = value.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// Applies `e-contrast`: stretches luma so that its 1st and 99th percentiles become 0 and 255,
/// scaling R, G and B alike so hues stay put. Transparent pixels do not count.
pub fn auto_contrast(image: &mut RgbaImage) {
    let mut histogram = [0u64; 256];
    for pixel in image.pixels().filter(|p| p.0[3] > 0) {
        histogram[usize::from(luma(pixel.0))] += 1;
    }
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return;
    }
    let clip = (total as f64 * CONTRAST_CLIP_SHARE) as u64;
    let percentile = |from_top: bool| {
        let mut seen = 0;
        let levels: Box<dyn Iterator<Item = usize>> = if from_top {
            Box::new((0..256).rev())
        } else {
            Box::new(0..256)
        };
        for level in levels {
            seen += histogram[level];
            if seen > clip {
                return level as f32;
            }
        }
        if from_top {
            255.0
        } else {
            0.0
        }
    };
    let (low, high) = (percentile(false), percentile(true));
    if high <= low {
        return;
    }
    let scale = 255.0 / (high - low);
    let table: Vec<u8> = (0..256)
        .map(|value| ((value as f32 - low) * scale).round().clamp(0.0, 255.0) as u8)
        .collect();
    for pixel in image.pixels_mut() {
        for channel in &mut pixel.0[..3] {
            *channel = table[usize::from(*channel)];
        }
    }
}

fn luma([r, g, b, _]: [u8; 4]) -> u8 {
    ((2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b) + 5000) / 10000).min(255) as u8
}

/// Returns a normalised Gaussian kernel reaching three sigmas each side.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (sigma * 3.0).ceil() as i32;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / sum).collect()
}

/// Returns the widths of three box filters whose succession approximates a Gaussian of `sigma`
/// (the variance of a box of width w is (w² − 1) / 12, and variances add).
fn box_sizes(sigma: f32) -> [usize; 3] {
    let ideal = (12.0 * sigma * sigma / 3.0 + 1.0).sqrt();
    let mut lower = ideal.floor() as usize;
    if lower.is_multiple_of(2) {
        lower = lower.saturating_sub(1).max(1);
    }
    let upper = lower + 2;
    let lower_f = lower as f32;
    let count_lower = ((12.0 * sigma * sigma - 3.0 * lower_f * lower_f - 12.0 * lower_f - 9.0)
        / (-4.0 * lower_f - 4.0))
        .round()
        .clamp(0.0, 3.0) as usize;
    std::array::from_fn(|i| if i < count_lower { lower } else { upper })
}

/// Premultiplied RGBA as four f32 planes, which keeps the blur loops simple and vectorisable.
struct Planes {
    channels: [Vec<f32>; 4],
}

impl Planes {
    fn premultiplied(image: &RgbaImage) -> Planes {
        let count = (image.width() * image.height()) as usize;
        let mut channels: [Vec<f32>; 4] = std::array::from_fn(|_| Vec::with_capacity(count));
        for pixel in image.pixels() {
            let alpha = f32::from(pixel.0[3]);
            for (channel, &value) in channels.iter_mut().zip(&pixel.0[..3]) {
                channel.push(f32::from(value) * alpha / 255.0);
            }
            channels[3].push(alpha);
        }
        Planes { channels }
    }

    fn into_image(self, width: u32, height: u32) -> RgbaImage {
        let [r, g, b, a] = self.channels;
        let mut raw = Vec::with_capacity(a.len() * 4);
        for i in 0..a.len() {
            let alpha = a[i].clamp(0.0, 255.0);
            if alpha < 0.5 {
                raw.extend_from_slice(&[0, 0, 0, 0]);
                continue;
            }
            for value in [r[i], g[i], b[i]] {
                raw.push((value * 255.0 / alpha).round().clamp(0.0, 255.0) as u8);
            }
            raw.push(alpha.round() as u8);
        }
        RgbaImage::from_raw(width, height, raw).expect("buffer has width * height pixels")
    }

    /// Convolves rows then columns with a symmetric kernel, clamping at the edges.
    fn convolve(&mut self, width: usize, height: usize, kernel: &[f32]) {
        let radius = (kernel.len() / 2) as isize;
        let mut line = Vec::new();
        for plane in &mut self.channels {
            for y in 0..height {
                let row = &mut plane[y * width..(y + 1) * width];
                line.clear();
                line.extend_from_slice(row);
                for (x, out) in row.iter_mut().enumerate() {
                    let mut sum = 0.0;
                    for (k, weight) in kernel.iter().enumerate() {
                        let source =
                            (x as isize + k as isize - radius).clamp(0, width as isize - 1);
                        sum += line[source as usize] * weight;
                    }
                    *out = sum;
                }
            }
            for x in 0..width {
                line.clear();
                line.extend((0..height).map(|y| plane[y * width + x]));
                for y in 0..height {
                    let mut sum = 0.0;
                    for (k, weight) in kernel.iter().enumerate() {
                        let source =
                            (y as isize + k as isize - radius).clamp(0, height as isize - 1);
                        sum += line[source as usize] * weight;
                    }
                    plane[y * width + x] = sum;
                }
            }
        }
    }

    /// Applies a box filter of odd width `size` to rows then columns with a running sum,
    /// clamping at the edges.
    fn box_blur(&mut self, width: usize, height: usize, size: usize) {
        let radius = size / 2;
        let mut line = Vec::new();
        let mut out = Vec::new();
        for plane in &mut self.channels {
            for y in 0..height {
                line.clear();
                line.extend_from_slice(&plane[y * width..(y + 1) * width]);
                box_line(&line, radius, &mut out);
                plane[y * width..(y + 1) * width].copy_from_slice(&out);
            }
            for x in 0..width {
                line.clear();
                line.extend((0..height).map(|y| plane[y * width + x]));
                box_line(&line, radius, &mut out);
                for (y, value) in out.iter().enumerate() {
                    plane[y * width + x] = *value;
                }
            }
        }
    }
}

/// Writes the mean of each window of `2 * radius + 1` samples of `line` into `out`, repeating
/// the first and last samples beyond the ends.
fn box_line(line: &[f32], radius: usize, out: &mut Vec<f32>) {
    let len = line.len() as isize;
    let at = |i: isize| line[i.clamp(0, len - 1) as usize];
    let r = radius as isize;
    let scale = 1.0 / (2 * radius + 1) as f32;
    out.clear();
    // f64 keeps the running sum from drifting over long rows.
    let mut sum: f64 = (-r..=r).map(|i| f64::from(at(i))).sum();
    for i in 0..len {
        out.push(sum as f32 * scale);
        sum += f64::from(at(i + r + 1)) - f64::from(at(i - r));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn checkerboard() -> RgbaImage {
        RgbaImage::from_fn(64, 64, |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                Rgba([255, 255, 255, 255])
            } else {
                Rgba([0, 0, 0, 255])
            }
        })
    }

    fn spread(image: &RgbaImage) -> u8 {
        let values: Vec<u8> = image.pixels().map(|p| p.0[0]).collect();
        values.iter().max().unwrap() - values.iter().min().unwrap()
    }

    #[test]
    fn blur_keeps_flat_areas_and_softens_edges() {
        let flat = RgbaImage::from_pixel(20, 20, Rgba([10, 120, 250, 255]));
        assert_eq!(blur(&flat, 10), flat);
        let board = checkerboard();
        // Next to an edge between black and white the blurred value lies strictly between.
        let edge = blur(&board, 4).get_pixel(7, 3).0[0];
        assert!((30..225).contains(&edge), "edge pixel {edge}");
        assert!(spread(&blur(&board, 40)) < 40);
    }

    #[test]
    fn box_approximation_is_close_to_the_exact_gaussian() {
        let board = checkerboard();
        let (width, height) = (64, 64);
        let mut exact = Planes::premultiplied(&board);
        exact.convolve(width, height, &gaussian_kernel(4.0));
        let exact = exact.into_image(64, 64);
        let approximate = gaussian_blur(&board, 4.0);
        let worst = exact
            .pixels()
            .zip(approximate.pixels())
            .map(|(a, b)| a.0[0].abs_diff(b.0[0]))
            .max()
            .unwrap();
        assert!(worst <= 12, "box blur differs by up to {worst} levels");
    }

    #[test]
    fn blur_does_not_darken_transparent_edges() {
        let image = RgbaImage::from_fn(32, 32, |x, _| {
            if x < 16 {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([0, 0, 0, 0])
            }
        });
        for pixel in gaussian_blur(&image, 5.0).pixels().filter(|p| p.0[3] > 2) {
            assert!(pixel.0[0] >= 250, "{:?}", pixel.0);
        }
    }

    #[test]
    fn box_sizes_match_the_requested_variance() {
        for sigma in [3.5f32, 8.0, 25.0, 50.0] {
            let variance: f32 = box_sizes(sigma)
                .iter()
                .map(|&w| ((w * w) as f32 - 1.0) / 12.0)
                .sum();
            assert!(
                (variance.sqrt() - sigma).abs() / sigma < 0.1,
                "sigma {sigma}"
            );
        }
    }

    #[test]
    fn sharpening_increases_edge_contrast() {
        let soft = gaussian_blur(&checkerboard(), 1.5);
        let sharpened = sharpen(&soft, Sharpen { amount: None });
        assert!(spread(&sharpened) >= spread(&soft));
        let stronger = sharpen(&soft, Sharpen { amount: Some(20.0) });
        let edge =
            |image: &RgbaImage| image.get_pixel(7, 3).0[0].abs_diff(image.get_pixel(8, 3).0[0]);
        assert!(edge(&stronger) > edge(&soft));
        let masked = unsharp_mask(
            &soft,
            UnsharpMask {
                radius: 2.0,
                sigma: 2.0,
                amount: 0.8,
                threshold: 0.024,
            },
        );
        assert!(edge(&masked) > edge(&soft));
        let flat = RgbaImage::from_pixel(8, 8, Rgba([100, 100, 100, 255]));
        assert_eq!(sharpen(&flat, Sharpen { amount: Some(50.0) }), flat);
    }

    #[test]
    fn contrast_stretch_reaches_the_full_range() {
        let mut image = RgbaImage::from_fn(100, 1, |x, _| {
            let v = 100 + (x as u8) / 2;
            Rgba([v, v, v, 255])
        });
        auto_contrast(&mut image);
        let values: Vec<u8> = image.pixels().map(|p| p.0[0]).collect();
        assert!(*values.iter().min().unwrap() <= 3);
        assert!(*values.iter().max().unwrap() >= 252);
        let mut flat = RgbaImage::from_pixel(4, 4, Rgba([50, 60, 70, 255]));
        auto_contrast(&mut flat);
        assert_eq!(flat.get_pixel(0, 0).0, [50, 60, 70, 255]);
    }
}
