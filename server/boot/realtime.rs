//! `realtime`: the LoopBack docs' change-stream example. Prints every change of `MyModel` as one
//! JSON line on stdout, then creates `{foo: "bar"}`, so the first line printed at boot is
//! `{"target":1,"data":{"foo":"bar","id":1},"type":"create"}`.

use std::io::Write;

use oxbow::core::RecvError;
use oxbow::{BootContext, BootFuture, BootPlugin, ChangeEvent};

pub struct Realtime;

fn print(event: &ChangeEvent) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event.to_json());
    let _ = out.flush();
}

impl BootPlugin for Realtime {
    fn name(&self) -> &str {
        "realtime"
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            let model = app.model("MyModel")?;
            let mut changes = model.subscribe();
            let mut data = oxbow::Record::new();
            data.insert("foo".into(), "bar".into());
            model.create(data, &oxbow::Caller::anonymous()).await?;
            // Print what is already queued now, so the line precedes "Web server listening".
            while let Some(Ok(event)) = changes.try_recv() {
                print(&event);
            }
            oxbow::rt::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(event) => print(&event),
                        Err(RecvError::Lagged(n)) => eprintln!("realtime: missed {n} changes"),
                        Err(RecvError::Closed) => break,
                    }
                }
            });
            Ok(())
        })
    }
}
