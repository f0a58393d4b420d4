//! Colour values of the `bg` and `b` parameters.
//!
//! Accepted forms: `RRGGBB` hex, `RRGGBBAA` where `AA` is a *decimal* opacity from 00 to 99 percent
//! (ImageKit's convention, not hex alpha), the CSS named colours and `transparent`. Hex digits and
//! names are matched without regard to case.

use std::fmt;

/// An sRGB colour with an opacity in percent (100 = opaque).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Color {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    /// Opacity from 0 (transparent) to 100 (opaque). Only `RRGGBBAA` and `transparent` give less
    /// than 100, and `RRGGBBAA` tops out at 99.
    pub opacity_percent: u8,
}

impl Color {
    /// Opaque black, the padding colour when neither `bg` nor an alpha channel applies.
    pub const BLACK: Color = Color::opaque(0, 0, 0);
    /// Opaque white, the colour that flattens alpha onto opaque formats when no `bg` is given.
    pub const WHITE: Color = Color::opaque(255, 255, 255);

    /// Builds an opaque colour.
    pub const fn opaque(r: u8, g: u8, b: u8) -> Color {
        Color {
            r,
            g,
            b,
            opacity_percent: 100,
        }
    }

    /// Returns the opacity on the 0–255 alpha scale, rounded half up.
    pub fn alpha(&self) -> u8 {
        let percent = u32::from(self.opacity_percent.min(100));
        ((percent * 255 + 50) / 100) as u8
    }

    /// Returns `[r, g, b, alpha]` with alpha on the 0–255 scale.
    pub fn to_rgba(&self) -> [u8; 4] {
        [self.r, self.g, self.b, self.alpha()]
    }
}

/// Writes the canonical form: uppercase `RRGGBB` when opaque, else `RRGGBBAA` with decimal `AA`.
impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02X}{:02X}{:02X}", self.r, self.g, self.b)?;
        if self.opacity_percent < 100 {
            write!(f, "{:02}", self.opacity_percent)?;
        }
        Ok(())
    }
}

/// Parses a colour value. The error text lists the accepted forms.
pub fn parse_color(value: &str) -> Result<Color, String> {
    if let Some(color) = parse_hex(value) {
        return Ok(color);
    }
    let lower = value.to_ascii_lowercase();
    if lower == "transparent" {
        return Ok(Color {
            r: 0,
            g: 0,
            b: 0,
            opacity_percent: 0,
        });
    }
    if let Ok(index) = CSS_NAMED_COLORS.binary_search_by(|(name, _)| name.cmp(&lower.as_str())) {
        let rgb = CSS_NAMED_COLORS[index].1;
        return Ok(Color::opaque(
            (rgb >> 16) as u8,
            (rgb >> 8) as u8,
            rgb as u8,
        ));
    }
    let is_hex = !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex && value.len() == 8 {
        return Err(format!(
            "`{value}` is not a valid colour: in RRGGBBAA the last two digits are a decimal \
             opacity from 00 to 99 percent, not hex"
        ));
    }
    Err(format!(
        "`{value}` is not a colour; use RRGGBB hex, RRGGBBAA with a decimal opacity AA from 00 to 99, \
         or a CSS colour name such as red"
    ))
}

fn parse_hex(value: &str) -> Option<Color> {
    if value.len() != 6 && value.len() != 8 {
        return None;
    }
    if !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |at: usize| u8::from_str_radix(&value[at..at + 2], 16).ok();
    let opacity_percent = if value.len() == 8 {
        let digits = &value[6..8];
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()?
    } else {
        100
    };
    Some(Color {
        r: channel(0)?,
        g: channel(2)?,
        b: channel(4)?,
        opacity_percent,
    })
}

