//! Change feeds: the in-process change stream of each model, fed locally or from a shared log.
//!
//! A feed is *local* (the model layer publishes one [`ChangeEvent`] after each successful write,
//! never before and never for a rejected one) or *logged*: the connector writes each change into
//! a durable log inside the write's own transaction, the log numbers them, and a follower
//! delivers them here in log order, so every process on the same database sees the same
//! events with the same ids. Every subscriber reads from a bounded queue; publishing never
//! waits for a subscriber, and a subscriber that falls behind learns how many events it missed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

use crate::connector::BoxFuture;
use crate::dao::{RecordView, where_to_json};
use crate::error::{Error, Result};
use crate::filter::Where;
use crate::instance::Record;
use crate::model::{ModelDefinition, ModelName};
use crate::row::{Layout, Row, StoredJson};

/// What a change did, as LoopBack names it in the event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Create,
    Update,
    Remove,
}

impl ChangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Remove => "remove",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "create" => Some(Self::Create),
            "update" => Some(Self::Update),
            "remove" => Some(Self::Remove),
            _ => None,
        }
    }
}

/// The `data` of a change: a stored record (shared, shown as REST shows it) or a patch.
#[derive(Debug, Clone)]
pub enum ChangeData {
    Record(Arc<ModelDefinition>, Arc<Row>),
    Value(Value),
}

impl ChangeData {
    /// The data as JSON (hidden properties removed from records).
    pub fn to_value(&self) -> Value {
        match self {
            Self::Record(def, r) => RecordView {
                def,
                record: &**r,
                fields: None,
            }
            .to_value(),
            Self::Value(v) => v.clone(),
        }
    }
}

/// A change as a write describes it, before a feed gives it its number: LoopBack's payload
/// `{target, where, data, type}` for each kind of write, made in one place for the model layer
/// (local feeds) and for connectors that log changes in their write transaction.
#[derive(Debug, Clone)]
pub struct ChangeNote {
    pub kind: ChangeType,
    pub target: Option<Value>,
    pub where_: Option<Value>,
    /// The instance (hidden properties removed when shown), or the patch of `updateAll`.
    pub data: Option<ChangeData>,
    /// The record a `deleteById` removed, for rights checks only (never shown): kept when
    /// the model's `keeps_removed` says a subscriber's rights may depend on it.
    pub removed: Option<Arc<Row>>,
}

impl ChangeNote {
    /// A create or an update of one stored record: target its id, data the record.
    pub fn record(def: &Arc<ModelDefinition>, kind: ChangeType, row: &Arc<Row>) -> Self {
        Self {
            kind,
            target: row.value_of(def.id_name()),
            where_: None,
            data: Some(ChangeData::Record(def.clone(), row.clone())),
            removed: None,
        }
    }

    /// `updateAll`: one event for the call, with the where and the patch. LoopBack names it an
    /// update when it can tell the target (the id in the patch or an id equality in the
    /// where), a create otherwise.
    pub fn update_all(def: &ModelDefinition, where_: Option<&Where>, patch: &Record) -> Self {
        let where_json = where_
            .map(where_to_json)
            .unwrap_or_else(|| Value::Object(Map::new()));
        let id_name = def.id_name();
        let target = patch
            .get(id_name)
            .cloned()
            .or_else(|| where_json.get(id_name).filter(|v| !v.is_object()).cloned());
        let kind = if target.is_some() {
            ChangeType::Update
        } else {
            ChangeType::Create
        };
        let data = RecordView {
            def,
            record: patch,
            fields: None,
        }
        .to_value();
        Self {
            kind,
            target,
            where_: Some(where_json),
            data: Some(ChangeData::Value(data)),
            removed: None,
        }
    }

    /// `deleteById`: target the id, where `{<id>: id}`, whether or not it existed;
    /// `removed`, the record it deleted (see [`ChangeNote::removed`]).
    pub fn delete_by_id(def: &ModelDefinition, id: &Value, removed: Option<Arc<Row>>) -> Self {
        let mut w = Map::new();
        w.insert(def.id_name().to_owned(), id.clone());
        Self {
            kind: ChangeType::Remove,
            target: Some(id.clone()),
            where_: Some(Value::Object(w)),
            data: None,
            removed,
        }
    }

