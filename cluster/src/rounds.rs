//! [`Rounds`]: one question in flight at a time, shared by everyone who asked before it
//! was sent. A read barrier needs a read index obtained *after* the read arrived; any round
//! that starts after that serves, so concurrent reads share one round trip (the leader's
//! quorum confirmation, or a follower's question to the leader) instead of one each.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    /// Rounds started so far.
    started: u64,
    /// The last round finished, and its answer.
    done: u64,
    answer: Option<Result<u64, String>>,
    running: bool,
}

/// Sequential rounds of one question whose answer any later asker may share.
#[derive(Debug, Default)]
pub struct Rounds {
    state: Mutex<State>,
    finished: Notify,
}

impl Rounds {
    /// The answer of a round started after this call: runs `ask` as the next round if none
    /// is running, or waits for the next round to end.
    pub async fn answer<F, Fut>(&self, ask: F) -> Result<u64, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let lock = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let need = lock().started + 1;
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            let round = {
                let mut s = lock();
                if s.done >= need
                    && let Some(answer) = &s.answer
                {
                    return answer.clone();
                }
                if s.running {
                    // Registered before the lock is released: the end of the running round
                    // cannot be missed.
                    finished.as_mut().enable();
                    None
                } else {
                    s.running = true;
                    s.started += 1;
                    Some(s.started)
                }
            };
            match round {
                None => finished.await,
                Some(round) => {
                    // The asker may be dropped mid-round (its client went away): the guard
                    // then ends the round unanswered, and a waiter starts the next one.
                    let mut guard = Running {
                        rounds: self,
                        ended: None,
                    };
                    let answer = ask().await;
                    guard.ended = Some((round, answer));
                }
            }
        }
    }
}

/// A round being asked; dropped, it ends the round: with its answer, or (its asker gone)
/// without one, and wakes the waiters.
struct Running<'a> {
    rounds: &'a Rounds,
    ended: Option<(u64, Result<u64, String>)>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut s = self
            .rounds
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        s.running = false;
        if let Some((round, answer)) = self.ended.take() {
            s.done = round;
            s.answer = Some(answer);
        }
        drop(s);
        self.rounds.finished.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_askers_share_rounds_that_started_after_them() {
        let rounds = Arc::new(Rounds::default());
        let asked = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (rounds, asked) = (rounds.clone(), asked.clone());
            tasks.push(tokio::spawn(async move {
                // What a round answers: how many rounds had started when it was sent.
                let before = asked.load(Ordering::SeqCst);
                let answer = rounds
                    .answer(|| {
                        let asked = asked.clone();
                        async move {
                            let n = asked.fetch_add(1, Ordering::SeqCst) + 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(n)
                        }
                    })
                    .await
                    .expect("an answer");
                // The round answering was sent after this asker arrived.
                assert!(answer > before, "{answer} <= {before}");
            }));
        }
        for t in tasks {
            t.await.expect("an asker");
        }
        let rounds_run = asked.load(Ordering::SeqCst);
        assert!(rounds_run < 64, "{rounds_run} rounds for 64 askers");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_asker_dropped_mid_round_does_not_stall_the_others() {
        let rounds = Arc::new(Rounds::default());
        let (r, started) = (rounds.clone(), Arc::new(tokio::sync::Notify::new()));
        let signal = started.clone();
        let stuck = tokio::spawn(async move {
            r.answer(|| {
                let signal = signal.clone();
                async move {
                    signal.notify_one();
                    std::future::pending::<()>().await;
                    Ok(1)
                }
            })
            .await
        });
        started.notified().await;
        let r = rounds.clone();
        let waiter = tokio::spawn(async move { r.answer(|| async { Ok(2) }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        stuck.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is not stalled")
            .expect("joins");
        assert_eq!(answer, Ok(2));
    }

    #[tokio::test]
    async fn an_error_is_the_answer_of_its_round_only() {
        let rounds = Rounds::default();
        let failed = rounds
            .answer(|| async { Err("no leader".to_owned()) })
            .await;
        assert_eq!(failed, Err("no leader".to_owned()));
        let next = rounds.answer(|| async { Ok(7) }).await;
        assert_eq!(next, Ok(7));
    }
}
