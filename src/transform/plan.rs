//! The typed form of a transformation chain and its canonical text.
//!
//! A [`Plan`] is an ordered list of [`Step`]s plus the output options that apply to the final
//! encode (`f q pr lo md cp`), the `orig` switch and the `di-` default image. Parsing lives in
//! `parse.rs` and sizes in `geometry.rs`. This file contains the types and [`Plan::canonical`],
//! the cache-key text, which follows these rules:
//!
//! - Parameters inside a step follow one fixed order.
//! - Every value is written in one normal form: numbers in shortest decimal form, colours as
//!   uppercase hex, `N` for negative numbers, rotations reduced to 0–360.
//! - The crop strategy is always written when a step has a size.
//! - Parameters documented as ignored are dropped: `ar` next to both `w` and `h`, `fo` where
//!   nothing is cropped or padded, and everything beside `orig-true`.
//! - Output options and `di-` move to the end of the last step.
//!
//! Canonical text parses back to the same plan.

use std::fmt;

use super::color::Color;
use super::expr::Expr;

/// A requested width or height.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// A literal of at least 1, in pixels. Fractional pixels round half up.
    Pixels(f64),
    /// A literal strictly between 0 and 1: that share of the step's input side.
    Fraction(f64),
    /// An expression whose result is taken as pixels.
    Expr(Expr),
    /// `w-auto`: the `Sec-CH-Width` client hint, filled in by [`Plan::apply_client_hints`]. A step
    /// still holding `Auto` at geometry time had no hint and keeps the input width.
    Auto,
}

/// An `ar` value: a `W-H` pair or an expression giving width / height.
#[derive(Debug, Clone, PartialEq)]
pub enum AspectRatio {
    Ratio { width: f64, height: f64 },
    Expr(Expr),
}

/// A pixel length that may be an expression: extract coordinates and border width.
#[derive(Debug, Clone, PartialEq)]
pub enum Length {
    Pixels(u32),
    Expr(Expr),
}

/// A `dpr` value.
#[derive(Debug, Clone, PartialEq)]
pub enum Dpr {
    /// A literal from 0.1 to 5.
    Value(f64),
    /// An expression. A result outside 0.1–5 fails at geometry time.
    Expr(Expr),
    /// `dpr-auto`: the `Sec-CH-DPR` client hint, filled in by [`Plan::apply_client_hints`]. A step
    /// still holding `Auto` at geometry time had no hint and uses 1.
    Auto,
}

/// The strategy that fits the image to the requested size: one of `c-*` or `cm-*`. A `cm` value
/// wins when a step has both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// `c-maintain_ratio`: scale to cover the box, then cut the excess at the focus.
    #[default]
    MaintainRatio,
    /// `c-force`: scale each axis to the box, distorting the aspect ratio.
    Force,
    /// `c-at_max`: scale to fit inside the box, never enlarging.
    AtMax,
    /// `c-at_max_enlarge`: scale to fit inside the box, enlarging when needed.
    AtMaxEnlarge,
    /// `c-at_least`: scale to cover the box, without cutting.
    AtLeast,
    /// `cm-pad_resize`: scale to fit inside the box, then pad to the box.
    PadResize,
    /// `cm-extract`: cut a window of the box size without scaling.
    Extract,
    /// `cm-pad_extract`: per axis, cut like `Extract` or pad where the box is larger.
    PadExtract,
}

/// The anchor of a crop window or of padded content: `fo-*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    Center,
    Top,
    Bottom,
    Left,
    Right,
    TopLeft,
    TopRight,
    BottomLeft,
    BottomRight,
    /// `fo-auto`: the pixel stage picks the crop window by saliency. Padding treats it as centred.
    Auto,
}

/// A `t` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    /// `t-false`: no trimming.
    Off,
    /// Trim borders whose pixels differ from the corner colour by at most this many levels on the
    /// 0–255 scale. `t-true` means 10.
    Threshold(u8),
}

/// An `rt` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rotation {
    /// `rt-auto`: apply the EXIF orientation before resizing.
    Auto,
    /// Clockwise degrees in `[0, 360)`, applied after resizing and flipping.
    Degrees(f64),
}

/// An `fl` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flip {
    Horizontal,
    Vertical,
    Both,
}

/// An `r` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Radius {
    /// `r-max`: a circle or ellipse touching every side.
    Max,
    /// Pixel radii for the top-left, top-right, bottom-right and bottom-left corners.
    Corners([u32; 4]),
}

