//! The stop signal shared by every long-running task.
//!
//! One [`Trigger`] (held by `main`, fired on SIGTERM/SIGINT) and any number of [`Shutdown`]
//! receivers (one per task). A task selects on [`Shutdown::wait`] next to its work and
//! returns when it resolves; listeners stop accepting, in-flight queries finish.
//!
//! A [`Supervisor`] runs tasks that must live until the signal (the transports, the
//! watches, the config reload) and reports one that ends before it: by a panic, or by
//! returning. Tokio catches a task's panic and the rest of the process carries on, so
//! without this a dead receive loop or a frozen watch would hide behind a process that
//! looks alive. The release build does not abort on panic instead: a config that panicked
//! the loader would then crash-loop every replica at once, where now the panic is caught,
//! the last good config keeps serving and only the failed task is reported.

use std::collections::HashMap;
use std::future::Future;

use tokio::sync::watch;
use tokio::task::{self, JoinSet};

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

/// Tasks that must run until the stop signal, each with a name.
#[derive(Debug, Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: HashMap<task::Id, &'static str>,
}

impl Supervisor {
    /// Runs `task` under the name `name` (a metric label: a fixed word).
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn(task).id();
        self.names.insert(id, name);
    }

    /// Waits until every task has ended. Each that ends before `shutdown` fires is passed
    /// to `failed` with its name and what happened (the panic message, or that it returned).
    pub async fn wait(mut self, shutdown: &Shutdown, mut failed: impl FnMut(&'static str, String)) {
        while let Some(ended) = self.tasks.join_next_with_id().await {
            let (id, why) = match ended {
                Ok((id, ())) => (id, "returned".to_owned()),
                Err(error) if error.is_panic() => {
                    let id = error.id();
                    let payload = error.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    (id, format!("panicked: {message}"))
                }
                Err(error) => (error.id(), "was cancelled".to_owned()),
            };
            let name = self.names.remove(&id).unwrap_or("task");
            if !shutdown.is_triggered() {
                failed(name, why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_that_end_before_the_signal_are_reported() {
        let (trigger, shutdown) = channel();
        let mut tasks = Supervisor::default();
        tasks.spawn("panics", async { panic!("boom") });
        tasks.spawn("returns", async {});
        let mut until_stop = shutdown.clone();
        tasks.spawn("runs", async move { until_stop.wait().await });
        let (reported_tx, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let supervising = tokio::spawn(async move {
            tasks
                .wait(&shutdown, |name, why| {
                    let _ = reported_tx.send(format!("{name} {why}"));
                })
                .await;
        });
        let mut failures = vec![
            reported.recv().await.expect("a failure"),
            reported.recv().await.expect("a failure"),
        ];
        failures.sort();
        assert_eq!(failures, ["panics panicked: boom", "returns returned"]);
        trigger.fire();
        supervising.await.expect("supervisor ends");
        assert!(
            reported.recv().await.is_none(),
            "stopping on the signal is no failure"
        );
    }

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
