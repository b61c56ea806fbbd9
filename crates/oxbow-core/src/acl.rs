//! LoopBack's access control rules as data: an [`AclRule`] as model JSON, model-config and
//! the `ACL` model write it, the request it is matched against ([`AccessRequest`]), and the
//! specificity score of `ACL.getMatchingScore` by which the most specific rule decides (DENY
//! winning ties). Deciding which rules apply to a caller (roles, owners) needs data and lives
//! in `oxbow-auth`.

use serde_json::{Map, Value};

/// `ACL.ALL`.
pub const ALL: &str = "*";

/// A permission, ordered as `AccessContext.permissionOrder` orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Not specified: the model's `defaultPermission`, else ALLOW.
    Default,
    Allow,
    Alarm,
    Audit,
    Deny,
}

impl Permission {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "DEFAULT" => Self::Default,
            "ALLOW" => Self::Allow,
            "ALARM" => Self::Alarm,
            "AUDIT" => Self::Audit,
            "DENY" => Self::Deny,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "DEFAULT",
            Self::Allow => "ALLOW",
            Self::Alarm => "ALARM",
            Self::Audit => "AUDIT",
            Self::Deny => "DENY",
        }
    }

    /// `permissionOrder`: DEFAULT 0 … DENY 4.
    fn order(self) -> i64 {
        self as i64
    }
}

/// What a rule's `property` names, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertySpec {
    /// Absent or `"*"`.
    All,
    One(String),
    Many(Vec<String>),
}

/// One ACL entry. Every field is kept as LoopBack compares it: strings, compared exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRule {
    /// The model it is about (`*` for an `ACL` row that says so; a static rule's own model).
    pub model: String,
    pub property: PropertySpec,
    /// `READ`, `WRITE`, `EXECUTE`, `REPLICATE` or `*`.
    pub access_type: String,
    /// `USER`, `APP`, `ROLE`, or a user model's name.
    pub principal_type: String,
    /// A role name or a user/app id, as a string.
    pub principal_id: String,
    /// `None` when the entry gives none: it scores as ALLOW and resolves to DEFAULT, as in
    /// LoopBack.
    pub permission: Option<Permission>,
}

/// The built-in roles.
pub const OWNER: &str = "$owner";
pub const RELATED: &str = "$related";
pub const AUTHENTICATED: &str = "$authenticated";
pub const UNAUTHENTICATED: &str = "$unauthenticated";
pub const EVERYONE: &str = "$everyone";

impl AclRule {
    /// An entry of a model's `acls` or a row of the `ACL` model. `Err` names the field that
    /// is not what LoopBack compares (for the config crate's problems).
    pub fn from_json(model: &str, v: &Value) -> Result<Self, (&'static str, &'static str)> {
        let Some(o) = v.as_object() else {
            return Err(("", "an ACL entry (an object)"));
        };
        Self::from_map(model, o)
    }

