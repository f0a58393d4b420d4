//! Parsing of ImageKit transformation chains such as `w-300,h-200:rt-90` into a [`Plan`].
//!
//! Grammar: steps are separated by `:` and parameters by `,`. A parameter is `KEY[-VALUE]`. The
//! key is everything before the first `-`, except that keys starting with `e-` keep that prefix
//! (`e-usm-2-2-0.8-0.024` has key `e-usm`). Values are percent-decoded after splitting, so an
//! encoded `,` or `:` stays inside its value. `n-NAME` is replaced in place by the text of a named
//! transformation, as if that text had been written there.
//!
//! Nothing is silently dropped: unknown keys, bad values, empty parameters, parameters that need a
//! partner (`ar`, `c`, `fo`, `dpr` need `w` or `h`) and features kura does not implement are all
//! errors. Output options (`f q pr lo md cp orig di`) may appear in any step and the last one wins;
//! any other key may appear once per step.

use std::collections::BTreeMap;

use super::color::parse_color;
use super::error::TransformError;
use super::expr::{parse_decimal, parse_signed_decimal, Expr, ExprParseError};
use super::plan::{
    AspectRatio, Background, Border, Dimension, Dpr, Fit, Flip, Focus, Length, OutputFormat, Plan,
    Radius, Rotation, Sharpen, Step, Trim, UnsharpMask,
};

/// Maximum number of steps after named transformations are expanded.
pub const MAX_STEPS: usize = 32;
/// Maximum number of parameters after named transformations are expanded.
pub const MAX_PARAMETERS: usize = 256;
/// Maximum nesting of named transformations that refer to other named transformations.
pub const MAX_NAMED_DEPTH: usize = 8;
/// The trim threshold that `t-true` stands for, on the 0–255 scale.
pub const DEFAULT_TRIM_THRESHOLD: u8 = 10;

const ACCEPTED_KEYS: &str = "w, h, ar, c, cm, fo, x, y, xc, yc, dpr, q, f, pr, lo, md, cp, orig, \
                             rt, fl, t, b, r, bg, bl, o, e-grayscale, e-contrast, e-sharpen, \
                             e-usm, n and di";

/// Overlay keys that ImageKit retired in favour of layers. The service rejects them.
const RETIRED_OVERLAY_KEYS: [&str; 32] = [
    "oi", "ot", "ote", "ox", "oy", "oh", "ow", "obg", "ofo", "oiar", "oibg", "oib", "oidpr", "oiq",
    "oic", "oicm", "oifo", "oix", "oiy", "oixc", "oiyc", "oit", "otw", "otbg", "otp", "otia",
    "otc", "otf", "ots", "ott", "or", "oa",
];

/// Parameters that only exist inside layers.
const LAYER_KEYS: [&str; 20] = [
    "i", "ie", "lx", "ly", "lxc", "lyc", "lap", "lfo", "lm", "lso", "leo", "ldu", "fs", "ff", "co",
    "ia", "pa", "al", "tg", "lh",
];

/// Video-only parameters.
const VIDEO_KEYS: [&str; 8] = [
    "vc",
    "ac",
    "so",
    "eo",
    "du",
    "sr",
    "e-progressbar",
    "e-deshake",
];

/// AI and paid effects.
const AI_EFFECT_KEYS: [&str; 8] = [
    "e-bgremove",
    "e-removedotbg",
    "e-changebg",
    "e-edit",
    "e-dropshadow",
    "e-retouch",
    "e-upscale",
    "e-genvar",
];

/// The 80 COCO object classes in ImageKit's camelCase spelling, accepted by `fo-<object>`.
const FOCUS_OBJECTS: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "trafficLight",
    "fireHydrant",
    "stopSign",
    "parkingMeter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sportsBall",
    "kite",
    "baseballBat",
    "baseballGlove",
    "skateboard",
    "surfboard",
    "tennisRacket",
    "bottle",
    "wineGlass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hotDog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "pottedPlant",
    "bed",
    "diningTable",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cellPhone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddyBear",
    "hairDrier",
    "toothbrush",
];

/// Parses a transformation chain, expanding `n-NAME` from `named`.
///
/// `chain` is the raw, still percent-encoded text after `tr:` in the path or of the `tr` query
/// value. Each value is decoded here after splitting. When a URL has both forms, pass
/// `"{path_chain}:{query_chain}"` so the path steps run first. Values in `named` are chains in
/// the same form and may start with `tr:`.
pub fn parse_chain(chain: &str, named: &BTreeMap<String, String>) -> Result<Plan, TransformError> {
    if chain.is_empty() {
        return Err(TransformError::Invalid {
            token: String::new(),
            message: "invalid transformation: the chain is empty; give at least one parameter, \
                      such as tr:w-300"
                .to_string(),
        });
    }
    let mut expansion = Expansion {
        named,
        stack: Vec::new(),
        steps: vec![Vec::new()],
        parameter_count: 0,
    };
    expansion.append(chain, None)?;

    let mut plan = Plan::default();
    for raw_step in &expansion.steps {
        if let Some(step) = parse_step(raw_step, &mut plan)? {
            plan.steps.push(step);
        }
    }
    if plan.is_original() {
        // Documented: `orig-true` ignores every other parameter. The rest was still validated
        // above, and dropping it keeps equal meanings equal. `di-` still picks the fallback.
        plan = Plan {
            original: Some(true),
            default_image: plan.default_image.take(),
            ..Plan::default()
        };
    }
    Ok(plan)
}

/// One parameter after expansion, with the named transformation it came from.
struct RawParam {
    text: String,
    named_from: Option<String>,
}

/// Textual expansion of `n-NAME` into steps of raw parameters.
struct Expansion<'a> {
    named: &'a BTreeMap<String, String>,
    /// Names being expanded, outermost first, to detect cycles.
    stack: Vec<String>,
    steps: Vec<Vec<RawParam>>,
    parameter_count: usize,
}

impl Expansion<'_> {
    /// Appends `text` at the current position: its first step continues the current step, each
    /// `:` starts a new one. `named_from` is the outermost named transformation being expanded.
    fn append(&mut self, text: &str, named_from: Option<&str>) -> Result<(), TransformError> {
        for (index, step_text) in text.split(':').enumerate() {
            if index > 0 {
                if self.steps.len() >= MAX_STEPS {
                    return Err(TransformError::invalid(
                        text,
                        format!("the chain has more than {MAX_STEPS} steps; combine steps"),
                    ));
                }
                self.steps.push(Vec::new());
            }
            if step_text.is_empty() {
                return Err(TransformError::invalid(
                    text,
                    "empty step: remove the doubled, leading or trailing `:`",
                ));
            }
            for param in step_text.split(',') {
                self.append_param(param, step_text, named_from)?;
            }
        }
        Ok(())
    }

    fn append_param(
        &mut self,
        param: &str,
        step_text: &str,
        named_from: Option<&str>,
    ) -> Result<(), TransformError> {
        if param.is_empty() {
            return Err(TransformError::invalid(
                step_text,
                "empty parameter: remove the doubled, leading or trailing `,`",
            ));
        }
        let Some(raw_name) = param.strip_prefix("n-") else {
            self.parameter_count += 1;
            if self.parameter_count > MAX_PARAMETERS {
                return Err(TransformError::invalid(
                    param,
                    format!("the chain has more than {MAX_PARAMETERS} parameters"),
                ));
            }
            let text = param.to_string();
            let named_from = named_from.map(str::to_string);
            // `steps` always contains the current step, pushed before any parameter arrives.
            if let Some(step) = self.steps.last_mut() {
                step.push(RawParam { text, named_from });
            }
            return Ok(());
        };

        let name =
            percent_decode(raw_name).map_err(|reason| TransformError::invalid(param, reason))?;
        if name.is_empty() {
            return Err(TransformError::invalid(
                param,
                "n- needs the name of a configured transformation, such as n-thumbnail",
            ));
        }
        let Some(body) = self.named.get(&name) else {
            return Err(TransformError::UnknownNamed { name });
        };
        if self.stack.contains(&name) {
            let cycle = self
                .stack
                .iter()
                .chain(std::iter::once(&name))
                .map(|step| format!("n-{step}"))
                .collect::<Vec<_>>()
                .join(" -> ");
            return Err(TransformError::invalid(
                param,
                format!("named transformations refer to each other in a cycle ({cycle})"),
            ));
        }
        if self.stack.len() >= MAX_NAMED_DEPTH {
            return Err(TransformError::invalid(
                param,
                format!("named transformations are nested more than {MAX_NAMED_DEPTH} deep"),
            ));
        }
        let body = body.strip_prefix("tr:").unwrap_or(body);
        if body.is_empty() {
            return Err(TransformError::invalid(
                param,
                "this named transformation is empty in the configuration",
            ));
        }
        self.stack.push(name.clone());
        let outermost = named_from.unwrap_or(&name).to_string();
        let result = self.append(body, Some(&outermost));
        self.stack.pop();
        result
    }
}

