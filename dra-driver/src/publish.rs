//! Publishing this node's pool as ResourceSlices (issue 13, Publishing).
//!
//! [`Publisher::reconcile`] lists the slices of this node and driver (field
//! selectors `spec.nodeName`, `spec.driver`, as upstream's kubelet plugin
//! helper does), compares their content with the desired layout and, when it
//! differs, writes every desired slice at a new generation before it deletes
//! the slices no longer wanted, so consumers never see a half pool. [`run`]
//! reconciles on start, on every pool change and every resync, which also
//! repairs slices kubelet deletes at its own start.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::resource::v1::ResourceSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use railyard_dra::api::{pool_to_slices, pools_from_slices};
use railyard_dra::device::Pool;
use railyard_dra::slices::{ServerVersion, SliceError};

/// Tries of one reconcile when a write meets a 409 conflict (each re-lists).
pub const CONFLICT_TRIES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("reading the server version: {0}")]
    Version(#[source] kube::Error),
    #[error("server version: {0}")]
    UnknownVersion(#[source] SliceError),
    #[error("pool {pool} cannot be cut into slices: {source}")]
    Layout {
        pool: String,
        #[source]
        source: SliceError,
    },
    #[error(
        "pool {pool} is for node {node:?} and driver {driver:?}, this publisher for node {want_node:?} and driver {want_driver:?}"
    )]
    WrongPool {
        pool: String,
        node: String,
        driver: String,
        want_node: String,
        want_driver: String,
    },
    #[error("listing ResourceSlices of node {node} driver {driver}: {source}")]
    List {
        node: String,
        driver: String,
        #[source]
        source: kube::Error,
    },
    #[error("{op} ResourceSlice {slice}: {source}")]
    Write {
        op: &'static str,
        slice: String,
        #[source]
        source: kube::Error,
    },
    #[error("ResourceSlice {slice}: still conflicting after {tries} tries: {source}")]
    Conflict {
        slice: String,
        tries: u32,
        #[source]
        source: kube::Error,
    },
}

/// What one reconcile did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The published slices already matched: nothing written.
    Unchanged { generation: i64 },
    /// The pool was (re)published at `generation`.
    Published {
        generation: i64,
        created: usize,
        updated: usize,
        deleted: usize,
    },
}

impl Outcome {
    pub fn generation(&self) -> i64 {
        match self {
            Outcome::Unchanged { generation } | Outcome::Published { generation, .. } => *generation,
        }
    }
}

/// Counters for /healthz and metrics, shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Slices created or updated, in total.
    published: AtomicU64,
    /// Slices deleted, in total.
    deleted: AtomicU64,
    /// Reconciles that failed.
    republish_errors: AtomicU64,
    /// The generation last published or found current (0: none yet).
    last_generation: AtomicI64,
    /// True once one reconcile succeeded.
    ready: AtomicBool,
}

/// A copy of [`PublishStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub published: u64,
    pub deleted: u64,
    pub republish_errors: u64,
    pub last_generation: i64,
    pub ready: bool,
}

impl PublishStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.published.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
            republish_errors: self.republish_errors.load(Ordering::Relaxed),
            last_generation: self.last_generation.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Relaxed),
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// The server version from discovery (`/version`), which picks the layout.
pub async fn discover_version(client: &kube::Client) -> Result<ServerVersion, PublishError> {
    let info = client.apiserver_version().await.map_err(PublishError::Version)?;
    ServerVersion::from_discovery(&info.major, &info.minor).map_err(PublishError::UnknownVersion)
}

