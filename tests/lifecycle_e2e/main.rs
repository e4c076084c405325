//! The key lifecycle on a real API server: disable and enable, scheduled deletion and cancel,
//! GitOps-style delete and re-apply, destruction after the window, deletion protection. The
//! operator runs with `--pending-window-unit 1s`, so a "day" of a pending window is a second.
//!
//! The tests by step of the lifecycle: [`state`] (disable and enable), [`deletion`] (scheduled
//! deletion, GitOps-style delete and re-apply), [`protection`] (deletion protection, and the
//! examples).

#[path = "../common/mod.rs"]
mod common;

mod deletion;
mod protection;
mod state;

use keyward::api::KeyState;

use common::TestEnv;

const SECOND_DAYS: &[&str] = &[
    "--pending-window-unit",
    "1s",
    "--min-rotation-interval",
    "1s",
];

async fn wait_state(env: &TestEnv, name: &str, state: KeyState) -> keyward::api::Key {
    env.wait_key(name, state.as_str(), |k| {
        common::ready_reason(k).is_some()
            && k.status
                .as_ref()
                .and_then(|s| s.key_metadata.as_ref())
                .map(|m| m.key_state)
                == Some(state)
    })
    .await
}
