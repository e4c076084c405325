//! Answers the API server gave recently, reused for a few seconds: a SubjectAccessReview or a
//! TokenReview per call would make the API server the bottleneck of every hot key.
//!
//! Concurrent calls that ask the same cold question wait for one answer instead of each
//! asking, so a burst on a cold key costs one review, not one per call.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer is reused.
pub const TTL: Duration = Duration::from_secs(5);

/// Answers kept at most; past it, expired ones are dropped, and if none has expired, all.
const MAX_ANSWERS: usize = 10_000;

pub struct Recent<Q, A> {
    known: Mutex<HashMap<Q, Known<A>>>,
    /// Answers reused, and questions asked (for the metrics).
    reused: AtomicU64,
    asked: AtomicU64,
}

/// How often a [`Recent`] reused an answer, and how often it asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub reused: u64,
    pub asked: u64,
}

/// What is known of one question: the last answer, and a lock that lets one call ask while the
/// others wait for its answer.
struct Known<A> {
    answer: Option<(A, Instant)>,
    asking: Arc<tokio::sync::Mutex<()>>,
}

impl<A> Default for Known<A> {
    fn default() -> Self {
        Known {
            answer: None,
            asking: Default::default(),
        }
    }
}

impl<A: Clone> Known<A> {
    fn fresh(&self, now: Instant) -> Option<A> {
        self.answer
            .as_ref()
            .filter(|(_, at)| now.duration_since(*at) < TTL)
            .map(|(answer, _)| answer.clone())
    }
}

impl<Q, A> Default for Recent<Q, A> {
    fn default() -> Self {
        Recent {
            known: Mutex::new(HashMap::new()),
            reused: AtomicU64::new(0),
            asked: AtomicU64::new(0),
        }
    }
}

impl<Q: Clone + Eq + Hash, A: Clone> Recent<Q, A> {
    /// The answer to `question` given less than [`TTL`] ago, else `ask`'s (kept if it is one:
    /// a failure to ask is never kept).
    pub async fn answer<E, F>(&self, question: Q, ask: impl FnOnce() -> F) -> Result<A, E>
    where
        F: Future<Output = Result<A, E>>,
    {
        let asking = {
            let mut known = self.known();
            let entry = known.entry(question.clone()).or_default();
            if let Some(answer) = entry.fresh(Instant::now()) {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(answer);
            }
            entry.asking.clone()
        };
        let _turn = asking.lock().await;
        // Whoever asked while this call waited has answered for it too.
        if let Some(answer) = self
            .known()
            .get(&question)
            .and_then(|k| k.fresh(Instant::now()))
        {
            self.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(answer);
        }
        self.asked.fetch_add(1, Ordering::Relaxed);
        let answer = ask().await?;
        let now = Instant::now();
        let mut known = self.known();
        if known.len() >= MAX_ANSWERS {
            known.retain(|_, k| k.fresh(now).is_some());
            if known.len() >= MAX_ANSWERS {
                known.clear();
            }
        }
        known.entry(question).or_default().answer = Some((answer.clone(), now));
        Ok(answer)
    }

    pub fn counts(&self) -> Counts {
        Counts {
            reused: self.reused.load(Ordering::Relaxed),
            asked: self.asked.load(Ordering::Relaxed),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<Q, Known<A>>> {
        // Each entry is whole between statements: a panic elsewhere leaves a usable map.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_burst_on_a_cold_question_asks_once() {
        let recent: Arc<Recent<&str, bool>> = Arc::default();
        let asked = Arc::new(AtomicUsize::new(0));
        let calls = (0..32).map(|_| {
            let (recent, asked) = (recent.clone(), asked.clone());
            tokio::spawn(async move {
                recent
                    .answer("q", || async {
                        asked.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok::<_, ()>(true)
                    })
                    .await
            })
        });
        for call in futures::future::join_all(calls).await {
            assert_eq!(call.unwrap(), Ok(true));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(
            recent.counts(),
            Counts {
                reused: 31,
                asked: 1
            }
        );
    }

    #[tokio::test]
    async fn a_failure_is_not_kept() {
        let recent: Recent<&str, bool> = Recent::default();
        assert_eq!(
            recent.answer("q", || async { Err("down") }).await,
            Err("down")
        );
        assert_eq!(
            recent.answer("q", || async { Ok::<_, &str>(false) }).await,
            Ok(false)
        );
        // Kept now: a different answer is not asked for within the TTL.
        assert_eq!(
            recent.answer("q", || async { Ok::<_, &str>(true) }).await,
            Ok(false)
        );
    }
}