    /// `destroyAll`: the where only.
    pub fn delete_all(where_: Option<&Where>) -> Self {
        Self {
            kind: ChangeType::Remove,
            target: None,
            where_: Some(
                where_
                    .map(where_to_json)
                    .unwrap_or_else(|| Value::Object(Map::new())),
            ),
            data: None,
            removed: None,
        }
    }

    /// The note as a change log stores it (JSON texts; a record whole, hidden properties
    /// included, so a follower can match `where` filters as the writer would; a remove's
    /// `removed` record as its data).
    pub fn encode(&self) -> EncodedNote {
        let json = |v: &Option<Value>| v.as_ref().map(Value::to_string);
        let (data, is_record) = match (&self.data, &self.removed) {
            (Some(ChangeData::Record(_, row)), _) => (Some(stored_json(row)), true),
            (Some(ChangeData::Value(v)), _) => (Some(v.to_string()), false),
            (None, Some(row)) => (Some(stored_json(row)), true),
            (None, None) => (None, false),
        };
        EncodedNote {
            kind: self.kind.as_str(),
            target: json(&self.target),
            where_: json(&self.where_),
            data,
            is_record,
        }
    }

    /// A note read back from a change log.
    pub fn decode(
        def: &Arc<ModelDefinition>,
        layout: &Arc<Layout>,
        kind: &str,
        target: Option<&str>,
        where_: Option<&str>,
        data: Option<&str>,
        is_record: bool,
    ) -> Result<Self> {
        let bad = |what: &str| Error::internal(format!("change log: unreadable {what}"));
        let json = |s: Option<&str>, what: &str| -> Result<Option<Value>> {
            s.map(|s| serde_json::from_str(s).map_err(|_| bad(what)))
                .transpose()
        };
        let kind = ChangeType::parse(kind).ok_or_else(|| bad("type"))?;
        let data = match (json(data, "data")?, is_record) {
            (Some(Value::Object(m)), true) => Some(ChangeData::Record(
                def.clone(),
                Arc::new(Row::from_record(layout, m.into_iter().collect())),
            )),
            (Some(_), true) => return Err(bad("record")),
            (Some(v), false) => Some(ChangeData::Value(v)),
            (None, _) => None,
        };
        // A remove's record is what it deleted, not data to show.
        let (data, removed) = match (kind, data) {
            (ChangeType::Remove, Some(ChangeData::Record(_, row))) => (None, Some(row)),
            (_, data) => (data, None),
        };
        Ok(Self {
            kind,
            target: json(target, "target")?,
            where_: json(where_, "where")?,
            data,
            removed,
        })
    }
}

/// A [`ChangeNote`] in a change log's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedNote {
    pub kind: &'static str,
    pub target: Option<String>,
    pub where_: Option<String>,
    pub data: Option<String>,
    pub is_record: bool,
}

impl EncodedNote {
    /// The columns of [`ChangeNote::record`], straight from the stored row.
    pub fn record(def: &ModelDefinition, kind: ChangeType, row: &Row) -> Self {
        Self {
            kind: kind.as_str(),
            target: row.value_of(def.id_name()).map(|v| v.to_string()),
            where_: None,
            data: Some(stored_json(row)),
            is_record: true,
        }
    }
}

fn stored_json(row: &Row) -> String {
    // Serializing JSON values to a string cannot fail.
    serde_json::to_string(&StoredJson(row)).unwrap_or_default()
}

