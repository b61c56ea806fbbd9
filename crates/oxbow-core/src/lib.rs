//! oxbow-core: models, records, the LoopBack filter language, the [`Connector`] trait, the memory
//! connector and change feeds.
//!
//! **Architecture invariant:** this crate knows nothing about HTTP, files of the app directory,
//! JSON Schema or YAML. It is given compiled [`ModelDefinition`]s and does the model work.

pub mod acl;
pub mod caller;
pub mod change;
pub mod connector;
pub mod dao;
pub mod error;
pub mod filter;
pub mod hooks;
pub mod instance;
pub mod js;
pub mod memory;
pub mod model;
pub mod registry;
pub mod relation;
pub mod row;

pub use caller::{AccessToken, Caller, CallerInfo};
pub use change::{
    ChangeData, ChangeEvent, ChangeFeed, ChangeLog, ChangeNote, ChangeStream, ChangeType,
    FeedSettings, RecvError, Resume,
};
pub use connector::{BoxFuture, Connector};
pub use dao::{Model, RecordView};
pub use error::{Error, Result, ValidationError, Violation};
pub use filter::{Filter, Include, IncludeItem, Where};
pub use hooks::{HookContext, Operation};
pub use instance::Record;
pub use memory::MemoryConnector;
pub use model::{
    Auth, ModelDefinition, ModelName, OwnerRelations, Property, PropertyType, Remoting, Setter,
    Strict, UserSettings, Validation,
};
pub use registry::Registry;
pub use relation::{Relation, RelationKind};
pub use row::{Fields, Layout, Row};
