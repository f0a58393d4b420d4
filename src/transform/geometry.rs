//! Sizes and pixel operations of one chain step, computed without touching pixels.
//!
//! [`plan_geometry`] turns a step's `w h ar c cm fo x y xc yc dpr` into [`GeomOp`]s for an input
//! of known size. Sides are resolved in this order:
//!
//! 1. Expressions are evaluated: `iw ih iar` read the original, `cw ch car` the step's input.
//! 2. A literal strictly between 0 and 1 is that share of the input side.
//! 3. A side above 65 535 px is ignored.
//! 4. `ar` derives the missing side.
//! 5. `dpr` multiplies both sides, unless a result would fall outside 1–5000 px.
//! 6. Sides round half up and never drop below 1 px.
//!
//! Then the fit strategy decides the operations, and every intermediate and final size is
//! checked against [`Limits`].

use super::error::TransformError;
use super::expr::{Expr, Variables};
use super::plan::{AspectRatio, Border, Dimension, Dpr, Fit, Focus, Length, Rotation, Step};

/// Sides above this many pixels in a URL are ignored rather than rejected, as ImageKit documents.
pub const MAX_URL_DIMENSION: f64 = 65_535.0;
/// `dpr` is ignored when a scaled side would exceed this many pixels.
pub const MAX_DPR_SIDE: u32 = 5_000;

/// One pixel operation of a step, applied in order to the current image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GeomOp {
    /// Scale the current image to exactly w×h (may distort; callers keep ratio where needed).
    Resize { w: u32, h: u32 },
    /// Keep the window at (x, y) of size w×h; always inside the current image.
    Crop { x: u32, y: u32, w: u32, h: u32 },
    /// Place the current image at (x, y) on a new w×h canvas filled with the background.
    Pad { w: u32, h: u32, x: u32, y: u32 },
    /// Keep a w×h window whose position the pixel stage picks by a saliency measure (`fo-auto`).
    /// The window always fits inside the current image. The pixel stage chooses and documents
    /// the measure.
    SaliencyCrop { w: u32, h: u32 },
}

/// Output size limits, checked for every intermediate and final image of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_output_pixels: u64,
    pub max_output_side: u32,
}

impl Default for Limits {
    /// 100 megapixels and 16 383 px per side, the limits ImageKit documents (16 383 px is also
    /// the largest WebP side).
    fn default() -> Self {
        Limits {
            max_output_pixels: 100_000_000,
            max_output_side: 16_383,
        }
    }
}

/// Plans the resize, crop and pad operations of `step`.
///
/// `input` is the size of the image entering the resize stage of this step, after its trim and
/// EXIF rotation. It is also what `cw ch car` and fractions refer to. `original` is the size of
/// the untransformed source, for `iw ih iar`. Returns an empty list when the step keeps the size.
///
/// Fails with `invalid_transformation` for an expression that cannot be evaluated, an extract
/// window that leaves the image, or a `dpr` expression outside 0.1–5. Fails with
/// `limit_exceeded` when an intermediate or final image would break `limits`.
pub fn plan_geometry(
    step: &Step,
    input: (u32, u32),
    original: (u32, u32),
    limits: &Limits,
) -> Result<Vec<GeomOp>, TransformError> {
    let input = (input.0.max(1), input.1.max(1));
    let variables = variables(input, original);
    let ops = match resolve_target(step, input, &variables)? {
        (None, None) => Vec::new(),
        (Some(width), None) => plan_one_side(step, input, Side::Width(width), &variables)?,
        (None, Some(height)) => plan_one_side(step, input, Side::Height(height), &variables)?,
        (Some(width), Some(height)) => plan_both_sides(step, input, (width, height), &variables)?,
    };
    check_limits(step, input, &ops, limits)?;
    Ok(ops)
}

/// Returns the size of `step`'s output: the geometry operations, then explicit rotation, then
/// the border. Later steps use it as their `input` (and so as `cw ch`).
pub fn step_output_size(
    step: &Step,
    input: (u32, u32),
    original: (u32, u32),
    limits: &Limits,
) -> Result<(u32, u32), TransformError> {
    let ops = plan_geometry(step, input, original, limits)?;
    let mut size = output_size(input, &ops);
    if let Some(Rotation::Degrees(degrees)) = step.rotation {
        let rotated = rotated_size(size, degrees);
        if rotated != size && rotated != (size.1, size.0) {
            check_size(step, rotated, limits)?;
        }
        size = rotated;
    }
    if let Some(border) = &step.border {
        let width = border_width(border, input, original)?;
        if width > 0 {
            size = (
                size.0.saturating_add(width.saturating_mul(2)),
                size.1.saturating_add(width.saturating_mul(2)),
            );
            check_size(step, size, limits)?;
        }
    }
    Ok(size)
}

/// Returns the image size after applying `ops` to an image of size `input`.
pub fn output_size(input: (u32, u32), ops: &[GeomOp]) -> (u32, u32) {
    ops.iter().fold(input, |_, op| match *op {
        GeomOp::Resize { w, h }
        | GeomOp::Crop { w, h, .. }
        | GeomOp::Pad { w, h, .. }
        | GeomOp::SaliencyCrop { w, h } => (w, h),
    })
}

/// Returns the canvas size after rotating an image of `size` clockwise by `degrees`: the
/// bounding box of the rotated rectangle, each side rounded half up. Right angles are exact.
pub fn rotated_size(size: (u32, u32), degrees: f64) -> (u32, u32) {
    let degrees = degrees.rem_euclid(360.0);
    if degrees == 0.0 || degrees == 180.0 {
        return size;
    }
    if degrees == 90.0 || degrees == 270.0 {
        return (size.1, size.0);
    }
    let (sin, cos) = degrees.to_radians().sin_cos();
    let (sin, cos) = (sin.abs(), cos.abs());
    let (width, height) = (f64::from(size.0), f64::from(size.1));
    (
        to_pixels(width * cos + height * sin),
        to_pixels(width * sin + height * cos),
    )
}

