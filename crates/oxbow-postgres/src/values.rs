//! Values between PostgreSQL and the shared mapping: a [`Param`] bound as the type the
//! statement expects, and a column read back as JSON.
//!
//! oxbow's own tables use bigint, double precision, text, boolean; tables made by other
//! software (loopback-connector-postgresql: integer, timestamp with time zone, …) may use the
//! other types [`readable`] lists. Dates are LoopBack's ISO 8601 text (`…T…​.000Z`) on the
//! JSON side and native timestamps in the column, so they compare and sort as time.

use bytes::{BufMut, BytesMut};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

use oxbow_core::js;
use oxbow_sql::{Kind, Param};

/// A parameter converted to the type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
pub enum PgValue {
    I64(Option<i64>),
    I32(Option<i32>),
    I16(Option<i16>),
    F64(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    /// Microseconds since 2000-01-01 UTC (`timestamp`, `timestamp with time zone`).
    Micros(Option<i64>),
    /// Days since 2000-01-01 (`date`).
    Days(Option<i32>),
    /// JSON text for a `json` or `jsonb` column.
    Json(Option<String>),
    /// A value the column cannot hold exactly (`12.5` or `3e9` for an `integer`): the
    /// statement fails rather than storing something else, as PostgreSQL fails LoopBack's.
    Unfit(String),
}

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH: i64 = 946_684_800;

/// Whether a column of type `ty` can hold a property's values exactly.
pub fn readable(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BOOL
            | Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::JSON
            | Type::JSONB
            | Type::TIMESTAMPTZ
            | Type::TIMESTAMP
            | Type::DATE
    )
}

/// `f` when a column of `type_name` holds it exactly: a whole number within `min..=max`.
fn fit(f: f64, min: f64, max: f64, type_name: &str) -> Result<f64, String> {
    if f.fract() == 0.0 && (min..=max).contains(&f) {
        Ok(f)
    } else {
        Err(format!(
            "{} does not fit a column of type {type_name}",
            js::to_js_string(&js::number_value(f))
        ))
    }
}

/// An instant as a date property carries it (ISO 8601 text, or milliseconds since 1970 as
/// JavaScript's `new Date(n)` reads a number).
fn instant(p: &Param) -> Option<DateTime<Utc>> {
    match p {
        Param::Text(s) | Param::Json(s) => DateTime::parse_from_rfc3339(s.trim_matches('"'))
            .ok()
            .map(|t| t.with_timezone(&Utc)),
        Param::Int(ms) => DateTime::from_timestamp_millis(*ms),
        Param::Real(ms) if ms.is_finite() => DateTime::from_timestamp_millis(*ms as i64),
        _ => None,
    }
}

