//! A subscription to one pub/sub channel, kept up in the background: made
//! through the [`Dialer`], re-made with the [`Backoff`] whenever its
//! connection is lost, for as long as its receiver lives.
//!
//! What was published while it was down is lost (pub/sub keeps nothing),
//! so each [`Delivery::Subscribed`] after the first tells the owner to
//! catch up by other means.

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::target::Dialer;

/// Deliveries waiting for the owner; past this, reading the channel waits
/// (Redis buffers for a slow subscriber).
const QUEUE: usize = 64;

/// What a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Subscribed; `again` when it is not the first time, so messages may
    /// have been missed since the last one.
    Subscribed { again: bool },
    /// A message's payload.
    Message(Vec<u8>),
}

/// Subscribes to `channel` in the background; `role` names it in logs.
/// Drop the receiver to stop.
pub fn subscribe(
    dialer: Dialer,
    channel: &'static str,
    role: &'static str,
) -> mpsc::Receiver<Delivery> {
    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(async move {
        tokio::select! {
            () = tx.closed() => {}
            () = run(&dialer, channel, role, &tx) => {}
        }
    });
    rx
}

/// Subscribes, forwards, re-subscribes: until the receiver is dropped.
async fn run(dialer: &Dialer, channel: &str, role: &str, tx: &mpsc::Sender<Delivery>) {
    let target = dialer.redis();
    let mut backoff = Backoff::new();
    let mut warned = false;
    let mut again = false;
    loop {
        let pubsub = match dialer.subscribe(channel).await {
            Ok(p) => p,
            Err(e) => {
                if !warned {
                    tracing::warn!(redis = target, role, channel, error = %e, "cannot subscribe to a Redis channel; retrying with backoff");
                    warned = true;
                }
                backoff.wait().await;
                continue;
            }
        };
        backoff.reset();
        warned = false;
        tracing::debug!(
            redis = target,
            role,
            channel,
            "subscribed to a Redis channel"
        );
        if tx.send(Delivery::Subscribed { again }).await.is_err() {
            return;
        }
        again = true;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let payload = msg.get_payload_bytes().to_vec();
            if tx.send(Delivery::Message(payload)).await.is_err() {
                return;
            }
        }
        tracing::debug!(
            redis = target,
            role,
            channel,
            "Redis subscription lost; re-subscribing"
        );
    }
}