/// Returns the border width of `border` in pixels. Expressions round half up. Results of 0 or
/// below give no border, and results above 65 535 px are ignored like any oversized URL size.
pub fn border_width(
    border: &Border,
    input: (u32, u32),
    original: (u32, u32),
) -> Result<u32, TransformError> {
    let variables = variables((input.0.max(1), input.1.max(1)), original);
    let width = match &border.width {
        Length::Pixels(width) => f64::from(*width),
        Length::Expr(expr) => eval(expr, &variables, "b", &border.width)?,
    };
    if width > MAX_URL_DIMENSION || width <= 0.0 {
        return Ok(0);
    }
    Ok(round_half_up(width) as u32)
}

fn variables(input: (u32, u32), original: (u32, u32)) -> Variables {
    Variables {
        original: (f64::from(original.0.max(1)), f64::from(original.1.max(1))),
        current: (f64::from(input.0), f64::from(input.1)),
    }
}

/// Rounds half up, with a tolerance of one part in 10⁹ so that a decimal like 0.7 × 1005, which
/// is 703.5 but computes as 703.4999…, still rounds up.
fn round_half_up(value: f64) -> f64 {
    (value + 0.5 + 1e-9 * value.abs().max(1.0)).floor()
}

/// Rounds a side length half up to at least 1 px. The cast saturates at `u32::MAX`.
fn to_pixels(value: f64) -> u32 {
    round_half_up(value).max(1.0) as u32
}

/// Computes `round_half_up(value × numerator / denominator)` exactly in integers, at least 1.
fn scale(value: u32, numerator: u32, denominator: u32) -> u32 {
    let numerator = u128::from(value) * u128::from(numerator);
    let denominator = u128::from(denominator.max(1));
    let rounded = (2 * numerator + denominator) / (2 * denominator);
    u32::try_from(rounded).unwrap_or(u32::MAX).max(1)
}

fn eval(
    expr: &Expr,
    variables: &Variables,
    key: &str,
    value: &dyn std::fmt::Display,
) -> Result<f64, TransformError> {
    expr.eval(variables)
        .map_err(|reason| TransformError::invalid(&format!("{key}-{value}"), reason))
}

/// Resolves `w` and `h` to pixel targets: expressions, fractions, the 65 535 px rule, `ar`,
/// `dpr` and rounding.
fn resolve_target(
    step: &Step,
    input: (u32, u32),
    variables: &Variables,
) -> Result<(Option<u32>, Option<u32>), TransformError> {
    let width = resolve_dimension(step.width.as_ref(), input.0, variables, "w")?;
    let height = resolve_dimension(step.height.as_ref(), input.1, variables, "h")?;
    let width = width.filter(|width| *width <= MAX_URL_DIMENSION);
    let height = height.filter(|height| *height <= MAX_URL_DIMENSION);

    let (mut width, mut height) = match (width, height, &step.aspect_ratio) {
        (Some(width), None, Some(ratio)) => {
            let (ratio_width, ratio_height) = resolve_ratio(ratio, variables)?;
            (Some(width), Some(width * ratio_height / ratio_width))
        }
        (None, Some(height), Some(ratio)) => {
            let (ratio_width, ratio_height) = resolve_ratio(ratio, variables)?;
            (Some(height * ratio_width / ratio_height), Some(height))
        }
        (width, height, _) => (width, height),
    };

    if let Some(dpr) = resolve_dpr(step.dpr.as_ref(), variables)? {
        let in_range = |side: Option<f64>| {
            side.is_none_or(|side| {
                let scaled = round_half_up(side * dpr);
                (1.0..=f64::from(MAX_DPR_SIDE)).contains(&scaled)
            })
        };
        if in_range(width) && in_range(height) {
            width = width.map(|width| width * dpr);
            height = height.map(|height| height * dpr);
        }
    }
    Ok((width.map(to_pixels), height.map(to_pixels)))
}

fn resolve_dimension(
    dimension: Option<&Dimension>,
    input_side: u32,
    variables: &Variables,
    key: &str,
) -> Result<Option<f64>, TransformError> {
    let Some(dimension) = dimension else {
        return Ok(None);
    };
    let value = match dimension {
        Dimension::Pixels(pixels) => *pixels,
        Dimension::Fraction(fraction) => fraction * f64::from(input_side),
        Dimension::Expr(expr) => eval(expr, variables, key, dimension)?,
        // No `Sec-CH-Width` hint reached this step, so it keeps the input width.
        Dimension::Auto => return Ok(None),
    };
    Ok(Some(value))
}

/// Returns the ratio as a (width, height) pair, both positive.
fn resolve_ratio(ratio: &AspectRatio, variables: &Variables) -> Result<(f64, f64), TransformError> {
    match ratio {
        AspectRatio::Ratio { width, height } => Ok((*width, *height)),
        AspectRatio::Expr(expr) => {
            let value = eval(expr, variables, "ar", ratio)?;
            if value <= 0.0 {
                return Err(TransformError::invalid(
                    &format!("ar-{ratio}"),
                    format!("the aspect ratio evaluates to {value}; it must be greater than 0"),
                ));
            }
            Ok((value, 1.0))
        }
    }
}

fn resolve_dpr(dpr: Option<&Dpr>, variables: &Variables) -> Result<Option<f64>, TransformError> {
    match dpr {
        None | Some(Dpr::Auto) => Ok(None),
        Some(Dpr::Value(value)) => Ok(Some(*value)),
        Some(Dpr::Expr(expr)) => {
            let value = eval(expr, variables, "dpr", expr)?;
            if !(0.1..=5.0).contains(&value) {
                return Err(TransformError::invalid(
                    &format!("dpr-{expr}"),
                    format!(
                        "the device pixel ratio evaluates to {value}; it must be from 0.1 to 5"
                    ),
                ));
            }
            Ok(Some(value))
        }
    }
}

