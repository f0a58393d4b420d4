//! Arithmetic expressions in parameter values, such as `w-iw_div_4` or `h-ih_mul_0.8_add_iw_mul_0.4`.
//!
//! An expression is `operand(_operator_operand)*` or a bare variable. Operands are the variables
//! `iw ih iar` (the original image) and `cw ch car` (the input of the current chain step), or
//! non-negative decimal numbers. The operators bind in ImageKit's documented order, which differs
//! from ordinary arithmetic: first `mul` and `div`, then `add` and `sub`, then `mod`, and last
//! `pow`, each group left to right. So `2_add_3_pow_2` is `(2 + 3)^2 = 25`.

use std::fmt;

/// A parsed arithmetic expression with one more operand than operators.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    operands: Vec<Operand>,
    operators: Vec<Operator>,
}

/// One operand of an [`Expr`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Operand {
    Variable(Variable),
    Number(f64),
}

/// The image-size variables an expression can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variable {
    /// Width of the original image.
    InputWidth,
    /// Height of the original image.
    InputHeight,
    /// Aspect ratio (width / height) of the original image.
    InputAspectRatio,
    /// Width of the current step's input, i.e. the previous step's output.
    CurrentWidth,
    /// Height of the current step's input.
    CurrentHeight,
    /// Aspect ratio of the current step's input.
    CurrentAspectRatio,
}

/// The binary operators of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

/// The image sizes that expression variables refer to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variables {
    /// Original image size (`iw`, `ih`).
    pub original: (f64, f64),
    /// Current step's input size (`cw`, `ch`).
    pub current: (f64, f64),
}

/// An expression parse failure. `Unsupported` gets its own error code in the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprParseError {
    Invalid(String),
    Unsupported(String),
}

/// The operator groups from the first to bind to the last.
const PRECEDENCE: [&[Operator]; 4] = [
    &[Operator::Mul, Operator::Div],
    &[Operator::Add, Operator::Sub],
    &[Operator::Mod],
    &[Operator::Pow],
];

impl Variable {
    fn from_name(name: &str) -> Option<Variable> {
        match name {
            "iw" => Some(Variable::InputWidth),
            "ih" => Some(Variable::InputHeight),
            "iar" => Some(Variable::InputAspectRatio),
            "cw" => Some(Variable::CurrentWidth),
            "ch" => Some(Variable::CurrentHeight),
            "car" => Some(Variable::CurrentAspectRatio),
            _ => None,
        }
    }

    /// Returns the URL spelling of the variable.
    pub fn name(self) -> &'static str {
        match self {
            Variable::InputWidth => "iw",
            Variable::InputHeight => "ih",
            Variable::InputAspectRatio => "iar",
            Variable::CurrentWidth => "cw",
            Variable::CurrentHeight => "ch",
            Variable::CurrentAspectRatio => "car",
        }
    }

    fn value(self, variables: &Variables) -> f64 {
        let (iw, ih) = variables.original;
        let (cw, ch) = variables.current;
        match self {
            Variable::InputWidth => iw,
            Variable::InputHeight => ih,
            Variable::InputAspectRatio => iw / ih,
            Variable::CurrentWidth => cw,
            Variable::CurrentHeight => ch,
            Variable::CurrentAspectRatio => cw / ch,
        }
    }
}

impl Operator {
    fn from_name(name: &str) -> Option<Operator> {
        match name {
            "add" => Some(Operator::Add),
            "sub" => Some(Operator::Sub),
            "mul" => Some(Operator::Mul),
            "div" => Some(Operator::Div),
            "mod" => Some(Operator::Mod),
            "pow" => Some(Operator::Pow),
            _ => None,
        }
    }

    /// Returns the URL spelling of the operator.
    pub fn name(self) -> &'static str {
        match self {
            Operator::Add => "add",
            Operator::Sub => "sub",
            Operator::Mul => "mul",
            Operator::Div => "div",
            Operator::Mod => "mod",
            Operator::Pow => "pow",
        }
    }

    /// Applies the operator. The error text completes a sentence that starts with the expression.
    fn apply(self, left: f64, right: f64) -> Result<f64, &'static str> {
        match self {
            Operator::Add => Ok(left + right),
            Operator::Sub => Ok(left - right),
            Operator::Mul => Ok(left * right),
            Operator::Div if right == 0.0 => Err("divides by zero"),
            Operator::Div => Ok(left / right),
            Operator::Mod if right == 0.0 => Err("takes a modulo by zero"),
            Operator::Mod => Ok(left % right),
            Operator::Pow => Ok(left.powf(right)),
        }
    }
}

