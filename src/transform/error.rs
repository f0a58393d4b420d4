//! The error type of transformation parsing and geometry planning.
//!
//! Every variant maps to one stable snake_case code through [`TransformError::code`], so the HTTP
//! layer can pick the status and the JSON `code` without matching on message text. Every message
//! names the offending token and lists what is accepted instead.

use thiserror::Error;

/// Maximum number of characters of a user-supplied token that a message repeats. Longer tokens are
/// shortened because messages also travel in the `ik-error` response header.
const MAX_TOKEN_CHARS: usize = 120;

/// A rejected transformation chain or a step that cannot be applied to an image.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TransformError {
    /// Unknown key, malformed or out-of-range value, empty parameter or chain, retired key, or a
    /// window that leaves the image. Code `invalid_transformation`.
    #[error("{message}")]
    Invalid { token: String, message: String },
    /// A documented ImageKit feature that kura does not implement. Code `unsupported_transformation`.
    #[error("{message}")]
    Unsupported { token: String, message: String },
    /// An `n-NAME` parameter whose name is not configured. Code `unknown_named_transformation`.
    #[error(
        "unknown named transformation `n-{name}`: define it under [transform.named] in config.toml \
         or remove the parameter"
    )]
    UnknownNamed { name: String },
    /// A step whose output or intermediate image would exceed a configured limit. Code
    /// `limit_exceeded`. `limit` is the name of the [`Limits`](super::geometry::Limits) field.
    #[error("{message}")]
    LimitExceeded {
        token: String,
        limit: &'static str,
        message: String,
    },
}

impl TransformError {
    /// Builds an `invalid_transformation` error whose message starts with the quoted token.
    pub fn invalid(token: &str, reason: impl std::fmt::Display) -> Self {
        let token = shorten(token);
        let message = format!("invalid transformation `{token}`: {reason}");
        TransformError::Invalid { token, message }
    }

    /// Builds an `unsupported_transformation` error whose message starts with the quoted token.
    pub fn unsupported(token: &str, reason: impl std::fmt::Display) -> Self {
        let token = shorten(token);
        let message = format!("unsupported transformation `{token}`: {reason}");
        TransformError::Unsupported { token, message }
    }

    /// Builds a `limit_exceeded` error for `token`, naming the limit field and its value.
    pub fn limit_exceeded(
        token: &str,
        limit: &'static str,
        size: (u64, u64),
        limit_value: u64,
    ) -> Self {
        let token = shorten(token);
        let unit = if limit == "max_output_pixels" {
            "pixels"
        } else {
            "px per side"
        };
        let message = format!(
            "transformation `{token}` needs an image of {}x{} px, over the {limit} limit of \
             {limit_value} {unit}; request a smaller size",
            size.0, size.1
        );
        TransformError::LimitExceeded {
            token,
            limit,
            message,
        }
    }

    /// Returns the stable snake_case code for the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            TransformError::Invalid { .. } => "invalid_transformation",
            TransformError::Unsupported { .. } => "unsupported_transformation",
            TransformError::UnknownNamed { .. } => "unknown_named_transformation",
            TransformError::LimitExceeded { .. } => "limit_exceeded",
        }
    }

    /// Returns the offending token as it appeared in the URL (shortened when very long).
    pub fn token(&self) -> String {
        match self {
            TransformError::Invalid { token, .. }
            | TransformError::Unsupported { token, .. }
            | TransformError::LimitExceeded { token, .. } => token.clone(),
            TransformError::UnknownNamed { name } => format!("n-{name}"),
        }
    }
}

/// Cuts a token to [`MAX_TOKEN_CHARS`] characters, marking the cut with an ellipsis.
fn shorten(token: &str) -> String {
    if token.chars().count() <= MAX_TOKEN_CHARS {
        return token.to_string();
    }
    let mut short: String = token.chars().take(MAX_TOKEN_CHARS).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(
            TransformError::invalid("w-x", "bad").code(),
            "invalid_transformation"
        );
        assert_eq!(
            TransformError::unsupported("l-image", "no layers").code(),
            "unsupported_transformation"
        );
        assert_eq!(
            TransformError::UnknownNamed {
                name: "thumb".into()
            }
            .code(),
            "unknown_named_transformation"
        );
        assert_eq!(
            TransformError::limit_exceeded("w-20000", "max_output_side", (20000, 10000), 16383)
                .code(),
            "limit_exceeded"
        );
    }

    #[test]
    fn messages_name_the_token() {
        let error = TransformError::invalid("w-abc", "w accepts a number");
        assert!(error.to_string().contains("`w-abc`"));
        let error = TransformError::UnknownNamed {
            name: "thumb".into(),
        };
        assert!(error.to_string().contains("n-thumb"));
        assert_eq!(error.token(), "n-thumb");
        let error =
            TransformError::limit_exceeded("w-20000", "max_output_side", (20000, 10000), 16383);
        let message = error.to_string();
        assert!(message.contains("w-20000"), "{message}");
        assert!(message.contains("max_output_side"), "{message}");
        assert!(message.contains("16383"), "{message}");
    }

    #[test]
    fn long_tokens_are_shortened() {
        let token = "x".repeat(500);
        let error = TransformError::invalid(&token, "too long");
        assert_eq!(error.token().chars().count(), MAX_TOKEN_CHARS + 1);
        assert!(error.to_string().len() < 300);
    }
}
