//! Query strings and form bodies parsed as Express's `qs` (extended) parser does:
//! `filter[where][price][gt]=5`, repeated keys and `[]` as arrays, `[0]`..`[20]` as array
//! indices (larger ones become object keys), nesting at most five brackets deep.

use serde_json::{Map, Value};

const ARRAY_LIMIT: usize = 20;
const DEPTH: usize = 5;
const PARAMETER_LIMIT: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Index(usize),
    Name(String),
    Push,
}

#[derive(Debug)]
enum Node {
    Str(String),
    List(Vec<Node>),
    Obj(Vec<(Key, Node)>),
}

/// Parses `a=1&b[c]=2` into a JSON object of strings, arrays and objects.
pub fn parse(query: &str) -> Map<String, Value> {
    let mut root: Vec<(String, Node)> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()).take(PARAMETER_LIMIT) {
        if k.is_empty() {
            continue;
        }
        let (head, segs) = split_key(&k);
        let slot = match root.iter().position(|(name, _)| *name == head) {
            Some(i) => &mut root[i].1,
            None => {
                root.push((head, Node::Obj(Vec::new())));
                let last = root.len() - 1;
                // A fresh placeholder: replaced by the first insert below.
                root[last].1 = Node::List(Vec::new());
                &mut root[last].1
            }
        };
        insert(slot, &segs, v.into_owned());
    }
    root.into_iter().map(|(k, n)| (k, finish(n))).collect()
}

/// `a[b][]` → ("a", [Name(b), Push]); brackets beyond the depth limit stay one literal key.
fn split_key(key: &str) -> (String, Vec<Key>) {
    let Some(open) = key.find('[').filter(|&i| i > 0) else {
        return (key.to_owned(), Vec::new());
    };
    let head = key[..open].to_owned();
    let mut segs = Vec::new();
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            break;
        };
        if segs.len() == DEPTH {
            segs.push(Key::Name(rest.to_owned()));
            rest = "";
            break;
        }
        let inner = &stripped[..close];
        segs.push(match inner {
            "" => Key::Push,
            s => match s.parse::<usize>() {
                Ok(n) if n <= ARRAY_LIMIT && n.to_string() == s => Key::Index(n),
                _ => Key::Name(s.to_owned()),
            },
        });
        rest = &stripped[close + 1..];
    }
    if !rest.is_empty() {
        segs.push(Key::Name(rest.to_owned()));
    }
    (head, segs)
}

/// `true` for the empty placeholder a new root key starts with.
fn is_placeholder(n: &Node) -> bool {
    matches!(n, Node::List(l) if l.is_empty())
}

fn insert(node: &mut Node, segs: &[Key], value: String) {
    let Some((first, rest)) = segs.split_first() else {
        match node {
            _ if is_placeholder(node) => *node = Node::Str(value),
            Node::Str(s) => {
                *node = Node::List(vec![Node::Str(std::mem::take(s)), Node::Str(value)])
            }
            Node::List(l) => l.push(Node::Str(value)),
            Node::Obj(o) => o.push((Key::Push, Node::Str(value))),
        }
        return;
    };
    // Make sure `node` is an object of entries.
    if is_placeholder(node) {
        *node = Node::Obj(Vec::new());
    }
    if let Node::Str(s) = node {
        *node = Node::Obj(vec![(Key::Index(0), Node::Str(std::mem::take(s)))]);
    }
    if let Node::List(l) = node {
        let items = std::mem::take(l);
        *node = Node::Obj(
            items
                .into_iter()
                .enumerate()
                .map(|(i, n)| (Key::Index(i), n))
                .collect(),
        );
    }
    let Node::Obj(entries) = node else { return };
    if *first != Key::Push {
        if let Some((_, child)) = entries.iter_mut().find(|(k, _)| k == first) {
            insert(child, rest, value);
            return;
        }
    }
    let mut child = Node::List(Vec::new());
    insert(&mut child, rest, value);
    entries.push((first.clone(), child));
}

fn finish(node: Node) -> Value {
    match node {
        Node::Str(s) => Value::String(s),
        Node::List(l) => Value::Array(l.into_iter().map(finish).collect()),
        Node::Obj(entries) => {
            let array_like = entries.iter().all(|(k, _)| !matches!(k, Key::Name(_)));
            if array_like {
                let mut indexed: Vec<(usize, usize, Node)> = Vec::new();
                let mut next = 0;
                for (pos, (k, n)) in entries.into_iter().enumerate() {
                    let idx = match k {
                        Key::Index(i) => i,
                        _ => usize::MAX,
                    };
                    indexed.push((idx, pos, n));
                    next += 1;
                }
                let _ = next;
                indexed.sort_by_key(|(i, p, _)| (*i, *p));
                Value::Array(indexed.into_iter().map(|(_, _, n)| finish(n)).collect())
            } else {
                let mut map = Map::new();
                let mut push_index = 0;
                for (k, n) in entries {
                    let key = match k {
                        Key::Name(s) => s,
                        Key::Index(i) => i.to_string(),
                        Key::Push => {
                            while map.contains_key(&push_index.to_string()) {
                                push_index += 1;
                            }
                            push_index.to_string()
                        }
                    };
                    let v = finish(n);
                    match map.get_mut(&key) {
                        Some(existing) => combine(existing, v),
                        None => {
                            map.insert(key, v);
                        }
                    }
                }
                Value::Object(map)
            }
        }
    }
}

fn combine(existing: &mut Value, v: Value) {
    match existing {
        Value::Array(a) => a.push(v),
        other => {
            let old = std::mem::take(other);
            *other = Value::Array(vec![old, v]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use serde_json::json;

    #[test]
    fn brackets() {
        assert_eq!(
            serde_json::Value::Object(parse(
                "filter[where][price][gt]=20&filter[fields][name]=true"
            )),
            json!({"filter": {"where": {"price": {"gt": "20"}}, "fields": {"name": "true"}}})
        );
        assert_eq!(
            serde_json::Value::Object(parse("filter[where][id][inq]=1&filter[where][id][inq]=3")),
            json!({"filter": {"where": {"id": {"inq": ["1", "3"]}}}})
        );
        assert_eq!(
            serde_json::Value::Object(parse("f[or][0][name]=Mug&f[or][1][price][gt]=100")),
            json!({"f": {"or": [{"name": "Mug"}, {"price": {"gt": "100"}}]}})
        );
        assert_eq!(
            serde_json::Value::Object(parse("a[1]=x&a[0]=y")),
            json!({"a": ["y", "x"]})
        );
        assert_eq!(
            serde_json::Value::Object(parse("a[]=x&a[]=y")),
            json!({"a": ["x", "y"]})
        );
        assert_eq!(
            serde_json::Value::Object(parse("a[25]=x")),
            json!({"a": {"25": "x"}})
        );
        assert_eq!(
            serde_json::Value::Object(parse("name=Form&email=form%40x.io&age=40")),
            json!({"name": "Form", "email": "form@x.io", "age": "40"})
        );
        assert_eq!(
            serde_json::Value::Object(parse("a=1&a=2")),
            json!({"a": ["1", "2"]})
        );
        assert_eq!(
            serde_json::Value::Object(parse("q=a+b")),
            json!({"q": "a b"})
        );
    }
}