/// A `b` value: a solid border that grows the canvas by `width` on every side.
#[derive(Debug, Clone, PartialEq)]
pub struct Border {
    pub width: Length,
    pub color: Color,
}

/// A `bg` value: the fill for padding, rotation corners and rounded corners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Background {
    Color(Color),
    /// `bg-blurred[_SIGMA|_auto][_BRIGHTNESS]`: a blurred copy of the image, only with
    /// `cm-pad_resize`. `sigma` is `None` for `auto`, and `brightness` is from -255 to 255.
    Blurred {
        sigma: Option<u8>,
        brightness: i16,
    },
    /// `bg-dominant`: the image's dominant colour.
    Dominant,
    /// `bg-gradient_dominant[_2|_4]`: a gradient of the 2 or 4 dominant colours.
    GradientDominant {
        colors: u8,
    },
}

/// An `e-sharpen` value. `amount` is `None` when the URL gives no number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sharpen {
    pub amount: Option<f64>,
}

/// An `e-usm-RADIUS-SIGMA-AMOUNT-THRESHOLD` value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnsharpMask {
    pub radius: f64,
    pub sigma: f64,
    pub amount: f64,
    pub threshold: f64,
}

/// An `f` value. The format actually sent is chosen later by negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Auto,
    Jpeg,
    Png,
    Webp,
    Avif,
    Gif,
    /// `f-orig`: keep the input format.
    Original,
}

/// One chain step. Inside a step the pixel stage runs: trim, EXIF rotation, resize/crop/pad, flip,
/// explicit rotation, radius, border, then the effects (blur, sharpen, unsharp mask, contrast,
/// grayscale, opacity).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    pub width: Option<Dimension>,
    pub height: Option<Dimension>,
    /// The ratio, kept only when exactly one of width and height is set.
    pub aspect_ratio: Option<AspectRatio>,
    pub fit: Fit,
    pub focus: Focus,
    /// `x`: left edge of the extract window.
    pub x: Option<Length>,
    /// `y`: top edge of the extract window.
    pub y: Option<Length>,
    /// `xc`: horizontal centre of the extract window.
    pub x_center: Option<Length>,
    /// `yc`: vertical centre of the extract window.
    pub y_center: Option<Length>,
    pub dpr: Option<Dpr>,
    pub trim: Option<Trim>,
    pub rotation: Option<Rotation>,
    pub flip: Option<Flip>,
    pub radius: Option<Radius>,
    pub border: Option<Border>,
    pub background: Option<Background>,
    /// `bl`: Gaussian blur radius from 1 to 100.
    pub blur: Option<u8>,
    /// `e-contrast`: stretch the histogram to the full range.
    pub contrast: bool,
    /// `e-grayscale`.
    pub grayscale: bool,
    pub sharpen: Option<Sharpen>,
    pub unsharp_mask: Option<UnsharpMask>,
    /// `o`: opacity from 0 to 100 percent that multiplies the alpha channel.
    pub opacity: Option<u8>,
}

/// A parsed transformation chain.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub(super) steps: Vec<Step>,
    pub(super) format: Option<OutputFormat>,
    pub(super) quality: Option<u8>,
    pub(super) progressive: Option<bool>,
    pub(super) lossless: Option<bool>,
    pub(super) keep_metadata: Option<bool>,
    pub(super) keep_color_profile: Option<bool>,
    pub(super) original: Option<bool>,
    pub(super) default_image: Option<String>,
}

/// The client hints a request carried, for `w-auto` and `dpr-auto`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ClientHints {
    /// `Sec-CH-Width`: the layout width in device pixels.
    pub width: Option<u32>,
    /// `Sec-CH-DPR`: the device pixel ratio.
    pub dpr: Option<f64>,
}

impl Fit {
    /// Returns the URL parameter for this fit, such as `c-maintain_ratio` or `cm-extract`.
    pub fn token(self) -> &'static str {
        match self {
            Fit::MaintainRatio => "c-maintain_ratio",
            Fit::Force => "c-force",
            Fit::AtMax => "c-at_max",
            Fit::AtMaxEnlarge => "c-at_max_enlarge",
            Fit::AtLeast => "c-at_least",
            Fit::PadResize => "cm-pad_resize",
            Fit::Extract => "cm-extract",
            Fit::PadExtract => "cm-pad_extract",
        }
    }
}

