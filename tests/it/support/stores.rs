//! Store wrappers that count, fail, pause or watch the layer's calls. One
//! generic [`Wrapped`] passes every call on to the real store it wraps; what
//! each wrapper does around the call is its [`Hook`].

use std::fmt;
use std::future::Future;
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
    pub(crate) const ALL: [Op; 5] = [Op::Load, Op::Create, Op::Update, Op::Delete, Op::Rotate];

    pub(crate) fn index(self) -> usize {
        match self {
            Op::Load => 0,
            Op::Create => 1,
            Op::Update => 2,
            Op::Delete => 3,
            Op::Rotate => 4,
        }
    }
}

/// A call to the wrapped store, which does nothing until it is awaited.
pub(crate) trait Call<T>: Future<Output = Result<T, Error>> + Send {}

impl<T, F: Future<Output = Result<T, Error>> + Send> Call<T> for F {}

/// What a [`Wrapped`] store does around each call it passes on.
pub(crate) trait Hook: Send + Sync + 'static {
    /// Runs `call`, the wrapped store's `op` on the session `id` (the old id
    /// for a rotation), which does nothing until it is awaited.
    fn around<T: Send>(
        &self,
        op: Op,
        id: &Id,
        call: impl Call<T>,
    ) -> impl Future<Output = Result<T, Error>> + Send;
}

/// A real store and a [`Hook`] run around every call made to it. Clones
/// share the store and whatever the hook shares.
#[derive(Clone, Default)]
pub(crate) struct Wrapped<St, H> {
    inner: St,
    hook: H,
}

impl<St, H> Wrapped<St, H> {
    pub(crate) fn with_hook(inner: St, hook: H) -> Self {
        Self { inner, hook }
    }

    /// The wrapped store, to reach it without the hook.
    pub(crate) fn inner(&self) -> &St {
        &self.inner
    }

    pub(crate) fn hook(&self) -> &H {
        &self.hook
    }
}

impl<St, H: fmt::Debug> fmt::Debug for Wrapped<St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.hook.fmt(f)
    }
}

#[async_trait]
impl<St: SessionStore, H: Hook> SessionStore for Wrapped<St, H> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.hook.around(Op::Load, id, self.inner.load(id)).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        let call = self.inner.create(record);
        self.hook.around(Op::Create, &record.id, call).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        let call = self.inner.update(record, expected_version);
        self.hook.around(Op::Update, &record.id, call).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.hook
            .around(Op::Delete, id, self.inner.delete(id))
            .await
    }

    async fn rotate(
        &self,
        old: &Id,
        expected_version: u64,
        record: &Record,
        retired: Option<&Record>,
    ) -> Result<Rotated, Error> {
        let call = self.inner.rotate(old, expected_version, record, retired);
        self.hook.around(Op::Rotate, old, call).await
    }
}

/// The hook that only keeps `T` (a server, a directory) alive as long as the
/// store: every call goes straight to the real store.
#[cfg(any(feature = "sqlite-store", feature = "redis-store"))]
#[derive(Debug)]
pub(crate) struct Keeps<T>(pub(crate) T);

#[cfg(any(feature = "sqlite-store", feature = "redis-store"))]
impl<T: Send + Sync + 'static> Hook for Keeps<T> {
    async fn around<R: Send>(&self, _op: Op, _id: &Id, call: impl Call<R>) -> Result<R, Error> {
        call.await
    }
}

/// A store that implements only the four required methods, so that the layer
/// runs the trait's provided (non-atomic) `rotate` over them.
#[derive(Clone)]
pub(crate) struct NoRotate<St>(pub(crate) St);

#[async_trait]
impl<St: SessionStore> SessionStore for NoRotate<St> {
    async fn load(&self, id: &Id) -> Result<Option<Record>, Error> {
        self.0.load(id).await
    }

    async fn create(&self, record: &Record) -> Result<Created, Error> {
        self.0.create(record).await
    }

    async fn update(&self, record: &Record, expected_version: u64) -> Result<Updated, Error> {
        self.0.update(record, expected_version).await
    }

    async fn delete(&self, id: &Id) -> Result<(), Error> {
        self.0.delete(id).await
    }
}

/// The calls counted by a [`CountingStore`], by operation.
#[derive(Clone, Default)]
pub(crate) struct Counts(Arc<[AtomicUsize; 5]>);

/// Wraps a store and counts the calls the layer makes to it.
///
/// Clones share the counters, so a test keeps one clone and gives the other
/// to the layer.
pub(crate) type CountingStore<St> = Wrapped<St, Counts>;

impl<St> CountingStore<St> {
    pub(crate) fn new(inner: St) -> Self {
        Self::with_hook(inner, Counts::default())
    }

    pub(crate) fn count(&self, op: Op) -> usize {
        self.hook.count(op)
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
}

impl Counts {
    fn count(&self, op: Op) -> usize {
        self.0
            .get(op.index())
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }
}

impl fmt::Debug for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingStore")
            .field("counts", &Op::ALL.map(|op| self.count(op)))
            .finish_non_exhaustive()
    }
}

impl Hook for Counts {
    async fn around<T: Send>(&self, op: Op, _id: &Id, call: impl Call<T>) -> Result<T, Error> {
        if let Some(count) = self.0.get(op.index()) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        call.await
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

/// The faults a [`FaultyStore`] injects, shared by its clones.
#[derive(Default)]
pub(crate) struct Faults {
    failing: [AtomicBool; 5],
    /// The next call of each operation pauses at this gate.
    holds: Mutex<[Option<Arc<Gate>>; 5]>,
    /// Every call of each operation sleeps this long first (milliseconds).
    delays: [AtomicU64; 5],
}

/// Wraps a store; a test can make any operation fail with a store error,
/// pause the next call of an operation at a [`Gate`], or slow every call.
pub(crate) type FaultyStore<St> = Wrapped<St, Arc<Faults>>;

impl<St> FaultyStore<St> {
    pub(crate) fn new(inner: St) -> Self {
        Self::with_hook(inner, Arc::default())
    }

    /// Makes every call of `op` fail (`true`) or pass through (`false`).
    pub(crate) fn fail(&self, op: Op, failing: bool) {
        if let Some(flag) = self.hook.failing.get(op.index()) {
            flag.store(failing, Ordering::SeqCst);
        }
    }

    /// Makes the next call of `op` wait at the returned gate before it runs.
    pub(crate) fn hold_next(&self, op: Op) -> Arc<Gate> {
        let gate = Gate::new();
        let mut holds = self
            .hook
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
        if let Some(slot) = self.hook.delays.get(op.index()) {
            slot.store(millis, Ordering::SeqCst);
        }
    }
}

impl Faults {
    async fn enter(&self, op: Op) -> Result<(), Error> {
        let millis = self
            .delays
            .get(op.index())
            .map_or(0, |delay| delay.load(Ordering::SeqCst));
        if millis > 0 {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        let gate = {
            let mut holds = self.holds.lock().unwrap_or_else(PoisonError::into_inner);
            holds.get_mut(op.index()).and_then(Option::take)
        };
        if let Some(gate) = gate {
            gate.pause().await;
        }
        let failing = self
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

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore").finish_non_exhaustive()
    }
}

impl Hook for Arc<Faults> {
    async fn around<T: Send>(&self, op: Op, _id: &Id, call: impl Call<T>) -> Result<T, Error> {
        self.enter(op).await?;
        call.await
    }
}
