//! The adversarial suite's inputs, shared by the REST and socket fuzzers: hostile JSON values
//! as raw JSON text (a lone surrogate written `\ud800` cannot live in a `serde_json::Value`),
//! hostile URL path segments and query values (already percent-encoded), and a tiny seeded
//! generator for a few more of each, so that every run sends the same requests.

use serde_json::Value;

/// A hostile value and what to call it in a failure message.
#[derive(Debug, Clone)]
pub struct Hostile {
    pub name: String,
    /// JSON text (a value) or URL text (a path segment or query value), as sent.
    pub text: String,
}

impl Hostile {
    fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// Xorshift64: deterministic, no dependency, enough to vary inputs.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Nesting that no recursive parser survives unbounded: the campaign used 10,000 levels.
pub const DEEP: usize = 10_000;

pub fn deep_array(levels: usize) -> String {
    format!("{}{}", "[".repeat(levels), "]".repeat(levels))
}

pub fn deep_object(levels: usize) -> String {
    format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
}

/// Hostile JSON values. `long` is the length of the longest plain string: 1 MB over REST (a
/// body limit of 1 MiB, so that the body parses and reaches validation), and under the frame
/// limit on the socket (a frame over it is a case of its own).
pub fn json_values(long: usize, seed: u64) -> Vec<Hostile> {
    let mut values = vec![
        Hostile::new("NUL inside", r#""a\u0000b""#),
        Hostile::new("NUL alone", r#""\u0000""#),
        Hostile::new("lone high surrogate", r#""\ud800""#),
        Hostile::new("lone low surrogate", r#""x\udfffy""#),
        Hostile::new("surrogates reversed", r#""\udc00\ud800""#),
        Hostile::new("high surrogate then ASCII", r#""\ud83dA""#),
        Hostile::new("long string", format!("\"{}\"", "x".repeat(long))),
        Hostile::new("300 characters", format!("\"{}\"", "y".repeat(300))),
        Hostile::new("deep array", deep_array(DEEP)),
        Hostile::new("deep object", deep_object(DEEP)),
        Hostile::new(
            "deep array in an array",
            format!("[1, {}]", deep_array(DEEP)),
        ),
        Hostile::new("zero", "0"),
        Hostile::new("minus one", "-1"),
        Hostile::new("i64 max", "9223372036854775807"),
        Hostile::new("under i64 min", "-9223372036854775809"),
        Hostile::new("2^64", "18446744073709551616"),
        Hostile::new("1e308", "1e308"),
        Hostile::new("-1e308", "-1e308"),
        Hostile::new("out of f64 range", "1e400"),
        Hostile::new("fraction", "1.5"),
        Hostile::new("true", "true"),
        Hostile::new("false", "false"),
        Hostile::new("null", "null"),
        Hostile::new("empty array", "[]"),
        Hostile::new("empty object", "{}"),
        Hostile::new("array of null", "[null]"),
        Hostile::new("array of strings", r#"["a", "b"]"#),
        Hostile::new("object with an empty key", r#"{"": ""}"#),
        Hostile::new("prototype pollution", r#"{"__proto__": {"x": 1}}"#),
        Hostile::new("duplicate keys", r#"{"a": 1, "a": 2}"#),
        Hostile::new("empty string", r#""""#),
        Hostile::new("blank", r#"" ""#),
        Hostile::new("control characters", r#""\u0001\u001f\u007f""#),
        Hostile::new("line breaks", r#""\r\n\t""#),
        Hostile::new("percent-encoded NUL", r#""%00""#),
        Hostile::new("SQL", r#""' OR '1'='1' --""#),
        Hostile::new("LIKE wildcards", r#""%_%""#),
        Hostile::new("path traversal", r#""../../etc/passwd""#),
        Hostile::new("markup", r#""<script>alert(1)</script>""#),
        Hostile::new("right-to-left override", r#""\u202egnp.exe""#),
        Hostile::new("emoji", r#""😀👍🏽👨‍👩‍👧""#),
        Hostile::new("backslash", r#""\\""#),
        Hostile::new("nil UUID", r#""00000000-0000-0000-0000-000000000000""#),
        Hostile::new(
            "thread-like ID",
            r#""thr_00000000000000000000000000000000""#,
        ),
        Hostile::new(
            "comment-like ID",
            r#""cmt_00000000000000000000000000000000""#,
        ),
        Hostile::new(
            "webhook-like ID",
            r#""wh_00000000000000000000000000000000""#,
        ),
        Hostile::new("javascript URL", r#""javascript:alert(1)""#),
        Hostile::new("loopback URL, closed port", r#""http://127.0.0.1:1/hook""#),
        Hostile::new("IPv6 loopback URL", r#""http://[::1]:1/""#),
    ];
    // A few strings from the generator: mixtures of what parsers and databases trip on.
    let pieces = [
        r"\u0000",
        r"\ud800",
        r"\udfff",
        r"\\",
        r#"\""#,
        "%",
        "_",
        "'",
        "😀",
        r"\u0007",
        "é",
        "a",
        " ",
        r"\n",
        "\u{10FFFF}",
        r"\u00ad",
    ];
    let mut rng = Xorshift::new(seed);
    for i in 0..8 {
        let len = 1 + rng.below(24);
        let text: String = (0..len).map(|_| *rng.pick(&pieces)).collect();
        values.push(Hostile::new(
            format!("generated {i}"),
            format!("\"{text}\""),
        ));
    }
    values
}

/// Hostile URL path segments, percent-encoded as they go on the wire.
pub fn path_segments() -> Vec<Hostile> {
    vec![
        Hostile::new("NUL", "%00"),
        Hostile::new("NUL inside", "a%00b"),
        Hostile::new("UTF-8 of a surrogate", "%ED%A0%80"),
        Hostile::new("not UTF-8", "%FF%FE"),
        Hostile::new("overlong slash", "%C0%AF"),
        Hostile::new("encoded slash", "a%2Fb"),
        Hostile::new("encoded dots", "%2e%2e"),
        Hostile::new("space", "%20"),
        Hostile::new("percent", "%25"),
        Hostile::new("broken escape", "%G0"),
        Hostile::new("emoji", "%F0%9F%98%80"),
        Hostile::new("minus one", "-1"),
        Hostile::new("zero", "0"),
        Hostile::new("huge number", "99999999999999999999999999"),
        Hostile::new("nil UUID", "00000000-0000-0000-0000-000000000000"),
        Hostile::new("thread-like", "thr_00000000000000000000000000000000"),
        Hostile::new("comment-like", "cmt_00000000000000000000000000000000"),
        Hostile::new("SQL", "'%20OR%20'1'='1"),
        Hostile::new("5000 characters", "x".repeat(5000)),
    ]
}

/// Hostile query values, percent-encoded.
pub fn query_values() -> Vec<Hostile> {
    vec![
        Hostile::new("NUL", "%00"),
        Hostile::new("NUL inside", "a%00b"),
        Hostile::new("not UTF-8", "%FF"),
        Hostile::new("UTF-8 of a surrogate", "%ED%A0%80"),
        Hostile::new("empty", ""),
        Hostile::new("blank", "%20"),
        Hostile::new("minus one", "-1"),
        Hostile::new("zero", "0"),
        Hostile::new("over the limit", "101"),
        Hostile::new("i64 max", "9223372036854775807"),
        Hostile::new("over i64", "9223372036854775808"),
        Hostile::new("huge", "99999999999999999999999999"),
        Hostile::new("exponent", "1e3"),
        Hostile::new("hex", "0x10"),
        Hostile::new("word", "abc"),
        Hostile::new("TRUE", "TRUE"),
        Hostile::new("300 characters", "a".repeat(300)),
        Hostile::new("LIKE wildcards", "%25_%25"),
        Hostile::new("SQL", "'%20OR%20'1'='1"),
        Hostile::new("no such day", "2026-02-30"),
        Hostile::new("no such hour", "2026-06-01T25:00:00Z"),
        Hostile::new("year 9999", "9999-12-31"),
        Hostile::new("year 0", "0000-01-01"),
        Hostile::new("far offset", "2026-06-01T10:00:00%2B99:00"),
        Hostile::new("bare plus", "+"),
        Hostile::new("broken escape", "%G0"),
        Hostile::new("brackets", "[]"),
        Hostile::new("nil UUID", "00000000-0000-0000-0000-000000000000"),
        Hostile::new("cursor-like", "thr_00000000000000000000000000000000"),
    ]
}

/// Where a hostile value goes in a JSON document: keys from the top.
pub type FieldPath = &'static [&'static str];

/// What a placeholder string serializes to; replaced by the hostile text afterwards.
const MARKER: &str = "\u{1}HOSTILE\u{1}";

/// `base` as JSON text with the value at `path` replaced by the raw JSON text `hostile` (the
/// field is added when the base lacks it).
pub fn substitute(base: &Value, path: FieldPath, hostile: &str) -> String {
    let mut document = base.clone();
    let mut at = &mut document;
    for (i, key) in path.iter().enumerate() {
        if !at.is_object() {
            *at = Value::Object(Default::default());
        }
        let object = at.as_object_mut().unwrap();
        if i + 1 == path.len() {
            object.insert((*key).to_owned(), Value::String(MARKER.to_owned()));
        }
        at = object.entry(*key).or_insert(Value::Null);
    }
    let marker = serde_json::to_string(MARKER).unwrap();
    let text = document.to_string();
    assert!(text.contains(&marker), "{path:?} in {base}");
    text.replacen(&marker, hostile, 1)
}

/// Bodies that are hostile as a whole (not a field of a good one).
pub fn whole_documents() -> Vec<Hostile> {
    vec![
        Hostile::new("empty", ""),
        Hostile::new("whitespace", " \r\n\t"),
        Hostile::new("null", "null"),
        Hostile::new("array", "[]"),
        Hostile::new("array of an object", "[{}]"),
        Hostile::new("string", r#""x""#),
        Hostile::new("number", "1"),
        Hostile::new("deep array", deep_array(DEEP)),
        Hostile::new("deep object", deep_object(DEEP)),
        Hostile::new("unclosed deep array", "[".repeat(DEEP)),
        Hostile::new("unclosed object", r#"{"name":"#),
        Hostile::new("trailing garbage", "{} x"),
        Hostile::new("two documents", "{}{}"),
        Hostile::new("lone surrogate as a key", r#"{"\ud800": 1}"#),
        Hostile::new("NUL as a key", r#"{"\u0000": 1}"#),
        Hostile::new("unknown field", r#"{"nope": 1}"#),
        Hostile::new("duplicate keys", r#"{"name": "a", "name": "b"}"#),
        Hostile::new("comment", r#"{/* x */}"#),
        Hostile::new("single quotes", "{'name': 'x'}"),
        Hostile::new("NaN", r#"{"name": NaN}"#),
    ]
}
