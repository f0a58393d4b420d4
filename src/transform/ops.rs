//! Pixel operations on one frame: geometry (resize, crop, pad, saliency crop), rotation, flips,
//! trim, border, rounded corners, effects, opacity and flattening.
//!
//! Frames are straight (not premultiplied) RGBA8 in sRGB. Operations that mix neighbouring
//! pixels (resize, rotation, blur) weight colours by alpha, so transparent pixels, whatever RGB
//! they hold, never bleed dark fringes into visible ones. Animations get the same operation on
//! every frame; callers loop over [`Frame`](super::codec::Frame)s.

mod filter;
mod focus;

use std::borrow::Cow;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{Rgba, RgbaImage};

use super::codec::PixelError;
use super::geometry::{rotated_size, GeomOp};
use super::plan::{Background, Flip, Radius};

pub use filter::{auto_contrast, blur, gaussian_blur, sharpen, unsharp_mask};
pub use focus::{auto_focus_window, dominant_color};

/// Sigma of the Gaussian that `bg-blurred` uses when the URL gives none (`auto`), as a share of
/// the longer canvas side.
const AUTO_BACKGROUND_BLUR_SHARE: f32 = 1.0 / 40.0;

/// Returns whether any pixel is not fully opaque.
pub fn has_alpha(image: &RgbaImage) -> bool {
    image.as_raw().chunks_exact(4).any(|pixel| pixel[3] != 255)
}

/// Resizes to exactly `width`×`height` with a Lanczos3 filter, weighting colours by alpha.
pub fn resize(image: &RgbaImage, width: u32, height: u32) -> RgbaImage {
    let (w, h) = image.dimensions();
    resize_region(image, (0.0, 0.0, f64::from(w), f64::from(h)), width, height)
}

