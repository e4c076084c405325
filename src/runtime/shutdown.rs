//! The one shutdown signal of the process: SIGTERM (the kubelet stopping the pod) or SIGINT
//! (Ctrl-C), seen alike by the standby, the leader and the controllers; and the grace after
//! which the process exits whatever it is still waiting for.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Resolves [`Shutdown::requested`] once SIGTERM or SIGINT has arrived; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Takes over SIGTERM and SIGINT from now on: the first asks for a shutdown and starts the
    /// `grace` after which the process exits with status 1; a second exits at once.
    pub fn on_signals(grace: Duration) -> std::io::Result<Shutdown> {
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        let (asked, shutdown) = watch::channel(false);
        tokio::spawn(async move {
            let name = tokio::select! {
                _ = terminate.recv() => "SIGTERM",
                _ = interrupt.recv() => "SIGINT",
            };
            tracing::info!(signal = name, ?grace, "shutting down");
            let _ = asked.send(true);
            exit_after(grace);
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::warn!("signalled again; exiting at once");
            std::process::exit(1);
        });
        Ok(Shutdown(shutdown))
    }

    /// Resolves once a shutdown has been asked for; owns what it needs, so that it can be
    /// handed to a controller.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut asked = self.0.clone();
        async move {
            // An error means the signal task is gone: the runtime is shutting down anyway.
            let _ = asked.wait_for(|&asked| asked).await;
        }
    }
}

/// Ends the process `grace` from now, from a thread of its own: it must fire even if the
/// async runtime is stuck, or waiting for blocking tasks as it shuts down.
fn exit_after(grace: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        tracing::error!(
            ?grace,
            "still not stopped after the shutdown grace; exiting"
        );
        std::process::exit(1);
    });
}