/// The parameters seen in one step, by key, with their raw text for messages.
#[derive(Default)]
struct SeenParams {
    entries: Vec<(&'static str, String)>,
}

impl SeenParams {
    fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(seen, _)| *seen == key)
            .map(|(_, token)| token.as_str())
    }

    fn insert(&mut self, key: &'static str, token: &str) -> Result<(), TransformError> {
        if let Some(previous) = self.get(key) {
            return Err(TransformError::invalid(
                token,
                format!(
                    "`{key}` appears twice in one step (also as `{previous}`); keep one, or put \
                     the second in a new step after `:`"
                ),
            ));
        }
        self.entries.push((key, token.to_string()));
        Ok(())
    }
}

/// A step being parsed, with the parameters seen so far.
#[derive(Default)]
struct StepDraft {
    step: Step,
    seen: SeenParams,
    crop: Option<Fit>,
    crop_mode: Option<Fit>,
    has_step_params: bool,
}

/// Parses one expanded step and moves its output options into `plan`. Returns `None` when the
/// step contains nothing but output options.
fn parse_step(raw_step: &[RawParam], plan: &mut Plan) -> Result<Option<Step>, TransformError> {
    let mut draft = StepDraft::default();
    for raw in raw_step {
        parse_param(&raw.text, &mut draft, plan)
            .map_err(|error| in_named(error, raw.named_from.as_deref()))?;
    }

    let mut step = draft.step;
    // A `cm` value wins over `c` when both are given.
    step.fit = draft.crop_mode.or(draft.crop).unwrap_or_default();
    check_step(&step, &draft.seen)?;
    step.normalize();
    Ok(draft.has_step_params.then_some(step))
}

/// Adds the named transformation a bad parameter came from to the error message.
fn in_named(error: TransformError, named_from: Option<&str>) -> TransformError {
    let Some(name) = named_from else {
        return error;
    };
    let note = format!(" (from named transformation `n-{name}`)");
    match error {
        TransformError::Invalid { token, message } => TransformError::Invalid {
            token,
            message: message + &note,
        },
        TransformError::Unsupported { token, message } => TransformError::Unsupported {
            token,
            message: message + &note,
        },
        other => other,
    }
}

/// Splits a parameter into key and optional value.
fn split_key(token: &str) -> (&str, Option<&str>) {
    let name_start = if token.starts_with("e-") { 2 } else { 0 };
    match token[name_start..].find('-') {
        Some(offset) => {
            let dash = name_start + offset;
            (&token[..dash], Some(&token[dash + 1..]))
        }
        None => (token, None),
    }
}

/// Parses one parameter into the step draft or, for output options, into `plan`.
fn parse_param(token: &str, draft: &mut StepDraft, plan: &mut Plan) -> Result<(), TransformError> {
    let (key, raw_value) = split_key(token);
    if let Some(error) = reject_out_of_scope(token, key, raw_value) {
        return Err(error);
    }
    let value = match raw_value {
        // `@@` is replaced before decoding, so an encoded `%40%40` stays a literal `@@`.
        Some(raw) if key == "di" => Some(percent_decode(&raw.replace("@@", "/"))),
        Some(raw) => Some(percent_decode(raw)),
        None => None,
    }
    .transpose()
    .map_err(|reason| TransformError::invalid(token, reason))?;

    if matches!(key, "e-grayscale" | "e-contrast" | "e-sharpen") {
        draft.seen.insert(flag_key(key), token)?;
        draft.has_step_params = true;
        return parse_flag(key, value.as_deref(), &mut draft.step).map_err(|error| error.at(token));
    }

    let Some(value) = value else {
        return Err(missing_value(token, key));
    };
    let Some(key) = static_known_key(key) else {
        return Err(unknown_key(token, key));
    };
    draft.seen.insert(key, token)?;
    let is_step_param = parse_value(key, &value, draft, plan).map_err(|error| error.at(token))?;
    draft.has_step_params |= is_step_param;
    Ok(())
}

fn flag_key(key: &str) -> &'static str {
    match key {
        "e-grayscale" => "e-grayscale",
        "e-contrast" => "e-contrast",
        _ => "e-sharpen",
    }
}

/// Parses the flag-style effects: `e-grayscale` and `e-contrast` take no value, `e-sharpen` an
/// optional positive number.
fn parse_flag(key: &str, value: Option<&str>, step: &mut Step) -> Result<(), ValueError> {
    match (key, value) {
        ("e-grayscale", None) => step.grayscale = true,
        ("e-contrast", None) => step.contrast = true,
        ("e-sharpen", None) => step.sharpen = Some(Sharpen { amount: None }),
        ("e-sharpen", Some(text)) => {
            let amount = parse_decimal(text)
                .filter(|amount| *amount > 0.0)
                .ok_or_else(|| {
                    "e-sharpen takes no value or a positive number, such as e-sharpen-10"
                        .to_string()
                })?;
            step.sharpen = Some(Sharpen {
                amount: Some(amount),
            });
        }
        _ => return Err(format!("`{key}` takes no value; write just {key}").into()),
    }
    Ok(())
}

fn missing_value(token: &str, key: &str) -> TransformError {
    if key == "n" {
        return TransformError::invalid(
            token,
            "n- needs the name of a configured transformation, such as n-thumbnail",
        );
    }
    if static_known_key(key).is_some() {
        return TransformError::invalid(
            token,
            format!("`{key}` needs a value after `-`, such as {key}-…"),
        );
    }
    unknown_key(token, key)
}

