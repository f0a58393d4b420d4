//! The HTTP side: listener and connection loop, routing, the JSON envelope, the mapping of every
//! domain error to one status, and pure Range and conditional-request logic.

pub mod body;
pub mod error;
pub mod file;
pub mod range;
pub mod router;
pub mod server;

pub use body::Body;
pub use error::ApiError;
pub use server::AppState;

/// Returns the still percent-encoded value of the first `name=` pair in a query string.
pub fn raw_query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Returns the percent-decoded value of the first `name=` pair in a query string.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then(|| {
            let value = value.replace('+', " ");
            percent_encoding::percent_decode_str(&value)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_param_decodes() {
        assert_eq!(query_param("page=2&limit=5", "limit").as_deref(), Some("5"));
        assert_eq!(query_param("a=%2D1", "a").as_deref(), Some("-1"));
        assert_eq!(query_param("page", "page").as_deref(), Some(""));
        assert_eq!(query_param("x=1", "page"), None);
    }
}