impl Focus {
    /// Returns the `fo` value, such as `top_left`.
    pub fn name(self) -> &'static str {
        match self {
            Focus::Center => "center",
            Focus::Top => "top",
            Focus::Bottom => "bottom",
            Focus::Left => "left",
            Focus::Right => "right",
            Focus::TopLeft => "top_left",
            Focus::TopRight => "top_right",
            Focus::BottomLeft => "bottom_left",
            Focus::BottomRight => "bottom_right",
            Focus::Auto => "auto",
        }
    }
}

impl OutputFormat {
    /// Returns the `f` value, such as `webp`. JPEG is written `jpg`.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Auto => "auto",
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
            OutputFormat::Gif => "gif",
            OutputFormat::Original => "orig",
        }
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dimension::Pixels(value) | Dimension::Fraction(value) => write!(f, "{value}"),
            Dimension::Expr(expr) => write!(f, "{expr}"),
            Dimension::Auto => f.write_str("auto"),
        }
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AspectRatio::Ratio { width, height } => write!(f, "{width}-{height}"),
            AspectRatio::Expr(expr) => write!(f, "{expr}"),
        }
    }
}

impl fmt::Display for Length {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Length::Pixels(value) => write!(f, "{value}"),
            Length::Expr(expr) => write!(f, "{expr}"),
        }
    }
}

impl fmt::Display for Dpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dpr::Value(value) => write!(f, "{value}"),
            Dpr::Expr(expr) => write!(f, "{expr}"),
            Dpr::Auto => f.write_str("auto"),
        }
    }
}

impl fmt::Display for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Background::Color(color) => write!(f, "{color}"),
            Background::Blurred { sigma, brightness } => {
                f.write_str("blurred_")?;
                match sigma {
                    Some(sigma) => write!(f, "{sigma}")?,
                    None => f.write_str("auto")?,
                }
                if *brightness < 0 {
                    write!(f, "_N{}", brightness.unsigned_abs())
                } else {
                    write!(f, "_{brightness}")
                }
            }
            Background::Dominant => f.write_str("dominant"),
            Background::GradientDominant { colors } => write!(f, "gradient_dominant_{colors}"),
        }
    }
}

impl Step {
    /// Returns whether the step sets `w` or `h`.
    pub fn has_size(&self) -> bool {
        self.width.is_some() || self.height.is_some()
    }

    /// Returns whether the URL fixes both sides, directly or through `ar`.
    fn has_both_sides(&self) -> bool {
        match (&self.width, &self.height) {
            (Some(_), Some(_)) => true,
            (Some(_), None) | (None, Some(_)) => self.aspect_ratio.is_some(),
            (None, None) => false,
        }
    }

    /// Returns whether `fo` can change this step's output, judged from the URL alone.
    fn focus_matters(&self) -> bool {
        match self.fit {
            Fit::MaintainRatio | Fit::PadResize => self.has_both_sides(),
            Fit::Extract | Fit::PadExtract => self.has_size(),
            Fit::Force | Fit::AtMax | Fit::AtMaxEnlarge | Fit::AtLeast => false,
        }
    }

    /// Rewrites parameters that cannot matter into their defaults, so that steps with the same
    /// meaning compare equal and print the same canonical text.
    pub(super) fn normalize(&mut self) {
        if self.width.is_some() && self.height.is_some() {
            // Documented: `ar` is ignored when both sides are given.
            self.aspect_ratio = None;
        }
        let one_side = self.has_size() && !self.has_both_sides();
        if one_side && matches!(self.fit, Fit::Force | Fit::AtMaxEnlarge | Fit::AtLeast) {
            // With one side these strategies scale proportionally, like maintain_ratio. at_max
            // differs because it never enlarges, the extract modes never scale, and pad_resize
            // stays so that a `bg-blurred` beside it remains valid.
            self.fit = Fit::MaintainRatio;
        }
        if !self.focus_matters() {
            self.focus = Focus::Center;
        }
    }

    /// Returns the canonical parameters of this step, in the fixed order, without output options.
    pub fn canonical_params(&self) -> Vec<String> {
        let mut params = Vec::new();
        self.push_size_params(&mut params);
        self.push_effect_params(&mut params);
        params
    }