/// Parses the value of a known key into the draft or `plan`; returns whether it was a step
/// parameter rather than an output option.
fn parse_value(
    key: &str,
    value: &str,
    draft: &mut StepDraft,
    plan: &mut Plan,
) -> Result<bool, ValueError> {
    let step = &mut draft.step;
    match key {
        "w" => step.width = Some(parse_dimension(key, value, true)?),
        "h" => step.height = Some(parse_dimension(key, value, false)?),
        "ar" => step.aspect_ratio = Some(parse_aspect_ratio(value)?),
        "c" => draft.crop = Some(parse_crop(value)?),
        "cm" => draft.crop_mode = Some(parse_crop_mode(value)?),
        "fo" => step.focus = parse_focus(value)?,
        "x" => step.x = Some(parse_length(key, value)?),
        "y" => step.y = Some(parse_length(key, value)?),
        "xc" => step.x_center = Some(parse_length(key, value)?),
        "yc" => step.y_center = Some(parse_length(key, value)?),
        "dpr" => step.dpr = Some(parse_dpr(value)?),
        "t" => step.trim = Some(parse_trim(value)?),
        "rt" => step.rotation = Some(parse_rotation(value)?),
        "fl" => step.flip = Some(parse_flip(value)?),
        "r" => step.radius = Some(parse_radius(value)?),
        "b" => step.border = Some(parse_border(value)?),
        "bg" => step.background = Some(parse_background(value)?),
        "bl" => step.blur = Some(parse_integer_in(key, value, 1, 100, "a blur radius")?),
        "o" => {
            step.opacity = Some(parse_integer_in(
                key,
                value,
                0,
                100,
                "an opacity in percent",
            )?)
        }
        "e-usm" => step.unsharp_mask = Some(parse_unsharp_mask(value)?),
        _ => {
            parse_output_param(key, value, plan)?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// Parses an output option (`f q pr lo md cp orig di`) into `plan`, overwriting earlier steps.
fn parse_output_param(key: &str, value: &str, plan: &mut Plan) -> Result<(), ValueError> {
    match key {
        "f" => plan.format = Some(parse_format(value)?),
        "q" => plan.quality = Some(parse_integer_in(key, value, 1, 100, "a quality")?),
        "pr" => plan.progressive = Some(parse_bool(key, value)?),
        "lo" => plan.lossless = Some(parse_bool(key, value)?),
        "md" => plan.keep_metadata = Some(parse_bool(key, value)?),
        "cp" => plan.keep_color_profile = Some(parse_bool(key, value)?),
        "orig" => plan.original = Some(parse_bool(key, value)?),
        "di" => plan.default_image = Some(parse_default_image(value)?),
        // `static_known_key` only returns keys handled here or in `parse_param`.
        _ => {
            return Err(ValueError::Invalid(format!(
                "`{key}` is not an output option"
            )))
        }
    }
    Ok(())
}

/// Checks the rules that join several parameters of one step.
fn check_step(step: &Step, seen: &SeenParams) -> Result<(), TransformError> {
    let token = |key: &str| seen.get(key).unwrap_or(key).to_string();
    if !step.has_size() {
        for key in ["ar", "c", "cm", "fo", "dpr"] {
            if seen.get(key).is_some() {
                return Err(TransformError::invalid(
                    &token(key),
                    format!(
                        "`{key}` needs w or h in the same step, such as w-300,{}",
                        token(key)
                    ),
                ));
            }
        }
    }
    let extracting = matches!(step.fit, Fit::Extract | Fit::PadExtract);
    for key in ["x", "y", "xc", "yc"] {
        if seen.get(key).is_some() && !extracting {
            return Err(TransformError::invalid(
                &token(key),
                format!("`{key}` needs cm-extract or cm-pad_extract in the same step"),
            ));
        }
    }
    for (corner, center) in [("x", "xc"), ("y", "yc")] {
        if seen.get(corner).is_some() && seen.get(center).is_some() {
            return Err(TransformError::invalid(
                &token(center),
                format!("`{corner}` and `{center}` both place the window on one axis; keep one"),
            ));
        }
    }
    if step.focus == Focus::Auto {
        if let Some(key) = ["x", "y", "xc", "yc"]
            .into_iter()
            .find(|key| seen.get(key).is_some())
        {
            return Err(TransformError::invalid(
                &token("fo"),
                format!("fo-auto picks the window itself and cannot be combined with `{key}`"),
            ));
        }
    }
    if matches!(step.background, Some(Background::Blurred { .. })) && step.fit != Fit::PadResize {
        return Err(TransformError::invalid(
            &token("bg"),
            "bg-blurred fills padding and needs cm-pad_resize in the same step",
        ));
    }
    Ok(())
}

/// Returns the error for keys that belong to features kura does not implement.
fn reject_out_of_scope(token: &str, key: &str, value: Option<&str>) -> Option<TransformError> {
    let unsupported = |reason: &str| Some(TransformError::unsupported(token, reason));
    match key {
        "l" => {
            return unsupported("layers (l-image, l-text, l-video, l-subtitles) are not supported")
        }
        "if" => return unsupported("conditional transformations (if-…) are not supported"),
        "e-shadow" => return unsupported("the e-shadow effect is not supported"),
        "e-gradient" => return unsupported("the e-gradient effect is not supported"),
        "e-distort" => return unsupported("the e-distort effect is not supported"),
        "cr" => return unsupported("colour replacement (cr-…) is not supported"),
        "pg" => return unsupported("page and frame selection (pg-…) is not supported"),
        "z" => {
            return unsupported("zoom (z-…) needs face or object focus, which are not supported")
        }
        "ik" => {
            return Some(TransformError::invalid(
                token,
                "ik-s, ik-t and ik-attachment are query parameters of the URL, not \
                 transformation parameters; move them out of the chain",
            ))
        }
        _ => {}
    }
    if LAYER_KEYS.contains(&key) {
        return unsupported("this parameter belongs to layers, which are not supported");
    }
    if VIDEO_KEYS.contains(&key) {
        return unsupported("video transformations are not supported");
    }
    if AI_EFFECT_KEYS.contains(&key) {
        return unsupported("AI effects are not supported");
    }
    if RETIRED_OVERLAY_KEYS.contains(&key) {
        return Some(TransformError::invalid(
            token,
            "this overlay parameter was retired by ImageKit in favour of layers and is not accepted",
        ));
    }
    if key == "bg" && value.is_some_and(|value| value.starts_with("genfill")) {
        return unsupported("generative fill (bg-genfill) is an AI effect and is not supported");
    }
    None
}

fn unknown_key(token: &str, key: &str) -> TransformError {
    TransformError::invalid(
        token,
        format!("unknown parameter `{key}`; accepted keys are {ACCEPTED_KEYS}"),
    )
}

/// The keys this parser accepts with a value. `n` and the flag-style `e-` keys are handled apart.
const VALUE_KEYS: [&str; 28] = [
    "w", "h", "ar", "c", "cm", "fo", "x", "y", "xc", "yc", "dpr", "t", "rt", "fl", "r", "b", "bg",
    "bl", "o", "e-usm", "f", "q", "pr", "lo", "md", "cp", "orig", "di",
];

fn static_known_key(key: &str) -> Option<&'static str> {
    VALUE_KEYS.iter().copied().find(|known| *known == key)
}

/// A value error before the token is attached. `Unsupported` gets its own error code.
#[derive(Debug)]
enum ValueError {
    Invalid(String),
    Unsupported(String),
}

impl ValueError {
    fn at(self, token: &str) -> TransformError {
        match self {
            ValueError::Invalid(reason) => TransformError::invalid(token, reason),
            ValueError::Unsupported(reason) => TransformError::unsupported(token, reason),
        }
    }
}

impl From<String> for ValueError {
    fn from(reason: String) -> Self {
        ValueError::Invalid(reason)
    }
}

impl From<ExprParseError> for ValueError {
    fn from(error: ExprParseError) -> Self {
        match error {
            ExprParseError::Invalid(reason) => ValueError::Invalid(reason),
            ExprParseError::Unsupported(reason) => ValueError::Unsupported(reason),
        }
    }
}

/// Returns whether `value` looks like an expression: it names a variable or an operator.
fn looks_like_expression(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_alphabetic())
}

fn parse_dimension(key: &str, value: &str, allow_auto: bool) -> Result<Dimension, ValueError> {
    let accepted = if allow_auto {
        "a pixel count of at least 1, a fraction between 0 and 1, auto, or an expression such as \
         iw_div_2"
    } else {
        "a pixel count of at least 1, a fraction between 0 and 1, or an expression such as ih_div_2"
    };
    if value == "auto" {
        if allow_auto {
            return Ok(Dimension::Auto);
        }
        return Err(ValueError::Invalid(format!(
            "`{key}` does not accept auto; it accepts {accepted}"
        )));
    }
    if let Some(number) = parse_decimal(value) {
        return if number <= 0.0 {
            Err(ValueError::Invalid(format!(
                "`{key}` must be greater than 0; it accepts {accepted}"
            )))
        } else if number < 1.0 {
            Ok(Dimension::Fraction(number))
        } else {
            Ok(Dimension::Pixels(number))
        };
    }
    let not_valid = || {
        ValueError::Invalid(format!(
            "`{value}` is not a valid `{key}`; it accepts {accepted}"
        ))
    };
    if !looks_like_expression(value) {
        return Err(not_valid());
    }
    match Expr::parse(value) {
        Ok(expr) => Ok(Dimension::Expr(expr)),
        // A single unknown word reads better against the full list of accepted forms.
        Err(ExprParseError::Invalid(_)) if !value.contains('_') => Err(not_valid()),
        Err(error) => Err(error.into()),
    }
}

fn parse_aspect_ratio(value: &str) -> Result<AspectRatio, ValueError> {
    if looks_like_expression(value) {
        return Ok(AspectRatio::Expr(Expr::parse(value)?));
    }
    let pair = value.split_once('-').or_else(|| value.split_once('_'));
    let ratio = pair.and_then(|(width, height)| {
        let width = parse_decimal(width).filter(|width| *width > 0.0)?;
        let height = parse_decimal(height).filter(|height| *height > 0.0)?;
        Some(AspectRatio::Ratio { width, height })
    });
    ratio.ok_or_else(|| {
        ValueError::Invalid(format!(
            "`{value}` is not an aspect ratio; write two positive numbers as W-H or W_H (ar-4-3), \
             or an expression such as iar_div_2"
        ))
    })
}

fn parse_crop(value: &str) -> Result<Fit, String> {
    match value {
        "maintain_ratio" => Ok(Fit::MaintainRatio),
        "force" => Ok(Fit::Force),
        "at_max" => Ok(Fit::AtMax),
        "at_max_enlarge" => Ok(Fit::AtMaxEnlarge),
        "at_least" => Ok(Fit::AtLeast),
        "pad_resize" | "extract" | "pad_extract" => Err(format!(
            "`{value}` is a crop mode, not a crop strategy; write cm-{value}"
        )),
        _ => Err(format!(
            "`{value}` is not a crop strategy; use maintain_ratio, force, at_max, \
             at_max_enlarge or at_least"
        )),
    }
}

fn parse_crop_mode(value: &str) -> Result<Fit, String> {
    match value {
        "pad_resize" => Ok(Fit::PadResize),
        "extract" => Ok(Fit::Extract),
        "pad_extract" => Ok(Fit::PadExtract),
        "maintain_ratio" | "force" | "at_max" | "at_max_enlarge" | "at_least" => Err(format!(
            "`{value}` is a crop strategy, not a crop mode; write c-{value}"
        )),
        _ => Err(format!(
            "`{value}` is not a crop mode; use pad_resize, extract or pad_extract"
        )),
    }
}

fn parse_focus(value: &str) -> Result<Focus, ValueError> {
    let focus = match value {
        "center" => Focus::Center,
        "top" => Focus::Top,
        "bottom" => Focus::Bottom,
        "left" => Focus::Left,
        "right" => Focus::Right,
        "top_left" => Focus::TopLeft,
        "top_right" => Focus::TopRight,
        "bottom_left" => Focus::BottomLeft,
        "bottom_right" => Focus::BottomRight,
        "auto" => Focus::Auto,
        "face" => {
            return Err(ValueError::Unsupported(
                "face detection is not supported; use fo-auto or an anchor such as fo-top".into(),
            ))
        }
        "custom" => {
            return Err(ValueError::Unsupported(
                "stored custom focus areas are not supported; use fo-auto or an anchor".into(),
            ))
        }
        _ if FOCUS_OBJECTS.contains(&value) => {
            return Err(ValueError::Unsupported(
                "object detection is not supported; use fo-auto or an anchor such as fo-top".into(),
            ))
        }
        _ => {
            return Err(ValueError::Invalid(format!(
                "`{value}` is not a focus; use center, top, bottom, left, right, top_left, \
                 top_right, bottom_left, bottom_right or auto"
            )))
        }
    };
    Ok(focus)
}

fn parse_length(key: &str, value: &str) -> Result<Length, ValueError> {
    if looks_like_expression(value) && !value.starts_with('N') {
        return Ok(Length::Expr(Expr::parse(value)?));
    }
    let pixels = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u32>().ok())
        .flatten()
        .filter(|_| !value.is_empty());
    pixels.map(Length::Pixels).ok_or_else(|| {
        ValueError::Invalid(format!(
            "`{value}` is not a valid `{key}`; it accepts a whole number of pixels from 0 (the \
             window must stay inside the image) or an expression such as iw_div_4"
        ))
    })
}

