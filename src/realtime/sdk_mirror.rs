//! Keeps the client SDK's mirror of the protocol, `sdk/packages/client/src/protocol.ts`, in
//! step with the server: its request map against `METHOD_NAMES` and what `Request::parse`
//! accepts, its event map against `EVENT_NAMES`, its close codes and limits against `close`
//! and `Limits`. Either side adding, dropping or renaming one of them alone fails here.
//!
//! protocol.ts is read by the rule written at its top: only the blocks between a
//! `// wire-map: <name>` line and the next `// wire-map: end` line count; an entry starts on a
//! line indented exactly as its block's marker (and not a comment), with its key first
//! (`'room.join': {`, `userJoined: {`, `NORMAL: 1000,`); deeper lines, and a closing line
//! (`};`) at its indentation, continue it. A request's params are `params: NoParams` or
//! `params: { field: Type; optional?: Type }`, without braces inside. The rule is simple on purpose: a formatter may wrap an entry over several lines
//! without breaking it, and anything it cannot read fails loudly rather than pass.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{DeserializeOwned, Deserializer, Visitor};
use serde_json::{json, Map, Value};

use super::protocol::*;
use crate::error::ApiError;
use crate::rooms::events::EVENT_NAMES;

/// Compiled in: the test sees the file as it was when the crate was built, and cargo rebuilds
/// the crate when it changes.
const PROTOCOL_TS: &str = include_str!("../../sdk/packages/client/src/protocol.ts");

/// A field no params struct has, to show that unknown fields are refused at all.
const PROBE_FIELD: &str = "sdkMirrorProbe";

#[derive(Debug)]
struct Entry {
    key: String,
    /// The entry's lines, trimmed and joined by spaces.
    text: String,
}

/// The entries of the block `// wire-map: <name>`.
fn block(source: &str, name: &str) -> Vec<Entry> {
    let marker = format!("// wire-map: {name}");
    let lines: Vec<&str> = source.lines().collect();
    let start = lines
        .iter()
        .position(|line| line.trim() == marker)
        .unwrap_or_else(|| panic!("protocol.ts has no `{marker}` line"));
    let indent = indentation(lines[start]);
    let mut entries: Vec<Entry> = Vec::new();
    for line in &lines[start + 1..] {
        let trimmed = line.trim();
        if trimmed == "// wire-map: end" {
            return entries;
        }
        if trimmed.is_empty() {
            continue;
        }
        let comment =
            trimmed.starts_with("//") || trimmed.starts_with("/*") || trimmed.starts_with('*');
        let depth = indentation(line);
        let closing = trimmed.starts_with(['}', ']', ')']);
        if depth > indent || (depth == indent && closing) {
            let entry = entries
                .last_mut()
                .unwrap_or_else(|| panic!("`{name}`: a continued line before any entry: {line}"));
            entry.text.push(' ');
            entry.text.push_str(trimmed);
        } else if depth < indent {
            panic!("`{name}`: a line less indented than its block (no end marker?): {line}");
        } else if !comment {
            entries.push(Entry {
                key: key_of(trimmed),
                text: trimmed.to_owned(),
            });
        }
    }
    panic!("`{marker}` has no `// wire-map: end`");
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `'room.join': {` -> `room.join`; `userJoined: {` -> `userJoined`.
fn key_of(line: &str) -> String {
    let (key, rest) = match line.strip_prefix('\'') {
        Some(quoted) => quoted
            .split_once('\'')
            .unwrap_or_else(|| panic!("an unclosed quote: {line}")),
        None => {
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(line.len());
            line.split_at(end)
        }
    };
    assert!(
        !key.is_empty() && rest.trim_start().starts_with(':'),
        "not `key: ...`: {line}"
    );
    key.to_owned()
}

fn keys(entries: &[Entry]) -> BTreeSet<&str> {
    let keys: BTreeSet<&str> = entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys.len(),
        entries.len(),
        "a key written twice: {entries:?}"
    );
    keys
}