    /// Appends `w h ar c|cm fo x y xc yc dpr`.
    fn push_size_params(&self, params: &mut Vec<String>) {
        if let Some(width) = &self.width {
            params.push(format!("w-{width}"));
        }
        if let Some(height) = &self.height {
            params.push(format!("h-{height}"));
        }
        if let Some(ratio) = &self.aspect_ratio {
            params.push(format!("ar-{ratio}"));
        }

        if self.has_size() {
            params.push(self.fit.token().to_string());
        }
        if self.focus_matters() {
            params.push(format!("fo-{}", self.focus.name()));
        }

        let coordinates = [
            ("x", &self.x),
            ("y", &self.y),
            ("xc", &self.x_center),
            ("yc", &self.y_center),
        ];
        for (key, value) in coordinates {
            if let Some(value) = value {
                params.push(format!("{key}-{value}"));
            }
        }
        if let Some(dpr) = &self.dpr {
            params.push(format!("dpr-{dpr}"));
        }
    }

    /// Appends `t rt fl r b bg bl e-contrast e-grayscale e-sharpen e-usm o`.
    fn push_effect_params(&self, params: &mut Vec<String>) {
        match self.trim {
            Some(Trim::Off) => params.push("t-false".to_string()),
            Some(Trim::Threshold(threshold)) => params.push(format!("t-{threshold}")),
            None => {}
        }
        match self.rotation {
            Some(Rotation::Auto) => params.push("rt-auto".to_string()),
            Some(Rotation::Degrees(degrees)) => params.push(format!("rt-{degrees}")),
            None => {}
        }
        match self.flip {
            Some(Flip::Horizontal) => params.push("fl-h".to_string()),
            Some(Flip::Vertical) => params.push("fl-v".to_string()),
            Some(Flip::Both) => params.push("fl-h_v".to_string()),
            None => {}
        }

        match self.radius {
            Some(Radius::Max) => params.push("r-max".to_string()),
            Some(Radius::Corners([a, b, c, d])) if a == b && b == c && c == d => {
                params.push(format!("r-{a}"));
            }
            Some(Radius::Corners([a, b, c, d])) => params.push(format!("r-{a}_{b}_{c}_{d}")),
            None => {}
        }
        if let Some(border) = &self.border {
            params.push(format!("b-{}_{}", border.width, border.color));
        }
        if let Some(background) = &self.background {
            params.push(format!("bg-{background}"));
        }

        if let Some(blur) = self.blur {
            params.push(format!("bl-{blur}"));
        }
        if self.contrast {
            params.push("e-contrast".to_string());
        }
        if self.grayscale {
            params.push("e-grayscale".to_string());
        }
        match self.sharpen {
            Some(Sharpen {
                amount: Some(amount),
            }) => params.push(format!("e-sharpen-{amount}")),
            Some(Sharpen { amount: None }) => params.push("e-sharpen".to_string()),
            None => {}
        }
        if let Some(usm) = &self.unsharp_mask {
            params.push(format!(
                "e-usm-{}-{}-{}-{}",
                usm.radius, usm.sigma, usm.amount, usm.threshold
            ));
        }
        if let Some(opacity) = self.opacity {
            params.push(format!("o-{opacity}"));
        }
    }

    /// Returns the canonical text of this step alone, as used in error messages.
    pub fn canonical(&self) -> String {
        self.canonical_params().join(",")
    }
}

impl Plan {
    /// Returns the steps in chain order. The list is empty under `orig-true`.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Returns the `f` value of the last step that set one.
    pub fn format(&self) -> Option<OutputFormat> {
        self.format
    }

    /// Returns the `q` value (1–100) of the last step that set one.
    pub fn quality(&self) -> Option<u8> {
        self.quality
    }

    /// Returns the `pr` value of the last step that set one.
    pub fn progressive(&self) -> Option<bool> {
        self.progressive
    }

    /// Returns the `lo` value of the last step that set one.
    pub fn lossless(&self) -> Option<bool> {
        self.lossless
    }

    /// Returns the `md` value of the last step that set one.
    pub fn keep_metadata(&self) -> Option<bool> {
        self.keep_metadata
    }

    /// Returns the `cp` value of the last step that set one.
    pub fn keep_color_profile(&self) -> Option<bool> {
        self.keep_color_profile
    }

    /// Returns whether `orig-true` requests the untouched source bytes, which makes every other
    /// parameter except `di-` a no-op.
    pub fn is_original(&self) -> bool {
        self.original == Some(true)
    }

    /// Returns the `di-` media-library path (with `/` separators and no leading `/`) to serve
    /// when the requested asset is missing.
    pub fn default_image(&self) -> Option<&str> {
        self.default_image.as_deref()
    }

    /// Returns whether AVIF must not be chosen: `cp-true` or `e-usm` anywhere in the chain.
    pub fn disables_avif(&self) -> bool {
        self.keep_color_profile == Some(true)
            || self.steps.iter().any(|step| step.unsharp_mask.is_some())
    }

