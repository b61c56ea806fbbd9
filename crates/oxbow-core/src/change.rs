//! Change feeds: the in-process change stream of each model.
//!
//! The model layer publishes one [`ChangeEvent`] after each successful write, never before and
//! never for a rejected one. Every subscriber reads from a bounded queue; publishing never waits
//! for a subscriber, and a subscriber that falls behind learns how many events it missed.

use std::sync::{Arc, Mutex, OnceLock};

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

/// The change feed of one model.
#[derive(Debug)]
pub struct ChangeFeed {
    model: ModelName,
    tx: broadcast::Sender<Arc<ChangeEvent>>,
    /// The last sequence number; held while sending so feed order is sequence order.
    seq: Mutex<u64>,
}

impl ChangeFeed {
    /// A feed whose subscribers each buffer at most `capacity` events.
    pub fn new(model: ModelName, capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            model,
            tx,
            seq: Mutex::new(0),
        }
    }

    /// Publishes a change to every current subscriber. Never blocks on a subscriber.
    pub fn publish(
        &self,
        kind: ChangeType,
        target: Option<Value>,
        where_: Option<Value>,
        data: Option<ChangeData>,
    ) -> u64 {
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        *seq += 1;
        let event = ChangeEvent {
            seq: *seq,
            model: self.model.clone(),
            kind,
            target,
            where_,
            data,
            json: OnceLock::new(),
        };
        // No subscribers is not an error.
        let _ = self.tx.send(Arc::new(event));
        *seq
    }

    /// A new subscription that sees every event published from now on.
    pub fn subscribe(&self) -> ChangeStream {
        ChangeStream {
            rx: self.tx.subscribe(),
        }
    }

    /// How many subscriptions are open.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// The sequence number of the last published event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        *self.seq.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A subscription to a model's changes. Dropping it unsubscribes.
#[derive(Debug)]
pub struct ChangeStream {
    rx: broadcast::Receiver<Arc<ChangeEvent>>,
}

impl ChangeStream {
    /// The next event, waiting for one.
    pub async fn recv(&mut self) -> Result<Arc<ChangeEvent>, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Result<Arc<ChangeEvent>, RecvError>> {
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