/// The one side a step requests when the other is neither given nor derived.
#[derive(Clone, Copy)]
enum Side {
    Width(u32),
    Height(u32),
}

/// Plans a step with one side: scale proportionally, except that `c-at_max` never enlarges and
/// the extract modes, which never scale, keep the input's other side.
fn plan_one_side(
    step: &Step,
    input: (u32, u32),
    side: Side,
    variables: &Variables,
) -> Result<Vec<GeomOp>, TransformError> {
    let (input_width, input_height) = input;
    if matches!(step.fit, Fit::Extract | Fit::PadExtract) {
        let target = match side {
            Side::Width(width) => (width, input_height),
            Side::Height(height) => (input_width, height),
        };
        return plan_both_sides(step, input, target, variables);
    }
    let target = match side {
        Side::Width(width) => (width, scale(input_height, width, input_width)),
        Side::Height(height) => (scale(input_width, height, input_height), height),
    };
    let enlarges = match side {
        Side::Width(width) => width > input_width,
        Side::Height(height) => height > input_height,
    };
    if step.fit == Fit::AtMax && enlarges {
        return Ok(Vec::new());
    }
    Ok(resize_unless_same(input, target))
}

fn resize_unless_same(input: (u32, u32), target: (u32, u32)) -> Vec<GeomOp> {
    if input == target {
        Vec::new()
    } else {
        vec![GeomOp::Resize {
            w: target.0,
            h: target.1,
        }]
    }
}

/// The alignment of content or of a window along one axis.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Start,
    Center,
    End,
}

impl Align {
    /// Returns the offset into `free` pixels of slack. An odd slack puts the extra pixel after
    /// the content, on the right or bottom.
    fn offset(self, free: u32) -> u32 {
        match self {
            Align::Start => 0,
            Align::Center => free / 2,
            Align::End => free,
        }
    }
}

fn horizontal_align(focus: Focus) -> Align {
    match focus {
        Focus::Left | Focus::TopLeft | Focus::BottomLeft => Align::Start,
        Focus::Right | Focus::TopRight | Focus::BottomRight => Align::End,
        _ => Align::Center,
    }
}

fn vertical_align(focus: Focus) -> Align {
    match focus {
        Focus::Top | Focus::TopLeft | Focus::TopRight => Align::Start,
        Focus::Bottom | Focus::BottomLeft | Focus::BottomRight => Align::End,
        _ => Align::Center,
    }
}

/// Plans a step whose target is `target` = (w, h) on an input of `input` = (W, H).
fn plan_both_sides(
    step: &Step,
    input: (u32, u32),
    target: (u32, u32),
    variables: &Variables,
) -> Result<Vec<GeomOp>, TransformError> {
    let (input_width, input_height) = input;
    let (width, height) = target;
    // sx = w/W >= sy = h/H, compared without division.
    let width_scale_larger = u128::from(width) * u128::from(input_height)
        >= u128::from(height) * u128::from(input_width);
    let by_width = (width, scale(input_height, width, input_width));
    let by_height = (scale(input_width, height, input_height), height);
    // `cover` scales by max(sx, sy) to fill the box, and `contain` by min(sx, sy) to fit in it.
    let (cover, contain) = if width_scale_larger {
        (by_width, by_height)
    } else {
        (by_height, by_width)
    };

    let ops = match step.fit {
        Fit::MaintainRatio => {
            let mut ops = resize_unless_same(input, cover);
            if cover != target {
                ops.push(window_op(step.focus, cover, target));
            }
            ops
        }
        Fit::Force => resize_unless_same(input, target),
        Fit::AtMax if width > input_width && height > input_height => Vec::new(),
        Fit::AtMax | Fit::AtMaxEnlarge => resize_unless_same(input, contain),
        Fit::AtLeast => resize_unless_same(input, cover),
        Fit::PadResize => {
            let mut ops = resize_unless_same(input, contain);
            if contain != target {
                ops.push(GeomOp::Pad {
                    w: width,
                    h: height,
                    x: horizontal_align(step.focus).offset(width - contain.0),
                    y: vertical_align(step.focus).offset(height - contain.1),
                });
            }
            ops
        }
        Fit::Extract | Fit::PadExtract => plan_extract(step, input, target, variables)?,
    };
    Ok(ops)
}

/// Returns the operation that cuts `target` out of an image of `size` at `focus`.
fn window_op(focus: Focus, size: (u32, u32), target: (u32, u32)) -> GeomOp {
    if focus == Focus::Auto {
        return GeomOp::SaliencyCrop {
            w: target.0,
            h: target.1,
        };
    }
    GeomOp::Crop {
        x: horizontal_align(focus).offset(size.0 - target.0),
        y: vertical_align(focus).offset(size.1 - target.1),
        w: target.0,
        h: target.1,
    }
}

/// One axis of an extract: the target and input lengths and the URL parameters that place it.
struct ExtractAxis<'a> {
    target: u32,
    source: u32,
    corner: Option<&'a Length>,
    center: Option<&'a Length>,
    align: Align,
    names: AxisNames,
}

/// The URL keys and words of one axis, for messages.
#[derive(Clone, Copy)]
struct AxisNames {
    side_key: &'static str,
    corner_key: &'static str,
    center_key: &'static str,
    extent: &'static str,
}

const HORIZONTAL: AxisNames = AxisNames {
    side_key: "w",
    corner_key: "x",
    center_key: "xc",
    extent: "wide",
};
const VERTICAL: AxisNames = AxisNames {
    side_key: "h",
    corner_key: "y",
    center_key: "yc",
    extent: "tall",
};

/// The plan for one axis of an extract.
enum AxisPlan {
    /// Keep `length` pixels from `start`.
    Cut { start: u32, length: u32 },
    /// Keep the whole axis and pad it to the target with the content at `offset`.
    Pad { offset: u32 },
}

