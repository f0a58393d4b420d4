//! Runs a parsed plan on a source image: decode (shrinking JPEGs on load when the first step
//! scales down), apply every step to every frame, pick the output format, encode.
//!
//! Order inside one step: trim → resize/crop/pad → flip → explicit rotation → radius → border →
//! blur, sharpen, unsharp mask, contrast, grayscale, opacity. EXIF orientation is applied by the
//! decoder before anything else, which also makes `rt-auto` a no-op. Chains make other orders
//! explicit.

use image::Rgba;

use super::codec::{
    self, DecodeHint, Decoded, EncodeOptions, Frame, Metadata, PixelError, SourceFormat,
};
use super::geometry::{self, GeomOp, Limits};
use super::ops;
use super::plan::{self, Background, Plan, Rotation, Step, Trim};
use super::TransformError;

/// Limits and defaults the pipeline runs under.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    pub max_source_pixels: u64,
    pub max_frames: u32,
    /// Quality of lossy output when the URL gives no `q`.
    pub default_quality: u8,
    /// Whether a plan without `f` negotiates (`f-auto`) or keeps the source format.
    pub auto_format: bool,
}

/// Formats the client accepts, for `f-auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Accepts {
    /// AVIF may be sent: the client accepts it and the server allows AVIF under `f-auto`.
    pub avif: bool,
    pub webp: bool,
}

/// An encoded result.
#[derive(Debug, Clone)]
pub struct Output {
    pub bytes: Vec<u8>,
    pub format: codec::OutputFormat,
}

/// Failure of a pipeline run.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Transform(#[from] TransformError),
    #[error(transparent)]
    Pixel(#[from] PixelError),
}

/// Runs `plan` on the image `bytes`. Blocking and CPU-heavy: call it on the transform pool.
pub fn run(
    bytes: &[u8],
    plan: &Plan,
    accepts: Accepts,
    settings: &Settings,
) -> Result<Output, PipelineError> {
    let steps = plan.steps();
    let original = codec::upright_size(bytes);

    // Shrink-on-load: when the first step starts by scaling down, the decoder may produce a
    // smaller image directly. A trim changes the size first, so it disables the shortcut.
    let first_ops = match (steps.first(), original) {
        (Some(step), Some(size)) if step.trim.is_none() => {
            Some(geometry::plan_geometry(step, size, size, &settings.limits)?)
        }
        _ => None,
    };
    let hint = DecodeHint {
        target: first_ops.as_deref().and_then(ops::shrink_target),
        max_pixels: settings.max_source_pixels,
        max_frames: settings.max_frames,
        keep_icc_profile: plan.keep_color_profile() == Some(true),
    };
    let mut decoded = codec::decode(bytes, hint)?;
    let original = (decoded.original_width, decoded.original_height);
    let source_alpha = decoded.has_alpha;

    for (index, step) in steps.iter().enumerate() {
        // The first step's operations were planned on the full-size upright source. They stay
        // valid on a shrunk decode because a resize scales to an absolute size.
        let planned = if index == 0 { first_ops.clone() } else { None };
        apply_step(
            &mut decoded.frames,
            step,
            original,
            source_alpha,
            planned,
            &settings.limits,
        )?;
    }

    let has_alpha = decoded
        .frames
        .iter()
        .any(|frame| ops::has_alpha(&frame.image));
    let format = choose_format(plan, accepts, &decoded, has_alpha, settings.auto_format)?;
    let options = EncodeOptions {
        quality: plan.quality().unwrap_or(settings.default_quality),
        lossless: plan.lossless() == Some(true),
        progressive: plan.progressive() == Some(true),
        keep_metadata: kept_metadata(plan, &decoded.metadata),
    };
    if format == codec::OutputFormat::Jpeg && has_alpha {
        let background = Rgba(plan.flatten_color().to_rgba());
        for frame in &mut decoded.frames {
            ops::flatten(&mut frame.image, background);
        }
    }
    let bytes = codec::encode(&decoded.frames, decoded.loop_count, format, &options)?;
    Ok(Output { bytes, format })
}

