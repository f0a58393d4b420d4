//! Image analysis: the saliency window for `fo-auto` and the dominant colour for `bg-dominant`.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{Rgba, RgbaImage};

/// The saliency map is computed on a copy whose longer side is at most this many pixels, so the
/// window search costs the same for any source size.
const ANALYSIS_SIDE: u32 = 256;
/// Weight of saturation against edge strength in the saliency score. Saturation ranges 0–255
/// like the gradient magnitude, and colourful subjects on grey or muted backgrounds are common.
const SATURATION_WEIGHT: f32 = 0.5;
/// Extra score for skin-like colours, so people win over equally busy scenery.
const SKIN_BONUS: f32 = 60.0;

/// Returns the top-left corner of the `width`×`height` window of `image` that contains the most
/// salient content, for `fo-auto`.
///
/// The measure works on a copy at most 256 px on its longer side. Each pixel scores the Sobel
/// gradient magnitude of its luma (detail and edges), plus half its saturation (colourful
/// subjects), plus a bonus for skin-like hues, all weighted by alpha. The window with the largest
/// total score wins; among equal totals the one nearest the centre does. A window as large as
/// the image returns (0, 0).
pub fn auto_focus_window(image: &RgbaImage, width: u32, height: u32) -> (u32, u32) {
    let (image_w, image_h) = image.dimensions();
    let (width, height) = (width.min(image_w), height.min(image_h));
    if (width, height) == (image_w, image_h) || image_w == 0 || image_h == 0 {
        return (0, 0);
    }
    let scale = (f64::from(ANALYSIS_SIDE) / f64::from(image_w.max(image_h))).min(1.0);
    let small_w = ((f64::from(image_w) * scale).round() as u32).max(1);
    let small_h = ((f64::from(image_h) * scale).round() as u32).max(1);
    let small = shrink(image, small_w, small_h);
    let scores = saliency(&small);

    // Summed-area table with a zero row and column in front.
    let stride = small_w as usize + 1;
    let mut table = vec![0f64; stride * (small_h as usize + 1)];
    for y in 0..small_h as usize {
        let mut row_sum = 0f64;
        for x in 0..small_w as usize {
            row_sum += f64::from(scores[y * small_w as usize + x]);
            table[(y + 1) * stride + x + 1] = table[y * stride + x + 1] + row_sum;
        }
    }
    let window_w = ((f64::from(width) * f64::from(small_w) / f64::from(image_w)).round() as usize)
        .clamp(1, small_w as usize);
    let window_h = ((f64::from(height) * f64::from(small_h) / f64::from(image_h)).round() as usize)
        .clamp(1, small_h as usize);
    let centre = (
        (small_w as usize - window_w) as f64 / 2.0,
        (small_h as usize - window_h) as f64 / 2.0,
    );
    let mut best = (f64::MIN, f64::MAX, 0usize, 0usize);
    for y in 0..=(small_h as usize - window_h) {
        for x in 0..=(small_w as usize - window_w) {
            let total = table[(y + window_h) * stride + x + window_w]
                - table[y * stride + x + window_w]
                - table[(y + window_h) * stride + x]
                + table[y * stride + x];
            let distance = (x as f64 - centre.0).powi(2) + (y as f64 - centre.1).powi(2);
            // Totals within a relative 1e-9 count as equal, so float noise cannot beat centring.
            let better = total > best.0 * (1.0 + 1e-9) + 1e-9
                || ((total - best.0).abs() <= best.0.abs() * 1e-9 + 1e-9 && distance < best.1);
            if better {
                best = (total, distance, x, y);
            }
        }
    }
    let x = ((best.2 as f64) * f64::from(image_w) / f64::from(small_w)).round() as u32;
    let y = ((best.3 as f64) * f64::from(image_h) / f64::from(small_h)).round() as u32;
    (x.min(image_w - width), y.min(image_h - height))
}

