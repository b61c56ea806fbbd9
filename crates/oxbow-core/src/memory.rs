//! LoopBack's memory connector: per-model collections with sequential ids, optionally persisted
//! to a JSON file in LoopBack's own file format.
//!
//! With `file` set, every write is on disk before it is acknowledged: the whole database is
//! written to a temporary file, fsynced, and renamed over the old one (then the directory is
//! fsynced), so a crash leaves either the old or the new file, never a torn one. The file is
//! written by a thread of its own ([`FileWriter`]), never on a request worker: a write changes
//! the collections, asks for a file write and waits (asynchronously) until one that began after
//! it has finished. Writes that arrive while the file is being written share the next one
//! (group commit), an array create asks once, and reads never wait on the file.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use tokio::sync::watch;

use serde_json::{Map, Value};

use crate::connector::{BoxFuture, Connector, Modify, assign_id};
use crate::error::{Error, Result};
use crate::filter::{Filter, Where};
use crate::instance::Record;
use crate::js;
use crate::model::ModelDefinition;
use crate::row::{Layout, Row, StoredJson};

/// An id as a sort key: numbers before strings, numbers numerically.
#[derive(Debug, Clone, PartialEq)]
enum IdKey {
    Num(f64),
    Str(String),
}

impl Eq for IdKey {}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Num(a), Self::Num(b)) => a.total_cmp(b),
            (Self::Num(_), Self::Str(_)) => Ordering::Less,
            (Self::Str(_), Self::Num(_)) => Ordering::Greater,
            (Self::Str(a), Self::Str(b)) => js::cmp_utf16(a, b),
        }
    }
}

impl IdKey {
    fn of(v: &Value) -> Self {
        match v {
            Value::Number(n) => Self::Num(n.as_f64().unwrap_or(0.0)),
            Value::String(s) => Self::Str(s.clone()),
            other => Self::Str(js::to_js_string(other)),
        }
    }

    /// The key LoopBack's file format uses (`"1"`).
    fn file_key(&self) -> String {
        match self {
            Self::Num(n) => js::to_js_string(&js::number_value(*n)),
            Self::Str(s) => s.clone(),
        }
    }
}

#[derive(Debug)]
struct Collection {
    /// The next id to hand out (LoopBack's `ids[Model]`).
    next_id: f64,
    layout: Arc<Layout>,
    rows: BTreeMap<IdKey, Arc<Row>>,
}

type Collections = HashMap<String, RwLock<Collection>>;

/// The memory connector of one datasource.
pub struct MemoryConnector {
    collections: Arc<Collections>,
    /// The models whose `memory.collection` names another collection than their own name,
    /// read once here (juggler's `getCollection`); every other model's is its name.
    renamed: HashMap<String, String>,
    file: Option<PathBuf>,
    writer: Option<FileWriter>,
}

impl std::fmt::Debug for MemoryConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryConnector")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// What the file writer has done: every write asked for up to `written` is on disk; `failed`
/// is the last attempt that failed (the requests up to it that were not written by then get
/// its error).
#[derive(Debug, Clone, Default)]
struct Durable {
    written: u64,
    failed: Option<(u64, String)>,
}

#[derive(Debug, Default)]
struct Requests {
    /// The number of the last write asked for.
    asked: u64,
    stop: bool,
}

#[derive(Debug, Default)]
struct WriterShared {
    requests: Mutex<Requests>,
    wake: Condvar,
}