/// Plans `cm-extract` and `cm-pad_extract`: no scaling, a window of the target size, and for
/// `pad_extract` padding on each axis where the target exceeds the input.
fn plan_extract(
    step: &Step,
    input: (u32, u32),
    target: (u32, u32),
    variables: &Variables,
) -> Result<Vec<GeomOp>, TransformError> {
    let horizontal = ExtractAxis {
        target: target.0,
        source: input.0,
        corner: step.x.as_ref(),
        center: step.x_center.as_ref(),
        align: horizontal_align(step.focus),
        names: HORIZONTAL,
    };
    let vertical = ExtractAxis {
        target: target.1,
        source: input.1,
        corner: step.y.as_ref(),
        center: step.y_center.as_ref(),
        align: vertical_align(step.focus),
        names: VERTICAL,
    };
    let horizontal = plan_axis(step, &horizontal, variables)?;
    let vertical = plan_axis(step, &vertical, variables)?;

    let mut ops = Vec::new();
    let (cut_x, cut_width) = match horizontal {
        AxisPlan::Cut { start, length } => (start, length),
        AxisPlan::Pad { .. } => (0, input.0),
    };
    let (cut_y, cut_height) = match vertical {
        AxisPlan::Cut { start, length } => (start, length),
        AxisPlan::Pad { .. } => (0, input.1),
    };
    if (cut_width, cut_height) != input {
        if step.focus == Focus::Auto {
            ops.push(GeomOp::SaliencyCrop {
                w: cut_width,
                h: cut_height,
            });
        } else {
            ops.push(GeomOp::Crop {
                x: cut_x,
                y: cut_y,
                w: cut_width,
                h: cut_height,
            });
        }
    }
    let pad_x = match horizontal {
        AxisPlan::Pad { offset } => Some(offset),
        AxisPlan::Cut { .. } => None,
    };
    let pad_y = match vertical {
        AxisPlan::Pad { offset } => Some(offset),
        AxisPlan::Cut { .. } => None,
    };
    if pad_x.is_some() || pad_y.is_some() {
        ops.push(GeomOp::Pad {
            w: target.0,
            h: target.1,
            x: pad_x.unwrap_or(0),
            y: pad_y.unwrap_or(0),
        });
    }
    Ok(ops)
}

fn plan_axis(
    step: &Step,
    axis: &ExtractAxis<'_>,
    variables: &Variables,
) -> Result<AxisPlan, TransformError> {
    let names = axis.names;
    if axis.target > axis.source {
        let side_token = side_token(step, names.side_key, axis.target);
        if step.fit == Fit::Extract {
            return Err(TransformError::invalid(
                &side_token,
                format!(
                    "cm-extract needs a window inside the image, but {} px is larger than the \
                     {} px {} image; use cm-pad_extract to pad instead",
                    axis.target, axis.source, names.extent
                ),
            ));
        }
        if let Some((key, value)) = axis
            .corner
            .map(|value| (names.corner_key, value))
            .or(axis.center.map(|value| (names.center_key, value)))
        {
            return Err(TransformError::invalid(
                &format!("{key}-{value}"),
                format!(
                    "the {} px window is larger than the {} px {} image, so cm-pad_extract pads \
                     this axis and `{key}` cannot place it; remove `{key}` and use fo",
                    axis.target, axis.source, names.extent
                ),
            ));
        }
        return Ok(AxisPlan::Pad {
            offset: axis.align.offset(axis.target - axis.source),
        });
    }

    let last_start = axis.source - axis.target;
    let start = if let Some(corner) = axis.corner {
        let start = resolve_coordinate(corner, variables, names.corner_key)?;
        if start < 0 || start > i64::from(last_start) {
            return Err(TransformError::invalid(
                &format!("{}-{corner}", names.corner_key),
                format!(
                    "the {} px window starting at {start} leaves the {} px {} image; keep `{}` \
                     from 0 to {last_start}",
                    axis.target, axis.source, names.extent, names.corner_key
                ),
            ));
        }
        start as u32
    } else if let Some(center) = axis.center {
        let value = resolve_coordinate(center, variables, names.center_key)?;
        let half = i64::from(axis.target / 2);
        let start = value - half;
        if start < 0 || start > i64::from(last_start) {
            return Err(TransformError::invalid(
                &format!("{}-{center}", names.center_key),
                format!(
                    "the {} px window centred at {value} would start at {start} and leave the {} \
                     px {} image; keep `{}` from {half} to {}",
                    axis.target,
                    axis.source,
                    names.extent,
                    names.center_key,
                    i64::from(last_start) + half
                ),
            ));
        }
        start as u32
    } else {
        axis.align.offset(last_start)
    };
    Ok(AxisPlan::Cut {
        start,
        length: axis.target,
    })
}

/// Returns the URL token of a side for messages, or `key-pixels` when the step lacks that side.
fn side_token(step: &Step, key: &str, pixels: u32) -> String {
    let dimension = if key == "w" {
        &step.width
    } else {
        &step.height
    };
    match dimension {
        Some(dimension) => format!("{key}-{dimension}"),
        None => format!("{key}-{pixels}"),
    }
}

fn resolve_coordinate(
    length: &Length,
    variables: &Variables,
    key: &str,
) -> Result<i64, TransformError> {
    match length {
        Length::Pixels(pixels) => Ok(i64::from(*pixels)),
        Length::Expr(expr) => {
            let value = eval(expr, variables, key, length)?;
            // Saturating cast: absurd values stay absurd and fail the bounds check.
            Ok(round_half_up(value) as i64)
        }
    }
}