/// A request's params fields, by name: whether each is optional (`name?:`).
fn params_of(entry: &Entry) -> BTreeMap<String, bool> {
    let (_, after) = entry
        .text
        .split_once("params:")
        .unwrap_or_else(|| panic!("{}: no `params:`", entry.key));
    let after = after.trim_start();
    if after.starts_with("NoParams") {
        return BTreeMap::new();
    }
    let body = after
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
        .map(|(body, _)| body)
        .unwrap_or_else(|| panic!("{}: params neither `NoParams` nor `{{ ... }}`", entry.key));
    assert!(
        !body.contains('{'),
        "{}: braces inside params: {body}",
        entry.key
    );
    body.split(';')
        .map(str::trim)
        .filter(|field| !field.is_empty())
        .map(|field| {
            let (name, _type) = field
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: not `field: Type`: {field}", entry.key));
            let name = name.trim();
            match name.strip_suffix('?') {
                Some(name) => (name.to_owned(), true),
                None => (name.to_owned(), false),
            }
        })
        .collect()
}

/// The field names a params struct accepts, as serde has them (renamed): the struct is asked
/// to deserialize itself from a deserializer that only records the names it is given.
fn fields_of<T: DeserializeOwned>() -> BTreeSet<String> {
    struct Recorder(Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for &mut Recorder {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(fields);
            Err(serde::de::Error::custom("recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut recorder = Recorder(None);
    let _ = T::deserialize(&mut recorder);
    let fields = recorder.0.expect("params are a struct");
    fields.iter().map(|f| (*f).to_owned()).collect()
}

/// The params fields of each method on the server. `Request::parse` is the authority on which
/// struct a method reads; the test below holds this table to it.
fn server_fields(method: &str) -> BTreeSet<String> {
    match method {
        "room.join" | "room.leave" | "presence.unsync" => BTreeSet::new(),
        "room.get" => fields_of::<RoomGetParams>(),
        "users.get" | "users.follow" | "users.unfollow" => fields_of::<UserParams>(),
        "users.getAll" => fields_of::<PageParams>(),
        "presence.update" => fields_of::<PresenceParams>(),
        "presence.sync" => fields_of::<PresenceSyncParams>(),
        "broadcast" => fields_of::<BroadcastParams>(),
        "stores.declare" => fields_of::<DeclareParams>(),
        "stores.set" | "stores.update" => fields_of::<WriteParams>(),
        "stores.delete" | "stores.get" => fields_of::<KeyParams>(),
        "stores.getAll" => fields_of::<GetAllParams>(),
        "stores.sync" => fields_of::<SyncParams>(),
        "comments.createThread" => fields_of::<CreateThreadParams>(),
        "comments.reply" => fields_of::<ReplyParams>(),
        "comments.edit" => fields_of::<EditParams>(),
        "comments.delete" => fields_of::<CommentIdParams>(),
        "comments.resolve" | "comments.reopen" | "comments.getThread" => {
            fields_of::<ThreadParams>()
        }
        "comments.react" | "comments.unreact" => fields_of::<ReactParams>(),
        "comments.list" => fields_of::<ListParams>(),
        "comments.listComments" => fields_of::<ListCommentsParams>(),
        other => panic!("{other}: a method this test does not know yet: add its params here"),
    }
}

/// Whether `Request::parse` refuses `field` as unknown to `method`.
fn refused_as_unknown(method: &str, field: &str) -> bool {
    let mut params = Map::new();
    params.insert(field.to_owned(), Value::Null);
    matches!(
        Request::parse(method, Value::Object(params)),
        Err(ApiError::Validation { message, .. }) if message == format!("Unknown field '{field}'")
    )
}

/// The request map's methods and their params, as protocol.ts has them.
fn sdk_requests(source: &str) -> BTreeMap<String, BTreeMap<String, bool>> {
    let entries = block(source, "requests");
    keys(&entries);
    entries
        .iter()
        .map(|entry| (entry.key.clone(), params_of(entry)))
        .collect()
}

/// What is wrong between the SDK's request map and the server's methods (empty: nothing).
fn request_drift(source: &str) -> Vec<String> {
    let sdk = sdk_requests(source);
    let server: BTreeSet<&str> = METHOD_NAMES.iter().copied().collect();
    let mut drift = Vec::new();
    for method in &server {
        if !sdk.contains_key(*method) {
            drift.push(format!(
                "{method}: in METHOD_NAMES, not in protocol.ts's Requests"
            ));
        }
    }
    for (method, params) in &sdk {
        if !server.contains(method.as_str()) {
            drift.push(format!(
                "{method}: in protocol.ts's Requests, not in METHOD_NAMES"
            ));
            continue;
        }
        let declared: BTreeSet<String> = params.keys().cloned().collect();
        let accepted = server_fields(method);
        if declared != accepted {
            drift.push(format!(
                "{method}: protocol.ts's params {declared:?}, the server's {accepted:?}"
            ));
        }
        // On the server side, the parser itself is asked: it refuses what it does not know,
        // and accepts each field the SDK sends.
        if !refused_as_unknown(method, PROBE_FIELD) {
            drift.push(format!("{method}: unknown params fields are not refused"));
        }
        for field in declared.iter().chain(&accepted) {
            if refused_as_unknown(method, field) {
                drift.push(format!("{method}: Request::parse refuses `{field}`"));
            }
        }
        // A field the server cannot do without must not be optional in the SDK.
        if let Err(ApiError::Validation { field, message }) =
            Request::parse(method, Value::Object(Map::new()))
        {
            if message == format!("{field} is required") && params.get(&field) != Some(&false) {
                drift.push(format!(
                    "{method}: the server requires `{field}`, protocol.ts has it optional or not at all"
                ));
            }
        }
    }
    drift
}

fn event_drift(source: &str) -> Vec<String> {
    let entries = block(source, "events");
    let sdk = keys(&entries);
    let server: BTreeSet<&str> = EVENT_NAMES.iter().copied().collect();
    let mut drift: Vec<String> = server
        .difference(&sdk)
        .map(|event| format!("{event}: in EVENT_NAMES, not in protocol.ts's Events"))
        .collect();
    drift.extend(
        sdk.difference(&server)
            .map(|event| format!("{event}: in protocol.ts's Events, not in EVENT_NAMES")),
    );
    drift
}

#[test]
fn the_sdk_request_map_is_the_servers() {
    let drift = request_drift(PROTOCOL_TS);
    assert!(
        drift.is_empty(),
        "protocol.ts and the server differ:\n{}",
        drift.join("\n")
    );
    assert_eq!(sdk_requests(PROTOCOL_TS).len(), METHOD_NAMES.len());
}

#[test]
fn the_sdk_event_map_is_the_servers() {
    let drift = event_drift(PROTOCOL_TS);
    assert!(
        drift.is_empty(),
        "protocol.ts and the server differ:\n{}",
        drift.join("\n")
    );
}

#[test]
fn the_sdk_close_codes_are_the_servers() {
    let sdk: BTreeMap<String, u16> = block(PROTOCOL_TS, "close")
        .iter()
        .map(|entry| {
            let (_, value) = entry.text.split_once(':').expect("`NAME: code,`");
            let value = value
                .trim()
                .trim_end_matches(',')
                .parse()
                .unwrap_or_else(|_| {
                    panic!("{}: not a number: {value}", entry.key);
                });
            (entry.key.clone(), value)
        })
        .collect();
    let server: BTreeMap<String, u16> = [
        ("NORMAL", close::NORMAL),
        ("GOING_AWAY", close::GOING_AWAY),
        ("PROTOCOL_ERROR", close::PROTOCOL_ERROR),
        ("TOO_BIG", close::TOO_BIG),
        ("TRY_AGAIN_LATER", close::TRY_AGAIN_LATER),
        ("TOO_SLOW", close::TOO_SLOW),
        ("DEAD_PEER", close::DEAD_PEER),
        ("AUTH_FAILED", close::AUTH_FAILED),
        ("GONE", close::GONE),
    ]
    .into_iter()
    .map(|(name, code)| (name.to_owned(), code))
    .collect();
    assert_eq!(sdk, server);
}

#[test]
fn the_sdk_limits_are_the_welcomes() {
    let limits = Limits {
        max_message_bytes: 1,
        max_broadcast_bytes: 1,
        max_presence_bytes: 1,
        messages_per_second: 1,
        message_burst: 1,
    };
    let Value::Object(server) = json!(limits) else {
        panic!("limits are an object");
    };
    let entries = block(PROTOCOL_TS, "limits");
    let sdk = keys(&entries);
    assert_eq!(sdk, server.keys().map(String::as_str).collect());
}

/// The checks above fail when the two sides differ: shown on copies of protocol.ts with one
/// method, event or params field added, dropped or renamed.
#[test]
fn drift_on_either_side_is_caught() {
    let with = |from: &str, to: &str| {
        assert!(
            PROTOCOL_TS.contains(from),
            "the test's anchor is gone: {from}"
        );
        PROTOCOL_TS.replacen(from, to, 1)
    };
    let join = "  'room.join': { params: NoParams; result: RoomJoinResult };\n";
    let extra_method = with(
        join,
        &format!("{join}  'room.explode': {{ params: NoParams; result: EmptyResult }};\n"),
    );
    assert!(request_drift(&extra_method)
        .contains(&"room.explode: in protocol.ts's Requests, not in METHOD_NAMES".to_owned()));
    let missing_method = with(join, "");
    assert!(request_drift(&missing_method)
        .contains(&"room.join: in METHOD_NAMES, not in protocol.ts's Requests".to_owned()));
    let renamed_field = with(
        "params: { userId: string }; result: { user: RawUser } };\n  'users.unfollow'",
        "params: { user: string }; result: { user: RawUser } };\n  'users.unfollow'",
    );
    let drift = request_drift(&renamed_field);
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("users.follow: protocol.ts's params")),
        "{drift:?}"
    );
    assert!(
        drift.contains(&"users.follow: Request::parse refuses `user`".to_owned()),
        "{drift:?}"
    );
    let optional_field = with(
        "'stores.set': { params: { store: string;",
        "'stores.set': { params: { store?: string;",
    );
    let drift = request_drift(&optional_field);
    assert!(
        drift
            .iter()
            .any(|d| d.starts_with("stores.set: the server requires `store`")),
        "{drift:?}"
    );

    let joined = "  userJoined: { user: RawUser };\n";
    let extra_event = with(
        joined,
        &format!("{joined}  userExploded: {{ user: RawUser }};\n"),
    );
    assert_eq!(
        event_drift(&extra_event),
        ["userExploded: in protocol.ts's Events, not in EVENT_NAMES"]
    );
    let missing_event = with(joined, "");
    assert_eq!(
        event_drift(&missing_event),
        ["userJoined: in EVENT_NAMES, not in protocol.ts's Events"]
    );
}

#[test]
fn the_reading_rule_fails_loudly() {
    let read = |text: &str| std::panic::catch_unwind(|| block(text, "requests").len());
    let ok = "x {\n  // wire-map: requests\n  'a.b': {\n    params: NoParams;\n  };\n  c: 1,\n  // wire-map: end\n";
    assert_eq!(read(ok).unwrap(), 2);
    assert!(
        read("x {\n  // wire-map: requests\n  'a.b': {}\n").is_err(),
        "no end marker"
    );
    assert!(
        read("x {\n  // wire-map: requests\n  a.b: {}\n  // wire-map: end\n").is_err(),
        "not a key"
    );
    assert!(
        read("x {\n  // wire-map: other\n  // wire-map: end\n").is_err(),
        "no block"
    );
    let nested = Entry {
        key: "m".into(),
        text: "'m': { params: { a: { b: string } }; result: X };".into(),
    };
    assert!(
        std::panic::catch_unwind(|| params_of(&nested)).is_err(),
        "nested braces"
    );
}
