//! The memory connector's id rule, kept on every connector: ids come from a counter per model
//! that every create moves past the id it used (a given id included), and a falsy id (0, "",
//! null) counts as none.

use serde_json::Value;

use oxbow_core::connector::{is_truthy_id, typed_id};
use oxbow_core::js;
use oxbow_core::model::ModelDefinition;

/// The table holding the counters, one row per model.
pub const TABLE: &str = "_oxbow_ids";

/// Puts the id of a new record into `data` (typed as the id property) and returns the
/// counter's next value. `current` is the counter (1 for a model without one yet).
pub fn assign(def: &ModelDefinition, data: &mut Vec<(String, Value)>, current: f64) -> f64 {
    let id_name = def.id_name();
    let given = data
        .iter()
        .find(|(k, _)| k == id_name)
        .map(|(_, v)| v)
        .filter(|v| is_truthy_id(v))
        .cloned();
    let mut current = current;
    let id = match given {
        Some(id) => {
            if let Some(n) = js::to_number_opt(&id)
                && n > current
            {
                current = n;
            }
            id
        }
        None => js::number_value(current),
    };
    let id = typed_id(def, id);
    match data.iter_mut().find(|(k, _)| k == id_name) {
        Some((_, v)) => *v = id,
        None => data.push((id_name.to_owned(), id)),
    }
    current + 1.0
}
