//! The stop signal shared by every long-running task.
//!
//! One [`Trigger`] (held by `main`, fired on SIGTERM/SIGINT) and any number of [`Shutdown`]
//! receivers (one per task). A task selects on [`Shutdown::wait`] next to its work and
//! returns when it resolves; listeners stop accepting, in-flight queries finish.

use tokio::sync::watch;

/// Fires the stop signal.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Waits for the stop signal. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and its first receiver.
pub fn channel() -> (Trigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (Trigger(sender), Shutdown(receiver))
}

impl Trigger {
    /// Tells every [`Shutdown`] to stop.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// Resolves once the trigger has fired (or was dropped).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which also means stop.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether the trigger has fired.
    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_receiver_sees_the_signal() {
        let (trigger, mut first) = channel();
        let mut second = first.clone();
        assert!(!first.is_triggered());
        trigger.fire();
        first.wait().await;
        second.wait().await;
        assert!(second.is_triggered());
        // Waiting again returns at once.
        first.wait().await;
    }

    #[tokio::test]
    async fn dropping_the_trigger_stops_too() {
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        shutdown.wait().await;
    }
}
