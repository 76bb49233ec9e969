//! systemd's service notifications for `intelmesh run`: READY=1 once the node serves,
//! STOPPING=1 when it is told to stop, and, when the unit sets `WatchdogSec=`, WATCHDOG=1 at
//! half the interval for as long as the node is healthy. Without `NOTIFY_SOCKET` (not run by
//! systemd with `Type=notify`) nothing is sent.

use std::convert::Infallible;
use std::time::Duration;

use intelmesh_node::RunningNode;
use sd_notify::NotifyState;

/// Tells systemd the node serves (its listeners are bound and its store is open).
pub fn ready() {
    send(NotifyState::Ready, "ready");
}

/// Tells systemd the node is stopping, so the stop is not taken for a hang.
pub fn stopping() {
    send(NotifyState::Stopping, "stopping");
}

fn send(state: NotifyState, what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "could not tell systemd the node is {what} (NOTIFY_SOCKET)");
    }
}

/// How often the watchdog is fed: half its interval, as sd_watchdog_enabled(3) advises, so
/// one late tick does not make systemd kill a healthy node.
pub fn feed_interval(watchdog: Duration) -> Duration {
    watchdog / 2
}

/// Feeds systemd's watchdog while `node` is healthy; never returns (select it with the stop
/// signals). Without a watchdog (`WATCHDOG_USEC` unset, or set for another pid) it only waits.
///
/// Healthy means: this task runs (the runtime is not wedged), every listener still serves,
/// and the blocking pool, where the store's reads and flushes run, takes a task within the
/// interval. An unhealthy node is not fed, so systemd kills and restarts it after
/// `WatchdogSec=`.
pub async fn feed_watchdog(node: &RunningNode) -> Infallible {
    let Some(watchdog) = sd_notify::watchdog_enabled() else {
        return std::future::pending().await;
    };
    let every = feed_interval(watchdog);
    tracing::info!(
        watchdog_ms = watchdog.as_millis() as u64,
        "systemd watchdog on: fed every {} ms while the node is healthy",
        every.as_millis()
    );
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_healthy = true;
    loop {
        tick.tick().await;
        match health(node, every).await {
            Ok(()) => {
                if !was_healthy {
                    tracing::warn!("healthy again: feeding the systemd watchdog");
                }
                was_healthy = true;
                send(NotifyState::Watchdog, "alive");
            }
            Err(why) => {
                if was_healthy {
                    tracing::warn!("not feeding the systemd watchdog: {why}");
                }
                was_healthy = false;
            }
        }
    }
}

async fn health(node: &RunningNode, within: Duration) -> Result<(), &'static str> {
    if !node.serving() {
        return Err("a listener of the node has stopped");
    }
    match tokio::time::timeout(within, tokio::task::spawn_blocking(|| ())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err("the blocking pool failed to run a task"),
        Err(_) => Err("the blocking pool (store work) took no task within the interval"),
    }
}

#[cfg(test)]
mod tests {
    use super::feed_interval;
    use std::time::Duration;

    #[test]
    fn the_watchdog_is_fed_at_half_its_interval() {
        assert_eq!(
            feed_interval(Duration::from_secs(30)),
            Duration::from_secs(15)
        );
        assert_eq!(
            feed_interval(Duration::from_micros(500_001)),
            Duration::from_nanos(250_000_500)
        );
    }
}
