//! LoopBack's memory connector: per-model collections with sequential ids, optionally persisted
//! to a JSON file in LoopBack's own file format.
//!
//! With `file` set, every write is on disk before it is acknowledged: the whole database is
//! written to a temporary file, fsynced, and renamed over the old one (then the directory is
//! fsynced), so a crash leaves either the old or the new file, never a torn one.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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

/// The memory connector of one datasource.
pub struct MemoryConnector {
    collections: HashMap<String, RwLock<Collection>>,
    /// The models whose `memory.collection` names another collection than their own name,
    /// read once here (juggler's `getCollection`); every other model's is its name.
    renamed: HashMap<String, String>,
    file: Option<PathBuf>,
    /// Serialises file writes; held while the snapshot is taken and written.
    file_lock: Mutex<()>,
}

impl std::fmt::Debug for MemoryConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryConnector")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
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
        let connector = Self {
            collections,
            renamed,
            file,
            file_lock: Mutex::new(()),
        };
        if let Some(path) = &connector.file {
            connector.load(path)?;
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
        for (name, coll) in &self.collections {
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

    /// Writes the whole database to the file, durably, if a file is configured.
    fn persist(&self) -> Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let _guard = self.file_lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids = Map::new();
        let mut models = Map::new();
        let mut names: Vec<&String> = self.collections.keys().collect();
        names.sort();
        for name in names {
            let coll = self.collections[name]
                .read()
                .unwrap_or_else(|e| e.into_inner());
            ids.insert(name.clone(), js::number_value(coll.next_id));
            let rows: Map<String, Value> = coll
                .rows
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
        let text = serde_json::to_string_pretty(&Value::Object(db))
            .map_err(|e| Error::internal(e.to_string()))?;
        write_durably(path, text.as_bytes())
            .map_err(|e| Error::internal(format!("cannot write `{}`: {e}", path.display())))
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
        mut data: Vec<(String, Value)>,
    ) -> BoxFuture<'a, Result<Arc<Row>>> {
        ready((|| {
            let record = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
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
                record
            };
            self.persist()?;
            Ok(record)
        })())
    }

    fn replace_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        mut data: Record,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        ready((|| {
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
            self.persist()?;
            Ok(Some(record))
        })())
    }

    fn modify_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
        modify: Modify,
    ) -> BoxFuture<'a, Result<Option<Arc<Row>>>> {
        ready((|| {
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
            self.persist()?;
            Ok(Some(record))
        })())
    }

    fn update_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
        patch: &'a Record,
    ) -> BoxFuture<'a, Result<u64>> {
        ready((|| {
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
            self.persist()?;
            Ok(count)
        })())
    }

    fn delete_by_id<'a>(
        &'a self,
        model: &'a ModelDefinition,
        id: &'a Value,
    ) -> BoxFuture<'a, Result<u64>> {
        ready((|| {
            let removed = {
                let mut coll = self
                    .collection(model)?
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                coll.rows.remove(&IdKey::of(id)).is_some()
            };
            if removed {
                self.persist()?;
            }
            Ok(u64::from(removed))
        })())
    }

    fn delete_all<'a>(
        &'a self,
        model: &'a ModelDefinition,
        where_: Option<&'a Where>,
    ) -> BoxFuture<'a, Result<u64>> {
        ready((|| {
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
            if count > 0 {
                self.persist()?;
            }
            Ok(count)
        })())
    }
}