/// The thread that writes a memory datasource's file: each round takes a snapshot of every
/// collection (the rows are shared, not copied) after the last write asked for, writes it
/// durably and reports the number it covered.
struct FileWriter {
    shared: Arc<WriterShared>,
    done: watch::Receiver<Durable>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FileWriter {
    fn start(collections: Arc<Collections>, path: PathBuf) -> std::io::Result<Self> {
        let shared = Arc::new(WriterShared::default());
        let (tx, done) = watch::channel(Durable::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("oxbow-memory-file".into())
                .spawn(move || write_rounds(&shared, &collections, &path, &tx))?
        };
        Ok(Self {
            shared,
            done,
            thread: Some(thread),
        })
    }

    /// Asks for a file write covering every change made so far; its number.
    fn ask(&self) -> u64 {
        let mut r = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        r.asked += 1;
        self.shared.wake.notify_one();
        r.asked
    }

    /// Waits until write `n` (or a later one) is on disk.
    async fn wait(&self, n: u64, path: &Path) -> Result<()> {
        let mut done = self.done.clone();
        let state = done
            .wait_for(|d| d.written >= n || d.failed.as_ref().is_some_and(|f| f.0 >= n))
            .await
            .map_err(|_| Error::internal("the memory file writer stopped"))?
            .clone();
        if state.written >= n {
            return Ok(());
        }
        let message = state.failed.map(|f| f.1).unwrap_or_default();
        Err(Error::internal(format!(
            "cannot write `{}`: {message}",
            path.display()
        )))
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        {
            let mut r = self
                .shared
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            r.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The writer thread: one durable write per round, until stopped with nothing left to write.
fn write_rounds(
    shared: &WriterShared,
    collections: &Collections,
    path: &Path,
    tx: &watch::Sender<Durable>,
) {
    let mut covered = 0;
    loop {
        let target = {
            let mut r = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
            while r.asked == covered && !r.stop {
                r = shared.wake.wait(r).unwrap_or_else(|e| e.into_inner());
            }
            if r.asked == covered {
                return;
            }
            r.asked
        };
        // Every change asked for up to `target` was made before it was asked for, so the
        // snapshot taken now holds it.
        let outcome = snapshot(collections).and_then(|text| {
            write_durably(path, text.as_bytes()).map_err(|e| Error::internal(e.to_string()))
        });
        tx.send_modify(|d| match outcome {
            Ok(()) => d.written = target,
            Err(e) => {
                tracing::error!("cannot write `{}`: {e}", path.display());
                d.failed = Some((target, e.to_string()));
            }
        });
        covered = target;
    }
}

/// One collection as a snapshot took it: name, counter, rows.
type Taken<'a> = (&'a String, f64, Vec<(IdKey, Arc<Row>)>);

/// The whole database in LoopBack's file format. The collections are read-locked one at a time,
/// only to take their rows (shared `Arc`s); the text is made after.
fn snapshot(collections: &Collections) -> Result<String> {
    let mut names: Vec<&String> = collections.keys().collect();
    names.sort();
    let taken: Vec<Taken<'_>> = names
        .into_iter()
        .map(|name| {
            let coll = collections[name].read().unwrap_or_else(|e| e.into_inner());
            let rows = coll
                .rows
                .iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            (name, coll.next_id, rows)
        })
        .collect();
    let mut ids = Map::new();
    let mut models = Map::new();
    for (name, next_id, rows) in taken {
        ids.insert(name.clone(), js::number_value(next_id));
        let rows: Map<String, Value> = rows
            .iter()
            .map(|(k, r)| {
                (
                    k.file_key(),
                    Value::String(serde_json::to_string(&StoredJson(r)).unwrap_or_default()),
                )
            })
            .collect();
        models.insert(name.clone(), Value::Object(rows));
    }
    let mut db = Map::new();
    db.insert("ids".into(), Value::Object(ids));
    db.insert("models".into(), Value::Object(models));
    serde_json::to_string_pretty(&Value::Object(db)).map_err(|e| Error::internal(e.to_string()))
}

/// A problem loading the memory connector's file at boot.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not a LoopBack memory database: {message}")]
    Format { path: PathBuf, message: String },
}

impl MemoryConnector {
    /// A connector holding the collections of `models`, loading `file` when it exists.
    pub fn new<'a>(
        models: impl IntoIterator<Item = &'a ModelDefinition>,
        file: Option<PathBuf>,
    ) -> Result<Self, LoadError> {
        let mut collections = HashMap::new();
        let mut renamed = HashMap::new();
        for m in models {
            let name = collection_name(m);
            if name != m.name.as_str() {
                renamed.insert(m.name.to_string(), name.clone());
            }
            collections.insert(
                name,
                RwLock::new(Collection {
                    next_id: 1.0,
                    layout: Layout::of(m),
                    rows: BTreeMap::new(),
                }),
            );
        }
        let mut connector = Self {
            collections: Arc::new(collections),
            renamed,
            file,
            writer: None,
        };
        if let Some(path) = &connector.file {
            connector.load(path)?;
            connector.writer = Some(
                FileWriter::start(connector.collections.clone(), path.clone()).map_err(
                    |source| LoadError::Read {
                        path: path.clone(),
                        source,
                    },
                )?,
            );
        }
        Ok(connector)
    }

    fn load(&self, path: &Path) -> Result<(), LoadError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(LoadError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        if text.trim().is_empty() {
            return Ok(());
        }
        let format = |message: String| LoadError::Format {
            path: path.to_owned(),
            message,
        };
        let db: Value = serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        let ids = db
            .get("ids")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let models = db
            .get("models")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (name, coll) in self.collections.iter() {
            let mut coll = coll.write().unwrap_or_else(|e| e.into_inner());
            if let Some(next) = ids.get(name).and_then(js::to_number_opt) {
                coll.next_id = next;
            }
            let Some(rows) = models.get(name).and_then(Value::as_object) else {
                continue;
            };
            for (key, row) in rows {
                let record: Record = match row {
                    Value::String(s) => serde_json::from_str(s)
                        .map_err(|e| format(format!("row {name}/{key}: {e}")))?,
                    Value::Object(o) => o.clone(),
                    _ => return Err(format(format!("row {name}/{key} is not an object"))),
                };
                let id_key = key
                    .parse::<f64>()
                    .map(IdKey::Num)
                    .unwrap_or_else(|_| IdKey::Str(key.clone()));
                let row = Arc::new(Row::from_record(&coll.layout, record));
                coll.rows.insert(id_key, row);
            }
        }
        Ok(())
    }

    fn collection(&self, model: &ModelDefinition) -> Result<&RwLock<Collection>> {
        let name = match self.renamed.get(model.name.as_str()) {
            Some(n) => n.as_str(),
            None => model.name.as_str(),
        };
        self.collections.get(name).ok_or_else(|| {
            Error::internal(format!(
                "model `{}` is not attached to this memory datasource",
                model.name
            ))
        })
    }

    /// Makes every change so far durable when a file is configured, then answers `value`: the
    /// file is written by the writer thread and this waits for it without blocking the worker.
    fn durable<'a, T: Send + 'a>(
        &'a self,
        value: Result<T>,
        changed: bool,
    ) -> BoxFuture<'a, Result<T>> {
        match (&self.writer, &self.file, value) {
            (Some(writer), Some(path), Ok(v)) if changed => {
                let n = writer.ask();
                Box::pin(async move {
                    writer.wait(n, path).await?;
                    Ok(v)
                })
            }
            (_, _, value) => ready(value),
        }
    }
}