    pub fn from_map(
        model: &str,
        o: &Map<String, Value>,
    ) -> Result<Self, (&'static str, &'static str)> {
        let text = |k: &'static str| -> Result<Option<String>, (&'static str, &'static str)> {
            match o.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(_) => Err((k, "a string")),
            }
        };
        let property = match o.get("property") {
            None | Some(Value::Null) => PropertySpec::All,
            Some(Value::String(s)) if s == ALL || s.is_empty() => PropertySpec::All,
            Some(Value::String(s)) => PropertySpec::One(s.clone()),
            Some(Value::Array(a)) => PropertySpec::Many(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or(("property", "a method name or an array of method names"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(("property", "a method name or an array of method names")),
        };
        let access_type = text("accessType")?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| ALL.to_owned());
        if !matches!(
            access_type.as_str(),
            "READ" | "WRITE" | "EXECUTE" | "REPLICATE" | ALL
        ) {
            return Err(("accessType", "READ, WRITE, EXECUTE, REPLICATE or *"));
        }
        let permission = match text("permission")? {
            None => None,
            Some(p) => Some(
                Permission::parse(&p)
                    .filter(|p| *p != Permission::Default)
                    .ok_or(("permission", "ALLOW, DENY, ALARM or AUDIT"))?,
            ),
        };
        Ok(Self {
            model: text("model")?.unwrap_or_else(|| model.to_owned()),
            property,
            access_type,
            principal_type: text("principalType")?.unwrap_or_default(),
            principal_id: text("principalId")?.unwrap_or_default(),
            permission,
        })
    }

    /// `getStaticACLs`: the rule as it applies to the method `name` (its real name, not an
    /// alias), or `None` when it does not name it.
    pub fn for_method(&self, name: &str) -> Option<AclRule> {
        let property = match &self.property {
            PropertySpec::Many(names) if names.iter().any(|n| n == name) => name.to_owned(),
            PropertySpec::All => ALL.to_owned(),
            PropertySpec::One(p) if p == name => name.to_owned(),
            _ => return None,
        };
        Some(AclRule {
            property: PropertySpec::One(property),
            ..self.clone()
        })
    }

    fn property_value(&self) -> &str {
        match &self.property {
            PropertySpec::One(p) => p,
            _ => ALL,
        }
    }

    /// `ACL.getMatchingScore`: how specifically the rule matches the request, or `None` when
    /// it does not match it at all.
    pub fn score(&self, req: &AccessRequest) -> Option<i64> {
        let mut score: i64 = 0;
        let parts = [
            (self.model.as_str(), req.model.as_str(), false, false),
            (self.property_value(), req.property.as_str(), true, false),
            (
                self.access_type.as_str(),
                req.access_type.as_str(),
                false,
                true,
            ),
        ];
        for (rule, asked, is_property, is_access) in parts {
            score *= 4;
            let rule = if rule.is_empty() { ALL } else { rule };
            let by_name = is_property && req.method_names.iter().any(|n| n == rule);
            let mut equal = rule == asked;
            if is_access && !equal {
                equal = match rule {
                    "EXECUTE" => true,
                    "WRITE" => asked == "REPLICATE",
                    _ => false,
                };
            }
            if by_name || equal {
                score += 3;
            } else if rule == ALL {
                score += 2;
            } else if asked == ALL {
                score += 1;
            } else {
                return None;
            }
        }
        score *= 4;
        score += match self.principal_type.as_str() {
            "USER" => 4,
            "APP" => 3,
            "ROLE" => 2,
            _ => 1,
        };
        score *= 8;
        if self.principal_type == "ROLE" {
            score += match self.principal_id.as_str() {
                OWNER => 4,
                RELATED => 3,
                AUTHENTICATED | UNAUTHENTICATED => 2,
                EVERYONE => 1,
                _ => 5,
            };
        }
        score *= 4;
        score += self.permission.unwrap_or(Permission::Allow).order() - 1;
        Some(score)
    }
}

/// The method being asked for (`AccessRequest`): the model, the method's real name, its
/// aliases and name (`methodNames`), and its access type.
#[derive(Debug, Clone)]
pub struct AccessRequest {
    pub model: String,
    pub property: String,
    pub access_type: String,
    pub method_names: Vec<String>,
}

/// Rules in the order `resolvePermission` considers them: by score, highest first, ties in
/// the order given (JavaScript's sort is stable). Rules that do not match sort last.
pub fn rank(rules: Vec<AclRule>, req: &AccessRequest) -> Vec<(Option<i64>, AclRule)> {
    let mut scored: Vec<(Option<i64>, AclRule)> =
        rules.into_iter().map(|r| (r.score(req), r)).collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0.unwrap_or(-1)));
    scored
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(v: Value) -> AclRule {
        AclRule::from_json("Car", &v).unwrap()
    }

    fn req(property: &str, access: &str) -> AccessRequest {
        AccessRequest {
            model: "Car".into(),
            property: property.into(),
            access_type: access.into(),
            method_names: vec![property.into()],
        }
    }

    #[test]
    fn the_more_specific_rule_wins_and_deny_wins_ties() {
        let deny_all =
            rule(json!({"principalType":"ROLE","principalId":"$everyone","permission":"DENY"}));
        let allow_read = rule(
            json!({"accessType":"READ","principalType":"ROLE","principalId":"$everyone","permission":"ALLOW"}),
        );
        let r = req("find", "READ");
        assert!(allow_read.score(&r) > deny_all.score(&r));
        let allow_all =
            rule(json!({"principalType":"ROLE","principalId":"$everyone","permission":"ALLOW"}));
        assert!(deny_all.score(&r) > allow_all.score(&r));
        // A rule for another access type does not apply.
        let write =
            rule(json!({"accessType":"WRITE","principalType":"ROLE","principalId":"$everyone"}));
        assert_eq!(write.score(&r), None);
        // EXECUTE matches every access type exactly.
        let exec =
            rule(json!({"accessType":"EXECUTE","principalType":"ROLE","principalId":"$everyone"}));
        assert!(exec.score(&r).is_some());
    }

    #[test]
    fn static_rules_name_the_real_method_only() {
        let r = rule(
            json!({"property":["find","create"],"principalType":"ROLE","principalId":"$everyone"}),
        );
        assert!(r.for_method("find").is_some());
        assert!(r.for_method("findById").is_none());
        let star = rule(json!({"principalType":"ROLE","principalId":"$everyone"}));
        assert_eq!(
            star.for_method("x").unwrap().property,
            PropertySpec::One("*".into())
        );
        assert!(AclRule::from_json("Car", &json!({"permission":"MAYBE"})).is_err());
    }
}