/// Returns the most common colour of the opaque part of `image`: pixels are binned by the top
/// four bits of each channel, and the mean of the fullest bin is returned, opaque. An image with
/// no visible pixel returns opaque black.
pub fn dominant_color(image: &RgbaImage) -> Rgba<u8> {
    let (w, h) = image.dimensions();
    let scale = (64.0 / f64::from(w.max(h).max(1))).min(1.0);
    let small = shrink(
        image,
        ((f64::from(w) * scale).round() as u32).max(1),
        ((f64::from(h) * scale).round() as u32).max(1),
    );
    let mut bins = vec![(0u32, [0u64; 3]); 4096];
    for pixel in small.pixels().filter(|p| p.0[3] >= 128) {
        let [r, g, b, _] = pixel.0;
        let bin = (usize::from(r >> 4) << 8) | (usize::from(g >> 4) << 4) | usize::from(b >> 4);
        bins[bin].0 += 1;
        for (sum, value) in bins[bin].1.iter_mut().zip([r, g, b]) {
            *sum += u64::from(value);
        }
    }
    let (count, sums) = bins
        .iter()
        .max_by_key(|(count, _)| *count)
        .copied()
        .unwrap_or((0, [0; 3]));
    if count == 0 {
        return Rgba([0, 0, 0, 255]);
    }
    let mean = sums.map(|sum| ((sum + u64::from(count) / 2) / u64::from(count)) as u8);
    Rgba([mean[0], mean[1], mean[2], 255])
}

/// Downscales with a box filter, which averages every source pixel and is the cheapest filter
/// that does not alias.
fn shrink(image: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    if image.dimensions() == (width, height) {
        return image.clone();
    }
    let mut out = RgbaImage::new(width, height);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Box));
    Resizer::new()
        .resize(image, &mut out, &options)
        .expect("RGBA8 resize without a crop window cannot fail");
    out
}

/// Returns one saliency score per pixel; see [`auto_focus_window`].
fn saliency(image: &RgbaImage) -> Vec<f32> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let luma: Vec<f32> = image
        .pixels()
        .map(|p| {
            0.2126 * f32::from(p.0[0]) + 0.7152 * f32::from(p.0[1]) + 0.0722 * f32::from(p.0[2])
        })
        .collect();
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, w as isize - 1) as usize;
        let y = y.clamp(0, h as isize - 1) as usize;
        luma[y * w + x]
    };
    let mut scores = Vec::with_capacity(w * h);
    for (index, pixel) in image.pixels().enumerate() {
        let (x, y) = ((index % w) as isize, (index / w) as isize);
        let gx = at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1)
            - at(x - 1, y - 1)
            - 2.0 * at(x - 1, y)
            - at(x - 1, y + 1);
        let gy = at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1)
            - at(x - 1, y - 1)
            - 2.0 * at(x, y - 1)
            - at(x + 1, y - 1);
        // The Sobel kernel's weights sum to 4 on each side, so divide to stay on the 0–255 scale.
        let edge = (gx * gx + gy * gy).sqrt() / 4.0;
        let [r, g, b, a] = pixel.0.map(f32::from);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        let saturation = if max > 0.0 {
            (max - min) / max * 255.0
        } else {
            0.0
        };
        let skin = if is_skin(r, g, b) { SKIN_BONUS } else { 0.0 };
        scores.push((edge + SATURATION_WEIGHT * saturation + skin) * a / 255.0);
    }
    scores
}

/// Returns whether a colour passes a common RGB rule for skin tones under daylight: reddish,
/// brighter red than green than blue, with enough spread between channels.
fn is_skin(r: f32, g: f32, b: f32) -> bool {
    r > 95.0
        && g > 40.0
        && b > 20.0
        && r > g
        && r > b
        && (r - g) > 15.0
        && (r.max(g).max(b) - r.min(g).min(b)) > 15.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_busy_part_of_a_plain_image() {
        // Flat grey with a detailed square near the right edge.
        let image = RgbaImage::from_fn(400, 100, |x, y| {
            if (300..360).contains(&x) && (20..80).contains(&y) && (x + y) % 4 < 2 {
                Rgba([250, 30, 30, 255])
            } else {
                Rgba([128, 128, 128, 255])
            }
        });
        let (x, y) = auto_focus_window(&image, 100, 100);
        assert_eq!(y, 0);
        assert!((260..=300).contains(&x), "window starts at {x}");
    }

    #[test]
    fn uniform_images_centre_the_window() {
        let image = RgbaImage::from_pixel(300, 100, Rgba([10, 10, 10, 255]));
        assert_eq!(auto_focus_window(&image, 100, 100), (100, 0));
        assert_eq!(auto_focus_window(&image, 300, 100), (0, 0));
    }

    #[test]
    fn dominant_colour_is_the_largest_area() {
        let image = RgbaImage::from_fn(10, 10, |x, _| {
            if x < 7 {
                Rgba([0, 0, 200, 255])
            } else {
                Rgba([250, 0, 0, 255])
            }
        });
        assert_eq!(dominant_color(&image), Rgba([0, 0, 200, 255]));
        assert_eq!(dominant_color(&RgbaImage::new(3, 3)), Rgba([0, 0, 0, 255]));
    }
}
