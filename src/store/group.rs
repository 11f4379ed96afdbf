//! The writes of one group commit (see [`super::Store::write`]): each queued with its hook and
//! the channel its caller waits on, run in its own savepoint of the group's transaction.

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

/// A queued write, whatever its types.
pub trait Job: Send {
    /// Runs the write. `Err` answers the caller at once (nothing of it is kept).
    fn run(&mut self, tx: &Transaction) -> std::result::Result<Changes, ()>;
    /// The group committed and was published: runs the hook and answers the caller.
    fn committed(self: Box<Self>, conn: &Connection, changes: &Changes);
    /// The group failed as a whole: answers the caller with `error`.
    fn failed(self: Box<Self>, error: StoreError);
}

pub struct Pending<T, F, A> {
    f: Option<F>,
    after_commit: Option<A>,
    out: Option<T>,
    reply: SyncSender<Outcome<T>>,
}

impl<T, F, A> Pending<T, F, A> {
    pub fn new(f: F, after_commit: A, reply: SyncSender<Outcome<T>>) -> Self {
        Pending {
            f: Some(f),
            after_commit: Some(after_commit),
            out: None,
            reply,
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
                    let _ = self.reply.send(Outcome::Done(Err(e)));
                    Err(())
                }
            },
            Ok(Err(e)) => {
                let _ = self.reply.send(Outcome::Done(Err(e)));
                Err(())
            }
            Err(payload) => {
                let _ = self.reply.send(Outcome::Panicked(payload));
                Err(())
            }
        }
    }

    fn committed(mut self: Box<Self>, conn: &Connection, changes: &Changes) {
        if let Some(after_commit) = self.after_commit.take() {
            // A panicking hook must not keep the others of the group from running.
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| after_commit(conn, changes))) {
                let _ = self.reply.send(Outcome::Panicked(payload));
                return;
            }
        }
        let out = self
            .out
            .take()
            .ok_or_else(|| StoreError::Unusable("a committed write has no result".into()));
        let _ = self.reply.send(Outcome::Done(out));
    }

    fn failed(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Outcome::Done(Err(error)));
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