fn check_limits(
    step: &Step,
    input: (u32, u32),
    ops: &[GeomOp],
    limits: &Limits,
) -> Result<(), TransformError> {
    let mut size = input;
    for op in ops {
        size = output_size(size, std::slice::from_ref(op));
        if matches!(op, GeomOp::Resize { .. } | GeomOp::Pad { .. }) {
            check_size(step, size, limits)?;
        }
    }
    Ok(())
}

fn check_size(step: &Step, size: (u32, u32), limits: &Limits) -> Result<(), TransformError> {
    let wide = (u64::from(size.0), u64::from(size.1));
    if size.0 > limits.max_output_side || size.1 > limits.max_output_side {
        return Err(TransformError::limit_exceeded(
            &step.canonical(),
            "max_output_side",
            wide,
            u64::from(limits.max_output_side),
        ));
    }
    if wide.0 * wide.1 > limits.max_output_pixels {
        return Err(TransformError::limit_exceeded(
            &step.canonical(),
            "max_output_pixels",
            wide,
            limits.max_output_pixels,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::parse::parse_chain;
    use super::*;

    const WIDE: (u32, u32) = (1000, 500);
    const PLANT: (u32, u32) = (640, 865);
    const SQUARE: (u32, u32) = (600, 600);

    fn resize(w: u32, h: u32) -> GeomOp {
        GeomOp::Resize { w, h }
    }

    fn crop(x: u32, y: u32, w: u32, h: u32) -> GeomOp {
        GeomOp::Crop { x, y, w, h }
    }

    fn pad(w: u32, h: u32, x: u32, y: u32) -> GeomOp {
        GeomOp::Pad { w, h, x, y }
    }

    fn first_step(chain: &str) -> Step {
        let plan = parse_chain(chain, &BTreeMap::new()).unwrap_or_else(|e| panic!("{chain}: {e}"));
        plan.steps()[0].clone()
    }

    fn plan(chain: &str, input: (u32, u32)) -> Result<Vec<GeomOp>, TransformError> {
        plan_geometry(&first_step(chain), input, input, &Limits::default())
    }

    /// Runs every step of `chain` and returns each step's output size.
    fn chain_sizes(chain: &str, original: (u32, u32)) -> Vec<(u32, u32)> {
        let plan = parse_chain(chain, &BTreeMap::new()).unwrap_or_else(|e| panic!("{chain}: {e}"));
        let mut size = original;
        let mut sizes = Vec::new();
        for step in plan.steps() {
            size = step_output_size(step, size, original, &Limits::default())
                .unwrap_or_else(|e| panic!("{chain}: {e}"));
            sizes.push(size);
        }
        sizes
    }

    #[test]
    fn documented_numbers() {
        // Chain, input size, expected operations, expected output size.
        type Case = (&'static str, (u32, u32), Vec<GeomOp>, (u32, u32));
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            // Source 1000x500, w-300,h-300 (sx = 0.3, sy = 0.6).
            ("w-300,h-300", WIDE, vec![resize(600, 300), crop(150, 0, 300, 300)], (300, 300)),
            ("w-300,h-300,fo-left", WIDE, vec![resize(600, 300), crop(0, 0, 300, 300)], (300, 300)),
            ("w-300,h-300,fo-right", WIDE, vec![resize(600, 300), crop(300, 0, 300, 300)], (300, 300)),
            ("w-300,h-300,c-force", WIDE, vec![resize(300, 300)], (300, 300)),
            ("w-300,h-300,c-at_max", WIDE, vec![resize(300, 150)], (300, 150)),
            ("w-300,h-300,c-at_max_enlarge", WIDE, vec![resize(300, 150)], (300, 150)),
            ("w-300,h-300,c-at_least", WIDE, vec![resize(600, 300)], (600, 300)),
            ("w-300,h-300,cm-pad_resize", WIDE, vec![resize(300, 150), pad(300, 300, 0, 75)], (300, 300)),
            ("w-300,h-300,cm-pad_resize,fo-top", WIDE, vec![resize(300, 150), pad(300, 300, 0, 0)], (300, 300)),
            ("w-300,h-300,cm-extract", WIDE, vec![crop(350, 100, 300, 300)], (300, 300)),
            ("w-300,h-300,cm-extract,x-100,y-50", WIDE, vec![crop(100, 50, 300, 300)], (300, 300)),
            ("w-300,h-300,cm-extract,xc-200,yc-250", WIDE, vec![crop(50, 100, 300, 300)], (300, 300)),
            ("w-300,h-300,cm-extract,fo-bottom_right", WIDE, vec![crop(700, 200, 300, 300)], (300, 300)),
            ("w-300,h-300,cm-pad_extract", WIDE, vec![crop(350, 100, 300, 300)], (300, 300)),
            ("w-1200,h-600,cm-pad_extract", WIDE, vec![pad(1200, 600, 100, 50)], (1200, 600)),
            ("w-1200,h-300,cm-pad_extract", WIDE, vec![crop(0, 100, 1000, 300), pad(1200, 300, 100, 0)], (1200, 300)),
            ("w-300", WIDE, vec![resize(300, 150)], (300, 150)),
            ("h-300", WIDE, vec![resize(600, 300)], (600, 300)),
            ("w-0.25", WIDE, vec![resize(250, 125)], (250, 125)),
            ("w-iw_div_4", WIDE, vec![resize(250, 125)], (250, 125)),
            ("ar-1-1,w-300", WIDE, vec![resize(600, 300), crop(150, 0, 300, 300)], (300, 300)),
            ("w-300,h-300,dpr-2", WIDE, vec![resize(1200, 600), crop(300, 0, 600, 600)], (600, 600)),
            ("w-3000,dpr-2", WIDE, vec![resize(3000, 1500)], (3000, 1500)),
            // Upscaling, same source, w-2000,h-2000.
            ("w-2000,h-2000", WIDE, vec![resize(4000, 2000), crop(1000, 0, 2000, 2000)], (2000, 2000)),
            ("w-2000,h-2000,c-at_max", WIDE, vec![], (1000, 500)),
            ("w-2000,h-2000,c-at_max_enlarge", WIDE, vec![resize(2000, 1000)], (2000, 1000)),
            ("w-2000,h-2000,c-at_least", WIDE, vec![resize(4000, 2000)], (4000, 2000)),
            ("w-2000,h-2000,cm-pad_resize", WIDE, vec![resize(2000, 1000), pad(2000, 2000, 0, 500)], (2000, 2000)),
            ("w-2000,h-2000,c-force", WIDE, vec![resize(2000, 2000)], (2000, 2000)),
            // ImageKit's 640x865 sample image and a 600x600 square.
            ("w-300,h-200,c-at_max", PLANT, vec![resize(148, 200)], (148, 200)),
            ("w-300,h-200,c-at_least", PLANT, vec![resize(300, 405)], (300, 405)),
            ("w-850,h-1000,c-at_max_enlarge", PLANT, vec![resize(740, 1000)], (740, 1000)),
            ("w-300,h-200,cm-pad_resize", PLANT, vec![resize(148, 200), pad(300, 200, 76, 0)], (300, 200)),
            ("w-300,h-200", PLANT, vec![resize(300, 405), crop(0, 102, 300, 200)], (300, 200)),
            ("w-700,h-700,cm-pad_extract", SQUARE, vec![pad(700, 700, 50, 50)], (700, 700)),
            ("ar-4-3,w-400", SQUARE, vec![resize(400, 400), crop(0, 50, 400, 300)], (400, 300)),
        ];
        for (chain, input, expected_ops, expected_size) in cases {
            let ops = plan(chain, input).unwrap_or_else(|e| panic!("{chain}: {e}"));
            assert_eq!(ops, expected_ops, "{chain} on {input:?}");
            assert_eq!(
                output_size(input, &ops),
                expected_size,
                "{chain} on {input:?}"
            );
        }
    }

    #[test]
    fn extract_window_outside_image_fails() {
        let error = plan("w-300,h-300,cm-extract,xc-100,yc-100", WIDE).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        let message = error.to_string();
        assert!(message.contains("xc-100"), "{message}");
        assert!(message.contains("-50"), "{message}");

        let cases = [
            ("w-300,h-300,cm-extract,x-800", "x-800"),
            ("w-300,h-300,cm-extract,y-201", "y-201"),
            ("w-300,h-300,cm-extract,yc-400", "yc-400"),
            ("w-300,h-300,cm-extract,x-iw", "x-iw"),
            ("w-1200,h-300,cm-extract", "w-1200"),
            ("w-1200,h-300,cm-pad_extract,x-0", "x-0"),
        ];
        for (chain, token) in cases {
            let error = plan(chain, WIDE).expect_err(chain);
            assert_eq!(error.code(), "invalid_transformation", "{chain}");
            let message = error.to_string();
            assert!(message.contains(token), "{chain}: {message}");
        }
    }

    #[test]
    fn extract_window_at_edges_fits() {
        assert_eq!(
            plan("w-300,h-300,cm-extract,x-700,y-200", WIDE).unwrap(),
            vec![crop(700, 200, 300, 300)]
        );
        assert_eq!(
            plan("w-300,h-300,cm-extract,xc-850,yc-150", WIDE).unwrap(),
            vec![crop(700, 0, 300, 300)]
        );
        assert_eq!(
            plan("w-1000,h-500,cm-extract,x-0", WIDE).unwrap(),
            Vec::<GeomOp>::new()
        );
    }

    #[test]
    fn extract_with_one_side_keeps_other() {
        assert_eq!(
            plan("w-300,cm-extract,fo-left", WIDE).unwrap(),
            vec![crop(0, 0, 300, 500)]
        );
        assert_eq!(
            plan("h-600,cm-pad_extract", WIDE).unwrap(),
            vec![pad(1000, 600, 0, 50)]
        );
    }

    #[test]
    fn fo_auto_asks_for_saliency_window() {
        assert_eq!(
            plan("w-300,h-300,fo-auto", WIDE).unwrap(),
            vec![resize(600, 300), GeomOp::SaliencyCrop { w: 300, h: 300 }]
        );
        assert_eq!(
            plan("w-300,h-300,cm-extract,fo-auto", WIDE).unwrap(),
            vec![GeomOp::SaliencyCrop { w: 300, h: 300 }]
        );
        assert_eq!(
            plan("w-1200,h-300,cm-pad_extract,fo-auto", WIDE).unwrap(),
            vec![
                GeomOp::SaliencyCrop { w: 1000, h: 300 },
                pad(1200, 300, 100, 0)
            ]
        );
        assert_eq!(
            plan("w-300,h-300,cm-pad_resize,fo-auto", WIDE).unwrap(),
            vec![resize(300, 150), pad(300, 300, 0, 75)]
        );
    }

    #[test]
    fn at_max_with_one_side_never_enlarges() {
        assert_eq!(plan("w-2000,c-at_max", WIDE).unwrap(), Vec::<GeomOp>::new());
        assert_eq!(plan("h-501,c-at_max", WIDE).unwrap(), Vec::<GeomOp>::new());
        assert_eq!(
            plan("w-500,c-at_max", WIDE).unwrap(),
            vec![resize(500, 250)]
        );
        assert_eq!(plan("w-2000", WIDE).unwrap(), vec![resize(2000, 1000)]);
    }

    #[test]
    fn pad_resize_puts_odd_pixel_after_content() {
        // Content 301x150 on a 301x301 canvas leaves 151 rows: 75 above, 76 below.
        assert_eq!(
            plan("w-301,h-301,cm-pad_resize", (602, 300)).unwrap(),
            vec![resize(301, 150), pad(301, 301, 0, 75)]
        );
        assert_eq!(
            plan("w-301,h-301,cm-pad_resize,fo-bottom_right", (602, 300)).unwrap(),
            vec![resize(301, 150), pad(301, 301, 0, 151)]
        );
    }

    #[test]
    fn sizes_round_half_up_and_stay_positive() {
        // 0.25 x 1002 = 250.5 and 0.7 x 1005 = 703.5 round up.
        assert_eq!(plan("w-0.25", (1002, 100)).unwrap(), vec![resize(251, 25)]);
        assert_eq!(plan("w-0.7", (1005, 1005)).unwrap(), vec![resize(704, 704)]);
        assert_eq!(plan("w-1.5", (10, 10)).unwrap(), vec![resize(2, 2)]);
        assert_eq!(plan("w-1", (1000, 10)).unwrap(), vec![resize(1, 1)]);
        assert_eq!(plan("w-iw_sub_5000", WIDE).unwrap(), vec![resize(1, 1)]);
        assert_eq!(plan("h-0.001", WIDE).unwrap(), vec![resize(2, 1)]);
    }

    #[test]
    fn oversized_url_values_are_ignored() {
        assert_eq!(plan("w-70000", WIDE).unwrap(), Vec::<GeomOp>::new());
        assert_eq!(plan("w-70000,h-250", WIDE).unwrap(), vec![resize(500, 250)]);
        assert_eq!(plan("w-iw_mul_100", WIDE).unwrap(), Vec::<GeomOp>::new());
        // 65 535 px itself is a real request, so it meets the output limit instead.
        let error = plan("w-65535,h-1,c-force", WIDE).unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
    }

    #[test]
    fn dpr_rules() {
        assert_eq!(plan("w-300,dpr-1.5", WIDE).unwrap(), vec![resize(450, 225)]);
        assert_eq!(plan("w-0.5,dpr-2", WIDE).unwrap(), Vec::<GeomOp>::new());
        assert_eq!(
            plan("w-2600,dpr-2", WIDE).unwrap(),
            vec![resize(2600, 1300)]
        );
        assert_eq!(
            plan("w-2500,dpr-2", WIDE).unwrap(),
            vec![resize(5000, 2500)]
        );
        assert_eq!(plan("w-1,dpr-0.1", WIDE).unwrap(), vec![resize(1, 1)]);
        assert_eq!(
            plan("w-300,dpr-auto", WIDE).unwrap(),
            vec![resize(300, 150)]
        );
        assert_eq!(plan("w-300,dpr-iar", WIDE).unwrap(), vec![resize(600, 300)]);
        let error = plan("w-300,dpr-iw", WIDE).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        assert!(error.to_string().contains("dpr-iw"), "{error}");
    }

    #[test]
    fn aspect_ratio_derives_missing_side() {
        assert_eq!(plan("h-300,ar-2-1", WIDE).unwrap(), vec![resize(600, 300)]);
        assert_eq!(
            plan("w-300,ar-iar_div_2", WIDE).unwrap(),
            vec![resize(600, 300), crop(150, 0, 300, 300)]
        );
        assert_eq!(plan("w-auto,ar-1-1", WIDE).unwrap(), Vec::<GeomOp>::new());
        let error = plan("w-300,ar-iar_sub_2", WIDE).unwrap_err();
        assert!(error.to_string().contains("ar-iar_sub_2"), "{error}");
    }

    #[test]
    fn expressions_read_original_and_current() {
        let step = first_step("w-cw_div_2,h-ih_div_10");
        let ops = plan_geometry(&step, (400, 300), WIDE, &Limits::default()).unwrap();
        assert_eq!(ops, vec![resize(200, 150), crop(0, 50, 200, 50)]);
        let error = plan("w-iw_div_0", WIDE).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        assert!(error.to_string().contains("w-iw_div_0"), "{error}");
    }

    #[test]
    fn limits_reject_large_outputs() {
        let error = plan("w-20000", WIDE).unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
        let message = error.to_string();
        assert!(message.contains("w-20000"), "{message}");
        assert!(message.contains("max_output_side"), "{message}");

        let error = plan("w-12000,h-12000,c-force", WIDE).unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
        assert!(error.to_string().contains("max_output_pixels"), "{error}");

        // The 16000x1 output fits, but the 16000x8000 intermediate scale does not.
        let error = plan("w-16000,h-1", WIDE).unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
        assert!(error.to_string().contains("16000x8000"), "{error}");

        let small = Limits {
            max_output_pixels: 1_000_000,
            max_output_side: 2_000,
        };
        let step = first_step("w-1200,h-1000,cm-pad_extract");
        let error = plan_geometry(&step, WIDE, WIDE, &small).unwrap_err();
        assert!(error.to_string().contains("max_output_pixels"), "{error}");
        let step = first_step("w-1000,h-1000,cm-pad_extract");
        assert!(plan_geometry(&step, WIDE, WIDE, &small).is_ok());
    }

    #[test]
    fn chain_sizes_follow_steps() {
        assert_eq!(
            chain_sizes("w-400,h-300:rt-90", WIDE),
            vec![(400, 300), (300, 400)]
        );
        assert_eq!(
            chain_sizes("rt-90:w-400,h-300", WIDE),
            vec![(500, 1000), (400, 300)]
        );
        assert_eq!(
            chain_sizes(
                "w-400,h-400:w-500,h-400,cm-pad_resize,fo-right,bg-000000",
                WIDE
            ),
            vec![(400, 400), (500, 400)]
        );
        assert_eq!(
            chain_sizes("rt-N90:rt-180", WIDE),
            vec![(500, 1000), (500, 1000)]
        );
        assert_eq!(
            chain_sizes("w-0.5:w-0.5", WIDE),
            vec![(500, 250), (250, 125)]
        );
        assert_eq!(
            chain_sizes("w-300:w-cw_add_iw", WIDE),
            vec![(300, 150), (1300, 650)]
        );
        assert_eq!(
            chain_sizes("b-5_red:w-300", WIDE),
            vec![(1010, 510), (300, 151)]
        );
        assert_eq!(chain_sizes("w-100,b-ch_div_10_red", WIDE), vec![(200, 150)]);
    }

    #[test]
    fn second_step_pads_first_output() {
        let plan = parse_chain(
            "w-300,h-200:w-400,h-400,cm-pad_resize,fo-right",
            &BTreeMap::new(),
        )
        .unwrap();
        let first = step_output_size(&plan.steps()[0], PLANT, PLANT, &Limits::default()).unwrap();
        assert_eq!(first, (300, 200));
        let ops = plan_geometry(&plan.steps()[1], first, PLANT, &Limits::default()).unwrap();
        assert_eq!(ops, vec![resize(400, 267), pad(400, 400, 0, 66)]);
    }

    #[test]
    fn rotation_sizes() {
        assert_eq!(rotated_size((400, 300), 0.0), (400, 300));
        assert_eq!(rotated_size((400, 300), 90.0), (300, 400));
        assert_eq!(rotated_size((400, 300), 180.0), (400, 300));
        assert_eq!(rotated_size((400, 300), 270.0), (300, 400));
        assert_eq!(rotated_size((400, 300), -90.0), (300, 400));
        // 400 cos 45 + 300 sin 45 = 494.97.
        assert_eq!(rotated_size((400, 300), 45.0), (495, 495));
        // 400 cos 30 + 300 sin 30 = 496.41, 400 sin 30 + 300 cos 30 = 459.81.
        assert_eq!(rotated_size((400, 300), 30.0), (496, 460));
        let error = step_output_size(
            &first_step("rt-45"),
            (12000, 12000),
            (12000, 12000),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
    }

    #[test]
    fn border_widths() {
        let step = first_step("b-5_red");
        let border = step.border.as_ref().unwrap();
        assert_eq!(border_width(border, WIDE, WIDE).unwrap(), 5);
        let step = first_step("b-iw_sub_2000_red");
        assert_eq!(
            border_width(step.border.as_ref().unwrap(), WIDE, WIDE).unwrap(),
            0
        );
        let step = first_step("b-70000_red");
        assert_eq!(
            border_width(step.border.as_ref().unwrap(), WIDE, WIDE).unwrap(),
            0
        );
        let error = step_output_size(&first_step("b-8000_red"), WIDE, WIDE, &Limits::default())
            .unwrap_err();
        assert_eq!(error.code(), "limit_exceeded");
    }

    #[test]
    fn steps_without_size_plan_nothing() {
        for chain in ["rt-90", "e-grayscale", "bl-5", "w-auto", "t-true"] {
            assert_eq!(plan(chain, WIDE).unwrap(), Vec::<GeomOp>::new(), "{chain}");
        }
    }

    #[test]
    fn same_size_requests_plan_nothing() {
        for chain in [
            "w-1000",
            "h-500",
            "w-1000,h-500",
            "w-1000,h-500,cm-extract",
            "w-1000,h-500,cm-pad_resize",
        ] {
            assert_eq!(plan(chain, WIDE).unwrap(), Vec::<GeomOp>::new(), "{chain}");
        }
    }

    fn geometry_param() -> impl Strategy<Value = String> {
        let patterns = [
            "w-([1-9][0-9]{0,3}|0\\.[0-9]{1,2}|cw_div_[1-9]|iw_sub_[0-9]{1,4})",
            "h-([1-9][0-9]{0,3}|0\\.[0-9]{1,2}|ch_mul_0\\.[1-9])",
            "ar-[1-9]-[1-9]",
            "c-(maintain_ratio|force|at_max|at_max_enlarge|at_least)",
            "cm-(pad_resize|extract|pad_extract)",
            "fo-(center|top|bottom|left|right|top_left|top_right|bottom_left|bottom_right|auto)",
            "(x|y|xc|yc)-[0-9]{1,4}",
            "dpr-[1-3](\\.[0-9])?",
            "rt-N?[0-9]{1,3}",
            "b-[0-9]{1,2}_red",
        ];
        let strategies: Vec<BoxedStrategy<String>> = patterns
            .into_iter()
            .map(|pattern| proptest::string::string_regex(pattern).unwrap().boxed())
            .collect();
        proptest::strategy::Union::new(strategies)
    }

    /// Checks that every operation fits the image it applies to.
    fn check_ops(input: (u32, u32), ops: &[GeomOp]) -> Result<(), TestCaseError> {
        let mut size = input;
        for op in ops {
            match *op {
                GeomOp::Resize { w, h } => prop_assert!(w >= 1 && h >= 1, "{op:?}"),
                GeomOp::Crop { x, y, w, h } => {
                    prop_assert!(w >= 1 && h >= 1, "{op:?}");
                    prop_assert!(x + w <= size.0 && y + h <= size.1, "{op:?} on {size:?}");
                }
                GeomOp::Pad { w, h, x, y } => {
                    prop_assert!(x + size.0 <= w && y + size.1 <= h, "{op:?} on {size:?}");
                }
                GeomOp::SaliencyCrop { w, h } => {
                    prop_assert!(
                        w >= 1 && h >= 1 && w <= size.0 && h <= size.1,
                        "{op:?} on {size:?}"
                    );
                }
            }
            size = output_size(size, std::slice::from_ref(op));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn ops_stay_inside_images(
            params in proptest::collection::vec(geometry_param(), 1..6),
            width in 1u32..3000,
            height in 1u32..3000,
        ) {
            let chain = params.join(",");
            if let Ok(plan) = parse_chain(&chain, &BTreeMap::new()) {
                for step in plan.steps() {
                    if let Ok(ops) = plan_geometry(step, (width, height), (width, height), &Limits::default()) {
                        check_ops((width, height), &ops)?;
                    }
                    let _ = step_output_size(step, (width, height), (width, height), &Limits::default());
                }
            }
        }
    }
}
