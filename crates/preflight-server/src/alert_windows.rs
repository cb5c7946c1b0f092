//! The background check of window rules (`new_rate`, `reject_rate`, `review_rate`,
//! `automation_rate`): one supervised task per process.
//!
//! Every `ALERT_WINDOW_CHECK_SECONDS` it asks the domain to check each rule whose next
//! window has ended ([`crate::domain::alerts::check_window_rules`]). What it has done lives
//! in the database, not here: each rule's `checked_until` moves in the transaction that
//! stores the alerts it raised, so a restart goes on where the last run stopped (covering
//! the gap, see `window_ends`), and replicas running the same task never count a window
//! twice. A panic restarts the loop; a database error waits for the next tick.

use chrono::Utc;

use crate::domain::alerts;
use crate::state::AppState;

/// Runs the check for the life of the process, restarting it if it panics.
pub async fn supervise(state: AppState) {
    crate::supervisor::supervise("alert window check", state, run).await;
}

async fn run(state: AppState) {
    let every = state.config().alerts.window_check_every;
    let mut ticks = tokio::time::interval(every);
    // A slow check is not followed by a burst of catch-up ticks: the next one covers it.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match alerts::check_window_rules(&state, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(alerts = n, "window rules raised alerts"),
            Err(e) => tracing::warn!(error = %e, "window rules not checked"),
        }
    }
}
