//! File-name sanitising and the unique-name suffix.
//!
//! A stored name is one URL path segment: letters and digits of any script, `.`, `-` and `_`.
//! Everything else becomes `_`, so a name never needs more than percent-encoding to sit in a URL
//! and never climbs out of its directory.

use rand::Rng;

/// Longest stored name in bytes; longer names are cut at a character boundary, keeping the extension.
pub const MAX_NAME_BYTES: usize = 200;

/// Names that would shadow a server route if a file took them; allocation treats them as taken.
pub const RESERVED_NAMES: &[&str] = &["api", "healthz", "readyz", "metrics", "ipfs", "favicon.ico"];

/// Turns a client's file name into a safe stored name; `extension` (without the dot) is used when
/// nothing usable is left.
pub fn sanitize(raw: &str, extension: &str) -> String {
    // Clients send full paths (`C:\Users\x\a.png`, `../../etc/passwd`): keep the last component.
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mapped: String = last
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Leading dots would make hidden files or the `.`/`..` path segments.
    let trimmed = mapped.trim_start_matches('.');
    let name = truncate_keeping_extension(trimmed, MAX_NAME_BYTES);
    if name.is_empty() || name.chars().all(|c| c == '_' || c == '.') {
        format!("file.{extension}")
    } else {
        name
    }
}

/// Inserts `_` and six random letters or digits before the extension, as ImageKit does for a
/// name that is already taken.
pub fn with_random_suffix(name: &str) -> String {
    let suffix: String = rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(6)
        .map(char::from)
        .collect();
    let (stem, extension) = split_extension(name);
    // The suffix adds 7 bytes, so the stem gives way to keep the whole name within the limit.
    let stem = truncate_at_char_boundary(stem, MAX_NAME_BYTES - 7 - extension.len());
    format!("{stem}_{suffix}{extension}")
}

/// Splits `photo.final.jpg` into `("photo.final", ".jpg")`; a name without a dot has no extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let (stem, extension) = split_extension(name);
    if extension.len() >= max / 2 {
        return truncate_at_char_boundary(name, max).to_owned();
    }
    let stem = truncate_at_char_boundary(stem, max - extension.len());
    format!("{stem}{extension}")
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_table() {
        let cases: &[(&str, &str)] = &[
            ("photo.jpg", "photo.jpg"),
            ("../../etc/passwd.png", "passwd.png"),
            ("..\\..\\x.png", "x.png"),
            ("C:\\Users\\me\\cat.gif", "cat.gif"),
            ("a%00b.png", "a_00b.png"),
            ("a\r\nX-Evil: 1.png", "a__X-Evil__1.png"),
            (
                "name with spaces & ümlaut 名前 (1).png",
                "name_with_spaces___ümlaut_名前__1_.png",
            ),
            ("йцук.jpg", "йцук.jpg"),
            (".hidden.png", "hidden.png"),
            ("..", "file.png"),
            ("", "file.png"),
            ("???", "file.png"),
            ("dir/", "file.png"),
            ("tr:w-100", "tr_w-100"),
        ];
        for (raw, expected) in cases {
            assert_eq!(sanitize(raw, "png"), *expected, "input {raw:?}");
        }
    }

    #[test]
    fn sanitize_caps_length_keeping_extension() {
        let long = format!("{}.jpeg", "ж".repeat(300));
        let name = sanitize(&long, "jpg");
        assert!(name.len() <= MAX_NAME_BYTES);
        assert!(name.ends_with(".jpeg"));
        assert!(name.starts_with('ж'));
    }

    #[test]
    fn suffix_goes_before_extension() {
        let name = with_random_suffix("cat.final.png");
        assert!(name.starts_with("cat.final_"), "{name}");
        assert!(name.ends_with(".png"));
        assert_eq!(name.len(), "cat.final.png".len() + 7);
        let plain = with_random_suffix("README");
        assert_eq!(plain.len(), "README".len() + 7);
    }

    #[test]
    fn suffix_keeps_long_names_within_limit() {
        let long = sanitize(&format!("{}.png", "a".repeat(400)), "png");
        let suffixed = with_random_suffix(&long);
        assert!(suffixed.len() <= MAX_NAME_BYTES);
        assert!(suffixed.ends_with(".png"));
    }
}