/// The CSS Color Module Level 4 named colours, sorted by name for binary search.
const CSS_NAMED_COLORS: [(&str, u32); 148] = [
    ("aliceblue", 0xF0F8FF),
    ("antiquewhite", 0xFAEBD7),
    ("aqua", 0x00FFFF),
    ("aquamarine", 0x7FFFD4),
    ("azure", 0xF0FFFF),
    ("beige", 0xF5F5DC),
    ("bisque", 0xFFE4C4),
    ("black", 0x000000),
    ("blanchedalmond", 0xFFEBCD),
    ("blue", 0x0000FF),
    ("blueviolet", 0x8A2BE2),
    ("brown", 0xA52A2A),
    ("burlywood", 0xDEB887),
    ("cadetblue", 0x5F9EA0),
    ("chartreuse", 0x7FFF00),
    ("chocolate", 0xD2691E),
    ("coral", 0xFF7F50),
    ("cornflowerblue", 0x6495ED),
    ("cornsilk", 0xFFF8DC),
    ("crimson", 0xDC143C),
    ("cyan", 0x00FFFF),
    ("darkblue", 0x00008B),
    ("darkcyan", 0x008B8B),
    ("darkgoldenrod", 0xB8860B),
    ("darkgray", 0xA9A9A9),
    ("darkgreen", 0x006400),
    ("darkgrey", 0xA9A9A9),
    ("darkkhaki", 0xBDB76B),
    ("darkmagenta", 0x8B008B),
    ("darkolivegreen", 0x556B2F),
    ("darkorange", 0xFF8C00),
    ("darkorchid", 0x9932CC),
    ("darkred", 0x8B0000),
    ("darksalmon", 0xE9967A),
    ("darkseagreen", 0x8FBC8F),
    ("darkslateblue", 0x483D8B),
    ("darkslategray", 0x2F4F4F),
    ("darkslategrey", 0x2F4F4F),
    ("darkturquoise", 0x00CED1),
    ("darkviolet", 0x9400D3),
    ("deeppink", 0xFF1493),
    ("deepskyblue", 0x00BFFF),
    ("dimgray", 0x696969),
    ("dimgrey", 0x696969),
    ("dodgerblue", 0x1E90FF),
    ("firebrick", 0xB22222),
    ("floralwhite", 0xFFFAF0),
    ("forestgreen", 0x228B22),
    ("fuchsia", 0xFF00FF),
    ("gainsboro", 0xDCDCDC),
    ("ghostwhite", 0xF8F8FF),
    ("gold", 0xFFD700),
    ("goldenrod", 0xDAA520),
    ("gray", 0x808080),
    ("green", 0x008000),
    ("greenyellow", 0xADFF2F),
    ("grey", 0x808080),
    ("honeydew", 0xF0FFF0),
    ("hotpink", 0xFF69B4),
    ("indianred", 0xCD5C5C),
    ("indigo", 0x4B0082),
    ("ivory", 0xFFFFF0),
    ("khaki", 0xF0E68C),
    ("lavender", 0xE6E6FA),
    ("lavenderblush", 0xFFF0F5),
    ("lawngreen", 0x7CFC00),
    ("lemonchiffon", 0xFFFACD),
    ("lightblue", 0xADD8E6),
    ("lightcoral", 0xF08080),
    ("lightcyan", 0xE0FFFF),
    ("lightgoldenrodyellow", 0xFAFAD2),
    ("lightgray", 0xD3D3D3),
    ("lightgreen", 0x90EE90),
    ("lightgrey", 0xD3D3D3),
    ("lightpink", 0xFFB6C1),
    ("lightsalmon", 0xFFA07A),
    ("lightseagreen", 0x20B2AA),
    ("lightskyblue", 0x87CEFA),
    ("lightslategray", 0x778899),
    ("lightslategrey", 0x778899),
    ("lightsteelblue", 0xB0C4DE),
    ("lightyellow", 0xFFFFE0),
    ("lime", 0x00FF00),
    ("limegreen", 0x32CD32),
    ("linen", 0xFAF0E6),
    ("magenta", 0xFF00FF),
    ("maroon", 0x800000),
    ("mediumaquamarine", 0x66CDAA),
    ("mediumblue", 0x0000CD),
    ("mediumorchid", 0xBA55D3),
    ("mediumpurple", 0x9370DB),
    ("mediumseagreen", 0x3CB371),
    ("mediumslateblue", 0x7B68EE),
    ("mediumspringgreen", 0x00FA9A),
    ("mediumturquoise", 0x48D1CC),
    ("mediumvioletred", 0xC71585),
    ("midnightblue", 0x191970),
    ("mintcream", 0xF5FFFA),
    ("mistyrose", 0xFFE4E1),
    ("moccasin", 0xFFE4B5),
    ("navajowhite", 0xFFDEAD),
    ("navy", 0x000080),
    ("oldlace", 0xFDF5E6),
    ("olive", 0x808000),
    ("olivedrab", 0x6B8E23),
    ("orange", 0xFFA500),
    ("orangered", 0xFF4500),
    ("orchid", 0xDA70D6),
    ("palegoldenrod", 0xEEE8AA),
    ("palegreen", 0x98FB98),
    ("paleturquoise", 0xAFEEEE),
    ("palevioletred", 0xDB7093),
    ("papayawhip", 0xFFEFD5),
    ("peachpuff", 0xFFDAB9),
    ("peru", 0xCD853F),
    ("pink", 0xFFC0CB),
    ("plum", 0xDDA0DD),
    ("powderblue", 0xB0E0E6),
    ("purple", 0x800080),
    ("rebeccapurple", 0x663399),
    ("red", 0xFF0000),
    ("rosybrown", 0xBC8F8F),
    ("royalblue", 0x4169E1),
    ("saddlebrown", 0x8B4513),
    ("salmon", 0xFA8072),
    ("sandybrown", 0xF4A460),
    ("seagreen", 0x2E8B57),
    ("seashell", 0xFFF5EE),
    ("sienna", 0xA0522D),
    ("silver", 0xC0C0C0),
    ("skyblue", 0x87CEEB),
    ("slateblue", 0x6A5ACD),
    ("slategray", 0x708090),
    ("slategrey", 0x708090),
    ("snow", 0xFFFAFA),
    ("springgreen", 0x00FF7F),
    ("steelblue", 0x4682B4),
    ("tan", 0xD2B48C),
    ("teal", 0x008080),
    ("thistle", 0xD8BFD8),
    ("tomato", 0xFF6347),
    ("turquoise", 0x40E0D0),
    ("violet", 0xEE82EE),
    ("wheat", 0xF5DEB3),
    ("white", 0xFFFFFF),
    ("whitesmoke", 0xF5F5F5),
    ("yellow", 0xFFFF00),
    ("yellowgreen", 0x9ACD32),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_colors_are_sorted_and_unique() {
        for pair in CSS_NAMED_COLORS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].0, pair[1].0);
        }
    }

    #[test]
    fn parse_color_accepts_documented_forms() {
        let cases: &[(&str, &str)] = &[
            ("FF0000", "FF0000"),
            ("ff0000", "FF0000"),
            ("FFF000", "FFF000"),
            ("FF000050", "FF000050"),
            ("FF000000", "FF000000"),
            ("FF000099", "FF000099"),
            ("red", "FF0000"),
            ("RED", "FF0000"),
            ("lightgreen", "90EE90"),
            ("mintcream", "F5FFFA"),
            ("rebeccapurple", "663399"),
            ("aliceblue", "F0F8FF"),
            ("yellowgreen", "9ACD32"),
            ("transparent", "00000000"),
        ];
        for (input, canonical) in cases {
            let color = parse_color(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(color.to_string(), *canonical, "{input}");
        }
    }

    #[test]
    fn parse_color_rejects_other_forms() {
        for input in [
            "FFF",
            "FF00",
            "GG0000",
            "FF0000AB",
            "FF00001",
            "notacolor",
            "",
        ] {
            let error = parse_color(input).expect_err(input);
            assert!(error.contains("colour"), "{input}: {error}");
        }
        let error = parse_color("FF0000AB").unwrap_err();
        assert!(error.contains("decimal opacity"), "{error}");
    }

    #[test]
    fn alpha_scales_percent_to_255() {
        assert_eq!(parse_color("FF000050").unwrap().alpha(), 128);
        assert_eq!(parse_color("FF000000").unwrap().alpha(), 0);
        assert_eq!(parse_color("FF000099").unwrap().alpha(), 252);
        assert_eq!(parse_color("FF0000").unwrap().alpha(), 255);
        assert_eq!(parse_color("red").unwrap().to_rgba(), [255, 0, 0, 255]);
    }
}
