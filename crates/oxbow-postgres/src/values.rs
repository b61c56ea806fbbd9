//! Values between PostgreSQL and the shared mapping: a [`Param`] bound as the type the
//! statement expects, and a column read back as JSON.

use bytes::BytesMut;
use serde_json::Value;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use oxbow_core::js;
use oxbow_sql::{Kind, Param};

/// A parameter converted to the type PostgreSQL inferred for its placeholder.
#[derive(Debug)]
pub enum PgValue {
    I64(Option<i64>),
    I32(Option<i32>),
    F64(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
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
            Type::INT4 => Self::I32(number(p).filter(|f| f.fract() == 0.0).map(|f| f as i32)),
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
            Self::Text(v) => v.to_sql(ty, out),
            Self::Bool(v) => v.to_sql(ty, out),
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