/// A durable change log shared by every process on one database (the PostgreSQL connector's).
/// Writes append to it in their own transaction; it numbers each model's changes 1, 2, 3, …
/// in commit order, and delivers them to the feeds of every process.
pub trait ChangeLog: Send + Sync {
    /// The changes of `model` numbered `after + 1 ..= upto`, in order; fewer (or none) when the
    /// log no longer holds some of them.
    fn replay<'a>(
        &'a self,
        model: &'a Arc<ModelDefinition>,
        layout: &'a Arc<Layout>,
        after: u64,
        upto: u64,
    ) -> BoxFuture<'a, Result<Vec<(u64, ChangeNote)>>>;

    /// Returns once this process's feeds hold every change committed before the call, so a
    /// subscription made next sees none of them.
    fn sync(&self) -> BoxFuture<'_, Result<()>>;

    /// The number of the model's last numbered change in the log (0 before the first).
    fn head<'a>(&'a self, model: &'a str) -> BoxFuture<'a, Result<u64>>;

    /// Starts delivering the log into `feeds` (the logged feeds of every model on this
    /// datasource); called once at boot, before requests are served.
    fn follow(self: Arc<Self>, feeds: Vec<Arc<ChangeFeed>>) -> BoxFuture<'static, Result<()>>;
}

/// One change, with LoopBack's payload `{target, where, data, type}`.
#[derive(Debug)]
pub struct ChangeEvent {
    /// Position in this model's feed, from 1, increasing by one per event.
    pub seq: u64,
    pub model: ModelName,
    pub kind: ChangeType,
    pub target: Option<Value>,
    pub where_: Option<Value>,
    /// The instance (hidden properties removed when shown), or the patch of `updateAll`.
    pub data: Option<ChangeData>,
    /// See [`ChangeNote::removed`]; never part of the payload.
    pub removed: Option<Arc<Row>>,
    /// The payload's JSON, made once, by the first subscriber that asks.
    json: OnceLock<String>,
}

impl ChangeEvent {
    /// The compact JSON LoopBack writes for this change (keys `target, where, data, type`,
    /// absent ones omitted).
    pub fn to_json(&self) -> &str {
        self.json.get_or_init(|| {
            let mut out = String::from("{");
            if let Some(t) = &self.target {
                out.push_str("\"target\":");
                out.push_str(&t.to_string());
                out.push(',');
            }
            if let Some(w) = &self.where_ {
                out.push_str("\"where\":");
                out.push_str(&w.to_string());
                out.push(',');
            }
            match &self.data {
                Some(ChangeData::Record(def, row)) => {
                    out.push_str("\"data\":");
                    out.push_str(row.rest_json(def));
                    out.push(',');
                }
                Some(ChangeData::Value(v)) => {
                    out.push_str("\"data\":");
                    out.push_str(&v.to_string());
                    out.push(',');
                }
                None => {}
            }
            out.push_str("\"type\":\"");
            out.push_str(self.kind.as_str());
            out.push_str("\"}");
            out
        })
    }

    /// The payload as a JSON value.
    pub fn payload(&self) -> Value {
        let mut m = Map::new();
        if let Some(t) = &self.target {
            m.insert("target".into(), t.clone());
        }
        if let Some(w) = &self.where_ {
            m.insert("where".into(), w.clone());
        }
        if let Some(d) = &self.data {
            m.insert("data".into(), d.to_value());
        }
        m.insert("type".into(), Value::from(self.kind.as_str()));
        Value::Object(m)
    }
}

/// Why a subscriber missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The subscriber fell behind by this many events; they are gone from its queue.
    #[error("subscriber lagged behind by {0} events")]
    Lagged(u64),
    /// The feed was closed (the app shut down).
    #[error("change feed closed")]
    Closed,
}

/// How a feed buffers and retains events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedSettings {
    /// Events a subscriber may have queued before it is cut off (it can resume).
    pub queue: usize,
    /// Events kept for resuming, at most this many…
    pub retain_count: usize,
    /// …and none older than this.
    pub retain_age: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            retain_count: 1000,
            retain_age: Duration::from_secs(3600),
        }
    }
}

/// The keys an event is routed by, for subscribers that asked for one key only: the
/// owners of its record, as the access rules name them (empty: no keyed subscriber gets it).
pub type EventKeys = Arc<dyn Fn(&ChangeEvent) -> Vec<String> + Send + Sync>;

