//! Background jobs (flush, compaction, stream eviction) from the moment they are asked for
//! until their log entry is applied (API.md 3.7 `system.jobs`, 3.11 `KILL JOB`). Applied
//! jobs are recorded by the fold in the catalog ([`folddb_materializer::JobRecord`]); this
//! registry holds what only this node saw: jobs still queued or running, and jobs whose
//! entry was rejected (a rejected command leaves nothing in the catalog) or cancelled.

use std::sync::Mutex;

use folddb_materializer::JobKind;

/// Where a job is (API.md 3.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_pending(self) -> bool {
        matches!(self, JobStatus::Queued | JobStatus::Running)
    }
}

/// One job as this node knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub kind: JobKind,
    /// `namespace.table`.
    pub target: String,
    pub status: JobStatus,
    pub message: String,
    pub created_ms: u64,
    pub started_ms: Option<u64>,
    pub finished_ms: Option<u64>,
}

/// Jobs most recently asked for on this node; finished ones beyond this many are forgotten
/// (the catalog keeps the completed ones).
const KEEP_FINISHED: usize = 1000;

#[derive(Debug, Default)]
pub struct Jobs {
    jobs: Mutex<Vec<Job>>,
}

fn now_ms() -> u64 {
    crate::engine::now_ms()
}

impl Jobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a job of `kind` on `target`, unless one is queued or running already: its new
    /// id, or `None`.
    pub fn queue(&self, kind: JobKind, target: &str) -> Option<String> {
        let mut jobs = self.lock();
        if jobs
            .iter()
            .any(|j| j.kind == kind && j.target == target && j.status.is_pending())
        {
            return None;
        }
        let ulid = ulid::Ulid::new().to_string().to_ascii_lowercase();
        let id = format!("{}-{}", kind.prefix(), &ulid[ulid.len() - 12..]);
        jobs.push(Job {
            id: id.clone(),
            kind,
            target: target.to_owned(),
            status: JobStatus::Queued,
            message: String::new(),
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
        });
        let finished = jobs.iter().filter(|j| !j.status.is_pending()).count();
        if finished > KEEP_FINISHED {
            let mut extra = finished - KEEP_FINISHED;
            jobs.retain(|j| {
                let drop = extra > 0 && !j.status.is_pending();
                extra -= usize::from(drop);
                !drop
            });
        }
        Some(id)
    }

    /// Marks `id` running; `false` when it was cancelled meanwhile (then it must not run).
    pub fn start(&self, id: &str) -> bool {
        let mut jobs = self.lock();
        match jobs.iter_mut().find(|j| j.id == id) {
            Some(j) if j.status == JobStatus::Queued => {
                j.status = JobStatus::Running;
                j.started_ms = Some(now_ms());
                true
            }
            _ => false,
        }
    }

    /// Forgets queued job `id`: its statement failed before it could start.
    pub fn forget(&self, id: &str) {
        self.lock()
            .retain(|j| !(j.id == id && j.status == JobStatus::Queued));
    }

    /// Says how far running job `id` got (its `message` in `system.jobs`).
    pub fn progress(&self, id: &str, message: String) {
        if let Some(j) = self.lock().iter_mut().find(|j| j.id == id) {
            j.message = message;
        }
    }

    /// Records how `id` ended.
    pub fn finish(&self, id: &str, result: Result<String, String>) {
        let mut jobs = self.lock();
        if let Some(j) = jobs.iter_mut().find(|j| j.id == id) {
            let (status, message) = match result {
                Ok(m) => (JobStatus::Completed, m),
                Err(m) => (JobStatus::Failed, m),
            };
            metrics::counter!("folddb_jobs_finished_total", "kind" => j.kind.name(), "status" => status.name())
                .increment(1);
            if let Some(started) = j.started_ms {
                metrics::histogram!("folddb_job_seconds", "kind" => j.kind.name())
                    .record(now_ms().saturating_sub(started) as f64 / 1000.0);
            }
            j.status = status;
            j.message = message;
            j.finished_ms = Some(now_ms());
        }
    }

    /// Cancels a queued job. A running one has its entry in the log already and cannot be
    /// stopped.
    pub fn kill(&self, id: &str) -> Result<String, String> {
        let mut jobs = self.lock();
        let Some(j) = jobs.iter_mut().find(|j| j.id == id) else {
            return Err(format!("Job '{id}' not found or already finished"));
        };
        match j.status {
            JobStatus::Queued => {
                j.status = JobStatus::Cancelled;
                j.message = "cancelled by KILL JOB".into();
                j.finished_ms = Some(now_ms());
                Ok(format!("Job {id} cancelled"))
            }
            JobStatus::Running => Err(format!(
                "Job '{id}' is running: its log entry is proposed and it cannot be stopped"
            )),
            other => Err(format!("Job '{id}' already {}", other.name())),
        }
    }

    /// Every job this node knows, oldest first.
    /// The ids of the jobs queued or running.
    pub fn pending_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|j| j.status.is_pending())
            .map(|j| j.id.clone())
            .collect()
    }

    pub fn list(&self) -> Vec<Job> {
        self.lock().clone()
    }
}

/// Index builds are jobs of this node (`VI-…`), from start to end.
impl folddb_materializer::vector_index::BuildObserver for Jobs {
    fn started(&self, target: &str) -> String {
        match self.queue(JobKind::VectorIndex, target) {
            Some(id) => {
                self.start(&id);
                id
            }
            None => String::new(),
        }
    }

    fn finished(&self, token: &str, result: Result<String, String>) {
        self.finish(token, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_queued_once_per_target_and_only_queued_jobs_can_be_killed() {
        let jobs = Jobs::default();
        let a = jobs.queue(JobKind::Flush, "app.t").expect("queued");
        assert!(a.starts_with("FL-") && a.len() == 15, "{a}");
        assert_eq!(jobs.queue(JobKind::Flush, "app.t"), None, "already queued");
        let b = jobs.queue(JobKind::Compact, "app.t").expect("another kind");
        assert!(b.starts_with("CO-"));
        assert!(jobs.start(&a));
        assert!(jobs.kill(&a).is_err(), "running");
        jobs.finish(&a, Ok("done".into()));
        assert_eq!(jobs.list()[0].status, JobStatus::Completed);
        assert!(jobs.kill(&b).is_ok());
        assert!(!jobs.start(&b), "a cancelled job does not start");
        assert!(
            jobs.queue(JobKind::Flush, "app.t").is_some(),
            "the first one finished"
        );
        assert!(jobs.kill("FL-nope").is_err());
    }
}