fn parse_dpr(value: &str) -> Result<Dpr, ValueError> {
    if value == "auto" {
        return Ok(Dpr::Auto);
    }
    if let Some(number) = parse_decimal(value) {
        if (0.1..=5.0).contains(&number) {
            return Ok(Dpr::Value(number));
        }
        return Err(ValueError::Invalid(format!(
            "dpr `{value}` is out of range; use a number from 0.1 to 5, auto, or an expression"
        )));
    }
    if looks_like_expression(value) {
        return Ok(Dpr::Expr(Expr::parse(value)?));
    }
    Err(ValueError::Invalid(format!(
        "`{value}` is not a valid dpr; use a number from 0.1 to 5, auto, or an expression"
    )))
}

fn parse_trim(value: &str) -> Result<Trim, String> {
    match value {
        "true" => Ok(Trim::Threshold(DEFAULT_TRIM_THRESHOLD)),
        "false" => Ok(Trim::Off),
        _ => parse_integer_in("t", value, 1, 99, "a threshold")
            .map(Trim::Threshold)
            .map_err(|_| {
                format!("`{value}` is not a valid t; use true, false or a threshold from 1 to 99")
            }),
    }
}

fn parse_rotation(value: &str) -> Result<Rotation, String> {
    if value == "auto" {
        return Ok(Rotation::Auto);
    }
    let degrees = parse_signed_decimal(value).ok_or_else(|| {
        format!(
            "`{value}` is not a rotation; use auto or clockwise degrees, with N for \
             counter-clockwise (rt-N90)"
        )
    })?;
    let degrees = degrees.rem_euclid(360.0);
    // `rem_euclid` keeps the sign of a negative zero, which would print as `-0`.
    let degrees = if degrees == 0.0 { 0.0 } else { degrees };
    Ok(Rotation::Degrees(degrees))
}

fn parse_flip(value: &str) -> Result<Flip, String> {
    match value {
        "h" => Ok(Flip::Horizontal),
        "v" => Ok(Flip::Vertical),
        "h_v" | "v_h" => Ok(Flip::Both),
        _ => Err(format!("`{value}` is not a flip; use h, v or h_v")),
    }
}

fn parse_radius(value: &str) -> Result<Radius, String> {
    if value == "max" {
        return Ok(Radius::Max);
    }
    let error = || {
        format!(
            "`{value}` is not a corner radius; use max, a whole number of pixels, or four \
             numbers for top-left, top-right, bottom-right and bottom-left (r-10_20_30_40)"
        )
    };
    let radii: Vec<u32> = value
        .split('_')
        .map(|part| parse_whole(part).ok_or_else(error))
        .collect::<Result<_, _>>()?;
    match radii.as_slice() {
        [radius] => Ok(Radius::Corners([*radius; 4])),
        [a, b, c, d] => Ok(Radius::Corners([*a, *b, *c, *d])),
        _ => Err(error()),
    }
}