/// The change feed of one model: sequence numbers, a bounded retention for resuming, a
/// broadcast to live subscribers, and delivery by key to subscribers that may see only the
/// events of one key (so a change wakes only the subscribers it concerns).
pub struct ChangeFeed {
    model: ModelName,
    settings: FeedSettings,
    tx: broadcast::Sender<Arc<ChangeEvent>>,
    /// Held while publishing and while subscribing, so a subscriber's replay and its live
    /// events meet with no gap and no duplicate.
    state: Arc<Mutex<FeedState>>,
    /// Set for a logged feed: where its events come from and how to replay older ones.
    log: Option<Logged>,
    /// How keyed subscribers are found for an event (set once, at boot, by access control).
    keys: OnceLock<EventKeys>,
}

struct Logged {
    log: Arc<dyn ChangeLog>,
    def: Arc<ModelDefinition>,
    layout: Arc<Layout>,
}

impl std::fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("model", &self.model)
            .field("logged", &self.log.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct FeedState {
    seq: u64,
    retained: VecDeque<(Instant, Arc<ChangeEvent>)>,
    /// Every event numbered above this one is in `retained` (what a logged feed can replay
    /// without asking the log).
    complete_after: u64,
    /// Keyed subscribers by key.
    keyed: HashMap<String, Vec<KeyedSub>>,
    keyed_count: usize,
    next_keyed: u64,
}

/// A subscriber that receives only the events of one key, through its own bounded queue.
#[derive(Debug)]
struct KeyedSub {
    id: u64,
    tx: mpsc::Sender<Arc<ChangeEvent>>,
    /// Set when its queue was full: the feed dropped it, and it reports that it lagged.
    lagged: Arc<AtomicBool>,
}

impl FeedState {
    fn trim(&mut self, settings: &FeedSettings, now: Instant) {
        let drop_front = |state: &mut Self| {
            if let Some((_, e)) = state.retained.pop_front() {
                state.complete_after = e.seq;
            }
        };
        while self.retained.len() > settings.retain_count {
            drop_front(self);
        }
        while self
            .retained
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > settings.retain_age)
        {
            drop_front(self);
        }
    }

    /// Sends `event` to the keyed subscribers of `keys`; one whose queue is full is dropped
    /// (it learns it lagged), one that is gone is forgotten.
    fn send_keyed(&mut self, keys: &[String], event: &Arc<ChangeEvent>) {
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].contains(key) {
                continue;
            }
            let Some(subs) = self.keyed.get_mut(key) else {
                continue;
            };
            let before = subs.len();
            subs.retain(|sub| match sub.tx.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    sub.lagged.store(true, Ordering::Release);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            self.keyed_count -= before - subs.len();
            if subs.is_empty() {
                self.keyed.remove(key);
            }
        }
    }

    fn push(&mut self, settings: &FeedSettings, event: &Arc<ChangeEvent>) {
        let now = Instant::now();
        self.seq = event.seq;
        if settings.retain_count > 0 {
            self.retained.push_back((now, event.clone()));
        } else {
            self.complete_after = event.seq;
        }
        self.trim(settings, now);
    }
}

/// Where a resumed subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Every event after the given id is replayed, then live events follow.
    Replayed,
    /// Events after the given id are no longer retained (or the id is from another run of the
    /// feed): the subscriber must refetch; live events follow.
    Reset,
}

/// Most events a logged feed replays from the log for one resuming subscriber; one further
/// behind is told to refetch.
pub const MAX_REPLAY: u64 = 10_000;

impl ChangeFeed {
    /// A feed with default settings whose subscribers each buffer at most `queue` events.
    pub fn new(model: ModelName, queue: usize) -> Self {
        Self::with_settings(
            model,
            FeedSettings {
                queue,
                ..FeedSettings::default()
            },
        )
    }

    /// A local feed: the model layer publishes into it.
    pub fn with_settings(model: ModelName, settings: FeedSettings) -> Self {
        let (tx, _) = broadcast::channel(settings.queue.max(1));
        Self {
            model,
            settings,
            tx,
            state: Arc::new(Mutex::new(FeedState::default())),
            log: None,
            keys: OnceLock::new(),
        }
    }

