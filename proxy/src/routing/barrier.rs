//! Read-your-writes on the tracking connection: strict mode's promise (a
//! Redis edit is seen by the very next request) kept without reading the
//! routes on every request.
//!
//! Redis queues an invalidation push on a tracking connection while it
//! executes the write, before it answers the writer. A reply on the same
//! connection to a command Redis reads later comes after that push. So
//! once a `PING` sent after a request arrived is answered, every write
//! acknowledged before the request arrived has had its invalidation read
//! on the connection, and applied: the read connection applies pushes as
//! it reads them ([`crate::redis_conn::Dialer::with_inline_pushes`]),
//! before the replies behind them. A cached route still valid after the
//! answer is as fresh as a read made then.
//!
//! Requests that arrive together share one `PING`: the first opens a
//! batch and yields once, so that the others ready in the same turn of the
//! event loop join it; the batch closes when its `PING` is queued, and a
//! request arriving after that waits for the next one. A `PING` costs
//! Redis far less than the lookup's seven commands, and one serves many
//! requests.

use std::sync::Arc;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use parking_lot::Mutex;
use redis::aio::MultiplexedConnection;

type Batch = Shared<BoxFuture<'static, bool>>;

#[derive(Default)]
pub struct Barrier {
    /// The batch still open: its `PING` is not queued yet.
    open: Arc<Mutex<Option<Batch>>>,
}

impl Barrier {
    /// True once a `PING` queued on `conn` after this call was answered;
    /// false when it failed (the caller reads Redis instead).
    pub async fn pass(&self, conn: &MultiplexedConnection) -> bool {
        let batch = {
            let mut open = self.open.lock();
            match &*open {
                Some(batch) => batch.clone(),
                None => {
                    let batch = ping_batch(self.open.clone(), conn.clone());
                    *open = Some(batch.clone());
                    batch
                }
            }
        };
        batch.await
    }
}

/// A batch: it stays open for one yield, then closes and pings.
fn ping_batch(open: Arc<Mutex<Option<Batch>>>, mut conn: MultiplexedConnection) -> Batch {
    async move {
        tokio::task::yield_now().await;
        // Closed before the PING is queued (in this same poll): whoever
        // joined arrived before it.
        open.lock().take();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
    .boxed()
    .shared()
}
