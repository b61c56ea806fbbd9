//! The default app's Rust boot plugins (LoopBack's `server/boot/*.js`, ported).

#[path = "boot/realtime.rs"]
pub mod realtime;
#[path = "boot/root.rs"]
pub mod root;

use oxbow::BootPlugin;

/// Every boot plugin of the default app.
pub fn plugins() -> Vec<Box<dyn BootPlugin>> {
    vec![Box::new(realtime::Realtime), Box::new(root::Root)]
}
