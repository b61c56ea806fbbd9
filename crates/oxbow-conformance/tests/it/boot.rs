//! The boot sequence: plugins run in name order after the registry is built, see the models,
//! and a failing plugin stops boot with its name in the message.

use std::sync::{Arc, Mutex};

use oxbow::{BootContext, BootFuture, BootPlugin};

struct Recorder {
    name: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    fail: bool,
}

impl BootPlugin for Recorder {
    fn name(&self) -> &str {
        self.name
    }

    fn boot<'a>(&'a self, app: &'a mut BootContext) -> BootFuture<'a> {
        Box::pin(async move {
            let models: Vec<String> = app
                .registry()
                .models()
                .iter()
                .map(|m| m.name().to_owned())
                .collect();
            self.log
                .lock()
                .unwrap()
                .push(format!("{}: {}", self.name, models.join(",")));
            if self.fail {
                app.model("Nope")?;
            }
            Ok(())
        })
    }
}

fn plan() -> oxbow::AppPlan {
    oxbow_config::load(&oxbow_conformance::repo_root().join("examples/shop"))
        .expect("shop app loads")
}

#[actix_web::test]
async fn plugins_run_in_name_order_with_the_registry_built() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let plugins: Vec<Box<dyn BootPlugin>> = vec![
        Box::new(Recorder {
            name: "zeta",
            log: log.clone(),
            fail: false,
        }),
        Box::new(Recorder {
            name: "Alpha",
            log: log.clone(),
            fail: false,
        }),
        Box::new(Recorder {
            name: "mid",
            log: log.clone(),
            fail: false,
        }),
    ];
    oxbow::boot(plan(), &plugins).await.expect("boot");
    let models = "Customer,Order,Product,OrderLine";
    assert_eq!(
        *log.lock().unwrap(),
        [
            format!("Alpha: {models}"),
            format!("mid: {models}"),
            format!("zeta: {models}")
        ]
    );
}

#[actix_web::test]
async fn a_failing_plugin_stops_boot_with_a_clear_message() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let plugins: Vec<Box<dyn BootPlugin>> = vec![
        Box::new(Recorder {
            name: "bad",
            log: log.clone(),
            fail: true,
        }),
        Box::new(Recorder {
            name: "later",
            log: log.clone(),
            fail: false,
        }),
    ];
    let err = oxbow::boot(plan(), &plugins)
        .await
        .err()
        .expect("boot fails");
    assert_eq!(
        format!("{err:#}"),
        "boot plugin `bad` failed: no model `Nope`; the app has: Customer, Order, Product, OrderLine"
    );
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "plugins after the failing one do not run"
    );
}