fn parse_border(value: &str) -> Result<Border, ValueError> {
    let split = value.rsplit_once('_').or_else(|| value.split_once('-'));
    let Some((width, color)) = split else {
        return Err(ValueError::Invalid(format!(
            "`{value}` is not a border; write WIDTH_COLOUR, such as b-5_FF0000"
        )));
    };
    let color = parse_color(color)?;
    let width = if looks_like_expression(width) {
        Length::Expr(Expr::parse(width)?)
    } else {
        Length::Pixels(parse_whole(width).ok_or_else(|| {
            ValueError::Invalid(format!(
                "`{width}` is not a border width; use a whole number of pixels or an expression"
            ))
        })?)
    };
    Ok(Border { width, color })
}

fn parse_background(value: &str) -> Result<Background, ValueError> {
    if value == "dominant" {
        return Ok(Background::Dominant);
    }
    if let Some(rest) = value.strip_prefix("gradient_dominant") {
        let colors = match rest {
            "" | "_2" => 2,
            "_4" => 4,
            _ => {
                return Err(ValueError::Invalid(format!(
                    "`{value}` is not a background; gradient_dominant takes _2 or _4 colours"
                )))
            }
        };
        return Ok(Background::GradientDominant { colors });
    }
    if let Some(rest) = value.strip_prefix("blurred") {
        return parse_blurred(value, rest);
    }
    parse_color(value).map(Background::Color).map_err(|reason| {
        ValueError::Invalid(format!(
            "{reason}; bg also accepts dominant, gradient_dominant and blurred"
        ))
    })
}

/// Parses the optional `_SIGMA_BRIGHTNESS` tail of `bg-blurred`.
fn parse_blurred(value: &str, rest: &str) -> Result<Background, ValueError> {
    let error = || {
        ValueError::Invalid(format!(
            "`{value}` is not a blurred background; write blurred, blurred_SIGMA or \
             blurred_SIGMA_BRIGHTNESS with SIGMA from 0 to 100 or auto and BRIGHTNESS from N255 \
             to 255"
        ))
    };
    let parts: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.strip_prefix('_')
            .ok_or_else(error)?
            .split('_')
            .collect()
    };
    if parts.len() > 2 {
        return Err(error());
    }
    let sigma = match parts.first() {
        None | Some(&"auto") => None,
        Some(text) => Some(
            parse_whole(text)
                .filter(|sigma| *sigma <= 100)
                .ok_or_else(error)? as u8,
        ),
    };
    let brightness = match parts.get(1) {
        None => 0,
        Some(text) => {
            let number = parse_signed_decimal(text)
                .filter(|number| number.fract() == 0.0 && (-255.0..=255.0).contains(number))
                .ok_or_else(error)?;
            number as i16
        }
    };
    Ok(Background::Blurred { sigma, brightness })
}

fn parse_unsharp_mask(value: &str) -> Result<UnsharpMask, String> {
    let error = || {
        format!(
            "`{value}` is not an unsharp mask; write RADIUS-SIGMA-AMOUNT-THRESHOLD with positive \
             numbers (threshold may be 0), such as e-usm-2-2-0.8-0.024"
        )
    };
    let numbers: Vec<f64> = value
        .split('-')
        .map(|part| parse_decimal(part).ok_or_else(error))
        .collect::<Result<_, _>>()?;
    let [radius, sigma, amount, threshold] = numbers.as_slice() else {
        return Err(error());
    };
    if *radius <= 0.0 || *sigma <= 0.0 || *amount <= 0.0 {
        return Err(error());
    }
    Ok(UnsharpMask {
        radius: *radius,
        sigma: *sigma,
        amount: *amount,
        threshold: *threshold,
    })
}

fn parse_format(value: &str) -> Result<OutputFormat, ValueError> {
    match value {
        "auto" => Ok(OutputFormat::Auto),
        "jpg" | "jpeg" => Ok(OutputFormat::Jpeg),
        "png" => Ok(OutputFormat::Png),
        "webp" => Ok(OutputFormat::Webp),
        "avif" => Ok(OutputFormat::Avif),
        "gif" => Ok(OutputFormat::Gif),
        "orig" => Ok(OutputFormat::Original),
        "svg" => Err(ValueError::Unsupported(
            "SVG output is not supported; use auto, jpg, png, webp, avif, gif or orig".into(),
        )),
        "mp4" | "webm" => Err(ValueError::Unsupported(
            "video formats are not supported; use auto, jpg, png, webp, avif, gif or orig".into(),
        )),
        _ => Err(ValueError::Invalid(format!(
            "`{value}` is not an output format; use auto, jpg, jpeg, png, webp, avif, gif or orig"
        ))),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ValueError> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ValueError::Invalid(format!(
            "`{value}` is not a valid `{key}`; use true or false"
        ))),
    }
}

/// Parses a `di-` path, already decoded and with `@@` turned into `/`.
fn parse_default_image(value: &str) -> Result<String, ValueError> {
    let path = value.trim_start_matches('/');
    let error = |why: &str| {
        ValueError::Invalid(format!(
            "`{value}` is not a media-library path: {why}; write it as di-folder@@image.jpg"
        ))
    };
    if path.is_empty() {
        return Err(error("it is empty"));
    }
    if path.contains('\0') {
        return Err(error("it contains a NUL byte"));
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(error("it has an empty, `.` or `..` segment"));
    }
    Ok(path.to_string())
}

