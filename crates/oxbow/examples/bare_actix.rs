//! Calibration server for `bench/run.sh`: a bare actix-web handler per benchmark scenario that
//! answers the exact bytes oxbow answered, with none of oxbow's work (no registry, no filter,
//! no store, no middleware, no ETag). Its req/s is the ceiling that actix-web, the kernel's
//! loopback TCP path and wrk leave on the machine; oxbow's figure is read against it.
//!
//! ```sh
//! cargo run --release -p oxbow --example bare_actix -- BODIES_DIR [PORT]
//! ```
//!
//! `BODIES_DIR` holds `findById.json`, `filtered.json`, `include.json` and `create.json` (the
//! bench saves oxbow's answers there). Routes: `GET /api/catalog/{id}`, `GET /api/catalog`
//! (the filtered list), `GET /api/Customers` (the include) and `POST /api/catalog`, whose body
//! is parsed as JSON (any real handler must) and then answered with the canned create body.
//! One worker, as oxbow runs in the benchmark (`--workers 1`).

use std::path::Path;

use actix_web::http::header::ContentType;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};

#[derive(Clone)]
struct Bodies {
    find_by_id: Bytes,
    filtered: Bytes,
    include: Bytes,
    create: Bytes,
}

fn read(dir: &Path, name: &str) -> std::io::Result<Bytes> {
    let path = dir.join(name);
    std::fs::read(&path)
        .map(Bytes::from)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn json(body: &Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(body.clone())
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "usage: bare_actix BODIES_DIR [PORT]",
        )
    })?;
    let port: u16 = args.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let dir = Path::new(&dir);
    let bodies = Bodies {
        find_by_id: read(dir, "findById.json")?,
        filtered: read(dir, "filtered.json")?,
        include: read(dir, "include.json")?,
        create: read(dir, "create.json")?,
    };
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let b = bodies.clone();
            App::new()
                .app_data(web::Data::new(b))
                .route(
                    "/api/catalog/{id}",
                    web::get().to(|b: web::Data<Bodies>| async move { json(&b.find_by_id) }),
                )
                .route(
                    "/api/catalog",
                    web::get().to(|b: web::Data<Bodies>| async move { json(&b.filtered) }),
                )
                .route(
                    "/api/Customers",
                    web::get().to(|b: web::Data<Bodies>| async move { json(&b.include) }),
                )
                .route(
                    "/api/catalog",
                    web::post().to(|b: web::Data<Bodies>, body: Bytes| async move {
                        match serde_json::from_slice::<serde_json::Value>(&body) {
                            Ok(_) => json(&b.create),
                            Err(_) => HttpResponse::BadRequest().finish(),
                        }
                    }),
                )
        })
        .workers(1)
        .backlog(4096)
        .bind(("127.0.0.1", port))?;
        let addr = server.addrs()[0];
        println!("Web server listening at: http://{addr}");
        server.run().await
    })
}
