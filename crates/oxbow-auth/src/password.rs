//! A User's password as LoopBack keeps it: checked when set (not empty, at most 72 bytes),
//! stored as a bcrypt hash in the `$2a$` form LoopBack writes (so users of an existing
//! LoopBack database still log in, and LoopBack can read ours), compared with bcrypt.
//! Hashing and comparing cost tens of milliseconds; they run on threads of their own at a
//! lower CPU priority (nice 10), never on a request worker, so logins take the CPU request
//! workers leave and never stall other requests.

use oxbow_core::{Error, Result, Setter};
use serde_json::Value;

/// bcrypt reads at most this many bytes.
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Whether `s` is already a hash (`$2a$`/`$2b$`, 60 characters): stored as given, as
/// LoopBack's setter keeps a hash read back from the database.
pub fn is_hash(s: &str) -> bool {
    (s.starts_with("$2a$") || s.starts_with("$2b$")) && s.len() == 60
}

/// `User.validatePassword`: 422 `INVALID_PASSWORD` for an empty one, `PASSWORD_TOO_LONG`
/// past 72 bytes.
pub fn validate(plain: &str) -> Result<()> {
    if plain.is_empty() {
        return Err(Error::Status {
            status: 422,
            message: "Invalid password.".into(),
            code: Some("INVALID_PASSWORD".into()),
        });
    }
    if plain.len() > MAX_PASSWORD_BYTES {
        return Err(Error::Status {
            status: 422,
            message: format!(
                "The password entered was too long. Max length is {MAX_PASSWORD_BYTES} (entered {})",
                plain.len()
            ),
            code: Some("PASSWORD_TOO_LONG".into()),
        });
    }
    Ok(())
}

/// A bcrypt hash of `plain` with `cost` rounds, `$2a$` as LoopBack's bcryptjs writes it.
pub async fn hash(plain: String, cost: u32) -> Result<String> {
    off_workers(move || {
        bcrypt::hash_with_result(plain.as_bytes(), cost)
            .map(|parts| parts.format_for_version(bcrypt::Version::TwoA))
    })
    .await
    .ok_or_else(|| Error::internal("password hashing stopped"))?
    .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// Whether `plain` matches `hash` (any bcrypt version LoopBack may have written). A value
/// that is not a bcrypt hash matches nothing.
pub async fn verify(plain: String, hash: String) -> bool {
    off_workers(move || bcrypt::verify(plain.as_bytes(), &hash).unwrap_or(false))
        .await
        .unwrap_or(false)
}

type Job = Box<dyn FnOnce() + Send>;

/// bcrypt's threads, one per core, started on first use.
static POOL: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> =
    std::sync::OnceLock::new();

/// Runs `f` on bcrypt's threads (`None` if they are gone).
async fn off_workers<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    let pool = POOL.get_or_init(|| {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = std::sync::Arc::new(std::sync::Mutex::new(queue));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("oxbow-bcrypt-{i}"))
                .spawn(move || {
                    // Crossplatform 22 is nice 10: the request workers (nice 0) get the CPU
                    // first; hashing takes what they leave (and ~10% when they want it all).
                    if let Ok(p) = 22u8.try_into() {
                        let _ = thread_priority::set_current_thread_priority(
                            thread_priority::ThreadPriority::Crossplatform(p),
                        );
                    }
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start a bcrypt thread: {e}");
            }
        }
        std::sync::Mutex::new(jobs)
    });
    pool.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .ok()?;
    rx.await.ok()
}

/// The setters of a User-based model: `password` checked and kept for hashing (a value that
/// is not a string is ignored, so a missing password stays "can't be blank"), `email`
/// lower-cased unless `caseSensitiveEmail`.
#[derive(Debug)]
pub struct UserSetter {
    /// The model's name, for the 422 of an email that is not a string.
    pub model: String,
    pub case_sensitive_email: bool,
}

impl Setter for UserSetter {
    fn applies(&self, property: &str) -> bool {
        property == "password" || property == "email"
    }

    fn set(&self, property: &str, value: Value) -> Result<Option<Value>> {
        match (property, value) {
            ("password", Value::String(s)) => {
                if !is_hash(&s) {
                    validate(&s)?;
                }
                Ok(Some(Value::String(s)))
            }
            ("password", _) => Ok(None),
            ("email", Value::String(s)) if !self.case_sensitive_email => {
                Ok(Some(Value::String(s.to_lowercase())))
            }
            // User's email validator: `err('string')` (before coercion makes it one).
            (
                "email",
                v @ (Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_)),
            ) => {
                let shown = match &v {
                    Value::Array(_) | Value::Object(_) => v.to_string(),
                    other => oxbow_core::js::to_js_string(other),
                };
                Err(Error::Validation(oxbow_core::ValidationError {
                    model: self.model.clone(),
                    violations: vec![oxbow_core::Violation {
                        property: "email".into(),
                        code: "custom.string",
                        message: "is invalid",
                        shown_value: shown,
                    }],
                }))
            }
            (_, v) => Ok(Some(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by LoopBack 3.28's bcryptjs (10 rounds, `hashSync`) for these passwords.
    const LOOPBACK_HASHES: &[(&str, &str)] = &[
        (
            "opensesame",
            "$2a$10$wMvfRPwZMBKyXgI44R/xt.HsyIi9zrtr3f7AyCjuidd.PVFDU6XZe",
        ),
        (
            "ünïcödé pässwörd",
            "$2a$10$rLKs4n4ZxCOjLloB0c9/Beglf97iXeFvxxxPYi4pesuswH97/0GMi",
        ),
    ];

    #[tokio::test(flavor = "current_thread")]
    async fn hashes_in_loopbacks_form_and_verifies_both_ways() {
        let h = hash("opensesame".into(), 4).await.unwrap();
        assert!(h.starts_with("$2a$04$") && h.len() == 60, "{h}");
        assert!(verify("opensesame".into(), h.clone()).await);
        assert!(!verify("open sesame".into(), h).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
        for (plain, lb) in LOOPBACK_HASHES {
            assert!(is_hash(lb));
            assert!(verify((*plain).into(), (*lb).into()).await, "{plain}");
            assert!(!verify(format!("{plain}!"), (*lb).into()).await);
        }
    }

    #[test]
    fn checks_what_loopback_checks() {
        assert!(validate("").is_err());
        assert!(validate(&"é".repeat(36)).is_ok());
        assert!(validate(&"é".repeat(37)).is_err());
        let s = UserSetter {
            model: "User".into(),
            case_sensitive_email: false,
        };
        assert_eq!(s.set("password", Value::from(5)).unwrap(), None);
        assert_eq!(
            s.set("email", Value::from("A@B.c")).unwrap(),
            Some(Value::from("a@b.c"))
        );
    }
}
