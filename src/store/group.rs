//! The writes of one group commit (see [`super::Store::write`]): each queued with its hook and
//! the channel its caller waits on (a thread blocked on it, or a task awaiting it), run in its own
//! savepoint of the group's transaction.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::SyncSender;

use rusqlite::{Connection, Transaction};

use super::{Changes, Result, StoreError, bump_revisions};

/// What a write's caller is told.
pub enum Outcome<T> {
    Done(Result<T>),
    /// The write panicked on the thread that ran the group: the caller re-raises it.
    Panicked(Box<dyn Any + Send>),
}

impl<T> Outcome<T> {
    /// What the caller returns: the write's result, its panic raised again, or an error when the
    /// write was dropped without an answer (`None`).
    pub fn received(outcome: Option<Outcome<T>>) -> Result<T> {
        match outcome {
            Some(Outcome::Done(out)) => out,
            Some(Outcome::Panicked(payload)) => std::panic::resume_unwind(payload),
            None => Err(StoreError::Unusable(
                "the write was dropped without an answer".into(),
            )),
        }
    }
}

/// A queued write, whatever its types.
pub trait Job: Send {
    /// Runs the write. `Err` answers the caller at once (nothing of it is kept).
    fn run(&mut self, tx: &Transaction) -> std::result::Result<Changes, ()>;
    /// The group committed and was published: runs the hook and answers the caller.
    fn committed(self: Box<Self>, conn: &Connection, changes: &Changes);
    /// The group failed as a whole: answers the caller with `error`.
    fn failed(self: Box<Self>, error: StoreError);
}

/// Where a write's [`Outcome`] goes: the thread of [`super::Store::write_blocking`], or the task
/// of [`super::Store::write`] (which holds no thread while it waits).
pub enum Reply<T> {
    Thread(SyncSender<Outcome<T>>),
    Task(tokio::sync::oneshot::Sender<Outcome<T>>),
}

pub struct Pending<T, F, A> {
    f: Option<F>,
    after_commit: Option<A>,
    out: Option<T>,
    reply: Option<Reply<T>>,
}

impl<T, F, A> Pending<T, F, A> {
    pub fn new(f: F, after_commit: A, reply: Reply<T>) -> Self {
        Pending {
            f: Some(f),
            after_commit: Some(after_commit),
            out: None,
            reply: Some(reply),
        }
    }

    /// Answers the caller (once; a caller that stopped waiting is not an error).
    fn answer(&mut self, outcome: Outcome<T>) {
        match self.reply.take() {
            Some(Reply::Thread(tx)) => {
                let _ = tx.send(outcome);
            }
            Some(Reply::Task(tx)) => {
                let _ = tx.send(outcome);
            }
            None => {}
        }
    }
}

impl<T, F, A> Job for Pending<T, F, A>
where
    T: Send,
    F: FnOnce(&Transaction) -> Result<(T, Changes)> + Send,
    A: FnOnce(&Connection, &Changes) + Send,
{
    fn run(&mut self, tx: &Transaction) -> std::result::Result<Changes, ()> {
        let Some(f) = self.f.take() else {
            return Err(());
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| f(tx))) {
            Ok(Ok((out, changes))) => match bump_revisions(tx, &changes) {
                Ok(()) => {
                    self.out = Some(out);
                    Ok(changes)
                }
                Err(e) => {
                    self.answer(Outcome::Done(Err(e)));
                    Err(())
                }
            },
            Ok(Err(e)) => {
                self.answer(Outcome::Done(Err(e)));
                Err(())
            }
            Err(payload) => {
                self.answer(Outcome::Panicked(payload));
                Err(())
            }
        }
    }

    fn committed(mut self: Box<Self>, conn: &Connection, changes: &Changes) {
        if let Some(after_commit) = self.after_commit.take() {
            // A panicking hook must not keep the others of the group from running.
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| after_commit(conn, changes))) {
                self.answer(Outcome::Panicked(payload));
                return;
            }
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| StoreError::Unusable("a committed write has no result".into()));
        self.answer(Outcome::Done(out));
    }

    fn failed(mut self: Box<Self>, error: StoreError) {
        self.answer(Outcome::Done(Err(error)));
    }
}

/// Runs one write in a savepoint: kept (returned with its changes) or rolled back alone and
/// answered.
pub fn run_in_savepoint(tx: &Transaction, mut job: Box<dyn Job>) -> Option<(Box<dyn Job>, Changes)> {
    if let Err(e) = tx.execute_batch("SAVEPOINT write") {
        job.failed(e.into());
        return None;
    }
    let undo = || {
        let _ = tx.execute_batch("ROLLBACK TO write; RELEASE write");
    };
    match job.run(tx) {
        Ok(changes) => match tx.execute_batch("RELEASE write") {
            Ok(()) => Some((job, changes)),
            Err(e) => {
                undo();
                job.failed(e.into());
                None
            }
        },
        Err(()) => {
            undo();
            None
        }
    }
}

/// Answers every write of a failed group. The first gets the error itself, the others its text
/// (the causes are not `Clone`).
pub fn fail_all(jobs: Vec<Box<dyn Job>>, error: StoreError) {
    let text = error.to_string();
    let mut error = Some(error);
    for job in jobs {
        let e = error
            .take()
            .unwrap_or_else(|| StoreError::Unusable(format!("the group's publication failed: {text}")));
        job.failed(e);
    }
}
