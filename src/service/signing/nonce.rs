//! The nonces of recently accepted signed requests, so that none is accepted twice.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use ring::digest;

use super::{AuthCode, AuthError, SignedClaim, TIME_WINDOW};

/// Remembers the (AccessKeyId, nonce) of every accepted signed request for as long as that
/// request could be replayed: until [`TIME_WINDOW`] after the later of its timestamp and the
/// moment it was accepted. A request whose timestamp is further away than that is refused by
/// [`super::check_time`], so a nonce can never be replayed inside the window.
///
/// Memory is bounded: at most `capacity` entries of a fixed size (a SHA-256 of the pair, however
/// long the id and nonce are), about 150 bytes each. When the cache is full of unexpired
/// entries, a new request is **refused** with `ServiceUnavailableTemporary` (503) rather than
/// an old nonce forgotten: forgetting would let that request be replayed. Room comes back as
/// entries expire, at the latest one window later. The capacity is shared by all AccessKeys.
pub struct NonceCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

/// A hash of (AccessKeyId, nonce).
type Entry = [u8; 32];

#[derive(Default)]
struct Seen {
    entries: HashSet<Entry>,
    by_expiry: BTreeSet<(Timestamp, Entry)>,
}

impl NonceCache {
    /// About 110 signed requests a second, sustained over the 15-minute window, in ~15 MB.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    pub fn new(capacity: usize) -> Self {
        NonceCache {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records the claim's nonce, or refuses it: `SignatureNonceUsed` if it was accepted before
    /// within the window, `ServiceUnavailableTemporary` if the cache is full. Call it only for
    /// requests whose signature and time were verified (see [`super::authenticate`]), so that
    /// nobody without the secret can fill the cache.
    pub fn admit(&self, claim: &SignedClaim, now: Timestamp) -> Result<(), AuthError> {
        let entry = entry(claim);
        let expires = claim
            .timestamp()
            .max(now)
            .checked_add(TIME_WINDOW)
            .unwrap_or(Timestamp::MAX);
        // The sets are consistent between statements, so a panic elsewhere cannot corrupt them.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.forget_expired(now);
        if seen.entries.contains(&entry) {
            return Err(AuthError::new(
                AuthCode::SignatureNonceUsed,
                "Specified signature nonce was used already.",
            ));
        }
        if seen.entries.len() >= self.capacity {
            return Err(AuthError::new(
                AuthCode::NonceCacheFull,
                "Too many signed requests in the last 15 minutes to remember their nonces; retry later.",
            ));
        }
        seen.entries.insert(entry);
        seen.by_expiry.insert((expires, entry));
        Ok(())
    }

    /// How many nonces are remembered (expired ones included until the next admission).
    pub fn len(&self) -> usize {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Seen {
    /// Drops the entries whose window closed before `now` (one still open at `now` is kept).
    fn forget_expired(&mut self, now: Timestamp) {
        while let Some(&(expires, entry)) = self.by_expiry.first() {
            if expires >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.entries.remove(&entry);
        }
    }
}

fn entry(claim: &SignedClaim) -> Entry {
    let mut context = digest::Context::new(&digest::SHA256);
    // Length-prefixed, so that no two pairs share an encoding.
    for part in [claim.access_key_id(), claim.nonce()] {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part.as_bytes());
    }
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    hash
}