/// The collection's name as the model names it (`memory.collection`, else the model name),
/// read when the connector is made.
fn collection_name(model: &ModelDefinition) -> String {
    model
        .settings
        .get("memory")
        .and_then(|m| m.get("collection"))
        .and_then(Value::as_str)
        .unwrap_or(model.name.as_str())
        .to_owned()
}

/// temp file + fsync + rename + fsync of the directory.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("db")
    ));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Puts one new record into a collection (id from the counter, 409 on a duplicate id).
fn insert(
    coll: &mut Collection,
    model: &ModelDefinition,
    mut data: Vec<(String, Value)>,
) -> Result<Arc<Row>> {
    let id_name = model.id_name();
    coll.next_id = assign_id(model, &mut data, coll.next_id)?;
    let key = data
        .iter()
        .find(|(k, _)| k == id_name)
        .map_or(IdKey::Num(0.0), |(_, id)| IdKey::of(id));
    if coll.rows.contains_key(&key) {
        return Err(Error::Conflict {
            message: format!("Duplicate entry for {}.{}", model.name, id_name),
        });
    }
    let record = Arc::new(Row::from_entries(&coll.layout, data));
    coll.rows.insert(key, record.clone());
    Ok(record)
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

/// Merges a patch into a record, keeping the record's key order and appending new keys in
/// declaration order, then arrival order.
pub fn merge_patch(model: &ModelDefinition, current: &Record, patch: &Record) -> Record {
    let mut out = current.clone();
    for (k, v) in patch {
        out.insert(k.clone(), v.clone());
    }
    // Restore canonical order: declared properties first, in declaration order.
    let mut ordered = Record::with_capacity(out.len());
    for p in &model.properties {
        if let Some(v) = out.shift_remove(&p.name) {
            ordered.insert(p.name.clone(), v);
        }
    }
    ordered.extend(out);
    ordered
}

impl Connector for MemoryConnector {
    fn name(&self) -> &str {
        "memory"
    }

    fn find<'a>(
        &'a self,
        model: &'a ModelDefinition,
        filter: &'a Filter,
    ) -> BoxFuture<'a, Result<Vec<Arc<Row>>>> {
        ready((|| {
            let coll = self
                .collection(model)?
                .read()
                .unwrap_or_else(|e| e.into_inner());
            Ok(filter.apply(coll.rows.values()))
        })())
    }

    fn find_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        ready((|| {
            let coll = self
                .collection(model)?
                .read()
                .unwrap_or_else(|e| e.into_inner());
            Ok(coll.rows.get(&IdKey::of(id)).cloned())
        })())
    }

    fn count<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        ready((|| {
            let coll = self
                .collection(model)?
                .read()
                .unwrap_or_else(|e| e.into_inner());
            Ok(match where_ {
                None => coll.rows.len() as u64,
                Some(w) => coll.rows.values().filter(|r| w.matches(&***r)).count() as u64,
            })
        })())
    }

    fn create<'a>(
        &'a self,
        model: &'a ModelDefinition,
        data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>> {
        let result = self.collection(model).and_then(|coll| {
            let mut coll = coll.write().unwrap_or_else(|e| e.into_inner());
            insert(&mut coll, model, data)
        });
        self.durable(result, true)
    }

    fn create_each<'a>(
        &'a self,
        model: &'a ModelDefinition,
        items: Vec<Vec<(String, Value)>>,
    ) -> BoxFuture<'a, (Vec<Arc<Row>>, Option<Error>)> {
        let coll = match self.collection(model) {
            Ok(c) => c,
            Err(e) => return ready((Vec::new(), Some(e))),
        };
        let mut rows = Vec::with_capacity(items.len());
        let mut failed = None;
        {
            let mut coll = coll.write().unwrap_or_else(|e| e.into_inner());
            for data in items {
                match insert(&mut coll, model, data) {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        // One file write for the whole array.
        let changed = !rows.is_empty();
        let durable = self.durable(Ok(rows), changed);
        Box::pin(async move {
            match durable.await {
                Ok(rows) => (rows, failed),
                Err(e) => (Vec::new(), Some(e)),
            }
        })
    }

    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        mut data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        let result = (|| {
            let record = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let key = IdKey::of(id);
                let layout = coll.layout.clone();
                let Some(slot) = coll.rows.get_mut(&key) else {
                    return Ok(None);
                };
                data.insert(model.id_name().to_owned(), id.clone());
                let record = Arc::new(Row::from_record(&layout, data));
                *slot = record.clone();
                record
            };
            Ok(Some(record))
        })();
        let changed = matches!(result, Ok(Some(_)));
        self.durable(result, changed)
    }

    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        let result = (|| {
            let record = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let layout = coll.layout.clone();
                let Some(slot) = coll.rows.get_mut(&IdKey::of(id)) else {
                    return Ok(None);
                };
                let record = Arc::new(Row::from_record(&layout, modify(&slot.to_record())?));
                *slot = record.clone();
                record
            };
            Ok(Some(record))
        })();
        let changed = matches!(result, Ok(Some(_)));
        self.durable(result, changed)
    }

    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>> {
        let result = (|| {
            let count = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let mut count = 0;
                let layout = coll.layout.clone();
                for row in coll.rows.values_mut() {
                    if where_.is_none_or(|w| w.matches(&**row)) {
                        *row = Arc::new(Row::from_record(
                            &layout,
                            merge_patch(model, &row.to_record(), patch),
                        ));
                        count += 1;
                    }
                }
                count
            };
            Ok(count)
        })();
        let changed = matches!(result, Ok(n) if n > 0);
        self.durable(result, changed)
    }

    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>> {
        let result = (|| {
            let removed = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                coll.rows.remove(&IdKey::of(id)).is_some()
            };
            Ok(u64::from(removed))
        })();
        let changed = matches!(result, Ok(1));
        self.durable(result, changed)
    }

    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        let result = (|| {
            let count = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                let before = coll.rows.len();
                coll.rows
                    .retain(|_, r| !where_.is_none_or(|w| w.matches(&**r)));
                (before - coll.rows.len()) as u64
            };
            Ok(count)
        })();
        let changed = matches!(result, Ok(n) if n > 0);
        self.durable(result, changed)
    }
}
