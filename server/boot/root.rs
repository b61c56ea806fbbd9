//! `root`: serves LoopBack's status object on `GET /` (the scaffold's `server/boot/root.js`).

use oxbow::{BootContext, BootFuture, BootPlugin};

pub struct Root;

impl BootPlugin for Root {
    fn name(&self) -> &str {
        "root"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            app.mount_status("/");
            Ok(())
        })
    }
}
