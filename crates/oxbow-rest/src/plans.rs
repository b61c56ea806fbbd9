//! Parsed query strings of recent GET requests, kept per worker thread: a repeated request
//! (a polling page, a dashboard) skips parsing its query string and its `filter`.
//!
//! The key is the whole path and query within one generation (a cached `filter` is parsed
//! against that generation's models), so a cached parse is exactly what parsing again would
//! give; a request on another generation empties the cache first. The cache is bounded (it is
//! emptied when full) and errors are never cached.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use actix_web::HttpRequest;
use actix_web::http::Method;
use serde_json::{Map, Value};

use oxbow_core::Filter;

use crate::qs;

/// Entries per worker thread before the cache is emptied.
const CAPACITY: usize = 512;

/// A request's parsed query string, and its `filter` once parsed.
#[derive(Debug)]
pub struct Parsed {
    pub query: Map<String, Value>,
    filter: OnceCell<Rc<Filter>>,
}

impl Parsed {
    fn new(raw: &str) -> Self {
        Self {
            query: qs::parse(raw),
            filter: OnceCell::new(),
        }
    }

    /// The query's `filter`, parsed by `parse` the first time only.
    pub fn filter<E>(&self, parse: impl FnOnce() -> Result<Filter, E>) -> Result<Rc<Filter>, E> {
        if let Some(f) = self.filter.get() {
            return Ok(f.clone());
        }
        let f = Rc::new(parse()?);
        let _ = self.filter.set(f.clone());
        Ok(f)
    }
}

/// The generation the cached parses belong to, and the parses.
type Plans = (u64, HashMap<Box<str>, Rc<Parsed>>);

thread_local! {
    static PLANS: RefCell<Plans> = RefCell::new((0, HashMap::new()));
}

/// The parsed query of `req`: from the cache for GET requests with a query string served by
/// the generation `generation`.
pub fn parsed(req: &HttpRequest, generation: u64) -> Rc<Parsed> {
    let raw = req.query_string();
    if raw.is_empty() || req.method() != Method::GET {
        return Rc::new(Parsed::new(raw));
    }
    let key = req.uri().path_and_query().map_or("", |p| p.as_str());
    PLANS.with(|plans| {
        let (seen, plans) = &mut *plans.borrow_mut();
        if *seen != generation {
            plans.clear();
            *seen = generation;
        }
        if let Some(p) = plans.get(key) {
            return p.clone();
        }
        if plans.len() >= CAPACITY {
            plans.clear();
        }
        let p = Rc::new(Parsed::new(raw));
        plans.insert(key.into(), p.clone());
        p
    })
}