impl Expr {
    /// Parses `value` as an expression. A plain number is not an expression: callers try that
    /// first, because a literal and an expression of the same value differ (`w-0.5` is a fraction).
    pub fn parse(value: &str) -> Result<Expr, ExprParseError> {
        let tokens: Vec<&str> = value.split('_').collect();
        if tokens.len().is_multiple_of(2) {
            return Err(ExprParseError::Invalid(format!(
                "expression `{value}` must alternate operands and operators, as in iw_div_2"
            )));
        }
        let mut operands = Vec::with_capacity(tokens.len() / 2 + 1);
        let mut operators = Vec::with_capacity(tokens.len() / 2);
        for (index, token) in tokens.iter().enumerate() {
            if index % 2 == 1 {
                let operator = Operator::from_name(token).ok_or_else(|| {
                    ExprParseError::Invalid(format!(
                        "`{token}` in expression `{value}` is not an operator; use add, sub, mul, \
                         div, mod or pow"
                    ))
                })?;
                operators.push(operator);
            } else if tokens.len() == 1 {
                operands.push(parse_operand(token, value).map_err(|error| match error {
                    ExprParseError::Invalid(_) => ExprParseError::Invalid(format!(
                        "`{value}` is not a number, a variable (iw, ih, iar, cw, ch, car) or an \
                         expression such as iw_div_2"
                    )),
                    unsupported => unsupported,
                })?);
            } else {
                operands.push(parse_operand(token, value)?);
            }
        }
        if operators.is_empty() && matches!(operands[0], Operand::Number(_)) {
            return Err(ExprParseError::Invalid(format!(
                "`{value}` is a number, not an expression"
            )));
        }
        Ok(Expr {
            operands,
            operators,
        })
    }

    /// Evaluates the expression with the given image sizes. Fails on division or modulo by zero
    /// and on results that are not finite numbers.
    pub fn eval(&self, variables: &Variables) -> Result<f64, String> {
        let mut values: Vec<f64> = self
            .operands
            .iter()
            .map(|operand| match operand {
                Operand::Variable(variable) => variable.value(variables),
                Operand::Number(number) => *number,
            })
            .collect();
        let mut operators = self.operators.clone();
        for group in PRECEDENCE {
            let mut index = 0;
            while index < operators.len() {
                if group.contains(&operators[index]) {
                    let right = values.remove(index + 1);
                    values[index] =
                        operators[index]
                            .apply(values[index], right)
                            .map_err(|reason| {
                                format!("expression `{self}` {reason}; change the operand after it")
                            })?;
                    operators.remove(index);
                } else {
                    index += 1;
                }
            }
        }
        let result = values[0];
        if !result.is_finite() {
            return Err(format!(
                "expression `{self}` does not give a finite number; use smaller operands"
            ));
        }
        Ok(result)
    }

    /// Returns the operands in order.
    pub fn operands(&self) -> &[Operand] {
        &self.operands
    }

    /// Returns the operators in order.
    pub fn operators(&self) -> &[Operator] {
        &self.operators
    }
}

fn parse_operand(token: &str, value: &str) -> Result<Operand, ExprParseError> {
    if let Some(variable) = Variable::from_name(token) {
        return Ok(Operand::Variable(variable));
    }
    if let Some(number) = parse_decimal(token) {
        return Ok(Operand::Number(number));
    }
    if matches!(token, "bw" | "bh" | "bar") {
        return Err(ExprParseError::Unsupported(format!(
            "`{token}` in `{value}` refers to the base image under a layer, and layers are not \
             supported"
        )));
    }
    Err(ExprParseError::Invalid(format!(
        "`{token}` in expression `{value}` is not an operand; use iw, ih, iar, cw, ch, car or a \
         non-negative number"
    )))
}

