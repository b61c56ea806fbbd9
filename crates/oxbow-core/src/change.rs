//! Change feeds: the in-process change stream of each model.
//!
//! The model layer publishes one [`ChangeEvent`] after each successful write, never before and
//! never for a rejected one. Every subscriber reads from a bounded queue; publishing never waits
//! for a subscriber, and a subscriber that falls behind learns how many events it missed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::dao::RecordView;
use crate::model::{ModelDefinition, ModelName};
use crate::row::Row;

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

/// The change feed of one model: sequence numbers, a bounded retention for resuming, and a
/// broadcast to live subscribers.
#[derive(Debug)]
pub struct ChangeFeed {
    model: ModelName,
    settings: FeedSettings,
    tx: broadcast::Sender<Arc<ChangeEvent>>,
    /// Held while publishing and while subscribing, so a subscriber's replay and its live
    /// events meet with no gap and no duplicate.
    state: Mutex<FeedState>,
}

#[derive(Debug, Default)]
struct FeedState {
    seq: u64,
    retained: VecDeque<(Instant, Arc<ChangeEvent>)>,
}

impl FeedState {
    fn trim(&mut self, settings: &FeedSettings, now: Instant) {
        while self.retained.len() > settings.retain_count {
            self.retained.pop_front();
        }
        while self
            .retained
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > settings.retain_age)
        {
            self.retained.pop_front();
        }
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

    pub fn with_settings(model: ModelName, settings: FeedSettings) -> Self {
        let (tx, _) = broadcast::channel(settings.queue.max(1));
        Self {
            model,
            settings,
            tx,
            state: Mutex::new(FeedState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a change to every current subscriber and retains it for resuming. Never
    /// blocks on a subscriber.
    pub fn publish(
        &self,
        kind: ChangeType,
        target: Option<Value>,
        where_: Option<Value>,
        data: Option<ChangeData>,
    ) -> u64 {
        let mut state = self.lock();
        state.seq += 1;
        let event = Arc::new(ChangeEvent {
            seq: state.seq,
            model: self.model.clone(),
            kind,
            target,
            where_,
            data,
            json: OnceLock::new(),
        });
        let now = Instant::now();
        if self.settings.retain_count > 0 {
            state.retained.push_back((now, event.clone()));
        }
        state.trim(&self.settings, now);
        // No subscribers is not an error.
        let _ = self.tx.send(event);
        state.seq
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> ChangeStream {
        let _state = self.lock();
        ChangeStream {
            backlog: VecDeque::new(),
            rx: self.tx.subscribe(),
        }
    }

    /// A subscription that first replays the retained events after `last_id` (a `seq` this
    /// feed handed out), then continues live.
    pub fn subscribe_after(&self, last_id: u64) -> (ChangeStream, Resume) {
        let mut state = self.lock();
        state.trim(&self.settings, Instant::now());
        let rx = self.tx.subscribe();
        let oldest = state.retained.front().map_or(state.seq + 1, |(_, e)| e.seq);
        if last_id > state.seq || last_id + 1 < oldest {
            return (
                ChangeStream {
                    backlog: VecDeque::new(),
                    rx,
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
        (ChangeStream { backlog, rx }, Resume::Replayed)
    }

    /// How many subscriptions are open.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
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
    rx: broadcast::Receiver<Arc<ChangeEvent>>,
}

impl ChangeStream {
    /// The next event, waiting for one.
    pub async fn recv(&mut self) -> Result<Arc<ChangeEvent>, RecvError> {
        if let Some(e) = self.backlog.pop_front() {
            return Ok(e);
        }
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Result<Arc<ChangeEvent>, RecvError>> {
        if let Some(e) = self.backlog.pop_front() {
            return Some(Ok(e));
        }
        match self.rx.try_recv() {
            Ok(e) => Some(Ok(e)),
            Err(broadcast::error::TryRecvError::Empty) => None,
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(broadcast::error::TryRecvError::Closed) => Some(Err(RecvError::Closed)),
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
            feed.publish(ChangeType::Create, Some(i.into()), None, None);
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
            feed.publish(ChangeType::Create, Some(i.into()), None, None);
        }
    }

    fn drain(s: &mut ChangeStream) -> Vec<u64> {
        std::iter::from_fn(|| s.try_recv().and_then(Result::ok).map(|e| e.seq)).collect()
    }

    #[test]
    fn resuming_replays_then_continues_without_gap_or_duplicate() {
        let f = feed(5);
        publish(&f, 3);
        let (mut s, how) = f.subscribe_after(1);
        assert_eq!(how, Resume::Replayed);
        publish(&f, 2);
        assert_eq!(drain(&mut s), [2, 3, 4, 5]);
    }

    #[test]
    fn ids_past_retention_or_from_another_run_reset() {
        let f = feed(3);
        publish(&f, 10);
        assert_eq!(f.subscribe_after(7).1, Resume::Replayed);
        assert_eq!(f.subscribe_after(6).1, Resume::Reset);
        assert_eq!(f.subscribe_after(99).1, Resume::Reset);
        let (mut s, _) = f.subscribe_after(10);
        assert!(drain(&mut s).is_empty());
    }
}