/// Publishes one node's pool of one driver.
#[derive(Clone)]
pub struct Publisher {
    client: kube::Client,
    node: String,
    driver: String,
    version: ServerVersion,
    stats: Arc<PublishStats>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("node", &self.node)
            .field("driver", &self.driver)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// A slice's content without metadata and generation, as the domain reads
/// it (so quantities compare by value and server-set fields such as a
/// taint's `timeAdded` do not count).
#[derive(Debug, PartialEq)]
struct Content {
    pool: Pool,
    slice_count: i64,
    other_node_fields: bool,
}

fn content(s: &ResourceSlice) -> Option<Content> {
    let mut one = s.clone();
    one.spec.pool.generation = 0;
    let pool = pools_from_slices(std::slice::from_ref(&one)).ok()?.into_iter().next()?;
    Some(Content {
        pool,
        slice_count: s.spec.pool.resource_slice_count,
        other_node_fields: s.spec.all_nodes.unwrap_or(false)
            || s.spec.node_selector.is_some()
            || s.spec.per_device_node_selection.unwrap_or(false),
    })
}

fn name_of(s: &ResourceSlice) -> String {
    s.metadata.name.clone().unwrap_or_default()
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// One attempt's failure: a conflict re-lists, anything else ends it.
enum Attempt {
    Conflict { slice: String, source: kube::Error },
    Failed(PublishError),
}

impl Publisher {
    pub fn new(client: kube::Client, node: &str, driver: &str, version: ServerVersion) -> Publisher {
        Publisher {
            client,
            node: node.to_owned(),
            driver: driver.to_owned(),
            version,
            stats: Arc::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn driver(&self) -> &str {
        &self.driver
    }

    pub fn version(&self) -> ServerVersion {
        self.version
    }

    pub fn stats(&self) -> Arc<PublishStats> {
        self.stats.clone()
    }

    fn api(&self) -> Api<ResourceSlice> {
        Api::all(self.client.clone())
    }

    /// Brings the published slices to `pool`: no write when they already
    /// match, otherwise every desired slice at a new generation first, then
    /// the deletes. Counts into [`PublishStats`].
    pub async fn reconcile(&self, pool: &Pool) -> Result<Outcome, PublishError> {
        let out = self.reconcile_inner(pool).await;
        match &out {
            Ok(o) => {
                if let Outcome::Published {
                    created,
                    updated,
                    deleted,
                    ..
                } = o
                {
                    let written = u64::try_from(created + updated).unwrap_or(u64::MAX);
                    self.stats.published.fetch_add(written, Ordering::Relaxed);
                    let deleted = u64::try_from(*deleted).unwrap_or(u64::MAX);
                    self.stats.deleted.fetch_add(deleted, Ordering::Relaxed);
                }
                self.stats.last_generation.store(o.generation(), Ordering::Relaxed);
                self.stats.ready.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.republish_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        out
    }

    async fn reconcile_inner(&self, pool: &Pool) -> Result<Outcome, PublishError> {
        if pool.node_name != self.node || pool.driver != self.driver {
            return Err(PublishError::WrongPool {
                pool: pool.name.clone(),
                node: pool.node_name.clone(),
                driver: pool.driver.clone(),
                want_node: self.node.clone(),
                want_driver: self.driver.clone(),
            });
        }
        // Cut once to check the layout; the generation is set per attempt.
        let desired = pool_to_slices(pool, self.version, 0).map_err(|source| PublishError::Layout {
            pool: pool.name.clone(),
            source,
        })?;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.attempt(&desired).await {
                Ok(o) => return Ok(o),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Conflict { slice, source }) => {
                    if tries >= CONFLICT_TRIES {
                        return Err(PublishError::Conflict { slice, tries, source });
                    }
                    tracing::info!(slice, error = %source, try_ = tries, "ResourceSlice conflict, re-listing");
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<ResourceSlice>, PublishError> {
        let fields = format!("spec.nodeName={},spec.driver={}", self.node, self.driver);
        let list = self
            .api()
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(|source| PublishError::List {
                node: self.node.clone(),
                driver: self.driver.clone(),
                source,
            })?;
        // The selector is the server's; check it here too.
        Ok(list
            .items
            .into_iter()
            .filter(|s| s.spec.node_name.as_deref() == Some(self.node.as_str()) && s.spec.driver == self.driver)
            .collect())
    }

    async fn attempt(&self, desired: &[ResourceSlice]) -> Result<Outcome, Attempt> {
        let existing = self.list().await.map_err(Attempt::Failed)?;
        let by_name: BTreeMap<String, &ResourceSlice> = existing.iter().map(|s| (name_of(s), s)).collect();

        let generations: Vec<i64> = existing.iter().map(|s| s.spec.pool.generation).collect();
        let current = generations.iter().copied().max().unwrap_or(0);
        let same_generation = generations.iter().all(|g| *g == current);
        let same_content = existing.len() == desired.len()
            && desired.iter().all(|d| {
                by_name
                    .get(&name_of(d))
                    .is_some_and(|e| content(e).is_some_and(|c| Some(c) == content(d)))
            });
        if !existing.is_empty() && same_generation && same_content {
            return Ok(Outcome::Unchanged { generation: current });
        }

        // Never back below what this process published: consumers may still
        // hold a newer generation than the (deleted) slices show.
        let floor = self.stats.last_generation.load(Ordering::Relaxed);
        let generation = current.max(floor).saturating_add(1);
        let api = self.api();
        let (mut created, mut updated) = (0, 0);
        for d in desired {
            let mut s = d.clone();
            s.spec.pool.generation = generation;
            let name = name_of(&s);
            let result = match by_name.get(&name) {
                Some(e) => {
                    s.metadata.resource_version = e.metadata.resource_version.clone();
                    s.metadata.labels = e.metadata.labels.clone();
                    s.metadata.annotations = e.metadata.annotations.clone();
                    s.metadata.owner_references = e.metadata.owner_references.clone();
                    updated += 1;
                    api.replace(&name, &PostParams::default(), &s)
                        .await
                        .map_err(|e| ("update", e))
                }
                None => {
                    created += 1;
                    api.create(&PostParams::default(), &s).await.map_err(|e| ("create", e))
                }
            };
            match result {
                Ok(_) => tracing::debug!(slice = name, generation, "ResourceSlice written"),
                Err((_, source)) if is_conflict(&source) => return Err(Attempt::Conflict { slice: name, source }),
                Err((op, source)) => {
                    return Err(Attempt::Failed(PublishError::Write {
                        op,
                        slice: name,
                        source,
                    }));
                }
            }
        }

        let keep: Vec<String> = desired.iter().map(name_of).collect();
        let mut deleted = 0;
        for e in &existing {
            let name = name_of(e);
            if keep.contains(&name) {
                continue;
            }
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(source) if is_not_found(&source) => {}
                Err(source) if is_conflict(&source) => return Err(Attempt::Conflict { slice: name, source }),
                Err(source) => {
                    return Err(Attempt::Failed(PublishError::Write {
                        op: "delete",
                        slice: name,
                        source,
                    }));
                }
            }
        }
        tracing::info!(
            node = self.node,
            driver = self.driver,
            generation,
            created,
            updated,
            deleted,
            "published ResourceSlices"
        );
        Ok(Outcome::Published {
            generation,
            created,
            updated,
            deleted,
        })
    }
}

/// First wait after a failed reconcile; doubles up to [`MAX_BACKOFF`] (or
/// the resync period, if shorter).
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Keeps the pool published until `shutdown` completes: reconciles on
/// start, on every change of `pool_rx` and every `resync`; a failure is
/// logged and retried with backoff. A closed `pool_rx` keeps the last pool
/// published by resync.
pub async fn run(
    publisher: Publisher,
    mut pool_rx: tokio::sync::watch::Receiver<Pool>,
    resync: Duration,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let max_backoff = MAX_BACKOFF.min(resync).max(FIRST_BACKOFF);
    let mut backoff = FIRST_BACKOFF;
    let mut sender_alive = true;
    loop {
        let pool = pool_rx.borrow_and_update().clone();
        let wait = match publisher.reconcile(&pool).await {
            Ok(o) => {
                tracing::debug!(?o, "ResourceSlices reconciled");
                backoff = FIRST_BACKOFF;
                resync
            }
            Err(e) => {
                let wait = backoff;
                backoff = (backoff * 2).min(max_backoff);
                tracing::warn!(error = %e, retry_in = ?wait, "publishing ResourceSlices failed");
                wait
            }
        };
        tokio::select! {
            () = &mut shutdown => return,
            changed = pool_rx.changed(), if sender_alive => {
                if changed.is_err() {
                    sender_alive = false;
                    // Nothing more will come: wait out the period as usual.
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}
