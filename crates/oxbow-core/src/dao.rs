//! The model layer: LoopBack's PersistedModel operations (create, find, upserts, replace,
//! patch, updateAll, delete) with their validation rules, their error messages, and the change
//! event each successful write publishes.
//!
//! **Invariant:** a change event is published only after the connector acknowledged the write,
//! and only here; a rejected write publishes nothing and changes nothing. A model whose
//! connector keeps a change log publishes nothing here: the connector logged the same
//! [`ChangeNote`] in the write's transaction and the log's follower delivers it.

use crate::caller::Caller;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::change::{ChangeData, ChangeFeed, ChangeNote, ChangeStream, ChangeType};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::filter::{Filter, Test, Where, parse_where};
use crate::hooks::{HookContext, Hooks, Operation};
use crate::instance::{Defaults, Instance, Record};
use crate::js;
use crate::model::{ModelDefinition, PropertyType};
use crate::row::{Fields, Row};

/// A model at run time: its definition, its datasource's connector and its change feed.
pub struct Model {
    def: Arc<ModelDefinition>,
    connector: Arc<dyn Connector>,
    feed: Arc<ChangeFeed>,
    hooks: Hooks,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.def.name)
            .field("connector", &self.connector.name())
            .finish()
    }
}

/// A record as REST shows it: hidden properties removed, optionally only some fields.
#[derive(Debug)]
pub struct RecordView<'a, R: Fields + ?Sized = Record> {
    pub def: &'a ModelDefinition,
    pub record: &'a R,
    pub fields: Option<&'a [String]>,
}

impl<R: Fields + ?Sized> Clone for RecordView<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: Fields + ?Sized> Copy for RecordView<'_, R> {}

impl<R: Fields + ?Sized> RecordView<'_, R> {
    fn shown(&self, k: &str) -> bool {
        !self.def.is_hidden(k) && self.fields.is_none_or(|f| f.iter().any(|x| x == k))
    }

    pub fn to_value(&self) -> Value {
        let map: Map<String, Value> = self
            .record
            .entries()
            .filter(|(k, _)| self.shown(k))
            .map(|(k, v)| (k.to_owned(), v.clone()))
            .collect();
        Value::Object(map)
    }
}

impl<R: Fields + ?Sized> Serialize for RecordView<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.record.entries() {
            if self.shown(k) {
                map.serialize_entry(k, v)?;
            }
        }
        map.end()
    }
}

impl Model {
    pub fn new(
        def: Arc<ModelDefinition>,
        connector: Arc<dyn Connector>,
        feed: crate::change::FeedSettings,
    ) -> Self {
        let feed = Arc::new(match connector.change_log() {
            Some(log) => ChangeFeed::logged(def.clone(), feed, log),
            None => ChangeFeed::with_settings(def.name.clone(), feed),
        });
        Self {
            def,
            connector,
            feed,
            hooks: Hooks::default(),
        }
    }

