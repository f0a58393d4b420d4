//! Log setup from `[log]` and `RUST_LOG`, and the redacted effective configuration logged at start.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogConfig, LogFormat};

/// Replacement for the value of a configuration key that looks like a secret.
pub const REDACTED: &str = "[redacted]";

/// Installs the global subscriber: logs go to stderr so stdout stays free for output that scripts
/// read (a new API key, `--print-config`). `RUST_LOG`, when set and not empty, replaces
/// `log.level`. A second call does nothing, so every command may call it after loading its
/// configuration.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .with_context(|| format!("RUST_LOG={directives:?} is not a valid tracing filter; unset it or use e.g. RUST_LOG=info"))?,
        _ => EnvFilter::try_new(&config.level)
            .with_context(|| format!("log.level {:?} is not a valid tracing filter", config.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An error here only means a subscriber is already installed, which is what was asked for.
    let _ = match config.format {
        // Colour codes only help a person at a terminal; journald and log files get plain text.
        LogFormat::Human => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        // Fields sit at the top level of each object, next to `timestamp`, `level` and `message`.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    Ok(())
}

/// Returns the configuration as one line of JSON with the values of secret-looking keys replaced.
pub fn redacted_config(config: &Config) -> String {
    let mut value = serde_json::to_value(config).expect("the configuration serialises to JSON");
    redact(&mut value);
    value.to_string()
}

/// Replaces, at any depth, the value of every key whose name contains `secret`, `private_key` or
/// `password`, or is `key` or ends in `_key` (in any case), such as `transform.signing_key`.
/// Empty strings stay empty so that an unset secret still shows as unset.
pub fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if is_secret_key(key) {
                    let unset = child.is_null() || child.as_str().is_some_and(str::is_empty);
                    if !unset {
                        *child = serde_json::Value::String(REDACTED.to_owned());
                    }
                } else {
                    redact(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let named_key = key == "key" || key.ends_with("_key");
    named_key
        || ["secret", "private_key", "password"]
            .iter()
            .any(|word| key.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redact_replaces_secret_keys_at_any_depth() {
        let mut value = json!({
            "server": { "listen": "127.0.0.1:8080" },
            "signing": {
                "url_secret": "abc",
                "SigningPrivateKey": "ignored: no underscore",
                "private_key_file": "/etc/kura/key.pem",
                "admin_password": "hunter2",
                "keys": [{ "secret": "nested" }],
                "signing_key": "hmac",
                "key": "plain",
                "keyframes": 3,
                "empty_secret": "",
                "missing_secret": null
            }
        });
        redact(&mut value);
        assert_eq!(value["server"]["listen"], "127.0.0.1:8080");
        assert_eq!(value["signing"]["url_secret"], REDACTED);
        assert_eq!(value["signing"]["private_key_file"], REDACTED);
        assert_eq!(value["signing"]["admin_password"], REDACTED);
        assert_eq!(value["signing"]["keys"][0]["secret"], REDACTED);
        assert_eq!(value["signing"]["signing_key"], REDACTED);
        assert_eq!(value["signing"]["key"], REDACTED);
        assert_eq!(value["signing"]["keyframes"], 3);
        assert_eq!(value["signing"]["empty_secret"], "");
        assert!(value["signing"]["missing_secret"].is_null());
        assert_eq!(
            value["signing"]["SigningPrivateKey"],
            "ignored: no underscore"
        );
    }

    #[test]
    fn redacted_config_keeps_ordinary_keys() {
        let line = redacted_config(&Config::default());
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["server"]["listen"], "127.0.0.1:8080");
        assert_eq!(parsed["storage"]["min_free_bytes"], 1u64 << 30);
    }

    #[test]
    fn redacted_config_hides_signing_key() {
        let mut config = Config::default();
        config.transform.signing_key = Some("do-not-log-this-key".to_owned());
        let line = redacted_config(&config);
        assert!(!line.contains("do-not-log-this-key"), "{line}");
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["transform"]["signing_key"], REDACTED);
    }
}
