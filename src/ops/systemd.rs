//! Readiness and stop notifications for systemd's `Type=notify` services (`sd_notify`).
//!
//! Without `NOTIFY_SOCKET` in the environment, as outside systemd, each call does nothing.

use sd_notify::NotifyState;

/// Tells systemd that the server listens and the database is open, so units ordered after
/// kura start only now.
pub fn notify_ready(listen: &str) {
    let status = format!("serving on {listen}");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd that a graceful shutdown has begun.
pub fn notify_stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("finishing in-flight requests"),
    ]);
}

fn send(states: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(states) {
        // The service keeps working, but systemd may time out waiting for the message.
        tracing::warn!(error = %err, "failed to notify systemd");
    }
}
