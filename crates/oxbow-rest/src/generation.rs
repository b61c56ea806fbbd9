//! One generation of the served app: the registry, the endpoint table, the compiled pipeline
//! and the plugins' remote code, behind one handle ([`Current`]) that a reload can swap whole,
//! so no request ever sees a new registry with an old table.
//!
//! Every request pins the generation it started on ([`Current::load`]) and uses it to the end.
//! Loading costs one atomic read: each worker thread keeps the generation it last saw and
//! takes the lock only after a swap. Per-thread caches keyed by request text (`plans`) are
//! also keyed by the generation's id, which is unique in the process.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use oxbow_core::Registry;

use crate::endpoint::Endpoints;
use crate::{etag, pipeline, remote, stream};

/// Everything requests read that the app's files and plugins decide.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Unique in the process; set by [`Current`].
    pub id: u64,
    pub registry: Arc<Registry>,
    /// Every model's endpoints: what dispatch matches requests against.
    pub endpoints: Arc<Endpoints>,
    /// middleware.json compiled; its entries after `loopback#rest` answer what nobody else
    /// did, and it holds strong-error-handler's options.
    pub pipeline: Arc<pipeline::Compiled>,
    /// Remote methods' Rust implementations and the remote hooks, from boot plugins.
    pub remotes: Arc<remote::Remotes>,
    /// `remoting.json.limit` and `remoting.urlencoded.limit` in bytes.
    pub json_limit: usize,
    pub form_limit: usize,
    /// Change-stream behaviour (`changeStreams` in config.json).
    pub streams: stream::StreamOptions,
    /// Express's `etag` setting (config.json `etag`).
    pub etag: etag::EtagMode,
    /// Access tokens and ACLs (`enableAuth`), with their caches.
    pub auth: Arc<oxbow_auth::Auth>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The generation being served now.
#[derive(Debug)]
pub struct Current {
    /// Tells this handle apart in the per-thread cache.
    key: u64,
    /// The id of the generation in `slot`.
    latest: AtomicU64,
    slot: RwLock<Arc<Generation>>,
}

/// A generation a request has pinned: it stays alive and unchanged while the request runs,
/// whatever a swap does meanwhile. The `Rc` around the thread's `Arc` is on purpose: pinning
/// is a plain increment, not an atomic one on a count every worker shares.
#[derive(Debug, Clone)]
#[allow(clippy::redundant_allocation)]
pub struct Pinned(Rc<Arc<Generation>>);

impl std::ops::Deref for Pinned {
    type Target = Generation;

    fn deref(&self) -> &Generation {
        &self.0
    }
}

/// Per-thread: the generation each handle last gave this thread (a few handles at most; tests
/// boot several apps on one thread).
#[allow(clippy::redundant_allocation)]
type Seen = Vec<(u64, Rc<Arc<Generation>>)>;

thread_local! {
    static SEEN: RefCell<Seen> = const { RefCell::new(Vec::new()) };
}

const SEEN_MAX: usize = 8;

impl Current {
    pub fn new(mut first: Generation) -> Arc<Self> {
        first.id = next_id();
        Arc::new(Self {
            key: next_id(),
            latest: AtomicU64::new(first.id),
            slot: RwLock::new(Arc::new(first)),
        })
    }

    /// The generation to serve a request with.
    pub fn load(&self) -> Pinned {
        let latest = self.latest.load(Ordering::Acquire);
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if let Some((_, g)) = seen.iter().find(|(k, _)| *k == self.key) {
                if g.id == latest {
                    return Pinned(g.clone());
                }
            }
            let fresh = Rc::new(self.slot.read().unwrap_or_else(|e| e.into_inner()).clone());
            seen.retain(|(k, _)| *k != self.key);
            if seen.len() >= SEEN_MAX {
                seen.remove(0);
            }
            seen.push((self.key, fresh.clone()));
            Pinned(fresh)
        })
    }

    /// Serves `next` from now on; requests that pinned the old one finish on it.
    pub fn swap(&self, mut next: Generation) -> u64 {
        let id = next_id();
        next.id = id;
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.latest.store(id, Ordering::Release);
        id
    }
}