/// Resizes the window `(left, top, width, height)` of `image`, in source pixels (fractions
/// allowed), to `width`×`height`.
fn resize_region(
    image: &RgbaImage,
    window: (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> RgbaImage {
    let (source_w, source_h) = image.dimensions();
    if source_w == 0 || source_h == 0 {
        return RgbaImage::new(width.max(1), height.max(1));
    }
    let whole = window == (0.0, 0.0, f64::from(source_w), f64::from(source_h));
    if whole && (width, height) == (source_w, source_h) {
        return image.clone();
    }
    // Windows mapped back from a planned crop can overshoot the edge by a rounding error, which
    // the resizer would reject.
    let (source_w, source_h) = (f64::from(source_w), f64::from(source_h));
    let left = window.0.clamp(0.0, source_w - 1.0);
    let top = window.1.clamp(0.0, source_h - 1.0);
    let crop_w = window.2.min(source_w - left);
    let crop_h = window.3.min(source_h - top);
    let mut out = RgbaImage::new(width.max(1), height.max(1));
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
        .crop(left, top, crop_w, crop_h)
        .use_alpha(has_alpha(image));
    // Both buffers are RGBA8 and the window lies inside the source, which are the only
    // conditions under which the resizer fails.
    Resizer::new()
        .resize(image, &mut out, &options)
        .expect("RGBA8 resize with an in-bounds window cannot fail");
    out
}

/// Returns the size that a JPEG can be decoded at before `ops` run, for
/// [`DecodeHint::target`](super::codec::DecodeHint::target): the size of the first operation
/// when it is a resize, else `None`.
pub fn shrink_target(ops: &[GeomOp]) -> Option<(u32, u32)> {
    match ops.first() {
        Some(GeomOp::Resize { w, h }) => Some((*w, *h)),
        _ => None,
    }
}

/// Applies geometry operations in order. `background` fills the canvas of [`GeomOp::Pad`].
///
/// A resize followed by a crop (or a saliency crop) runs as one resize of the source window,
/// which gives the same pixels at a fraction of the cost. Fails with
/// [`PixelError::InvalidOperation`] when a crop or pad window does not fit, which means the
/// plan was computed for another image size. For an animation, resolve saliency crops once with
/// [`resolve_saliency_crops`] so that every frame gets the same window.
pub fn apply_geometry(
    image: &RgbaImage,
    ops: &[GeomOp],
    background: &Background,
) -> Result<RgbaImage, PixelError> {
    let mut current = Cow::Borrowed(image);
    let mut index = 0;
    while index < ops.len() {
        let (source_w, source_h) = current.dimensions();
        let next = match (&ops[index], ops.get(index + 1)) {
            (&GeomOp::Resize { w, h }, Some(&GeomOp::Crop { x, y, w: cw, h: ch })) => {
                check_window(w, h, x, y, cw, ch)?;
                index += 1;
                let (sx, sy) = scale_between((source_w, source_h), (w, h));
                resize_region(
                    &current,
                    (
                        f64::from(x) * sx,
                        f64::from(y) * sy,
                        f64::from(cw) * sx,
                        f64::from(ch) * sy,
                    ),
                    cw,
                    ch,
                )
            }
            (&GeomOp::Resize { w, h }, Some(&GeomOp::SaliencyCrop { w: cw, h: ch })) => {
                check_window(w, h, 0, 0, cw, ch)?;
                index += 1;
                let (sx, sy) = scale_between((source_w, source_h), (w, h));
                let (x, y) = focus_before_resize(&current, (w, h), (cw, ch));
                resize_region(
                    &current,
                    (
                        f64::from(x) * sx,
                        f64::from(y) * sy,
                        f64::from(cw) * sx,
                        f64::from(ch) * sy,
                    ),
                    cw,
                    ch,
                )
            }
            (&GeomOp::Resize { w, h }, _) => resize(&current, w, h),
            (&GeomOp::Crop { x, y, w, h }, _) => {
                check_window(source_w, source_h, x, y, w, h)?;
                image::imageops::crop_imm(current.as_ref(), x, y, w, h).to_image()
            }
            (&GeomOp::SaliencyCrop { w, h }, _) => {
                check_window(source_w, source_h, 0, 0, w, h)?;
                let (x, y) = auto_focus_window(&current, w, h);
                image::imageops::crop_imm(current.as_ref(), x, y, w, h).to_image()
            }
            (&GeomOp::Pad { w, h, x, y }, _) => {
                let fits = u64::from(x) + u64::from(source_w) <= u64::from(w)
                    && u64::from(y) + u64::from(source_h) <= u64::from(h);
                if !fits {
                    return Err(PixelError::InvalidOperation(format!(
                        "cannot place a {source_w}x{source_h} image at ({x}, {y}) on a {w}x{h} canvas"
                    )));
                }
                let mut canvas = background_canvas(&current, w, h, background);
                composite_over(&mut canvas, &current, x, y);
                canvas
            }
        };
        current = Cow::Owned(next);
        index += 1;
    }
    Ok(current.into_owned())
}

/// Replaces every [`GeomOp::SaliencyCrop`] of `ops` with the [`GeomOp::Crop`] that
/// [`apply_geometry`] would pick for `image`.
///
/// Run it on the first frame of an animation and apply the result to every frame, so that all
/// frames keep the same window.
pub fn resolve_saliency_crops(
    image: &RgbaImage,
    ops: &[GeomOp],
    background: &Background,
) -> Result<Vec<GeomOp>, PixelError> {
    let mut resolved = ops.to_vec();
    for index in 0..resolved.len() {
        let GeomOp::SaliencyCrop { w, h } = resolved[index] else {
            continue;
        };
        let (x, y) = match index.checked_sub(1).map(|i| &resolved[i]) {
            Some(&GeomOp::Resize { w: rw, h: rh }) => {
                check_window(rw, rh, 0, 0, w, h)?;
                let before = apply_geometry(image, &resolved[..index - 1], background)?;
                focus_before_resize(&before, (rw, rh), (w, h))
            }
            _ => {
                let before = apply_geometry(image, &resolved[..index], background)?;
                check_window(before.width(), before.height(), 0, 0, w, h)?;
                auto_focus_window(&before, w, h)
            }
        };
        resolved[index] = GeomOp::Crop { x, y, w, h };
    }
    Ok(resolved)
}

/// Returns the saliency window of size `window` in the image that `image` becomes once resized
/// to `resized`. The saliency map is computed on a small copy anyway, so searching `image` itself
/// with the window scaled back gives the same choice without the resize.
fn focus_before_resize(image: &RgbaImage, resized: (u32, u32), window: (u32, u32)) -> (u32, u32) {
    let (source_w, source_h) = image.dimensions();
    let (sx, sy) = scale_between((source_w, source_h), resized);
    let scaled_window = (
        ((f64::from(window.0) * sx).round() as u32).clamp(1, source_w),
        ((f64::from(window.1) * sy).round() as u32).clamp(1, source_h),
    );
    let (x, y) = auto_focus_window(image, scaled_window.0, scaled_window.1);
    (
        ((f64::from(x) / sx).round() as u32).min(resized.0 - window.0),
        ((f64::from(y) / sy).round() as u32).min(resized.1 - window.1),
    )
}

/// Returns source pixels per target pixel on each axis.
fn scale_between(source: (u32, u32), target: (u32, u32)) -> (f64, f64) {
    (
        f64::from(source.0) / f64::from(target.0.max(1)),
        f64::from(source.1) / f64::from(target.1.max(1)),
    )
}

fn check_window(width: u32, height: u32, x: u32, y: u32, w: u32, h: u32) -> Result<(), PixelError> {
    let fits = w > 0
        && h > 0
        && u64::from(x) + u64::from(w) <= u64::from(width)
        && u64::from(y) + u64::from(h) <= u64::from(height);
    if fits {
        Ok(())
    } else {
        Err(PixelError::InvalidOperation(format!(
            "window {w}x{h} at ({x}, {y}) does not fit a {width}x{height} image"
        )))
    }
}

/// Builds the `width`×`height` canvas that padding places `image` on.
///
/// `bg-dominant` fills with the image's dominant colour. `bg-gradient_dominant` runs between the
/// dominant colours of the image's halves (2 colours, along the axis that gets padded) or
/// quadrants (4 colours, one per corner). `bg-blurred` is the image scaled to cover the canvas,
/// blurred and brightened by `brightness` levels.
fn background_canvas(
    image: &RgbaImage,
    width: u32,
    height: u32,
    background: &Background,
) -> RgbaImage {
    match *background {
        Background::Color(color) => RgbaImage::from_pixel(width, height, Rgba(color.to_rgba())),
        Background::Dominant => RgbaImage::from_pixel(width, height, dominant_color(image)),
        Background::GradientDominant { colors } => gradient_canvas(image, width, height, colors),
        Background::Blurred { sigma, brightness } => {
            blurred_canvas(image, width, height, sigma, brightness)
        }
    }
}

fn gradient_canvas(image: &RgbaImage, width: u32, height: u32, colors: u8) -> RgbaImage {
    let (w, h) = image.dimensions();
    let region = |x: u32, y: u32, rw: u32, rh: u32| {
        dominant_color(&image::imageops::crop_imm(image, x, y, rw.max(1), rh.max(1)).to_image())
    };
    let corners = if colors >= 4 {
        [
            region(0, 0, w / 2, h / 2),
            region(w / 2, 0, w - w / 2, h / 2),
            region(0, h / 2, w / 2, h - h / 2),
            region(w / 2, h / 2, w - w / 2, h - h / 2),
        ]
    } else if u64::from(width) * u64::from(h) > u64::from(height) * u64::from(w) {
        // The canvas is relatively wider than the image, so padding goes left and right.
        let left = region(0, 0, w / 2, h);
        let right = region(w / 2, 0, w - w / 2, h);
        [left, right, left, right]
    } else {
        let top = region(0, 0, w, h / 2);
        let bottom = region(0, h / 2, w, h - h / 2);
        [top, top, bottom, bottom]
    };
    let mix = |a: Rgba<u8>, b: Rgba<u8>, t: f32| {
        Rgba(std::array::from_fn(|c| {
            (f32::from(a.0[c]) * (1.0 - t) + f32::from(b.0[c]) * t).round() as u8
        }))
    };
    RgbaImage::from_fn(width, height, |x, y| {
        let tx = if width > 1 {
            x as f32 / (width - 1) as f32
        } else {
            0.5
        };
        let ty = if height > 1 {
            y as f32 / (height - 1) as f32
        } else {
            0.5
        };
        let top = mix(corners[0], corners[1], tx);
        let bottom = mix(corners[2], corners[3], tx);
        mix(top, bottom, ty)
    })
}

fn blurred_canvas(
    image: &RgbaImage,
    width: u32,
    height: u32,
    sigma: Option<u8>,
    brightness: i16,
) -> RgbaImage {
    let (w, h) = image.dimensions();
    // Cover the canvas, keeping the image's aspect ratio, and cut the centre.
    let scale = (f64::from(width) / f64::from(w)).max(f64::from(height) / f64::from(h));
    let (crop_w, crop_h) = (f64::from(width) / scale, f64::from(height) / scale);
    let window = (
        (f64::from(w) - crop_w) / 2.0,
        (f64::from(h) - crop_h) / 2.0,
        crop_w,
        crop_h,
    );

    let sigma = sigma.map_or(
        width.max(height) as f32 * AUTO_BACKGROUND_BLUR_SHARE,
        f32::from,
    );
    // A Gaussian this wide leaves almost no detail that a quarter-size copy cannot hold, so
    // blurring the copy and scaling it up looks nearly the same at a sixteenth of the cost.
    let reduction = if sigma >= 8.0 { 4 } else { 1 };
    let small = resize_region(
        image,
        window,
        width.div_ceil(reduction).max(1),
        height.div_ceil(reduction).max(1),
    );
    let blurred = gaussian_blur(&small, sigma / reduction as f32);
    let mut canvas = if reduction > 1 {
        resize(&blurred, width, height)
    } else {
        blurred
    };

    if brightness != 0 {
        for pixel in canvas.pixels_mut() {
            for channel in &mut pixel.0[..3] {
                *channel = (i16::from(*channel) + brightness).clamp(0, 255) as u8;
            }
        }
    }
    canvas
}

/// Draws `image` over `canvas` with its top-left corner at `(x, y)`, alpha-blending ("over").
fn composite_over(canvas: &mut RgbaImage, image: &RgbaImage, x: u32, y: u32) {
    for (ix, iy, source) in image.enumerate_pixels() {
        let (cx, cy) = (x + ix, y + iy);
        if cx >= canvas.width() || cy >= canvas.height() {
            continue;
        }
        let target = canvas.get_pixel_mut(cx, cy);
        *target = blend_over(*source, *target);
    }
}

/// Returns `top` composited over `bottom`, both straight alpha.
fn blend_over(top: Rgba<u8>, bottom: Rgba<u8>) -> Rgba<u8> {
    let top_alpha = u32::from(top.0[3]);
    if top_alpha == 255 {
        return top;
    }
    if top_alpha == 0 {
        return bottom;
    }
    let bottom_alpha = u32::from(bottom.0[3]) * (255 - top_alpha) / 255;
    let alpha = top_alpha + bottom_alpha;
    let mix = |c: usize| {
        let value = u32::from(top.0[c]) * top_alpha + u32::from(bottom.0[c]) * bottom_alpha;
        ((value + alpha / 2) / alpha) as u8
    };
    Rgba([mix(0), mix(1), mix(2), alpha as u8])
}

/// Rotates clockwise by `degrees`. Right angles are exact. Other angles enlarge the canvas to the
/// rotated bounding box (the size [`rotated_size`] plans for), sample bilinearly and fill the
/// uncovered corners with `fill`, blending it into the anti-aliased edges.
pub fn rotate(image: &RgbaImage, degrees: f64, fill: Rgba<u8>) -> RgbaImage {
    let degrees = degrees.rem_euclid(360.0);
    match degrees {
        0.0 => return image.clone(),
        90.0 => return image::imageops::rotate90(image),
        180.0 => return image::imageops::rotate180(image),
        270.0 => return image::imageops::rotate270(image),
        _ => {}
    }
    let (width, height) = image.dimensions();
    let (out_w, out_h) = rotated_size((width, height), degrees);
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (centre_x, centre_y) = (f64::from(width) / 2.0, f64::from(height) / 2.0);
    let (out_centre_x, out_centre_y) = (f64::from(out_w) / 2.0, f64::from(out_h) / 2.0);
    let premultiplied = premultiply(image);
    RgbaImage::from_fn(out_w, out_h, |x, y| {
        // Map the output pixel centre back into the source by the inverse rotation.
        let dx = f64::from(x) + 0.5 - out_centre_x;
        let dy = f64::from(y) + 0.5 - out_centre_y;
        let sx = dx * cos + dy * sin + centre_x - 0.5;
        let sy = -dx * sin + dy * cos + centre_y - 0.5;
        let sample = sample_bilinear(&premultiplied, width, height, sx, sy);
        let coverage = sample[3];
        let mut out = [0u8; 4];
        let fill_alpha = f32::from(fill.0[3]) / 255.0 * (1.0 - coverage);
        let alpha = coverage + fill_alpha;
        if alpha > 0.0 {
            for c in 0..3 {
                let value = sample[c] + f32::from(fill.0[c]) / 255.0 * fill_alpha;
                out[c] = (value / alpha * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
        out[3] = (alpha * 255.0).round().clamp(0.0, 255.0) as u8;
        Rgba(out)
    })
}

/// Returns premultiplied RGBA in 0–1.
fn premultiply(image: &RgbaImage) -> Vec<[f32; 4]> {
    image
        .pixels()
        .map(|pixel| {
            let alpha = f32::from(pixel.0[3]) / 255.0;
            [
                f32::from(pixel.0[0]) / 255.0 * alpha,
                f32::from(pixel.0[1]) / 255.0 * alpha,
                f32::from(pixel.0[2]) / 255.0 * alpha,
                alpha,
            ]
        })
        .collect()
}

/// Samples premultiplied pixels at a fractional position; outside the image counts as fully
/// transparent, which anti-aliases the rotated edges.
fn sample_bilinear(pixels: &[[f32; 4]], width: u32, height: u32, x: f64, y: f64) -> [f32; 4] {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
    let mut out = [0f32; 4];
    for (ox, oy, weight) in [
        (0.0, 0.0, (1.0 - fx) * (1.0 - fy)),
        (1.0, 0.0, fx * (1.0 - fy)),
        (0.0, 1.0, (1.0 - fx) * fy),
        (1.0, 1.0, fx * fy),
    ] {
        let (px, py) = (x0 + ox, y0 + oy);
        if px < 0.0 || py < 0.0 || px >= f64::from(width) || py >= f64::from(height) {
            continue;
        }
        let pixel = pixels[py as usize * width as usize + px as usize];
        for c in 0..4 {
            out[c] += pixel[c] * weight;
        }
    }
    out
}

/// Mirrors the image in place.
pub fn flip(image: &mut RgbaImage, flip: Flip) {
    if matches!(flip, Flip::Horizontal | Flip::Both) {
        image::imageops::flip_horizontal_in_place(image);
    }
    if matches!(flip, Flip::Vertical | Flip::Both) {
        image::imageops::flip_vertical_in_place(image);
    }
}

/// Returns the bounding box `(x, y, width, height)` of the pixels that differ from the top-left
/// pixel by more than `threshold` levels (0–255) in any channel, alpha included. Two fully
/// transparent pixels never differ. Returns `None` when nothing differs, so a uniform image is
/// left whole rather than trimmed to nothing.
pub fn trim_bounds(image: &RgbaImage, threshold: u8) -> Option<(u32, u32, u32, u32)> {
    let reference = *image.get_pixel_checked(0, 0)?;
    let differs = |pixel: &Rgba<u8>| {
        if pixel.0[3] == 0 && reference.0[3] == 0 {
            return false;
        }
        (0..4).any(|c| pixel.0[c].abs_diff(reference.0[c]) > threshold)
    };
    let (mut left, mut top, mut right, mut bottom) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, pixel) in image.enumerate_pixels() {
        if differs(pixel) {
            left = left.min(x);
            top = top.min(y);
            right = right.max(x);
            bottom = bottom.max(y);
        }
    }
    (left != u32::MAX).then(|| (left, top, right - left + 1, bottom - top + 1))
}

/// Removes near-uniform borders; see [`trim_bounds`]. For an animation, compute the bounds on
/// the first frame and crop every frame to them so the frames keep one size.
pub fn trim(image: &RgbaImage, threshold: u8) -> RgbaImage {
    match trim_bounds(image, threshold) {
        Some((x, y, w, h)) => image::imageops::crop_imm(image, x, y, w, h).to_image(),
        None => image.clone(),
    }
}

/// Surrounds the image with a solid border `width` pixels wide on every side, growing the canvas.
pub fn border(image: &RgbaImage, width: u32, color: Rgba<u8>) -> RgbaImage {
    if width == 0 {
        return image.clone();
    }
    let (w, h) = image.dimensions();
    let mut canvas = RgbaImage::from_pixel(
        w.saturating_add(width.saturating_mul(2)),
        h.saturating_add(width.saturating_mul(2)),
        color,
    );
    image::imageops::replace(&mut canvas, image, i64::from(width), i64::from(width));
    canvas
}

/// Rounds the corners with anti-aliased edges. `Radius::Max` makes the largest ellipse that fits,
/// and pixel radii are capped at half the shorter side. Outside the curve the pixels become
/// transparent, or `fill` when one is given.
pub fn round_corners(image: &mut RgbaImage, radius: Radius, fill: Option<Rgba<u8>>) {
    let (width, height) = image.dimensions();
    let (w, h) = (width as f32, height as f32);
    // Radii (horizontal, vertical) of the top-left, top-right, bottom-right, bottom-left corners.
    let radii: [(f32, f32); 4] = match radius {
        Radius::Max => [(w / 2.0, h / 2.0); 4],
        Radius::Corners(corners) => corners.map(|r| {
            let r = (r as f32).min(w.min(h) / 2.0);
            (r, r)
        }),
    };
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
        let (corner, cx, cy) = if px < w / 2.0 {
            if py < h / 2.0 {
                (0, radii[0].0, radii[0].1)
            } else {
                (3, radii[3].0, h - radii[3].1)
            }
        } else if py < h / 2.0 {
            (1, w - radii[1].0, radii[1].1)
        } else {
            (2, w - radii[2].0, h - radii[2].1)
        };
        let (rx, ry) = radii[corner];
        if rx <= 0.0 || ry <= 0.0 {
            continue;
        }
        let inside_x = if corner == 0 || corner == 3 {
            px >= cx
        } else {
            px <= cx
        };
        let inside_y = if corner == 0 || corner == 1 {
            py >= cy
        } else {
            py <= cy
        };
        if inside_x || inside_y {
            continue;
        }
        // Signed distance to the ellipse, scaled so that it is in pixels along the short radius.
        let (dx, dy) = ((px - cx) / rx, (py - cy) / ry);
        let distance = ((dx * dx + dy * dy).sqrt() - 1.0) * rx.min(ry);
        let coverage = (0.5 - distance).clamp(0.0, 1.0);
        if coverage >= 1.0 {
            continue;
        }
        let alpha = (f32::from(pixel.0[3]) * coverage).round() as u8;
        let cut = Rgba([pixel.0[0], pixel.0[1], pixel.0[2], alpha]);
        *pixel = match fill {
            Some(fill) => blend_over(cut, fill),
            None => cut,
        };
    }
}

/// Multiplies alpha by `percent` / 100.
pub fn opacity(image: &mut RgbaImage, percent: u8) {
    let percent = u32::from(percent.min(100));
    if percent == 100 {
        return;
    }
    for pixel in image.pixels_mut() {
        pixel.0[3] = ((u32::from(pixel.0[3]) * percent + 50) / 100) as u8;
    }
}

/// Composites the image onto an opaque `color`, leaving every pixel opaque.
pub fn flatten(image: &mut RgbaImage, color: Rgba<u8>) {
    let background = Rgba([color.0[0], color.0[1], color.0[2], 255]);
    for pixel in image.pixels_mut() {
        if pixel.0[3] != 255 {
            *pixel = blend_over(*pixel, background);
        }
    }
}

/// Converts to grey with Rec. 709 luma weights, keeping alpha.
pub fn grayscale(image: &mut RgbaImage) {
    for pixel in image.pixels_mut() {
        let [r, g, b, _] = pixel.0;
        let luma = (2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b) + 5000) / 10000;
        let luma = luma.min(255) as u8;
        pixel.0[..3].copy_from_slice(&[luma; 3]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::codec::test_support::*;
    use super::super::codec::{decode, DecodeHint};
    use super::super::color::Color;
    use super::*;

    const RED: Rgba<u8> = Rgba([255, 0, 0, 255]);
    const CLEAR: Rgba<u8> = Rgba([0, 0, 0, 0]);

    fn opaque_background() -> Background {
        Background::Color(Color::opaque(0, 0, 255))
    }

    #[test]
    fn resize_keeps_transparent_edges_from_darkening() {
        // Red opaque half next to a transparent half whose hidden RGB is black.
        let image = RgbaImage::from_fn(64, 64, |x, _| if x < 32 { RED } else { CLEAR });
        let small = resize(&image, 16, 16);
        for pixel in small.pixels().filter(|p| p.0[3] > 8) {
            assert!(pixel.0[0] >= 250, "edge pixel darkened to {:?}", pixel.0);
        }
    }

    #[test]
    fn resize_then_crop_matches_separate_steps() {
        let decoded = decode(&fixture("rocket.jpg"), DecodeHint::default()).unwrap();
        let image = &decoded.frames[0].image;
        let ops = [
            GeomOp::Resize { w: 300, h: 200 },
            GeomOp::Crop {
                x: 50,
                y: 0,
                w: 200,
                h: 200,
            },
        ];
        let fused = apply_geometry(image, &ops, &opaque_background()).unwrap();
        let separate =
            image::imageops::crop_imm(&resize(image, 300, 200), 50, 0, 200, 200).to_image();
        assert_eq!(fused.dimensions(), (200, 200));
        assert!(mean_abs_diff(&fused, &separate) < 1.0);
    }

    #[test]
    fn fused_edge_crop_stays_in_bounds() {
        for (source, target) in [
            ((227, 149), (100, 66)),
            ((1800, 1200), (301, 199)),
            ((13, 169), (7, 91)),
        ] {
            let image = RgbaImage::from_pixel(source.0, source.1, RED);
            let (w, h) = (target.0 / 2 + 1, target.1 / 2 + 1);
            let ops = [
                GeomOp::Resize {
                    w: target.0,
                    h: target.1,
                },
                GeomOp::Crop {
                    x: target.0 - w,
                    y: target.1 - h,
                    w,
                    h,
                },
            ];
            let out = apply_geometry(&image, &ops, &opaque_background()).unwrap();
            assert_eq!(out.dimensions(), (w, h));
        }
    }

    #[test]
    fn saliency_crop_resolves_consistently() {
        let image = RgbaImage::from_fn(400, 100, |x, y| {
            if (300..360).contains(&x) && (x + y) % 4 < 2 {
                RED
            } else {
                Rgba([128, 128, 128, 255])
            }
        });
        let ops = [
            GeomOp::Resize { w: 200, h: 50 },
            GeomOp::SaliencyCrop { w: 50, h: 50 },
        ];
        let resolved = resolve_saliency_crops(&image, &ops, &opaque_background()).unwrap();
        let GeomOp::Crop { x, .. } = resolved[1] else {
            panic!("saliency crop left unresolved: {resolved:?}");
        };
        assert!((130..=150).contains(&x), "window starts at {x}");
        let direct = apply_geometry(&image, &ops, &opaque_background()).unwrap();
        let via_crop = apply_geometry(&image, &resolved, &opaque_background()).unwrap();
        assert_eq!(direct, via_crop);
    }

    #[test]
    fn pad_places_the_image_on_the_background() {
        let image = RgbaImage::from_pixel(4, 2, RED);
        let ops = [GeomOp::Pad {
            w: 4,
            h: 6,
            x: 0,
            y: 2,
        }];
        let padded = apply_geometry(&image, &ops, &opaque_background()).unwrap();
        assert_eq!(padded.dimensions(), (4, 6));
        assert_eq!(padded.get_pixel(0, 0), &Rgba([0, 0, 255, 255]));
        assert_eq!(padded.get_pixel(0, 2), &RED);
        assert_eq!(padded.get_pixel(3, 5), &Rgba([0, 0, 255, 255]));
        let transparent = Background::Color(Color {
            r: 0,
            g: 0,
            b: 0,
            opacity_percent: 0,
        });
        let padded = apply_geometry(&image, &ops, &transparent).unwrap();
        assert_eq!(padded.get_pixel(0, 0).0[3], 0);
    }

    #[test]
    fn pad_backgrounds_derive_from_the_image() {
        let image = RgbaImage::from_fn(
            20,
            10,
            |x, _| if x < 10 { RED } else { Rgba([0, 200, 0, 255]) },
        );
        let ops = [GeomOp::Pad {
            w: 20,
            h: 30,
            x: 0,
            y: 10,
        }];
        for background in [
            Background::Dominant,
            Background::GradientDominant { colors: 2 },
            Background::GradientDominant { colors: 4 },
            Background::Blurred {
                sigma: None,
                brightness: -40,
            },
            Background::Blurred {
                sigma: Some(3),
                brightness: 0,
            },
        ] {
            let padded = apply_geometry(&image, &ops, &background).unwrap();
            assert_eq!(padded.dimensions(), (20, 30));
            assert!(!has_alpha(&padded), "{background:?}");
        }
        let dominant = apply_geometry(&image, &ops, &Background::Dominant).unwrap();
        let corner = dominant.get_pixel(0, 0).0;
        assert!(corner == RED.0 || corner == [0, 200, 0, 255], "{corner:?}");
    }

    #[test]
    fn geometry_rejects_windows_that_leave_the_image() {
        let image = RgbaImage::new(10, 10);
        for op in [
            GeomOp::Crop {
                x: 5,
                y: 0,
                w: 6,
                h: 10,
            },
            GeomOp::Pad {
                w: 12,
                h: 12,
                x: 3,
                y: 0,
            },
            GeomOp::SaliencyCrop { w: 11, h: 5 },
        ] {
            let error = apply_geometry(&image, std::slice::from_ref(&op), &opaque_background())
                .unwrap_err();
            assert!(matches!(error, PixelError::InvalidOperation(_)), "{op:?}");
        }
    }

    #[test]
    fn right_angle_rotations_are_exact() {
        let image = RgbaImage::from_fn(3, 2, |x, y| Rgba([x as u8, y as u8, 0, 255]));
        let rotated = rotate(&image, 90.0, CLEAR);
        assert_eq!(rotated.dimensions(), (2, 3));
        // Clockwise: the bottom-left pixel moves to the top-left.
        assert_eq!(rotated.get_pixel(0, 0).0[..2], [0, 1]);
        assert_eq!(rotate(&image, -90.0, CLEAR), rotate(&image, 270.0, CLEAR));
        assert_eq!(rotate(&image, 360.0, CLEAR), image);
    }

    #[test]
    fn arbitrary_rotation_grows_the_canvas_and_fills_corners() {
        let image = RgbaImage::from_pixel(100, 50, RED);
        let fill = Rgba([0, 0, 255, 255]);
        let rotated = rotate(&image, 45.0, fill);
        assert_eq!(rotated.dimensions(), rotated_size((100, 50), 45.0));
        assert_eq!(rotated.get_pixel(0, 0), &fill);
        let centre = rotated.get_pixel(rotated.width() / 2, rotated.height() / 2);
        assert_eq!(centre, &RED);
        let clear = rotate(&image, 30.0, CLEAR);
        assert_eq!(clear.get_pixel(0, 0).0[3], 0);
        // Edge pixels are partly covered but keep the image colour.
        for pixel in clear.pixels().filter(|p| p.0[3] > 0) {
            assert!(pixel.0[0] >= 250, "{:?}", pixel.0);
            assert_eq!(pixel.0[2], 0, "{:?}", pixel.0);
        }
    }

    #[test]
    fn flips_mirror_the_image() {
        let image = RgbaImage::from_fn(2, 2, |x, y| Rgba([x as u8, y as u8, 0, 255]));
        let mut horizontal = image.clone();
        flip(&mut horizontal, Flip::Horizontal);
        assert_eq!(horizontal.get_pixel(0, 0).0[..2], [1, 0]);
        let mut both = image.clone();
        flip(&mut both, Flip::Both);
        assert_eq!(both.get_pixel(0, 0).0[..2], [1, 1]);
    }

    #[test]
    fn trim_removes_near_uniform_borders() {
        let image = RgbaImage::from_fn(20, 10, |x, y| {
            if (5..15).contains(&x) && (2..8).contains(&y) {
                RED
            } else {
                Rgba([250, 250, 250, 255 - (x % 3) as u8])
            }
        });
        assert_eq!(trim_bounds(&image, 10), Some((5, 2, 10, 6)));
        assert_eq!(trim(&image, 10).dimensions(), (10, 6));
        // With no tolerance the border's alpha ripple (every third column) is content.
        assert_eq!(trim_bounds(&image, 0), Some((1, 0, 19, 10)));
        assert_eq!(trim_bounds(&RgbaImage::from_pixel(4, 4, RED), 10), None);
        assert_eq!(
            trim(&RgbaImage::from_pixel(4, 4, RED), 10).dimensions(),
            (4, 4)
        );
    }

    #[test]
    fn border_grows_the_canvas_on_every_side() {
        let image = RgbaImage::from_pixel(4, 3, RED);
        let framed = border(&image, 2, Rgba([0, 255, 0, 255]));
        assert_eq!(framed.dimensions(), (8, 7));
        assert_eq!(framed.get_pixel(0, 0), &Rgba([0, 255, 0, 255]));
        assert_eq!(framed.get_pixel(2, 2), &RED);
        assert_eq!(framed.get_pixel(7, 6), &Rgba([0, 255, 0, 255]));
    }

    #[test]
    fn rounded_corners_are_transparent_or_filled() {
        let mut image = RgbaImage::from_pixel(40, 20, RED);
        round_corners(&mut image, Radius::Corners([10, 10, 10, 10]), None);
        assert_eq!(image.get_pixel(0, 0).0[3], 0);
        assert_eq!(image.get_pixel(39, 19).0[3], 0);
        assert_eq!(image.get_pixel(20, 10), &RED);
        assert_eq!(image.get_pixel(20, 0), &RED);
        let mut ellipse = RgbaImage::from_pixel(40, 20, RED);
        let white = Rgba([255, 255, 255, 255]);
        round_corners(&mut ellipse, Radius::Max, Some(white));
        assert_eq!(ellipse.get_pixel(0, 0), &white);
        assert_eq!(ellipse.get_pixel(2, 10), &RED);
        assert_eq!(ellipse.get_pixel(20, 1), &RED);
        assert!(!has_alpha(&ellipse));
        let mut one_corner = RgbaImage::from_pixel(40, 20, RED);
        round_corners(&mut one_corner, Radius::Corners([0, 8, 0, 0]), None);
        assert_eq!(one_corner.get_pixel(0, 0), &RED);
        assert_eq!(one_corner.get_pixel(39, 0).0[3], 0);
    }

    #[test]
    fn opacity_flatten_and_grayscale() {
        let mut image = RgbaImage::from_pixel(2, 2, RED);
        opacity(&mut image, 50);
        assert_eq!(image.get_pixel(0, 0).0[3], 128);
        flatten(&mut image, Rgba([255, 255, 255, 255]));
        assert_rgb_near(
            image.get_pixel(0, 0).0,
            [255, 127, 127],
            1,
            "red at 50% over white",
        );
        assert_eq!(image.get_pixel(0, 0).0[3], 255);
        grayscale(&mut image);
        let [r, g, b, _] = image.get_pixel(0, 0).0;
        assert_eq!(r, g);
        assert_eq!(g, b);
    }

    #[test]
    fn alpha_png_flattens_onto_white_not_black() {
        let decoded = decode(
            &fixture("png-palette-all-transparent.png"),
            DecodeHint::default(),
        )
        .unwrap();
        let mut image = decoded.frames[0].image.clone();
        flatten(&mut image, Rgba([255, 255, 255, 255]));
        assert!(image.pixels().all(|p| p.0 == [255, 255, 255, 255]));
    }
}