    /// Returns the colour for flattening alpha onto an opaque format: the last `bg` colour in the
    /// chain, else white.
    pub fn flatten_color(&self) -> Color {
        self.steps
            .iter()
            .rev()
            .find_map(|step| match step.background {
                Some(Background::Color(color)) => Some(color),
                _ => None,
            })
            .unwrap_or(Color::WHITE)
    }

    /// Returns whether the chain uses `w-auto` or `dpr-auto`, so responses must vary on the hints.
    pub fn uses_client_hints(&self) -> bool {
        self.steps
            .iter()
            .any(|step| step.width == Some(Dimension::Auto) || step.dpr == Some(Dpr::Auto))
    }

    /// Replaces `w-auto` and `dpr-auto` with the request's client hints and returns the value for
    /// the `Content-DPR` response header when `w-auto` used a width hint.
    ///
    /// `w-auto` becomes the width hint rounded up to a multiple of 100, and `Content-DPR` is that
    /// width divided by the layout width in CSS pixels (hint / device DPR). The width hint already
    /// counts device pixels, so `dpr-auto` next to a resolved `w-auto` is dropped. A missing or
    /// out-of-range hint leaves the `auto` value in place, and geometry then treats it as absent.
    /// Call this before [`Plan::canonical`] so the cache key contains the resolved values.
    pub fn apply_client_hints(&mut self, hints: &ClientHints) -> Option<f64> {
        let device_dpr = hints
            .dpr
            .filter(|dpr| dpr.is_finite() && (0.1..=5.0).contains(dpr));
        let width_hint = hints.width.filter(|width| *width > 0);
        let mut content_dpr = None;
        for step in &mut self.steps {
            let mut width_from_hint = false;
            if let (Some(Dimension::Auto), Some(hint)) = (&step.width, width_hint) {
                let chosen = u64::from(hint).div_ceil(100) * 100;
                step.width = Some(Dimension::Pixels(chosen as f64));
                let css_width = f64::from(hint) / device_dpr.unwrap_or(1.0);
                content_dpr = Some(chosen as f64 / css_width);
                width_from_hint = true;
            }
            if step.dpr == Some(Dpr::Auto) {
                if width_from_hint {
                    step.dpr = None;
                } else if let Some(dpr) = device_dpr {
                    step.dpr = Some(Dpr::Value(dpr));
                }
            }
        }
        content_dpr
    }

    /// Returns the canonical text of the chain: deterministic, and equal for two chains exactly
    /// when they parse to equal plans. It parses back to the same plan, so it works as a cache key.
    pub fn canonical(&self) -> String {
        if self.is_original() {
            let mut params = vec!["orig-true".to_string()];
            params.extend(self.default_image_param());
            return params.join(",");
        }
        let mut steps: Vec<Vec<String>> = self.steps.iter().map(Step::canonical_params).collect();
        let output = self.output_params();
        if !output.is_empty() {
            match steps.last_mut() {
                Some(last) => last.extend(output),
                None => steps.push(output),
            }
        }
        steps
            .iter()
            .map(|params| params.join(","))
            .collect::<Vec<_>>()
            .join(":")
    }

    fn output_params(&self) -> Vec<String> {
        let mut params = Vec::new();
        if let Some(format) = self.format {
            params.push(format!("f-{}", format.name()));
        }
        if let Some(quality) = self.quality {
            params.push(format!("q-{quality}"));
        }
        let switches = [
            ("pr", self.progressive),
            ("lo", self.lossless),
            ("md", self.keep_metadata),
            ("cp", self.keep_color_profile),
            ("orig", self.original),
        ];
        for (key, value) in switches {
            if let Some(value) = value {
                params.push(format!("{key}-{value}"));
            }
        }
        params.extend(self.default_image_param());
        params
    }

    fn default_image_param(&self) -> Option<String> {
        self.default_image
            .as_deref()
            .map(|path| format!("di-{}", encode_default_image(path)))
    }
}