    /// A logged feed: `log` delivers into it (see [`ChangeLog::follow`]) and replays what it
    /// no longer retains.
    pub fn logged(
        def: Arc<ModelDefinition>,
        settings: FeedSettings,
        log: Arc<dyn ChangeLog>,
    ) -> Self {
        let mut feed = Self::with_settings(def.name.clone(), settings);
        feed.log = Some(Logged {
            log,
            layout: Layout::of(&def),
            def,
        });
        feed
    }

    /// Whether the model layer publishes into this feed (false: a change log does).
    pub fn is_local(&self) -> bool {
        self.log.is_none()
    }

    pub fn model(&self) -> &ModelName {
        &self.model
    }

    /// The model definition and row layout of a logged feed (what a follower decodes with).
    pub fn logged_model(&self) -> Option<(&Arc<ModelDefinition>, &Arc<Layout>)> {
        self.log.as_ref().map(|l| (&l.def, &l.layout))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn event(&self, seq: u64, note: ChangeNote) -> Arc<ChangeEvent> {
        Arc::new(ChangeEvent {
            seq,
            model: self.model.clone(),
            kind: note.kind,
            target: note.target,
            where_: note.where_,
            data: note.data,
            removed: note.removed,
            json: OnceLock::new(),
        })
    }

    /// Publishes a change to every current subscriber of a local feed and retains it for
    /// resuming. Never blocks on a subscriber.
    pub fn publish(&self, note: ChangeNote) -> u64 {
        let mut state = self.lock();
        let event = self.event(state.seq + 1, note);
        state.push(&self.settings, &event);
        self.send(&mut state, event);
        state.seq
    }

    /// Sets how keyed subscribers are found for an event (once; later calls are ignored).
    pub fn route_by(&self, keys: EventKeys) {
        let _ = self.keys.set(keys);
    }

    fn send(&self, state: &mut FeedState, event: Arc<ChangeEvent>) {
        if state.keyed_count > 0 {
            if let Some(keys) = self.keys.get() {
                state.send_keyed(&keys(&event), &event);
            }
        }
        // No subscribers is not an error.
        let _ = self.tx.send(event);
    }

    /// The live half of a new subscription: the broadcast, or a queue of its own for `key`.
    fn live(&self, state: &mut FeedState, key: Option<String>) -> Live {
        let Some(key) = key else {
            return Live::All(self.tx.subscribe());
        };
        let (tx, rx) = mpsc::channel(self.settings.queue.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        state.next_keyed += 1;
        let id = state.next_keyed;
        state.keyed.entry(key.clone()).or_default().push(KeyedSub {
            id,
            tx,
            lagged: lagged.clone(),
        });
        state.keyed_count += 1;
        Live::Keyed {
            rx,
            lagged,
            _guard: KeyedGuard {
                state: Arc::downgrade(&self.state),
                key,
                id,
            },
        }
    }

    /// Where a logged feed starts: the log's number of the model's last change at boot.
    pub fn start_at(&self, seq: u64) {
        let mut state = self.lock();
        state.seq = seq;
        state.complete_after = seq;
    }

    /// Delivers the change the log numbered `seq` (a follower calls this in log order; a
    /// number already delivered is ignored, so a follower that re-reads loses nothing and
    /// duplicates nothing).
    pub fn deliver(&self, seq: u64, note: ChangeNote) {
        let mut state = self.lock();
        if seq <= state.seq {
            return;
        }
        let event = self.event(seq, note);
        state.push(&self.settings, &event);
        self.send(&mut state, event);
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> ChangeStream {
        self.subscribe_for(None)
    }

    /// A new subscription to every event from now on, or with `key` only to the events
    /// [`ChangeFeed::route_by`] gives that key (replayed events are not filtered).
    pub fn subscribe_for(&self, key: Option<String>) -> ChangeStream {
        let mut state = self.lock();
        ChangeStream {
            backlog: VecDeque::new(),
            rx: self.live(&mut state, key),
            floor: state.seq,
        }
    }

    /// Like [`ChangeFeed::subscribe`], and for a logged feed only once every change committed
    /// before the call was delivered: a subscriber never sees writes answered before it
    /// subscribed, as with a local feed.
    pub async fn subscribe_now(&self) -> Result<ChangeStream> {
        self.subscribe_now_for(None).await
    }

    /// [`ChangeFeed::subscribe_now`] with a key (see [`ChangeFeed::subscribe_for`]).
    pub async fn subscribe_now_for(&self, key: Option<String>) -> Result<ChangeStream> {
        if let Some(logged) = &self.log {
            logged.log.sync().await?;
        }
        Ok(self.subscribe_for(key))
    }

    /// A subscription that first replays the events after `last_id` (a `seq` this feed
    /// handed out), then continues live. A local feed replays what it retains; a logged feed
    /// also what the log still holds (at most [`MAX_REPLAY`] events).
    pub async fn subscribe_after(&self, last_id: u64) -> Result<(ChangeStream, Resume)> {
        self.subscribe_after_for(last_id, None).await
    }

    /// [`ChangeFeed::subscribe_after`] with a key (see [`ChangeFeed::subscribe_for`]).
    pub async fn subscribe_after_for(
        &self,
        last_id: u64,
        key: Option<String>,
    ) -> Result<(ChangeStream, Resume)> {
        let Some(logged) = &self.log else {
            return Ok(self.subscribe_after_local(last_id, key));
        };
        let (mut stream, seq, complete_after) = {
            let mut state = self.lock();
            state.trim(&self.settings, Instant::now());
            let mut stream = ChangeStream {
                backlog: VecDeque::new(),
                rx: self.live(&mut state, key),
                floor: last_id.min(state.seq),
            };
            if last_id >= state.complete_after {
                stream.backlog = state
                    .retained
                    .iter()
                    .filter(|(_, e)| e.seq > last_id)
                    .map(|(_, e)| e.clone())
                    .collect();
            }
            (stream, state.seq, state.complete_after)
        };
        if last_id > seq {
            // Ahead of this process: fine when another process on the log has handed it out
            // already (this one delivers it shortly), a reset when the log never had it.
            if last_id <= logged.log.head(self.model.as_str()).await? {
                stream.floor = last_id;
                return Ok((stream, Resume::Replayed));
            }
            return Ok((stream, Resume::Reset));
        }
        if last_id >= complete_after {
            return Ok((stream, Resume::Replayed));
        }
        if seq - last_id > MAX_REPLAY {
            stream.floor = seq;
            return Ok((stream, Resume::Reset));
        }
        let replayed = logged
            .log
            .replay(&logged.def, &logged.layout, last_id, seq)
            .await?;
        let whole = replayed.len() as u64 == seq - last_id
            && replayed
                .iter()
                .zip(last_id + 1..)
                .all(|((n, _), want)| *n == want);
        if !whole {
            stream.floor = seq;
            return Ok((stream, Resume::Reset));
        }
        stream.backlog = replayed
            .into_iter()
            .map(|(n, note)| self.event(n, note))
            .collect();
        stream.floor = seq;
        Ok((stream, Resume::Replayed))
    }

    fn subscribe_after_local(&self, last_id: u64, key: Option<String>) -> (ChangeStream, Resume) {
        let mut state = self.lock();
        state.trim(&self.settings, Instant::now());
        let rx = self.live(&mut state, key);
        let oldest = state.retained.front().map_or(state.seq + 1, |(_, e)| e.seq);
        if last_id > state.seq || last_id + 1 < oldest {
            return (
                ChangeStream {
                    backlog: VecDeque::new(),
                    rx,
                    floor: state.seq,
                },
                Resume::Reset,
            );
        }
        let backlog = state
            .retained
            .iter()
            .filter(|(_, e)| e.seq > last_id)
            .map(|(_, e)| e.clone())
            .collect();
        (
            ChangeStream {
                backlog,
                rx,
                floor: state.seq,
            },
            Resume::Replayed,
        )
    }

    /// How many subscriptions are open.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count() + self.lock().keyed_count
    }

    /// The sequence number of the last published event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    pub fn settings(&self) -> &FeedSettings {
        &self.settings
    }
}

/// A subscription to a model's changes. Dropping it unsubscribes.
#[derive(Debug)]
pub struct ChangeStream {
    /// Retained events to replay before the live ones.
    backlog: VecDeque<Arc<ChangeEvent>>,
    rx: Live,
    /// Live events numbered at or below this were replayed (or were before the subscription).
    floor: u64,
}

/// Where a subscription's live events come from.
#[derive(Debug)]
enum Live {
    All(broadcast::Receiver<Arc<ChangeEvent>>),
    Keyed {
        rx: mpsc::Receiver<Arc<ChangeEvent>>,
        lagged: Arc<AtomicBool>,
        _guard: KeyedGuard,
    },
}

/// Removes a keyed subscriber from its feed when the subscription is dropped.
#[derive(Debug)]
struct KeyedGuard {
    state: Weak<Mutex<FeedState>>,
    key: String,
    id: u64,
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        let Some(state) = self.state.upgrade() else {
            return;
        };
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(subs) = state.keyed.get_mut(&self.key) else {
            return;
        };
        let before = subs.len();
        subs.retain(|s| s.id != self.id);
        let gone = before - subs.len();
        if subs.is_empty() {
            state.keyed.remove(&self.key);
        }
        state.keyed_count -= gone;
    }
}