    /// Registers an operation hook (LoopBack's `Model.observe`).
    pub fn observe(
        &self,
        op: Operation,
        hook: impl for<'a> Fn(&'a mut HookContext) -> crate::connector::BoxFuture<'a, Result<()>>
        + Send
        + Sync
        + 'static,
    ) {
        self.hooks.observe(op, Arc::new(hook));
    }

    fn context(&self, caller: &Caller) -> HookContext {
        HookContext {
            model: self.def.name.to_string(),
            caller: caller.clone(),
            ..HookContext::default()
        }
    }

    /// `access`: hooks may rewrite the query's `where`.
    async fn access(
        &self,
        where_: Option<&Where>,
        caller: &Caller,
    ) -> Result<Option<Option<Where>>> {
        if !self.hooks.has(Operation::Access) {
            return Ok(None);
        }
        let before = where_.map(where_to_json);
        let mut ctx = HookContext {
            where_: before.clone(),
            ..self.context(caller)
        };
        self.hooks.notify(Operation::Access, &mut ctx).await?;
        if ctx.where_ == before {
            return Ok(None);
        }
        Ok(Some(match &ctx.where_ {
            Some(w) => self.parse_where(w)?,
            None => None,
        }))
    }

    /// `loaded`: hooks see (and may change) each record read.
    async fn loaded(&self, rows: Vec<Arc<Row>>, caller: &Caller) -> Result<Vec<Arc<Row>>> {
        if !self.hooks.has(Operation::Loaded) {
            return Ok(rows);
        }
        let layout = crate::row::Layout::of(&self.def);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut ctx = HookContext {
                data: Some(row.to_record()),
                ..self.context(caller)
            };
            self.hooks.notify(Operation::Loaded, &mut ctx).await?;
            out.push(Arc::new(Row::from_record(
                &layout,
                ctx.data.unwrap_or_default(),
            )));
        }
        Ok(out)
    }

    /// `before save` for a whole instance; then the instance is coerced and validated again.
    async fn before_save_instance(
        &self,
        inst: Instance,
        is_new: bool,
        where_: Option<Value>,
        caller: &Caller,
    ) -> Result<Instance> {
        if !self.hooks.has(Operation::BeforeSave) {
            return Ok(inst);
        }
        let mut ctx = HookContext {
            instance: Some(inst.into_record()),
            is_new_instance: Some(is_new),
            where_,
            ..self.context(caller)
        };
        self.hooks.notify(Operation::BeforeSave, &mut ctx).await?;
        Instance::build(&self.def, ctx.instance.unwrap_or_default(), Defaults::Skip)
    }

    /// `persist`: the data exactly as the connector will store it.
    async fn persist(
        &self,
        entries: Vec<(String, Value)>,
        caller: &Caller,
    ) -> Result<Vec<(String, Value)>> {
        if !self.hooks.has(Operation::Persist) {
            return Ok(entries);
        }
        let mut ctx = HookContext {
            data: Some(entries.into_iter().collect()),
            ..self.context(caller)
        };
        self.hooks.notify(Operation::Persist, &mut ctx).await?;
        Ok(ctx.data.unwrap_or_default().into_iter().collect())
    }

    async fn after_save(&self, row: &Arc<Row>, is_new: bool, caller: &Caller) -> Result<()> {
        if !self.hooks.has(Operation::AfterSave) {
            return Ok(());
        }
        let mut ctx = HookContext {
            instance: Some(row.to_record()),
            is_new_instance: Some(is_new),
            ..self.context(caller)
        };
        self.hooks.notify(Operation::AfterSave, &mut ctx).await
    }

    async fn delete_hook(&self, op: Operation, where_: Value, caller: &Caller) -> Result<()> {
        if !self.hooks.has(op) {
            return Ok(());
        }
        let mut ctx = HookContext {
            where_: Some(where_),
            ..self.context(caller)
        };
        self.hooks.notify(op, &mut ctx).await
    }

    /// Validates a whole instance: the rules model JSON implies, then the uniqueness
    /// validations (a query each), reported together as juggler reports them.
    async fn validate(&self, inst: &Instance, new_record: bool, caller: &Caller) -> Result<()> {
        if !self.has_unique() {
            return inst.validate(&self.def, new_record);
        }
        let id = inst.get(self.def.id_name()).cloned();
        let more = self
            .unique_violations(&|k| inst.get(k).cloned(), id.as_ref(), new_record, caller)
            .await?;
        inst.validate_with(&self.def, new_record, more)
    }

    fn has_unique(&self) -> bool {
        self.def
            .validations
            .iter()
            .any(|v| matches!(v, crate::model::Validation::Unique { .. }))
    }

    /// `validatesUniquenessOf`: a value another record (with the same `scopedTo` values)
    /// already has. Blank values pass.
    async fn unique_violations(
        &self,
        get: &(dyn Fn(&str) -> Option<Value> + Sync),
        own_id: Option<&Value>,
        new_record: bool,
        caller: &Caller,
    ) -> Result<Vec<crate::error::Violation>> {
        let mut out = Vec::new();
        for v in &self.def.validations {
            let crate::model::Validation::Unique {
                property,
                message,
                scoped_to,
            } = v
            else {
                continue;
            };
            let Some(value) = get(property) else { continue };
            let blank = match &value {
                Value::Null => true,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                _ => false,
            };
            if blank {
                continue;
            }
            let mut w = Map::new();
            w.insert(property.clone(), value.clone());
            for k in scoped_to {
                if let Some(v) = get(k) {
                    w.insert(k.clone(), v);
                }
            }
            let filter = Filter {
                where_: self.parse_where(&Value::Object(w))?,
                ..Filter::default()
            };
            let found = self.find(&filter, caller).await?;
            let id_name = self.def.id_name();
            let other = |row: &Arc<Row>| {
                let theirs = row.to_record().get(id_name).cloned();
                match (own_id.filter(|v| js::truthy(v)), theirs.filter(js::truthy)) {
                    (Some(a), Some(b)) => js::to_js_string(a) != js::to_js_string(&b),
                    _ => true,
                }
            };
            let taken = found.len() > 1
                || (found.len() == 1 && property == id_name && new_record)
                || found.first().is_some_and(other);
            if taken {
                out.push(crate::error::Violation {
                    property: property.clone(),
                    code: "uniqueness",
                    message,
                    shown_value: crate::instance::show_value(Some(&value)),
                });
            }
        }
        Ok(out)
    }

    pub fn definition(&self) -> &ModelDefinition {
        &self.def
    }

    pub fn name(&self) -> &str {
        self.def.name.as_str()
    }

    /// The model's change feed.
    pub fn changes(&self) -> &Arc<ChangeFeed> {
        &self.feed
    }

    /// The connector behind the model.
    pub fn connector(&self) -> &Arc<dyn Connector> {
        &self.connector
    }

    /// Subscribes to this model's changes (LoopBack's `createChangeStream`).
    pub fn subscribe(&self) -> ChangeStream {
        self.feed.subscribe()
    }

    pub fn view<'a>(&'a self, record: &'a Record) -> RecordView<'a> {
        RecordView {
            def: &self.def,
            record,
            fields: None,
        }
    }

    /// Converts an id from a URL or body to the id property's type, as juggler coerces a
    /// `where` on it (findById, exists, deleteById): `Number()` of a string for a number id.
    pub fn coerce_id(&self, id: &Value) -> Value {
        match self.def.id_property().ty {
            PropertyType::Number => match id {
                Value::String(s) => match js::str_to_number(s) {
                    Some(n) if n.is_finite() && !s.trim().is_empty() => js::number_value(n),
                    _ => id.clone(),
                },
                _ => id.clone(),
            },
            PropertyType::String => match id {
                Value::String(_) | Value::Null => id.clone(),
                other => Value::String(js::to_js_string(other)),
            },
            _ => id.clone(),
        }
    }

    /// An id as replaceById looks it up: by its string form (the memory
    /// connector's key), so a string that only reads as a number (`"02"`, `"1e1"`, `" 3"`)
    /// stays a string and finds nothing, as in LoopBack.
    fn key_id(&self, id: &Value) -> Value {
        match (&self.def.id_property().ty, id) {
            (PropertyType::Number, Value::String(s)) => {
                js::number_as_written(s).unwrap_or_else(|| id.clone())
            }
            _ => self.coerce_id(id),
        }
    }

    /// Whether a [`Model::key_id`] can be stored at all (a string is no number id); a
    /// connector is never asked for one that cannot.
    fn storable(&self, key: &Value) -> bool {
        !(self.def.id_property().ty == PropertyType::Number && key.is_string())
    }

    fn publish(&self, kind: ChangeType, record: &Arc<Row>) {
        self.publish_note(|| ChangeNote::record(&self.def, kind, record));
    }

    /// Publishes into a local feed; a logged feed gets the change from its log.
    fn publish_note(&self, note: impl FnOnce() -> ChangeNote) {
        if self.feed.is_local() {
            self.feed.publish(note());
        }
    }

    // ----- reads -----------------------------------------------------------------------------

    pub async fn find(&self, filter: &Filter, caller: &Caller) -> Result<Vec<Arc<Row>>> {
        let rows = match self.access(filter.where_.as_ref(), caller).await? {
            None => self.connector.find(&self.def, filter).await?,
            Some(where_) => {
                let mut f = filter.clone();
                f.where_ = where_;
                self.connector.find(&self.def, &f).await?
            }
        };
        self.loaded(rows, caller).await
    }

    pub async fn find_one(&self, filter: &Filter, caller: &Caller) -> Result<Option<Arc<Row>>> {
        let mut f = filter.clone();
        f.limit = Some(1);
        Ok(self.find(&f, caller).await?.into_iter().next())
    }

    pub async fn find_by_id(&self, id: &Value, caller: &Caller) -> Result<Option<Arc<Row>>> {
        let id = self.coerce_id(id);
        if self.hooks.has(Operation::Access) {
            // The look-up becomes a query, so `access` hooks can narrow it.
            let mut w = Map::new();
            w.insert(self.def.id_name().to_owned(), id);
            let filter = Filter {
                where_: self.parse_where(&Value::Object(w))?,
                limit: Some(1),
                ..Filter::default()
            };
            return Ok(self.find(&filter, caller).await?.into_iter().next());
        }
        let row = self.connector.find_by_id(&self.def, &id).await?;
        match row {
            Some(r) => Ok(self.loaded(vec![r], caller).await?.into_iter().next()),
            None => Ok(None),
        }
    }

    pub async fn exists(&self, id: &Value, caller: &Caller) -> Result<bool> {
        Ok(self.find_by_id(id, caller).await?.is_some())
    }

    pub async fn count(&self, where_: Option<&Where>, caller: &Caller) -> Result<u64> {
        match self.access(where_, caller).await? {
            None => self.connector.count(&self.def, where_).await,
            Some(w) => self.connector.count(&self.def, w.as_ref()).await,
        }
    }

    /// Parses a `where` object for this model.
    pub fn parse_where(&self, w: &Value) -> Result<Option<Where>> {
        crate::filter::check_depth(w, 0)?;
        parse_where(&self.def, w)
    }

    /// Parses a `filter` object for this model.
    pub fn parse_filter(&self, f: &Value) -> Result<Filter> {
        Filter::parse(&self.def, f)
    }

    // ----- writes ----------------------------------------------------------------------------

    /// A record as `create` would store it (defaults, coercion, validation), without storing
    /// it: embedded models (embedsOne, embedsMany) live inside their owner's record.
    pub fn build_valid(&self, data: Record, new_record: bool) -> Result<Record> {
        let inst = Instance::build(&self.def, data, Defaults::Apply)?;
        inst.validate(&self.def, new_record)?;
        Ok(inst.into_record())
    }

    /// `create`: defaults, coercion, validation, then insert.
    pub async fn create(&self, data: Record, caller: &Caller) -> Result<Arc<Row>> {
        let inst = Instance::build(&self.def, data, Defaults::Apply)?;
        let inst = self.before_save_instance(inst, true, None, caller).await?;
        self.validate(&inst, true, caller).await?;
        let entries = self.persist(inst.into_entries(), caller).await?;
        let record = self.connector.create(&self.def, entries).await?;
        self.publish(ChangeType::Create, &record);
        self.after_save(&record, true, caller).await?;
        Ok(record)
    }

    /// `create` with an array body. Every element is checked before any is written, so an
    /// invalid element leaves the collection unchanged; on SQLite and PostgreSQL the array is
    /// written in one transaction, so a failing element (a duplicate id) leaves it unchanged
    /// too.
    pub async fn create_many(&self, items: Vec<Record>, caller: &Caller) -> Result<Vec<Arc<Row>>> {
        let mut built = Vec::with_capacity(items.len());
        for data in items {
            let inst = Instance::build(&self.def, data, Defaults::Apply)?;
            let inst = self.before_save_instance(inst, true, None, caller).await?;
            self.validate(&inst, true, caller).await?;
            built.push(inst);
        }
        let mut entries = Vec::with_capacity(built.len());
        for inst in built {
            entries.push(self.persist(inst.into_entries(), caller).await?);
        }
        // A store with transactions writes the array all or none (one transaction).
        if entries.len() > 1 && self.connector.creates_all_or_none() {
            let rows = self.connector.create_all(&self.def, entries).await?;
            for record in &rows {
                self.publish(ChangeType::Create, record);
                self.after_save(record, true, caller).await?;
            }
            return Ok(rows);
        }
        // Otherwise element by element, keeping those before a failing one (LoopBack's memory
        // connector); each written row has its event, whatever follows.
        let (rows, failed) = self.connector.create_each(&self.def, entries).await;
        for record in &rows {
            self.publish(ChangeType::Create, record);
        }
        for record in &rows {
            self.after_save(record, true, caller).await?;
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// The id an upsert's body gives, as its instance holds it: `Number()` of a string for a
    /// number id (`" 3"` and `"03"` are 3).
    fn body_id(&self, data: &Record) -> Option<Value> {
        data.get(self.def.id_name())
            .filter(|v| js::truthy(v))
            .map(|v| self.coerce_id(v))
    }

    /// `data` with its id replaced by `id` (where it has one).
    fn with_id(&self, mut data: Record, id: &Value) -> Record {
        if let Some(v) = data.get_mut(self.def.id_name()) {
            *v = id.clone();
        }
        data
    }

    /// `patchOrCreate` (`PATCH /Model`).
    pub async fn patch_or_create(&self, data: Record, caller: &Caller) -> Result<Arc<Row>> {
        let Some(id) = self.body_id(&data) else {
            return self.create(data, caller).await;
        };
        let data = self.with_id(data, &id);
        if self.def.force_id {
            if self.find_by_id(&id, caller).await?.is_none() {
                return Err(Error::not_found(format!(
                    "Could not update attributes. Object with id {} does not exist!",
                    js::to_js_string(&id)
                )));
            }
            return self
                .patch_attributes(&id, data, self.def.validate_upsert, caller)
                .await;
        }
        // The connector's updateOrCreate: LoopBack validates the data alone (as a whole new
        // instance) when validateUpsert is on, then merges or creates.
        if self.def.validate_upsert {
            Instance::build(&self.def, data.clone(), Defaults::Apply)?
                .validate(&self.def, false)?;
        }
        match self
            .patch_attributes(&id, data.clone(), false, caller)
            .await
        {
            Err(Error::NotFound { .. }) => self.create_unvalidated_upsert(data, caller).await,
            other => other,
        }
    }

    async fn create_unvalidated_upsert(&self, data: Record, caller: &Caller) -> Result<Arc<Row>> {
        let inst = Instance::build(&self.def, data, Defaults::Apply)?;
        let inst = self.before_save_instance(inst, true, None, caller).await?;
        if self.def.validate_upsert {
            inst.validate(&self.def, false)?;
        }
        let entries = self.persist(inst.into_entries(), caller).await?;
        let record = self.connector.create(&self.def, entries).await?;
        self.publish(ChangeType::Create, &record);
        self.after_save(&record, true, caller).await?;
        Ok(record)
    }

    /// `replaceOrCreate` (`PUT /Model`, `POST /Model/replaceOrCreate`).
    pub async fn replace_or_create(&self, data: Record, caller: &Caller) -> Result<Arc<Row>> {
        let Some(id) = self.body_id(&data) else {
            return self.create(data, caller).await;
        };
        if self.def.force_id {
            // Looked up by its string form, as replaceById looks ids up: `"02"` finds nothing.
            let given = data.get(self.def.id_name()).cloned().unwrap_or(Value::Null);
            let key = self.key_id(&given);
            if !self.storable(&key) {
                return Err(Error::not_found(format!(
                    "Could not replace. Object with id {} does not exist!",
                    js::to_js_string(&given)
                )));
            }
            let data = self.with_id(data, &key);
            return self.replace_by_id(&key, data, caller).await;
        }
        if self.find_by_id(&id, caller).await?.is_some() {
            // The connector's replaceOrCreate gets the body's id as its instance holds it
            // (`"02"` is 2), unlike `PUT /Model/:id`.
            let data = self.with_id(data, &id);
            return self.replace_by_id(&id, data, caller).await;
        }
        self.create_unvalidated_upsert(data, caller).await
    }

    /// `upsertWithWhere`: create when nothing matches, patch the one match, refuse several.
    pub async fn upsert_with_where(
        &self,
        where_raw: Option<&Value>,
        data: Record,
        caller: &Caller,
    ) -> Result<Arc<Row>> {
        let Some(where_raw) = where_raw else {
            return Err(where_required());
        };
        if data.is_empty() {
            return Err(Error::bad_request("data object cannot be empty!"));
        }
        // juggler validates the data before it coerces the `where` (a 422 comes first), as a
        // new instance: with `forceId`, an id in the data is "can't be set" whatever matches.
        if self.def.validate_upsert {
            let inst = Instance::build(&self.def, data.clone(), Defaults::Apply)?;
            inst.validate(&self.def, true)?;
        } else if self.def.force_id {
            Instance::build(&self.def, data.clone(), Defaults::Apply)?.check_force_id(&self.def)?;
        }
        let where_ = self.parse_where(where_raw)?;
        let where_ = where_.as_ref();
        let filter = Filter {
            where_: where_.cloned(),
            limit: Some(2),
            ..Filter::default()
        };
        let found = self.connector.find(&self.def, &filter).await?;
        match found.as_slice() {
            [] => self.create_unvalidated_upsert(data, caller).await,
            [one] => {
                let id = one.get(self.def.id_name()).cloned().unwrap_or(Value::Null);
                self.patch_attributes(&id, data, self.def.validate_upsert, caller)
                    .await
            }
            _ => Err(Error::bad_request(
                "There are multiple instances found.Upsert Operation will not be performed!",
            )),
        }
    }

    /// `replaceById` (`PUT /Model/:id`): the stored record becomes exactly `data` (plus id and
    /// defaults).
    pub async fn replace_by_id(
        &self,
        id: &Value,
        mut data: Record,
        caller: &Caller,
    ) -> Result<Arc<Row>> {
        let id = self.key_id(id);
        let id_name = self.def.id_name().to_owned();
        match data.get(&id_name) {
            Some(v) if js::truthy(v) => {
                // Compared as given: LoopBack refuses `"1"` for 1 here ("from 1 to 1").
                if *v != id {
                    return Err(Error::bad_request(format!(
                        "id property ({id_name}) cannot be updated from {} to {}",
                        js::to_js_string(&id),
                        js::to_js_string(v)
                    )));
                }
            }
            _ => {
                data.insert(id_name.clone(), id.clone());
            }
        }
        let inst = Instance::build(&self.def, data, Defaults::Apply)?;
        let mut w = Map::new();
        w.insert(id_name.clone(), id.clone());
        let inst = self
            .before_save_instance(inst, false, Some(Value::Object(w)), caller)
            .await?;
        self.validate(&inst, false, caller).await?;
        let entries = self.persist(inst.into_entries(), caller).await?;
        let replaced = if self.storable(&id) {
            self.connector
                .replace_by_id(&self.def, &id, entries.into_iter().collect())
                .await?
        } else {
            None
        };
        match replaced {
            Some(record) => {
                self.publish(ChangeType::Update, &record);
                self.after_save(&record, false, caller).await?;
                Ok(record)
            }
            None => Err(Error::not_found(format!(
                "Could not replace. Object with id {} does not exist!",
                js::to_js_string(&id)
            ))),
        }
    }

    /// `patchAttributes` (`PATCH /Model/:id`): merge `data` into the stored record.
    pub async fn patch_attributes(
        &self,
        id: &Value,
        data: Record,
        validate: bool,
        caller: &Caller,
    ) -> Result<Arc<Row>> {
        let id = self.coerce_id(id);
        let missing = || Error::no_instance(&id);
        let id_name = self.def.id_name();
        if let Some(new_id) = data.get(id_name)
            && !id_equals(new_id, &id)
        {
            return Err(Error::bad_request(format!(
                "id cannot be updated from {} to {} when forceId is set to true",
                js::to_js_string(&id),
                js::to_js_string(new_id)
            )));
        }
        let mut data = data;
        if self.hooks.has(Operation::BeforeSave) {
            let Some(current) = self.connector.find_by_id(&self.def, &id).await? else {
                return Err(missing());
            };
            let mut w = Map::new();
            w.insert(id_name.to_owned(), id.clone());
            let mut ctx = HookContext {
                data: Some(data),
                current_instance: Some(current.to_record()),
                where_: Some(Value::Object(w)),
                is_new_instance: Some(false),
                ..self.context(caller)
            };
            self.hooks.notify(Operation::BeforeSave, &mut ctx).await?;
            data = ctx.data.unwrap_or_default();
        }
        if validate && self.has_unique() {
            let get = |k: &str| data.get(k).cloned();
            let found = self
                .unique_violations(&get, Some(&id), false, caller)
                .await?;
            if !found.is_empty() {
                return Err(Error::Validation(crate::error::ValidationError {
                    model: self.def.name.to_string(),
                    violations: found,
                }));
            }
        }
        let def = self.def.clone();
        let modify = Box::new(move |current: &Record| -> Result<Record> {
            let inst = Instance::merge(&def, current, data)?;
            if validate {
                inst.validate(&def, false)?;
            }
            // The stored id stays the row's key whatever the data (a `"1"` for 1, a hook's
            // change): a patch never moves a row.
            let mut record = inst.into_record();
            if let Some(key) = current.get(def.id_name()) {
                record.insert(def.id_name().to_owned(), key.clone());
            }
            Ok(record)
        });
        match self.connector.modify_by_id(&self.def, &id, modify).await? {
            Some(record) => {
                self.publish(ChangeType::Update, &record);
                self.after_save(&record, false, caller).await?;
                Ok(record)
            }
            None => Err(missing()),
        }
    }

    /// Like [`Model::patch_attributes`] for REST: LoopBack loads the instance first, so a
    /// missing id is a 404 before the body is looked at.
    pub async fn patch_by_id(&self, id: &Value, data: Record, caller: &Caller) -> Result<Arc<Row>> {
        // Found as a `where` finds it (`"02"` is 2), named as given when it is not (`1e1`).
        let given = id;
        let id = self.coerce_id(id);
        if self.find_by_id(&id, caller).await?.is_none() {
            return Err(Error::no_instance(given));
        }
        self.patch_attributes(&id, data, true, caller).await
    }

    /// `updateAll` (`POST /Model/update`): merges `data` into every match; one change event
    /// for the whole call, as LoopBack emits it.
    pub async fn update_all(
        &self,
        where_raw: Option<&Value>,
        data: Record,
        caller: &Caller,
    ) -> Result<u64> {
        // LoopBack answers 500 (a failed assertion) without `where`; a missing `where` is a
        // client mistake, and updating every row by accident is worse.
        let Some(where_raw) = where_raw else {
            return Err(where_required());
        };
        let mut where_ = self.parse_where(where_raw)?;
        let mut data = data;
        if self.hooks.has(Operation::BeforeSave) {
            let mut ctx = HookContext {
                where_: Some(
                    where_
                        .as_ref()
                        .map(where_to_json)
                        .unwrap_or_else(|| Value::Object(Map::new())),
                ),
                data: Some(data),
                ..self.context(caller)
            };
            self.hooks.notify(Operation::BeforeSave, &mut ctx).await?;
            data = ctx.data.unwrap_or_default();
            if let Some(w) = &ctx.where_ {
                where_ = self.parse_where(w)?;
            }
        }
        // Coerce known properties; unknown ones are dropped on strict models (no 422 here).
        // The id is not data: the memory connector sets each row's own id over it, so the id
        // in the body never moves a row (nor reaches a SQL `SET`).
        let id_name = self.def.id_name();
        let mut patch = Record::new();
        let inst = Instance::build(&self.def, data.clone(), Defaults::Skip);
        let inst = match inst {
            Ok(i) => i,
            Err(e) => return Err(e),
        };
        for (k, v) in inst.into_entries() {
            if data.contains_key(&k) {
                patch.insert(k, v);
            }
        }
        // The event shows the data as given, as LoopBack's does.
        let noted = patch.clone();
        patch.shift_remove(id_name);
        let count = self
            .connector
            .update_all(&self.def, where_.as_ref(), &patch)
            .await?;
        let note = ChangeNote::update_all(&self.def, where_.as_ref(), &noted);
        let where_json = note.where_.clone();
        let data = match &note.data {
            Some(ChangeData::Value(v)) => v.clone(),
            _ => Value::Object(Map::new()),
        };
        self.publish_note(|| note);
        if self.hooks.has(Operation::AfterSave) {
            let mut ctx = HookContext {
                where_: where_json,
                data: data.as_object().cloned(),
                ..self.context(caller)
            };
            self.hooks.notify(Operation::AfterSave, &mut ctx).await?;
        }
        Ok(count)
    }

    /// `deleteById`: `{count}`; the change event is published even when nothing was deleted,
    /// as LoopBack does.
    pub async fn delete_by_id(&self, id: &Value, caller: &Caller) -> Result<u64> {
        let id = self.coerce_id(id);
        let mut w = Map::new();
        w.insert(self.def.id_name().to_owned(), id.clone());
        let w = Value::Object(w);
        self.delete_hook(Operation::BeforeDelete, w.clone(), caller)
            .await?;
        // The record goes into the event (unshown) when rights checks need its owner.
        let removed = if self.def.auth.keeps_removed() && self.feed.is_local() {
            self.connector.find_by_id(&self.def, &id).await?
        } else {
            None
        };
        let count = self.connector.delete_by_id(&self.def, &id).await?;
        self.publish_note(|| ChangeNote::delete_by_id(&self.def, &id, removed));
        self.delete_hook(Operation::AfterDelete, w, caller).await?;
        Ok(count)
    }

    /// `destroyAll`: one remove event with the where.
    pub async fn delete_all(&self, where_: Option<&Where>, caller: &Caller) -> Result<u64> {
        let w = where_
            .map(where_to_json)
            .unwrap_or_else(|| Value::Object(Map::new()));
        self.delete_hook(Operation::BeforeDelete, w.clone(), caller)
            .await?;
        let count = self.connector.delete_all(&self.def, where_).await?;
        self.publish_note(|| ChangeNote::delete_all(where_));
        self.delete_hook(Operation::AfterDelete, w, caller).await?;
        Ok(count)
    }
}

fn where_required() -> Error {
    Error::bad_request("The where argument is required (use where={} to match every instance)")
}

/// juggler's `idEquals`: equal, or equal after number/string conversion.
fn id_equals(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            js::to_js_string(a) == js::to_js_string(b)
        }
        _ => false,
    }
}