/// LoopBack's JSON form of an instant (JavaScript's `toISOString`).
fn iso(t: DateTime<Utc>) -> Value {
    Value::String(t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
}

impl PgValue {
    /// `p` as a value of `ty` (numbers widen or narrow as the column needs; anything fits
    /// text as its JSON or JavaScript string form).
    pub fn convert(p: &Param, ty: &Type) -> Self {
        let text = |p: &Param| match p {
            Param::Null => None,
            Param::Int(i) => Some(i.to_string()),
            Param::Real(f) => Some(js::to_js_string(&js::number_value(*f))),
            Param::Text(s) | Param::Json(s) => Some(s.clone()),
            Param::Bool(b) => Some(b.to_string()),
        };
        let number = |p: &Param| match p {
            Param::Int(i) => Some(*i as f64),
            Param::Real(f) => Some(*f),
            Param::Bool(b) => Some(f64::from(u8::from(*b))),
            Param::Text(s) | Param::Json(s) => s.trim().parse().ok(),
            Param::Null => None,
        };
        match *ty {
            // A fraction matches no integer: bound as NULL, it finds nothing.
            Type::INT8 => Self::I64(match p {
                Param::Int(i) => Some(*i),
                other => number(other).filter(|f| f.fract() == 0.0).map(|f| f as i64),
            }),
            Type::INT4 => match number(p) {
                None => Self::I32(None),
                Some(f) => fit(f, i32::MIN.into(), i32::MAX.into(), "integer")
                    .map_or_else(Self::Unfit, |f| Self::I32(Some(f as i32))),
            },
            Type::INT2 => match number(p) {
                None => Self::I16(None),
                Some(f) => fit(f, i16::MIN.into(), i16::MAX.into(), "smallint")
                    .map_or_else(Self::Unfit, |f| Self::I16(Some(f as i16))),
            },
            Type::TIMESTAMPTZ | Type::TIMESTAMP => {
                Self::Micros(instant(p).map(|t| t.timestamp_micros() - PG_EPOCH * 1_000_000))
            }
            Type::DATE => Self::Days(instant(p).map(|t| {
                let day = t.date_naive();
                let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default();
                (day - epoch).num_days() as i32
            })),
            Type::JSON | Type::JSONB => Self::Json(match p {
                Param::Null => None,
                Param::Json(s) => Some(s.clone()),
                Param::Text(s) => Some(Value::String(s.clone()).to_string()),
                Param::Int(i) => Some(i.to_string()),
                Param::Real(f) => Some(js::number_value(*f).to_string()),
                Param::Bool(b) => Some(b.to_string()),
            }),
            Type::FLOAT8 | Type::FLOAT4 | Type::NUMERIC => Self::F64(number(p)),
            Type::BOOL => Self::Bool(match p {
                Param::Null => None,
                Param::Bool(b) => Some(*b),
                other => number(other).map(|f| f != 0.0),
            }),
            _ => Self::Text(text(p)),
        }
    }
}

impl ToSql for PgValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::I64(v) => v.to_sql(ty, out),
            Self::I32(v) => v.to_sql(ty, out),
            Self::F64(v) => match *ty {
                Type::FLOAT4 => v.map(|f| f as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Self::I16(v) => v.to_sql(ty, out),
            Self::Text(v) => v.to_sql(ty, out),
            Self::Bool(v) => v.to_sql(ty, out),
            // Binary forms: an 8-byte count of microseconds, a 4-byte count of days, and JSON
            // text (after a version byte for jsonb).
            Self::Micros(None) | Self::Days(None) | Self::Json(None) => Ok(IsNull::Yes),
            Self::Unfit(why) => Err(why.clone().into()),
            Self::Micros(Some(v)) => {
                out.put_i64(*v);
                Ok(IsNull::No)
            }
            Self::Days(Some(v)) => {
                out.put_i32(*v);
                Ok(IsNull::No)
            }
            Self::Json(Some(v)) => {
                if *ty == Type::JSONB {
                    out.put_u8(1);
                }
                out.put_slice(v.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Binds `params` to a prepared statement's parameter types.
pub fn bind(params: &[Param], types: &[Type]) -> Vec<PgValue> {
    params
        .iter()
        .zip(types)
        .map(|(p, t)| PgValue::convert(p, t))
        .collect()
}

/// As `&dyn ToSql` for the client's calls.
pub fn refs(values: &[PgValue]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Column `i` of `row` as JSON (SQL NULL as `null`).
pub fn column(
    row: &tokio_postgres::Row,
    i: usize,
    kind: Kind,
) -> Result<Value, tokio_postgres::Error> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)?
            .map_or(Value::Null, Value::from),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Value::Null, Value::from),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Value::Null, Value::from),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map_or(Value::Null, |f| js::number_value(f64::from(f))),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => row
            .try_get::<_, Option<Binary<i64>>>(i)?
            .and_then(|Binary(us)| {
                DateTime::from_timestamp_micros(us.checked_add(PG_EPOCH * 1_000_000)?)
            })
            .map_or(Value::Null, iso),
        Type::DATE => row
            .try_get::<_, Option<Binary<i32>>>(i)?
            .and_then(|Binary(days)| {
                DateTime::from_timestamp((PG_EPOCH / 86_400 + i64::from(days)) * 86_400, 0)
            })
            .map_or(Value::Null, iso),
        Type::JSON | Type::JSONB => match row.try_get::<_, Option<Binary<String>>>(i)? {
            None => Value::Null,
            Some(Binary(s)) if kind == Kind::Json => {
                serde_json::from_str(&s).unwrap_or(Value::Null)
            }
            Some(Binary(s)) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        },
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map_or(Value::Null, js::number_value),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Value::Null, Value::Bool),
        _ => match row.try_get::<_, Option<String>>(i)? {
            None => Value::Null,
            Some(s) if kind == Kind::Json => serde_json::from_str(&s).unwrap_or(Value::Null),
            Some(s) => Value::String(s),
        },
    })
}

/// A column's value in its binary form, for the types the client reads only with optional
/// features (timestamps, dates) or not as text (json, jsonb).
struct Binary<T>(T);

type FromSqlResult<T> = Result<T, Box<dyn std::error::Error + Sync + Send>>;

impl<'a> FromSql<'a> for Binary<i64> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> FromSqlResult<Self> {
        Ok(Self(i64::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP)
    }
}

impl<'a> FromSql<'a> for Binary<i32> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> FromSqlResult<Self> {
        Ok(Self(i32::from_be_bytes(raw.try_into()?)))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

impl<'a> FromSql<'a> for Binary<String> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> FromSqlResult<Self> {
        let text = match (*ty == Type::JSONB, raw.split_first()) {
            (true, Some((1, rest))) => rest,
            (true, _) => return Err("unknown jsonb version".into()),
            (false, _) => raw,
        };
        Ok(Self(std::str::from_utf8(text)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}
