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
                    let answer = ask().await;
                    let mut s = lock();
                    s.running = false;
                    s.done = round;
                    s.answer = Some(answer);
                    drop(s);
                    self.finished.notify_waiters();
                }
            }
        }
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
