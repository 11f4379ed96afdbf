//! The hub (DESIGN.md §5): after each commit and snapshot swap, one message per changed
//! environment goes on one async-broadcast channel; every SSE stream holds a receiver and keeps
//! the messages of its own environment.
//!
//! The channel overflows instead of waiting: a receiver that falls behind gets
//! `Err(Overflowed(n))` once from `recv()` and must then send its client the latest revision
//! (read from the snapshot), so a slow client never slows the writer or other streams.

use std::sync::Arc;

use async_broadcast::{InactiveReceiver, Receiver, Sender, TrySendError};

/// One environment changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub environment_id: i64,
    pub revision: u64,
    pub etag: String,
    /// Keys of the flags that changed.
    pub flags: Arc<[String]>,
}

/// The broadcast of changes. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    sender: Sender<Arc<Change>>,
    // Keeps the channel open while no stream is connected.
    _idle: InactiveReceiver<Arc<Change>>,
}

/// How many changes a receiver may fall behind before it overflows.
const CAPACITY: usize = 256;

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        let (mut sender, receiver) = async_broadcast::broadcast(CAPACITY);
        sender.set_overflow(true);
        sender.set_await_active(false);
        Hub {
            sender,
            _idle: receiver.deactivate(),
        }
    }

    /// Announces a change to every receiver. Never waits.
    pub fn publish(&self, change: Change) {
        match self.sender.try_broadcast(Arc::new(change)) {
            Ok(_) | Err(TrySendError::Inactive(_)) => {}
            Err(TrySendError::Full(_)) => unreachable!("overflow mode never reports a full channel"),
            Err(TrySendError::Closed(_)) => tracing::debug!("hub closed; change not announced"),
        }
    }

    /// A receiver of every change published from now on.
    pub fn subscribe(&self) -> Receiver<Arc<Change>> {
        self.sender.new_receiver()
    }

    /// Ends every stream: receivers see the channel closed.
    pub fn close(&self) {
        self.sender.close();
    }

    /// Whether [`Hub::close`] was called: the server is shutting down.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Number of open receivers (open streams).
    pub fn receivers(&self) -> usize {
        self.sender.receiver_count()
    }
}