/// Writes a `di-` path in URL form: `/` as `@@`, `@` and every byte outside the unreserved URL
/// characters percent-encoded, so that `@@` stays unambiguous and `,` `:` cannot split the chain.
fn encode_default_image(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'/' => encoded.push_str("@@"),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte));
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_with_width(width: f64) -> Step {
        Step {
            width: Some(Dimension::Pixels(width)),
            ..Step::default()
        }
    }

    #[test]
    fn normalize_drops_ratio_beside_both_sides() {
        let mut step = Step {
            width: Some(Dimension::Pixels(300.0)),
            height: Some(Dimension::Pixels(200.0)),
            aspect_ratio: Some(AspectRatio::Ratio {
                width: 4.0,
                height: 3.0,
            }),
            ..Step::default()
        };
        step.normalize();
        assert_eq!(step.aspect_ratio, None);
        assert_eq!(step.canonical(), "w-300,h-200,c-maintain_ratio,fo-center");
    }

    #[test]
    fn normalize_merges_one_side_fits() {
        for fit in [Fit::Force, Fit::AtMaxEnlarge, Fit::AtLeast] {
            let mut step = Step {
                fit,
                focus: Focus::Left,
                ..step_with_width(300.0)
            };
            step.normalize();
            assert_eq!(step.fit, Fit::MaintainRatio, "{fit:?}");
            assert_eq!(step.focus, Focus::Center, "{fit:?}");
        }
        for fit in [Fit::AtMax, Fit::PadResize, Fit::Extract, Fit::PadExtract] {
            let mut step = Step {
                fit,
                ..step_with_width(300.0)
            };
            step.normalize();
            assert_eq!(step.fit, fit);
        }
    }

    #[test]
    fn canonical_moves_output_options_to_last_step() {
        let plan = Plan {
            steps: vec![step_with_width(300.0), step_with_width(100.0)],
            format: Some(OutputFormat::Webp),
            quality: Some(60),
            default_image: Some("a/b c.jpg".to_string()),
            ..Plan::default()
        };
        assert_eq!(
            plan.canonical(),
            "w-300,c-maintain_ratio:w-100,c-maintain_ratio,f-webp,q-60,di-a@@b%20c.jpg"
        );
    }

    #[test]
    fn canonical_of_original_keeps_only_default_image() {
        let plan = Plan {
            steps: vec![step_with_width(300.0)],
            quality: Some(60),
            original: Some(true),
            default_image: Some("x@y.png".to_string()),
            ..Plan::default()
        };
        assert!(plan.is_original());
        assert_eq!(plan.canonical(), "orig-true,di-x%40y.png");
    }

    #[test]
    fn client_hints_resolve_auto_width() {
        let mut plan = Plan {
            steps: vec![Step {
                width: Some(Dimension::Auto),
                dpr: Some(Dpr::Auto),
                ..Step::default()
            }],
            ..Plan::default()
        };
        assert!(plan.uses_client_hints());
        let content_dpr = plan.apply_client_hints(&ClientHints {
            width: Some(750),
            dpr: Some(2.0),
        });
        assert_eq!(plan.steps[0].width, Some(Dimension::Pixels(800.0)));
        assert_eq!(plan.steps[0].dpr, None);
        let content_dpr = content_dpr.expect("Content-DPR for w-auto");
        assert!((content_dpr - 800.0 / 375.0).abs() < 1e-9, "{content_dpr}");
    }

    #[test]
    fn client_hints_missing_keep_auto() {
        let mut plan = Plan {
            steps: vec![Step {
                width: Some(Dimension::Auto),
                dpr: Some(Dpr::Auto),
                ..Step::default()
            }],
            ..Plan::default()
        };
        assert_eq!(plan.apply_client_hints(&ClientHints::default()), None);
        assert_eq!(plan.steps[0].width, Some(Dimension::Auto));
        assert_eq!(plan.steps[0].dpr, Some(Dpr::Auto));
    }

    #[test]
    fn client_hints_resolve_auto_dpr_alone() {
        let mut plan = Plan {
            steps: vec![Step {
                dpr: Some(Dpr::Auto),
                ..step_with_width(300.0)
            }],
            ..Plan::default()
        };
        assert_eq!(
            plan.apply_client_hints(&ClientHints {
                width: None,
                dpr: Some(2.5),
            }),
            None
        );
        assert_eq!(plan.steps[0].dpr, Some(Dpr::Value(2.5)));
    }

    #[test]
    fn flatten_color_uses_last_background() {
        let mut plan = Plan::default();
        assert_eq!(plan.flatten_color(), Color::WHITE);
        plan.steps.push(Step {
            background: Some(Background::Color(Color::opaque(1, 2, 3))),
            ..Step::default()
        });
        plan.steps.push(Step {
            background: Some(Background::Dominant),
            ..Step::default()
        });
        assert_eq!(plan.flatten_color(), Color::opaque(1, 2, 3));
    }
}