/// Parses a whole number without sign, allowing leading zeros.
fn parse_whole(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_integer_in(key: &str, value: &str, min: u8, max: u8, meaning: &str) -> Result<u8, String> {
    parse_whole(value)
        .filter(|number| (u32::from(min)..=u32::from(max)).contains(number))
        .map(|number| number as u8)
        .ok_or_else(|| {
            format!("`{value}` is not a valid `{key}`; use {meaning} as a whole number from {min} to {max}")
        })
}

/// Decodes `%XX` escapes. Fails on a malformed escape or on bytes that are not UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    if !text.contains('%') {
        return Ok(text.to_string());
    }
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = bytes
                .get(index + 1..index + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .filter(|_| {
                    bytes[index + 1].is_ascii_hexdigit() && bytes[index + 2].is_ascii_hexdigit()
                });
            let Some(byte) = hex else {
                return Err(format!(
                    "malformed percent-encoding in `{text}`; `%` must be followed by two hex digits"
                ));
            };
            decoded.push(byte);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("`{text}` does not decode to UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn no_names() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn names() -> BTreeMap<String, String> {
        [
            ("thumb", "w-120,h-80"),
            ("prefixed", "tr:w-64"),
            ("two", "w-100:h-50"),
            ("outer", "n-thumb,rt-90"),
            ("loop_a", "n-loop_b"),
            ("loop_b", "n-loop_a"),
            ("broken", "w-abc"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
    }

    fn canonical(chain: &str) -> String {
        parse_chain(chain, &names())
            .unwrap_or_else(|e| panic!("{chain}: {e}"))
            .canonical()
    }

    #[test]
    fn parse_valid_chains() {
        let cases: &[(&str, &str)] = &[
            ("w-300,h-200", "w-300,h-200,c-maintain_ratio,fo-center"),
            ("w-300", "w-300,c-maintain_ratio"),
            ("w-300,c-force", "w-300,c-maintain_ratio"),
            ("w-300,c-at_least,fo-left", "w-300,c-maintain_ratio"),
            (
                "w-300,cm-pad_resize,bg-blurred",
                "w-300,cm-pad_resize,bg-blurred_auto_0",
            ),
            ("w-300,c-at_max", "w-300,c-at_max"),
            ("w-300.0", "w-300,c-maintain_ratio"),
            ("w-1.5", "w-1.5,c-maintain_ratio"),
            ("w-0.5", "w-0.5,c-maintain_ratio"),
            ("w-0.50", "w-0.5,c-maintain_ratio"),
            ("w-iw_div_4", "w-iw_div_4,c-maintain_ratio"),
            (
                "h-ih_mul_0.80_add_iw",
                "h-ih_mul_0.8_add_iw,c-maintain_ratio",
            ),
            ("w-auto", "w-auto,c-maintain_ratio"),
            ("w-300,dpr-auto", "w-300,c-maintain_ratio,dpr-auto"),
            ("w-300,dpr-2", "w-300,c-maintain_ratio,dpr-2"),
            (
                "w-300,dpr-car_mul_2",
                "w-300,c-maintain_ratio,dpr-car_mul_2",
            ),
            ("ar-4-3,w-400", "w-400,ar-4-3,c-maintain_ratio,fo-center"),
            ("ar-4_3,w-400", "w-400,ar-4-3,c-maintain_ratio,fo-center"),
            (
                "ar-1.5-1,h-400",
                "h-400,ar-1.5-1,c-maintain_ratio,fo-center",
            ),
            (
                "ar-iar_div_2,w-300",
                "w-300,ar-iar_div_2,c-maintain_ratio,fo-center",
            ),
            (
                "ar-4-3,w-400,h-100",
                "w-400,h-100,c-maintain_ratio,fo-center",
            ),
            ("w-300,h-300,c-force,fo-left", "w-300,h-300,c-force"),
            ("w-300,h-300,c-at_max", "w-300,h-300,c-at_max"),
            (
                "w-300,h-300,c-at_max_enlarge",
                "w-300,h-300,c-at_max_enlarge",
            ),
            ("w-300,h-300,c-at_least", "w-300,h-300,c-at_least"),
            (
                "w-300,h-300,cm-pad_resize,fo-top",
                "w-300,h-300,cm-pad_resize,fo-top",
            ),
            (
                "c-force,cm-pad_resize,w-300,h-300",
                "w-300,h-300,cm-pad_resize,fo-center",
            ),
            (
                "w-300,h-300,cm-extract,xc-200,yc-250",
                "w-300,h-300,cm-extract,fo-center,xc-200,yc-250",
            ),
            (
                "w-300,cm-extract,x-iw_div_4",
                "w-300,cm-extract,fo-center,x-iw_div_4",
            ),
            (
                "w-300,h-300,cm-pad_extract,fo-bottom_right",
                "w-300,h-300,cm-pad_extract,fo-bottom_right",
            ),
            (
                "w-300,h-300,fo-auto",
                "w-300,h-300,c-maintain_ratio,fo-auto",
            ),
            ("rt-90", "rt-90"),
            ("rt-N90", "rt-270"),
            ("rt--90", "rt-270"),
            ("rt-450", "rt-90"),
            ("rt-360", "rt-0"),
            ("rt-N0", "rt-0"),
            ("rt-45.5", "rt-45.5"),
            ("rt-auto", "rt-auto"),
            ("fl-h", "fl-h"),
            ("fl-v_h", "fl-h_v"),
            ("t-true", "t-10"),
            ("t-false", "t-false"),
            ("t-25", "t-25"),
            ("b-5_FFF000", "b-5_FFF000"),
            ("b-5-red", "b-5_FF0000"),
            ("b-ih_mul_0.01_red", "b-ih_mul_0.01_FF0000"),
            ("r-max", "r-max"),
            ("r-10_10_10_10", "r-10"),
            ("r-10_20_30_40", "r-10_20_30_40"),
            ("bg-red", "bg-FF0000"),
            ("bg-ff000050", "bg-FF000050"),
            ("bg-transparent", "bg-00000000"),
            ("bg-dominant", "bg-dominant"),
            ("bg-gradient_dominant", "bg-gradient_dominant_2"),
            ("bg-gradient_dominant_4", "bg-gradient_dominant_4"),
            (
                "w-300,h-300,cm-pad_resize,bg-blurred",
                "w-300,h-300,cm-pad_resize,fo-center,bg-blurred_auto_0",
            ),
            (
                "w-300,h-300,cm-pad_resize,bg-blurred_25_N30",
                "w-300,h-300,cm-pad_resize,fo-center,bg-blurred_25_N30",
            ),
            ("bl-10", "bl-10"),
            ("o-50", "o-50"),
            ("e-grayscale", "e-grayscale"),
            ("e-contrast,e-grayscale", "e-contrast,e-grayscale"),
            ("e-sharpen", "e-sharpen"),
            ("e-sharpen-10", "e-sharpen-10"),
            ("e-usm-2-2-0.8-0.024", "e-usm-2-2-0.8-0.024"),
            ("f-jpeg", "f-jpg"),
            ("f-auto,q-060", "f-auto,q-60"),
            (
                "cp-false,md-true,lo-false,pr-true,q-60,f-webp",
                "f-webp,q-60,pr-true,lo-false,md-true,cp-false",
            ),
            ("f-orig", "f-orig"),
            ("orig-true,w-300,q-50", "orig-true"),
            ("bl-1,orig-true", "orig-true"),
            ("w-300:orig-true,di-a.jpg", "orig-true,di-a.jpg"),
            ("orig-false", "orig-false"),
            (
                "di-@@path@@to@@img.jpg,w-300",
                "w-300,c-maintain_ratio,di-path@@to@@img.jpg",
            ),
            ("di-a%20b.png", "di-a%20b.png"),
            ("w-300:rt-90", "w-300,c-maintain_ratio:rt-90"),
            (
                "w-300:f-webp:h-200",
                "w-300,c-maintain_ratio:h-200,c-maintain_ratio,f-webp",
            ),
            ("q-50:q-70", "q-70"),
            ("w-%33%30%30", "w-300,c-maintain_ratio"),
            ("n-thumb", "w-120,h-80,c-maintain_ratio,fo-center"),
            ("n-prefixed", "w-64,c-maintain_ratio"),
            (
                "n-two,rt-90",
                "w-100,c-maintain_ratio:h-50,c-maintain_ratio,rt-90",
            ),
            (
                "n-outer:q-40",
                "w-120,h-80,c-maintain_ratio,fo-center,rt-90,q-40",
            ),
            (
                "e-grayscale,n-thumb",
                "w-120,h-80,c-maintain_ratio,fo-center,e-grayscale",
            ),
        ];
        for (chain, expected) in cases {
            assert_eq!(canonical(chain), *expected, "{chain}");
        }
    }

    #[test]
    fn parse_fills_typed_fields() {
        let plan = parse_chain("w-300,h-0.5,fo-top_left,bl-7,o-20:f-webp,q-70", &no_names())
            .expect("valid chain");
        let step = &plan.steps()[0];
        assert_eq!(step.width, Some(Dimension::Pixels(300.0)));
        assert_eq!(step.height, Some(Dimension::Fraction(0.5)));
        assert_eq!(step.focus, Focus::TopLeft);
        assert_eq!(step.blur, Some(7));
        assert_eq!(step.opacity, Some(20));
        assert_eq!(plan.steps().len(), 1);
        assert_eq!(plan.format(), Some(OutputFormat::Webp));
        assert_eq!(plan.quality(), Some(70));
        assert_eq!(plan.progressive(), None);
        assert!(!plan.is_original());
        assert!(!plan.disables_avif());
    }

    #[test]
    fn parse_marks_avif_blockers() {
        let plan = parse_chain("e-usm-2-2-0.8-0.024", &no_names()).unwrap();
        assert!(plan.disables_avif());
        let plan = parse_chain("cp-true", &no_names()).unwrap();
        assert!(plan.disables_avif());
    }

    #[test]
    fn parse_reads_default_image_path() {
        let plan = parse_chain("di-@@folder@@a%2Cb.jpg", &no_names()).unwrap();
        assert_eq!(plan.default_image(), Some("folder/a,b.jpg"));
        let reparsed = parse_chain(&plan.canonical(), &no_names()).unwrap();
        assert_eq!(reparsed.default_image(), Some("folder/a,b.jpg"));
        let plan = parse_chain("di-a%40@@b.jpg", &no_names()).unwrap();
        assert_eq!(plan.default_image(), Some("a@/b.jpg"));
        assert_eq!(plan.canonical(), "di-a%40@@b.jpg");
    }

    #[test]
    fn canonical_ignores_parameter_order() {
        let groups: &[&[&str]] = &[
            &[
                "w-300,h-200",
                "h-200,w-300,c-maintain_ratio",
                "h-200,fo-center,w-300",
            ],
            &["w-300,h-200,ar-4-3", "ar-16-9,h-200,w-300"],
            &["rt-90,fl-h,bl-5", "bl-5,fl-h,rt-90", "rt-N270,fl-h,bl-05"],
            &["bg-red,b-2_white", "b-2-FFFFFF,bg-FF0000"],
            &[
                "f-jpg,q-80,w-10",
                "q-80,w-10,f-jpeg",
                "w-10,c-at_least:q-80,f-jpg",
            ],
            &[
                "w-300,h-300,cm-pad_resize,fo-left",
                "fo-left,cm-pad_resize,h-300,w-300,c-force",
            ],
            &["e-grayscale,e-contrast", "e-contrast,e-grayscale"],
            &["n-thumb", "w-120,h-80", "h-80,w-120,c-maintain_ratio"],
        ];
        for group in groups {
            let first = canonical(group[0]);
            for chain in &group[1..] {
                assert_eq!(canonical(chain), first, "{chain} vs {}", group[0]);
            }
        }
    }

    #[test]
    fn canonical_keeps_meanings_apart() {
        let distinct = [
            "w-300",
            "w-300,c-at_max",
            "w-300:h-200",
            "w-300,h-200",
            "h-200,w-300,c-force",
            "w-0.5",
            "w-iw_mul_0.5",
            "w-auto",
            "f-auto",
            "f-jpg",
            "rt-90",
            "rt-auto",
            "e-sharpen",
            "e-sharpen-1",
            "t-true",
            "t-false",
            "bg-FF000050",
            "bg-FF0000",
            "orig-true",
            "orig-false",
        ];
        let canonicals: Vec<String> = distinct.iter().map(|chain| canonical(chain)).collect();
        for (index, text) in canonicals.iter().enumerate() {
            for (other_index, other) in canonicals.iter().enumerate() {
                if index != other_index {
                    assert_ne!(
                        text, other,
                        "{} vs {}",
                        distinct[index], distinct[other_index]
                    );
                }
            }
        }
    }

    #[test]
    fn parse_rejects_invalid_chains() {
        let cases: &[(&str, &str)] = &[
            ("w-300,,h-4", "w-300,,h-4"),
            ("w-300,", "w-300,"),
            ("w-300:", "w-300:"),
            (":w-300", ":w-300"),
            ("w-300::h-4", "w-300::h-4"),
            ("foo-1", "foo-1"),
            ("foo", "foo"),
            ("W-300", "W-300"),
            ("w-abc", "w-abc"),
            ("w-0", "w-0"),
            ("w--5", "w--5"),
            ("w-1e3", "w-1e3"),
            ("w", "w"),
            ("w-", "w-"),
            ("h-auto", "h-auto"),
            ("w-iw_plus_2", "w-iw_plus_2"),
            ("q-0", "q-0"),
            ("q-101", "q-101"),
            ("q-abc", "q-abc"),
            ("q-80.5", "q-80.5"),
            ("bl-0", "bl-0"),
            ("bl-101", "bl-101"),
            ("o-101", "o-101"),
            ("o-0.8", "o-0.8"),
            ("t-0", "t-0"),
            ("t-100", "t-100"),
            ("w-300,dpr-6", "dpr-6"),
            ("w-300,dpr-0.05", "dpr-0.05"),
            ("w-300,w-400", "w-400"),
            ("rt-90,rt-auto", "rt-auto"),
            ("ar-4-3", "ar-4-3"),
            ("ar-4-0,w-10", "ar-4-0"),
            ("ar-4,w-10", "ar-4"),
            ("c-force", "c-force"),
            ("cm-extract", "cm-extract"),
            ("fo-left", "fo-left"),
            ("dpr-2", "dpr-2"),
            ("c-fill,w-10", "c-fill"),
            ("cm-crop,w-10", "cm-crop"),
            ("fo-middle,w-10", "fo-middle"),
            ("w-300,x-10", "x-10"),
            ("w-300,h-300,cm-pad_resize,yc-10", "yc-10"),
            ("w-300,h-300,cm-extract,x-10,xc-10", "xc-10"),
            ("w-300,h-300,cm-extract,x-N10", "x-N10"),
            ("w-300,h-300,cm-extract,x-1.5", "x-1.5"),
            ("w-300,h-300,cm-extract,fo-auto,y-10", "fo-auto"),
            ("w-300,h-300,bg-blurred", "bg-blurred"),
            ("w-300,h-300,cm-pad_resize,bg-blurred_101", "bg-blurred_101"),
            (
                "w-300,h-300,cm-pad_resize,bg-blurred_5_300",
                "bg-blurred_5_300",
            ),
            ("bg-gradient_dominant_3", "bg-gradient_dominant_3"),
            ("bg-notacolor", "bg-notacolor"),
            ("bg-FF0000AB", "bg-FF0000AB"),
            ("bg-FFF", "bg-FFF"),
            ("b-5", "b-5"),
            ("b-x_red", "b-x_red"),
            ("b-5_nocolor", "b-5_nocolor"),
            ("fl-x", "fl-x"),
            ("r-1_2", "r-1_2"),
            ("r-abc", "r-abc"),
            ("rt-abc", "rt-abc"),
            ("e-grayscale-true", "e-grayscale-true"),
            ("e-sharpen-0", "e-sharpen-0"),
            ("e-sharpen-x", "e-sharpen-x"),
            ("e-usm-2-2-0.8", "e-usm-2-2-0.8"),
            ("e-usm-0-2-0.8-0.1", "e-usm-0-2-0.8-0.1"),
            ("e-usm", "e-usm"),
            ("e-foo", "e-foo"),
            ("e-", "e-"),
            ("oi-logo.png", "oi-logo.png"),
            ("ote-SGVsbG8", "ote-SGVsbG8"),
            ("ik-s-abc", "ik-s-abc"),
            ("ik-attachment-true", "ik-attachment-true"),
            ("f-bmp", "f-bmp"),
            ("pr-yes", "pr-yes"),
            ("orig-1", "orig-1"),
            ("di-", "di-"),
            ("di-..@@x.jpg", "di-..@@x.jpg"),
            ("di-a@@@@b.jpg", "di-a@@@@b.jpg"),
            ("w-%zz", "w-%zz"),
            ("w-%FF", "w-%FF"),
            ("ar-4:3,w-10", "ar-4"),
            ("n", "n"),
            ("n-", "n-"),
            ("n-loop_a", "n-loop_a"),
            ("n-empty", "n-empty"),
            ("n-broken", "w-abc"),
        ];
        for (chain, token) in cases {
            let error = parse_chain(chain, &names()).expect_err(chain);
            assert_eq!(error.code(), "invalid_transformation", "{chain}: {error}");
            let message = error.to_string();
            assert!(
                message.contains(token),
                "{chain}: `{message}` lacks `{token}`"
            );
        }
    }

    #[test]
    fn parse_rejects_empty_chain() {
        let error = parse_chain("", &no_names()).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        assert!(error.to_string().contains("empty"), "{error}");
    }

    #[test]
    fn parse_rejects_unsupported_features() {
        let cases: &[(&str, &str)] = &[
            ("l-image,i-logo.png,l-end", "l-image"),
            ("l-text,i-Hello,l-end", "l-text"),
            ("if-w_gt_100,w-100,if-end", "if-w_gt_100"),
            ("lx-10", "lx-10"),
            ("e-shadow", "e-shadow"),
            ("e-shadow-bl-10_st-30", "e-shadow-bl-10_st-30"),
            ("e-gradient", "e-gradient"),
            ("cr-red", "cr-red"),
            ("e-distort-a-20", "e-distort-a-20"),
            ("pg-2", "pg-2"),
            ("w-300,h-300,fo-face,z-0.5", "fo-face"),
            ("z-0.5", "z-0.5"),
            ("w-300,h-300,fo-face", "fo-face"),
            ("w-300,h-300,fo-custom", "fo-custom"),
            ("w-300,h-300,fo-car", "fo-car"),
            ("w-300,h-300,fo-trafficLight", "fo-trafficLight"),
            ("e-bgremove", "e-bgremove"),
            ("e-removedotbg", "e-removedotbg"),
            ("e-changebg-prompt-snow", "e-changebg-prompt-snow"),
            ("e-upscale", "e-upscale"),
            ("e-retouch", "e-retouch"),
            ("e-genvar", "e-genvar"),
            ("e-dropshadow", "e-dropshadow"),
            ("e-edit-prompt-x", "e-edit-prompt-x"),
            ("bg-genfill", "bg-genfill"),
            ("vc-h264", "vc-h264"),
            ("ac-none", "ac-none"),
            ("so-5", "so-5"),
            ("sr-240_360", "sr-240_360"),
            ("f-svg", "f-svg"),
            ("f-mp4", "f-mp4"),
            ("w-bw_div_2", "w-bw_div_2"),
        ];
        for (chain, token) in cases {
            let error = parse_chain(chain, &no_names()).expect_err(chain);
            assert_eq!(
                error.code(),
                "unsupported_transformation",
                "{chain}: {error}"
            );
            let message = error.to_string();
            assert!(
                message.contains(token),
                "{chain}: `{message}` lacks `{token}`"
            );
        }
    }

    #[test]
    fn parse_rejects_unknown_named() {
        let error = parse_chain("w-10,n-missing", &names()).unwrap_err();
        assert_eq!(error.code(), "unknown_named_transformation");
        assert!(error.to_string().contains("n-missing"), "{error}");
    }

    #[test]
    fn named_errors_name_the_transformation() {
        let error = parse_chain("n-broken", &names()).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("w-abc"), "{message}");
        assert!(message.contains("n-broken"), "{message}");
        let error = parse_chain("n-loop_a", &names()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("n-loop_a -> n-loop_b -> n-loop_a"),
            "{error}"
        );
    }

    #[test]
    fn named_expansion_is_bounded() {
        let mut named = BTreeMap::new();
        for level in 0..20 {
            named.insert(
                format!("l{level}"),
                format!("n-l{},n-l{}", level + 1, level + 1),
            );
        }
        named.insert("l20".to_string(), "w-1".to_string());
        let error = parse_chain("n-l0", &named).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        let message = error.to_string();
        assert!(
            message.contains("deep") || message.contains("parameters"),
            "{message}"
        );
    }

    #[test]
    fn chain_size_is_bounded() {
        let chain = vec!["rt-90"; MAX_STEPS + 1].join(":");
        let error = parse_chain(&chain, &no_names()).unwrap_err();
        assert!(error.to_string().contains("steps"), "{error}");
        let chain = (0..=MAX_PARAMETERS)
            .map(|_| "rt-90")
            .collect::<Vec<_>>()
            .join(":");
        assert!(parse_chain(&chain, &no_names()).is_err());
    }

    #[test]
    fn duplicate_output_options_conflict_within_step() {
        let error = parse_chain("q-50,q-70", &no_names()).unwrap_err();
        assert_eq!(error.code(), "invalid_transformation");
        assert!(error.to_string().contains("q-70"), "{error}");
    }

    fn param() -> impl Strategy<Value = String> {
        let choices: Vec<&str> = vec![
            "w-[1-9][0-9]{0,4}",
            "w-0\\.[0-9]{1,3}",
            "w-(iw|ih|cw|ch)_(div|mul|add|sub|mod|pow)_[0-9]{1,2}(\\.[0-9])?",
            "w-auto",
            "h-[1-9][0-9]{0,4}",
            "h-0\\.[1-9]",
            "h-(ih|car)",
            "ar-[1-9](\\.[0-9])?[-_][1-9]",
            "ar-(iar|car)_div_[1-9]",
            "c-(maintain_ratio|force|at_max|at_max_enlarge|at_least)",
            "cm-(pad_resize|extract|pad_extract)",
            "fo-(center|top|bottom|left|right|top_left|top_right|bottom_left|bottom_right|auto)",
            "(x|y|xc|yc)-[0-9]{1,4}",
            "(x|y)-iw_div_[1-9]",
            "dpr-([1-4](\\.[0-9]{1,2})?|auto|0\\.[1-9])",
            "rt-N?[0-9]{1,4}(\\.[0-9])?",
            "rt-auto",
            "fl-(h|v|h_v|v_h)",
            "t-(true|false|[1-9][0-9]?)",
            "b-[0-9]{1,2}[-_](red|FF0000|00ff0050|mintcream)",
            "b-ih_div_[1-9]_black",
            "r-(max|[0-9]{1,3}|[0-9]_[0-9]_[0-9]_[0-9])",
            "bg-(red|FF000050|dominant|gradient_dominant(_2|_4)?|blurred(_auto|_[0-9]{1,2}(_N?[0-9]{1,2})?)?)",
            "bl-[1-9][0-9]?",
            "o-[0-9]{1,2}",
            "e-grayscale",
            "e-contrast",
            "e-sharpen(-[1-9](\\.[0-9])?)?",
            "e-usm-[1-3]-[1-3]-0\\.[1-9]-0\\.0[0-9]{1,2}",
            "f-(auto|jpg|jpeg|png|webp|avif|gif|orig)",
            "q-[1-9][0-9]?",
            "(pr|lo|md|cp|orig)-(true|false)",
            "di-(@@)?[a-z]{1,5}(@@[a-z%2C0-9]{1,5})?\\.jpg",
            "n-(thumb|two|outer)",
        ];
        let strategies: Vec<BoxedStrategy<String>> = choices
            .into_iter()
            .map(|pattern| proptest::string::string_regex(pattern).unwrap().boxed())
            .collect();
        proptest::strategy::Union::new(strategies)
    }

    fn chain() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::collection::vec(param(), 1..5), 1..4).prop_map(
            |steps| {
                steps
                    .iter()
                    .map(|params| params.join(","))
                    .collect::<Vec<_>>()
                    .join(":")
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parser_never_panics_on_any_text(text in ".{0,80}") {
            let _ = parse_chain(&text, &names());
        }

        #[test]
        fn parser_never_panics_on_chain_like_text(text in "[a-z0-9_@%:,.N-]{0,60}") {
            let _ = parse_chain(&text, &names());
        }

        #[test]
        fn canonical_reparses_to_itself(text in chain()) {
            if let Ok(plan) = parse_chain(&text, &names()) {
                let first = plan.canonical();
                let reparsed = parse_chain(&first, &no_names())
                    .map_err(|e| TestCaseError::fail(format!("{text} -> {first}: {e}")))?;
                prop_assert_eq!(&reparsed.canonical(), &first, "from {}", text);
                prop_assert_eq!(reparsed, plan, "from {}", text);
            }
        }
    }
}