impl Live {
    async fn recv(&mut self) -> Result<Arc<ChangeEvent>, RecvError> {
        match self {
            Self::All(rx) => rx.recv().await.map_err(|e| match e {
                broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
                broadcast::error::RecvError::Closed => RecvError::Closed,
            }),
            Self::Keyed { rx, lagged, .. } => match rx.recv().await {
                Some(e) => Ok(e),
                None if lagged.load(Ordering::Acquire) => Err(RecvError::Lagged(1)),
                None => Err(RecvError::Closed),
            },
        }
    }

    fn try_recv(&mut self) -> Option<Result<Arc<ChangeEvent>, RecvError>> {
        match self {
            Self::All(rx) => match rx.try_recv() {
                Ok(e) => Some(Ok(e)),
                Err(broadcast::error::TryRecvError::Empty) => None,
                Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                Err(broadcast::error::TryRecvError::Closed) => Some(Err(RecvError::Closed)),
            },
            Self::Keyed { rx, lagged, .. } => match rx.try_recv() {
                Ok(e) => Some(Ok(e)),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) if lagged.load(Ordering::Acquire) => {
                    Some(Err(RecvError::Lagged(1)))
                }
                Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(RecvError::Closed)),
            },
        }
    }
}

impl ChangeStream {
    /// The next event, waiting for one.
    pub async fn recv(&mut self) -> Result<Arc<ChangeEvent>, RecvError> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        loop {
            let e = self.rx.recv().await?;
            if e.seq > self.floor {
                self.floor = e.seq;
                return Ok(e);
            }
        }
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Result<Arc<ChangeEvent>, RecvError>> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(Ok(e));
        }
        loop {
            match self.rx.try_recv()? {
                Ok(e) if e.seq <= self.floor => continue,
                Ok(e) => {
                    self.floor = e.seq;
                    return Some(Ok(e));
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_a_subscription_unsubscribes_and_publishing_never_waits() {
        let feed = ChangeFeed::new(ModelName::new("Car"), 4);
        let mut a = feed.subscribe();
        let b = feed.subscribe();
        assert_eq!(feed.subscriber_count(), 2);
        drop(b);
        assert_eq!(feed.subscriber_count(), 1);
        // More events than the queue holds: publishing does not block, the reader learns it lagged.
        for i in 0..10 {
            feed.publish(ChangeNote {
                kind: ChangeType::Create,
                target: Some(i.into()),
                where_: None,
                data: None,
                removed: None,
            });
        }
        assert_eq!(feed.last_seq(), 10);
        assert_eq!(
            a.try_recv().map(|r| r.err()),
            Some(Some(RecvError::Lagged(6)))
        );
        let next = a.try_recv().unwrap().unwrap();
        assert_eq!(
            (next.seq, next.to_json()),
            (7, r#"{"target":6,"type":"create"}"#)
        );
        drop(a);
        assert_eq!(feed.subscriber_count(), 0);
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;

    fn feed(retain: usize) -> ChangeFeed {
        ChangeFeed::with_settings(
            ModelName::new("Car"),
            FeedSettings {
                queue: 16,
                retain_count: retain,
                retain_age: Duration::from_secs(60),
            },
        )
    }

    fn publish(feed: &ChangeFeed, n: u64) {
        for i in 0..n {
            feed.publish(ChangeNote {
                kind: ChangeType::Create,
                target: Some(i.into()),
                where_: None,
                data: None,
                removed: None,
            });
        }
    }

    fn drain(s: &mut ChangeStream) -> Vec<u64> {
        std::iter::from_fn(|| s.try_recv().and_then(Result::ok).map(|e| e.seq)).collect()
    }

    #[test]
    fn resuming_replays_then_continues_without_gap_or_duplicate() {
        let f = feed(5);
        publish(&f, 3);
        let (mut s, how) = f.subscribe_after_local(1, None);
        assert_eq!(how, Resume::Replayed);
        publish(&f, 2);
        assert_eq!(drain(&mut s), [2, 3, 4, 5]);
    }

    #[test]
    fn ids_past_retention_or_from_another_run_reset() {
        let f = feed(3);
        publish(&f, 10);
        assert_eq!(f.subscribe_after_local(7, None).1, Resume::Replayed);
        assert_eq!(f.subscribe_after_local(6, None).1, Resume::Reset);
        assert_eq!(f.subscribe_after_local(99, None).1, Resume::Reset);
        let (mut s, _) = f.subscribe_after_local(10, None);
        assert!(drain(&mut s).is_empty());
    }
}

#[cfg(test)]
mod keyed_tests {
    use super::*;

    fn note(owner: &str) -> ChangeNote {
        ChangeNote {
            kind: ChangeType::Create,
            target: Some(Value::String(owner.to_owned())),
            where_: None,
            data: None,
            removed: None,
        }
    }

    fn feed(queue: usize) -> ChangeFeed {
        let f = ChangeFeed::new(ModelName::new("Note"), queue);
        // The test's events name their owner in `target`.
        f.route_by(Arc::new(|e: &ChangeEvent| {
            e.target
                .as_ref()
                .and_then(Value::as_str)
                .map(|s| vec![s.to_owned()])
                .unwrap_or_default()
        }));
        f
    }

    #[test]
    fn keyed_subscribers_get_only_their_keys_events_and_unsubscribe_on_drop() {
        let f = feed(8);
        let mut a = f.subscribe_for(Some("a".into()));
        let mut b = f.subscribe_for(Some("b".into()));
        let mut all = f.subscribe();
        assert_eq!(f.subscriber_count(), 3);
        for o in ["a", "b", "a", "c"] {
            f.publish(note(o));
        }
        let seqs = |s: &mut ChangeStream| -> Vec<u64> {
            std::iter::from_fn(|| s.try_recv().and_then(Result::ok).map(|e| e.seq)).collect()
        };
        assert_eq!(seqs(&mut a), [1, 3]);
        assert_eq!(seqs(&mut b), [2]);
        assert_eq!(seqs(&mut all), [1, 2, 3, 4]);
        drop(a);
        assert_eq!(f.subscriber_count(), 2);
        assert_eq!(f.lock().keyed.len(), 1);
    }

    #[test]
    fn a_keyed_subscriber_that_falls_behind_gets_what_was_queued_then_lagged() {
        let f = feed(2);
        let mut a = f.subscribe_for(Some("a".into()));
        for _ in 0..3 {
            f.publish(note("a"));
        }
        assert_eq!(a.try_recv().unwrap().unwrap().seq, 1);
        assert_eq!(a.try_recv().unwrap().unwrap().seq, 2);
        assert_eq!(
            a.try_recv().map(|r| r.err()),
            Some(Some(RecvError::Lagged(1)))
        );
        assert_eq!(f.subscriber_count(), 0);
    }
}