fn apply_step(
    frames: &mut [Frame],
    step: &Step,
    original: (u32, u32),
    source_alpha: bool,
    planned: Option<Vec<GeomOp>>,
    limits: &Limits,
) -> Result<(), PipelineError> {
    let Some(first) = frames.first() else {
        return Ok(());
    };
    // Padding and rotation corners: `bg` when given, else transparent for sources with alpha
    // and black for opaque ones, as ImageKit documents.
    let default_fill = if source_alpha {
        Rgba([0, 0, 0, 0])
    } else {
        Rgba([0, 0, 0, 255])
    };
    let background = step
        .background
        .unwrap_or(Background::Color(plan_color(default_fill)));
    let fill = match step.background {
        Some(Background::Color(color)) => Rgba(color.to_rgba()),
        _ => default_fill,
    };

    if let Some(Trim::Threshold(threshold)) = step.trim {
        // One window for every frame, chosen on the first, keeps an animation steady.
        if let Some((x, y, w, h)) = ops::trim_bounds(&first.image, threshold) {
            for frame in frames.iter_mut() {
                frame.image = image::imageops::crop_imm(&frame.image, x, y, w, h).to_image();
            }
        }
    }

    let input = frames[0].image.dimensions();
    let geometry_ops = match planned {
        Some(ops) => ops,
        None => geometry::plan_geometry(step, input, original, limits)?,
    };
    if !geometry_ops.is_empty() {
        let resolved = ops::resolve_saliency_crops(&frames[0].image, &geometry_ops, &background)?;
        for frame in frames.iter_mut() {
            frame.image = ops::apply_geometry(&frame.image, &resolved, &background)?;
        }
    }

    let border = match &step.border {
        Some(border) => Some((
            geometry::border_width(border, input, original)?,
            Rgba(border.color.to_rgba()),
        )),
        None => None,
    };
    for frame in frames.iter_mut() {
        let image = &mut frame.image;
        if let Some(flip) = step.flip {
            ops::flip(image, flip);
        }
        if let Some(Rotation::Degrees(degrees)) = step.rotation {
            if degrees != 0.0 {
                *image = ops::rotate(image, degrees, fill);
            }
        }
        if let Some(radius) = step.radius {
            let corner_fill = match step.background {
                Some(Background::Color(color)) => Some(Rgba(color.to_rgba())),
                _ => None,
            };
            ops::round_corners(image, radius, corner_fill);
        }
        if let Some((width, color)) = border {
            *image = ops::border(image, width, color);
        }
        if let Some(radius) = step.blur {
            *image = ops::blur(image, radius);
        }
        if let Some(sharpen) = step.sharpen {
            *image = ops::sharpen(image, sharpen);
        }
        if let Some(mask) = step.unsharp_mask {
            *image = ops::unsharp_mask(image, mask);
        }
        if step.contrast {
            ops::auto_contrast(image);
        }
        if step.grayscale {
            ops::grayscale(image);
        }
        if let Some(percent) = step.opacity {
            ops::opacity(image, percent);
        }
    }
    Ok(())
}

fn plan_color(rgba: Rgba<u8>) -> super::color::Color {
    let [r, g, b, a] = rgba.0;
    super::color::Color {
        r,
        g,
        b,
        opacity_percent: if a == 255 { 100 } else { 0 },
    }
}

/// Picks the encoded format: an explicit `f`, or for `f-auto` AVIF, then WebP when the client
/// takes them, else PNG for images with alpha and JPEG for opaque ones. Animations stay animated:
/// WebP when accepted, else their own format (GIF for an animated WebP), never AVIF.
fn choose_format(
    plan: &Plan,
    accepts: Accepts,
    decoded: &Decoded,
    has_alpha: bool,
    auto_format: bool,
) -> Result<codec::OutputFormat, PipelineError> {
    use codec::OutputFormat as Out;
    let source = match decoded.source_format {
        SourceFormat::Jpeg => Out::Jpeg,
        SourceFormat::Png => Out::Png,
        SourceFormat::Gif => Out::Gif,
        SourceFormat::Webp => Out::Webp,
    };
    let animated = decoded.frames.len() > 1;
    let default = if auto_format {
        plan::OutputFormat::Auto
    } else {
        plan::OutputFormat::Original
    };
    let requested = plan.format().unwrap_or(default);
    Ok(match requested {
        plan::OutputFormat::Jpeg => Out::Jpeg,
        plan::OutputFormat::Png => Out::Png,
        plan::OutputFormat::Webp => Out::Webp,
        plan::OutputFormat::Avif => Out::Avif,
        plan::OutputFormat::Gif => {
            if decoded.source_format != SourceFormat::Gif {
                return Err(TransformError::invalid(
                    "f-gif",
                    "f-gif is only available for GIF sources; use f-webp or f-png for animations",
                )
                .into());
            }
            Out::Gif
        }
        plan::OutputFormat::Original => source,
        plan::OutputFormat::Auto if animated => {
            if accepts.webp {
                Out::Webp
            } else if source == Out::Webp {
                // A client without WebP still gets the animation, as the one format every
                // browser animates.
                Out::Gif
            } else {
                source
            }
        }
        plan::OutputFormat::Auto => {
            if accepts.avif && !plan.disables_avif() {
                Out::Avif
            } else if accepts.webp {
                Out::Webp
            } else if has_alpha {
                Out::Png
            } else {
                Out::Jpeg
            }
        }
    })
}

/// Metadata to embed: everything for `md-true`, only the ICC profile for `cp-true`, else none.
fn kept_metadata(plan: &Plan, metadata: &Metadata) -> Option<Metadata> {
    if plan.keep_metadata() == Some(true) {
        return Some(metadata.clone());
    }
    if plan.keep_color_profile() == Some(true) {
        return Some(Metadata {
            icc: metadata.icc.clone(),
            ..Metadata::default()
        });
    }
    None
}
