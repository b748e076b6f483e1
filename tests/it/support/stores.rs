//! Store wrappers that count, fail or pause the layer's calls.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use session_layer::{Created, Error, Id, Record, Rotated, SessionStore, Updated};
use tokio::sync::Semaphore;

/// Which store operation a test watches, fails or pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Load,
    Create,
    Update,
    Delete,
    Rotate,
}

impl Op {
    const ALL: [Op; 5] = [Op::Load, Op::Create, Op::Update, Op::Delete, Op::Rotate];

    fn index(self) -> usize {
        match self {
            Op::Load => 0,
            Op::Create => 1,
            Op::Update => 2,
            Op::Delete => 3,
            Op::Rotate => 4,
        }
    }
}

/// Wraps a store and counts the calls the layer makes to it.
///
/// Clones share the counters, so a test keeps one clone and gives the other
/// to the layer.
#[derive(Clone)]
pub(crate) struct CountingStore<St> {
    inner: St,
    counts: Arc<[AtomicUsize; 5]>,
}

impl<St> CountingStore<St> {
    pub(crate) fn new(inner: St) -> Self {
        Self {
            inner,
            counts: Arc::new(Default::default()),
        }
    }

    pub(crate) fn count(&self, op: Op) -> usize {
        self.counts
            .get(op.index())
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }

    pub(crate) fn loads(&self) -> usize {
        self.count(Op::Load)
    }

    pub(crate) fn creates(&self) -> usize {
        self.count(Op::Create)
    }

    pub(crate) fn updates(&self) -> usize {
        self.count(Op::Update)
    }

    pub(crate) fn deletes(&self) -> usize {
        self.count(Op::Delete)
    }

    pub(crate) fn rotates(&self) -> usize {
        self.count(Op::Rotate)
    }

    /// Returns every call made so far, whatever the operation.
    pub(crate) fn total(&self) -> usize {
        Op::ALL.iter().map(|&op| self.count(op)).sum()
    }

    /// Returns `[loads, creates, updates, deletes, rotates]`, handy in one
    /// `assert_eq!`.
    pub(crate) fn snapshot(&self) -> [usize; 5] {
        Op::ALL.map(|op| self.count(op))
    }

    fn hit(&self, op: Op) {
        if let Some(count) = self.counts.get(op.index()) {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<St> fmt::Debug for CountingStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("counts", &self.snapshot())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<St: SessionStore> SessionStore for CountingStore<St> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.hit(Op::Load);
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.hit(Op::Create);
        self.inner.create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.hit(Op::Update);
        self.inner.update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.hit(Op::Delete);
        self.inner.delete(id).await
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        self.hit(Op::Rotate);
        self.inner
            .rotate(old, expected_version, record, retired)
            .await
    }
}

/// A rendezvous between a test and a task it wants to stop at one point.
///
/// The paused side calls [`pause`](Self::pause); the test waits for it with
/// [`reached`](Self::reached) and lets it go with [`open`](Self::open).
/// Semaphores keep both signals, so neither side can miss the other.
#[derive(Debug)]
pub(crate) struct Gate {
    reached: Semaphore,
    open: Semaphore,
}

impl Gate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            reached: Semaphore::new(0),
            open: Semaphore::new(0),
        })
    }

    /// Signals arrival, then waits until the test opens the gate.
    pub(crate) async fn pause(&self) {
        self.reached.add_permits(1);
        self.open
            .acquire()
            .await
            .expect("the gate's semaphore is never closed")
            .forget();
    }

    /// Waits until one task has arrived at the gate.
    pub(crate) async fn reached(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.reached.acquire())
            .await
            .expect("the paused task reached the gate within 10 s")
            .expect("the gate's semaphore is never closed")
            .forget();
    }

    /// Lets one waiting (or future) task through.
    pub(crate) fn open(&self) {
        self.open.add_permits(1);
    }
}

#[derive(Default)]
struct Faults {
    failing: [AtomicBool; 5],
    /// The next call of each operation pauses at this gate.
    holds: Mutex<[Option<Arc<Gate>>; 5]>,
    /// Every call of each operation sleeps this long first (milliseconds).
    delays: [AtomicU64; 5],
}

/// Wraps a store; a test can make any operation fail with a store error,
/// pause the next call of an operation at a [`Gate`], or slow every call.
#[derive(Clone)]
pub(crate) struct FaultyStore<St> {
    inner: St,
    faults: Arc<Faults>,
}

impl<St> FaultyStore<St> {
    pub(crate) fn new(inner: St) -> Self {
        Self {
            inner,
            faults: Arc::new(Faults::default()),
        }
    }

    /// Makes every call of `op` fail (`true`) or pass through (`false`).
    pub(crate) fn fail(&self, op: Op, failing: bool) {
        if let Some(flag) = self.faults.failing.get(op.index()) {
            flag.store(failing, Ordering::SeqCst);
        }
    }

    /// Makes the next call of `op` wait at the returned gate before it runs.
    pub(crate) fn hold_next(&self, op: Op) -> Arc<Gate> {
        let gate = Gate::new();
        let mut holds = self
            .faults
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = holds.get_mut(op.index()) {
            *slot = Some(Arc::clone(&gate));
        }
        gate
    }

    /// Makes every call of `op` sleep for `delay` before it runs.
    pub(crate) fn delay(&self, op: Op, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        if let Some(slot) = self.faults.delays.get(op.index()) {
            slot.store(millis, Ordering::SeqCst);
        }
    }

    async fn enter(&self, op: Op) -> Result<(), Error> {
        let millis = self
            .faults
            .delays
            .get(op.index())
            .map_or(0, |delay| delay.load(Ordering::SeqCst));
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        let gate = {
            let mut holds = self
                .faults
                .holds
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            holds.get_mut(op.index()).and_then(Option::take)
        };
        if let Some(gate) = gate {
            gate.pause().await;
        }
        let failing = self
            .faults
            .failing
            .get(op.index())
            .is_some_and(|flag| flag.load(Ordering::SeqCst));
        if failing {
            return Err(Error::store(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                format!("injected {op:?} failure"),
            )));
        }
        Ok(())
    }
}

impl<St> fmt::Debug for FaultyStore<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore").finish_non_exhaustive()
    }
}

#[async_trait]
impl<St: SessionStore> SessionStore for FaultyStore<St> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.enter(Op::Load).await?;
        self.inner.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.enter(Op::Create).await?;
        self.inner.create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.enter(Op::Update).await?;
        self.inner.update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.enter(Op::Delete).await?;
        self.inner.delete(id).await
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        self.enter(Op::Rotate).await?;
        self.inner
            .rotate(old, expected_version, record, retired)
            .await
    }
}