/// A parsed `where` back as JSON (coerced values), as LoopBack passes `ctx.where` to events.
pub fn where_to_json(w: &Where) -> Value {
    fn cond(test: &Test) -> Value {
        let op = |name: &str, v: Value| Value::Object(Map::from_iter([(name.to_owned(), v)]));
        match test {
            Test::Eq(v) => v.clone(),
            Test::Neq(v) => op("neq", v.clone()),
            Test::Gt(v) => op("gt", v.clone()),
            Test::Gte(v) => op("gte", v.clone()),
            Test::Lt(v) => op("lt", v.clone()),
            Test::Lte(v) => op("lte", v.clone()),
            Test::Between(a, b) => op("between", Value::Array(vec![a.clone(), b.clone()])),
            Test::Inq(items) => op("inq", Value::Array(items.clone())),
            Test::Nin(items) => op("nin", Value::Array(items.clone())),
            Test::Like { re, negated } => op(
                if *negated { "nlike" } else { "like" },
                Value::from(re.as_str()),
            ),
            Test::Regexp(re) => op("regexp", Value::from(re.as_str())),
            Test::Near | Test::Never | Test::Always => Value::Object(Map::new()),
        }
    }
    let mut out = Map::new();
    let push = |w: &Where, out: &mut Map<String, Value>| match w {
        Where::Cond { key, test, .. } => {
            let v = cond(test);
            match (out.get_mut(key), v) {
                (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                (_, v) => {
                    out.insert(key.clone(), v);
                }
            }
        }
        Where::And(list) => {
            out.insert(
                "and".into(),
                Value::Array(list.iter().map(where_to_json).collect()),
            );
        }
        Where::Or(list) => {
            out.insert(
                "or".into(),
                Value::Array(list.iter().map(where_to_json).collect()),
            );
        }
        Where::Nor(list) => {
            out.insert(
                "nor".into(),
                Value::Array(list.iter().map(where_to_json).collect()),
            );
        }
    };
    match w {
        Where::And(list) if list.iter().all(|c| matches!(c, Where::Cond { .. })) => {
            for c in list {
                push(c, &mut out);
            }
        }
        other => push(other, &mut out),
    }
    Value::Object(out)
}
