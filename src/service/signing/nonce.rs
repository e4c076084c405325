//! The nonces of recently accepted signed requests, so that none is accepted twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use jiff::{RoundMode, Timestamp, TimestampRound, Unit};
use ring::digest;

use super::{AuthCode, AuthError, SignedClaim, TIME_WINDOW};

/// Remembers the nonce of every accepted signed request for as long as that request could be
/// replayed: until [`TIME_WINDOW`] after the later of its timestamp and the moment it was
/// accepted. A request whose timestamp is further away than that is refused by
/// [`super::check_time`], so a nonce can never be replayed inside the window.
///
/// Each AccessKey has its own room of `capacity` nonces, so one tenant's traffic never fills
/// another's. When an AccessKey's room is full of unexpired nonces, its next request is
/// **refused** with `ServiceUnavailableTemporary` (503) rather than an old nonce forgotten:
/// forgetting would let that request be replayed. Room comes back as nonces expire, at the
/// latest one window later. A nonce is kept as a 16-byte hash (about 50 bytes with the sets'
/// overhead), so memory is at most about `50 × capacity` bytes per AccessKey in use.
pub struct NonceCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

/// A hash of a nonce (within one AccessKey's room).
type Entry = u128;

#[derive(Default)]
struct Seen {
    rooms: HashMap<String, Room>,
    /// The second the expired nonces of every room were last dropped.
    swept: Option<Timestamp>,
}

/// One AccessKey's nonces, and the same nonces by the second they expire.
#[derive(Default)]
struct Room {
    entries: HashSet<Entry>,
    by_expiry: BTreeMap<Timestamp, Vec<Entry>>,
}

impl NonceCache {
    /// About 110 signed requests a second per AccessKey, sustained over the 15-minute window,
    /// in about 5 MB.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// A cache that keeps at most `capacity` nonces per AccessKey.
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records the claim's nonce, or refuses it: `SignatureNonceUsed` if it was accepted before
    /// within the window, `ServiceUnavailableTemporary` if the AccessKey's room is full. Call it
    /// only for requests whose signature and time were verified (see [`super::authenticate`]),
    /// so that nobody without the secret can fill a room.
    pub fn admit(&self, claim: &SignedClaim, now: Timestamp) -> Result<(), AuthError> {
        let entry = entry(claim.nonce());
        let expires = claim
            .timestamp()
            .max(now)
            .checked_add(TIME_WINDOW)
            .and_then(|t| t.round(whole_seconds_up()))
            .unwrap_or(Timestamp::MAX);
        // The sets are consistent between statements, so a panic elsewhere cannot corrupt them.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.sweep(now);
        let room = seen
            .rooms
            .entry(claim.access_key_id().to_string())
            .or_default();
        room.forget_expired(now);
        if room.entries.contains(&entry) {
            return Err(AuthError::new(
                AuthCode::SignatureNonceUsed,
                "Specified signature nonce was used already.",
            ));
        }
        if room.entries.len() >= self.capacity {
            return Err(AuthError::new(
                AuthCode::NonceCacheFull,
                "Too many signed requests with this AccessKey in the last 15 minutes to remember \
                 their nonces; retry later, or spread the load over more AccessKeys.",
            ));
        }
        room.entries.insert(entry);
        room.by_expiry.entry(expires).or_default().push(entry);
        Ok(())
    }

    /// How many nonces are remembered (expired ones included until they are swept).
    pub fn len(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.rooms.values().map(|r| r.entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Seen {
    /// Once a second, drops every room's expired nonces and the rooms left empty, so that an
    /// AccessKey no longer used holds no memory past its last window.
    fn sweep(&mut self, now: Timestamp) {
        let second = now.as_second();
        if self.swept.is_some_and(|s| s.as_second() == second) {
            return;
        }
        self.swept = Some(now);
        self.rooms.retain(|_, room| {
            room.forget_expired(now);
            !room.entries.is_empty()
        });
    }
}

impl Room {
    /// Drops the nonces whose window closed before `now` (one still open at `now` is kept).
    fn forget_expired(&mut self, now: Timestamp) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() >= now {
                break;
            }
            for expired in entry.remove() {
                self.entries.remove(&expired);
            }
        }
    }
}

/// Expiry is kept to the second, rounded up (never forgotten early), so that the nonces of one
/// second share an entry of `by_expiry`.
fn whole_seconds_up() -> TimestampRound {
    TimestampRound::new()
        .smallest(Unit::Second)
        .mode(RoundMode::Ceil)
}

fn entry(nonce: &str) -> Entry {
    let hash = digest::digest(&digest::SHA256, nonce.as_bytes());
    let mut first = [0; 16];
    first.copy_from_slice(&hash.as_ref()[..16]);
    u128::from_be_bytes(first)
}