/// Writes the canonical form: operands and operators joined by `_`, numbers in shortest form.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, operand) in self.operands.iter().enumerate() {
            if index > 0 {
                write!(f, "_{}_", self.operators[index - 1].name())?;
            }
            match operand {
                Operand::Variable(variable) => f.write_str(variable.name())?,
                Operand::Number(number) => write!(f, "{number}")?,
            }
        }
        Ok(())
    }
}

/// Parses an unsigned decimal number (`12`, `0.5`, `1.25`) without sign, exponent or bare dot.
pub fn parse_decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !fraction.is_none_or(all_digits) {
        return None;
    }
    text.parse().ok()
}

/// Parses a decimal number that may carry ImageKit's `N` prefix (or a plain `-`) for negatives.
pub fn parse_signed_decimal(text: &str) -> Option<f64> {
    match text.strip_prefix('N').or_else(|| text.strip_prefix('-')) {
        Some(magnitude) => parse_decimal(magnitude).map(|value| -value),
        None => parse_decimal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: Variables = Variables {
        original: (1000.0, 500.0),
        current: (400.0, 300.0),
    };

    fn eval(text: &str) -> f64 {
        Expr::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e:?}"))
            .eval(&SIZES)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn eval_follows_documented_precedence() {
        let cases: &[(&str, f64)] = &[
            ("iw", 1000.0),
            ("ih", 500.0),
            ("iar", 2.0),
            ("cw", 400.0),
            ("ch", 300.0),
            ("car", 400.0 / 300.0),
            ("iw_div_4", 250.0),
            ("ih_mul_0.8_add_iw_mul_0.4", 800.0),
            ("2_add_3_mul_4", 14.0),
            ("10_sub_4_sub_3", 3.0),
            ("100_div_10_div_5", 2.0),
            ("10_add_5_mod_4", 3.0),
            ("2_add_3_pow_2", 25.0),
            ("2_pow_3_pow_2", 64.0),
            ("7_mod_4_pow_2", 9.0),
            ("iw_sub_2000", -1000.0),
        ];
        for (text, expected) in cases {
            let value = eval(text);
            assert!(
                (value - expected).abs() < 1e-9,
                "{text}: {value} != {expected}"
            );
        }
    }

    #[test]
    fn eval_rejects_zero_divisors_and_infinities() {
        for text in ["iw_div_0", "iw_mod_0", "iw_pow_1000"] {
            let expr = Expr::parse(text).unwrap();
            assert!(expr.eval(&SIZES).is_err(), "{text}");
        }
    }

    #[test]
    fn parse_rejects_malformed_expressions() {
        for text in [
            "iw_div",
            "iw__2",
            "iw_plus_2",
            "_iw",
            "iw_div_-2",
            "foo",
            "2",
            "iw_div_2_",
        ] {
            assert!(
                matches!(Expr::parse(text), Err(ExprParseError::Invalid(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn layer_variables_are_unsupported() {
        assert!(matches!(
            Expr::parse("bw_div_2"),
            Err(ExprParseError::Unsupported(_))
        ));
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(Expr::parse("iw_div_4.0").unwrap().to_string(), "iw_div_4");
        assert_eq!(
            Expr::parse("ih_mul_0.80_add_iw").unwrap().to_string(),
            "ih_mul_0.8_add_iw"
        );
    }

    #[test]
    fn parse_decimal_accepts_plain_numbers_only() {
        assert_eq!(parse_decimal("300"), Some(300.0));
        assert_eq!(parse_decimal("0.25"), Some(0.25));
        assert_eq!(parse_decimal("007"), Some(7.0));
        for text in [
            "", ".5", "5.", "1e3", "+1", "-1", "1.2.3", "0x10", "inf", "NaN",
        ] {
            assert_eq!(parse_decimal(text), None, "{text}");
        }
        assert_eq!(parse_signed_decimal("N40"), Some(-40.0));
        assert_eq!(parse_signed_decimal("-40"), Some(-40.0));
        assert_eq!(parse_signed_decimal("40.5"), Some(40.5));
        assert_eq!(parse_signed_decimal("N-40"), None);
    }
}
