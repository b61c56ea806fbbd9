//! Config error cases as data: each folder under `tests/cases/` is an app directory and its
//! `expected.txt` is what loading it reports (every problem with file, JSON pointer and what was
//! expected), or `ok: …` for apps that load. `UPDATE_EXPECT=1 cargo test` rewrites the files.

use std::path::Path;

fn render(case: &Path) -> String {
    match oxbow_config::load(case) {
        Ok(plan) => {
            let names: Vec<String> = plan
                .models
                .iter()
                .map(|m| {
                    format!(
                        "{} /{} ({} properties)",
                        m.name,
                        m.http_path,
                        m.properties.len()
                    )
                })
                .collect();
            let mut out = format!("ok: {}\n", names.join(", "));
            let c = &plan.config;
            out.push_str(&format!(
                "config: restApiRoot {}, port {}, json limit {}\n",
                c.rest_api_root, c.port, c.json_limit
            ));
            for ds in &plan.datasources {
                out.push_str(&format!(
                    "datasource {}: {} {:?}\n",
                    ds.name, ds.connector, ds.kind
                ));
            }
            if plan.pipeline.declared {
                for e in &plan.pipeline.entries {
                    let params = match &e.kind {
                        oxbow_config::middleware::Kind::Custom { params } => format!(" {params}"),
                        oxbow_config::middleware::Kind::Cors(o) => format!(" {:?}", o.origin),
                        _ => String::new(),
                    };
                    out.push_str(&format!(
                        "middleware {} {} ({}) paths {:?}{params}\n",
                        e.phase,
                        e.name,
                        e.kind.label(),
                        e.paths
                    ));
                }
            }
            for w in &plan.warnings {
                let prefix = format!("{}/", case.display());
                out.push_str(&format!("warning: {}\n", w.replace(&prefix, "")));
            }
            out
        }
        Err(problems) => {
            let prefix = format!("{}/", case.display());
            problems
                .to_string()
                .replace(&prefix, "")
                .replace(&case.display().to_string(), ".")
        }
    }
}

#[test]
fn config_cases() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 7,
        "expected the config cases in {}",
        root.display()
    );
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    for case in dirs {
        let got = render(&case);
        let file = case.join("expected.txt");
        if update {
            std::fs::write(&file, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&file).unwrap_or_default();
        if got != want {
            failures.push(format!(
                "{}:\n--- expected\n{want}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
