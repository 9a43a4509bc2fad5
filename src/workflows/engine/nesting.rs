//! How deeply code nests its brackets, looked at before oxc parses it. oxc's TypeScript parser
//! guesses at every `(` whether an arrow function starts, and at every `<` whether type
//! arguments do; a wrong guess re-parses what follows. Nested guesses make parsing take time
//! and memory with the square of the depth (256 KB of `a=(a=(…` or `x<x<…`: about an hour and
//! tens of gigabytes), so deep nesting is refused first, by this linear scan.
//!
//! Whether a `/` starts a regular expression or divides depends on the parse, so where the
//! scan cannot tell it follows both readings. The depth it reports is the most any reading
//! reaches: it never sees less nesting than the parser will.

/// Deepest nesting of `(`, `[`, `{`, `${` and `<` accepted. Hand-written code stays far
/// below; at this depth the parser's worst case over 256 KB stays near a second.
pub const MAX_BRACKET_DEPTH: usize = 64;

/// Readings followed at once before the scan gives up: real code has one or two.
const MAX_READINGS: usize = 16;

/// Why code was refused, and the byte offset where.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    TooDeep(usize),
    TooAmbiguous(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Code,
    LineComment,
    BlockComment,
    Quoted(u8),
    Template,
    Regex { in_class: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Paren,
    Bracket,
    Brace,
    TemplateExpression,
    Angle,
}

/// What the previous token lets a `/` be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slash {
    Regex,
    Division,
    Either,
    /// After the identifier, keyword or number starting at this offset.
    AfterWord(usize),
}

/// Keywords after which an expression, so a regular expression, may follow (`return /x/`).
/// They may also be property names (`a.return / 2`), hence either reading.
const KEYWORDS_BEFORE_EXPRESSIONS: [&[u8]; 16] = [
    b"return",
    b"typeof",
    b"instanceof",
    b"in",
    b"of",
    b"new",
    b"delete",
    b"void",
    b"throw",
    b"case",
    b"do",
    b"else",
    b"yield",
    b"await",
    b"extends",
    b"default",
];

/// One way of reading the code so far.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reading {
    mode: Mode,
    open: Vec<Opener>,
    slash: Slash,
    /// Bytes ahead that belong to a token already handled (`//`, `\x`, `${`, ...).
    skip: u8,
}

/// Refuses code that nests deeper than `MAX_BRACKET_DEPTH` in any reading.
pub(super) fn check(code: &str) -> Result<(), Refusal> {
    let bytes = code.as_bytes();
    // A `#!` line, allowed first, is a comment.
    let mode = if code.starts_with("#!") {
        Mode::LineComment
    } else {
        Mode::Code
    };
    let start = Reading {
        mode,
        open: Vec::new(),
        slash: Slash::Regex,
        skip: 0,
    };
    let mut readings = vec![start];
    for at in 0..bytes.len() {
        let mut next: Vec<Reading> = Vec::with_capacity(readings.len());
        for reading in readings {
            for stepped in reading.step(bytes, at) {
                if stepped.open.len() > MAX_BRACKET_DEPTH {
                    return Err(Refusal::TooDeep(at));
                }
                if !next.contains(&stepped) {
                    next.push(stepped);
                }
            }
        }
        if next.is_empty() {
            // Every reading hit an unterminated literal, where oxc stops parsing.
            return Ok(());
        }
        if next.len() > MAX_READINGS {
            return Err(Refusal::TooAmbiguous(at));
        }
        readings = next;
    }
    Ok(())
}

/// A line terminator as the JavaScript lexer knows them: LF, CR, U+2028 and U+2029.
fn ends_line(bytes: &[u8], at: usize) -> bool {
    match bytes[at] {
        b'\n' | b'\r' => true,
        0xE2 => matches!(bytes.get(at + 1..at + 3), Some([0x80, 0xA8 | 0xA9])),
        _ => false,
    }
}

impl Reading {
    /// This reading after the byte at `at`: one reading, two where a `/` is ambiguous, none
    /// where it would be an unterminated string or regular expression (oxc stops parsing
    /// there, so nothing after it costs anything).
    fn step(mut self, bytes: &[u8], at: usize) -> Vec<Reading> {
        if self.skip > 0 {
            self.skip -= 1;
            return vec![self];
        }
        let byte = bytes[at];
        let next = bytes.get(at + 1).copied();
        match self.mode {
            Mode::Code => return self.step_code(bytes, at),
            Mode::LineComment if ends_line(bytes, at) => self.mode = Mode::Code,
            Mode::LineComment => {}
            Mode::BlockComment if byte == b'*' && next == Some(b'/') => {
                self.mode = Mode::Code;
                self.skip = 1;
            }
            Mode::BlockComment => {}
            // An escape; in a string, `\` and CR LF continue it on the next line.
            Mode::Quoted(_) | Mode::Template | Mode::Regex { .. } if byte == b'\\' => {
                self.skip = if bytes.get(at + 1..at + 3) == Some(b"\r\n") {
                    2
                } else {
                    1
                };
            }
            Mode::Quoted(quote) if byte == quote => self.end_literal(),
            // Strings may hold U+2028 and U+2029, not CR or LF.
            Mode::Quoted(_) if matches!(byte, b'\n' | b'\r') => return Vec::new(),
            Mode::Regex { .. } if ends_line(bytes, at) => return Vec::new(),
            Mode::Quoted(_) => {}
            Mode::Template if byte == b'`' => self.end_literal(),
            Mode::Template if byte == b'$' && next == Some(b'{') => {
                self.open.push(Opener::TemplateExpression);
                self.mode = Mode::Code;
                self.slash = Slash::Regex;
                self.skip = 1;
            }
            Mode::Template => {}
            Mode::Regex { in_class } => match byte {
                b'[' => self.mode = Mode::Regex { in_class: true },
                b']' => self.mode = Mode::Regex { in_class: false },
                b'/' if !in_class => self.end_literal(),
                _ => {}
            },
        }
        vec![self]
    }

    fn end_literal(&mut self) {
        self.mode = Mode::Code;
        // A regular expression's flags, if any, then read like an identifier.
        self.slash = Slash::Division;
    }

    fn step_code(mut self, bytes: &[u8], at: usize) -> Vec<Reading> {
        let byte = bytes[at];
        let next = bytes.get(at + 1).copied();
        match byte {
            b'/' => return self.step_slash(bytes, next),
            b' ' | b'\t' | b'\n' | b'\r' => return vec![self],
            b'\'' | b'"' => self.mode = Mode::Quoted(byte),
            b'`' => self.mode = Mode::Template,
            b'(' => self.open.push(Opener::Paren),
            b'[' => self.open.push(Opener::Bracket),
            b'{' => self.open.push(Opener::Brace),
            b'<' => self.open.push(Opener::Angle),
            b')' => self.close(Opener::Paren),
            b']' => self.close(Opener::Bracket),
            b'}' => self.close_brace(),
            b'>' if self.open.last() == Some(&Opener::Angle) => {
                self.open.pop();
            }
            b';' => {
                while self.open.last() == Some(&Opener::Angle) {
                    self.open.pop();
                }
            }
            // `=>` is not a closing `>`.
            b'=' if next == Some(b'>') => self.skip = 1,
            // `a++ / 2`, but also `a \n ++/re/` (an error oxc reports and parses on from).
            b'+' | b'-' if next == Some(byte) => {
                self.skip = 1;
                self.slash = Slash::Either;
                return vec![self];
            }
            _ => {}
        }
        self.slash = self.slash_after(bytes, at);
        vec![self]
    }

    /// What a `/` may be after the byte at `at`, read in code.
    fn slash_after(&self, bytes: &[u8], at: usize) -> Slash {
        if self.mode != Mode::Code {
            // A literal just started; its end decides.
            return self.slash;
        }
        match bytes[at] {
            byte if is_word_byte(byte) => match self.slash {
                Slash::AfterWord(start) if at > 0 && is_word_byte(bytes[at - 1]) => {
                    Slash::AfterWord(start)
                }
                _ => Slash::AfterWord(at),
            },
            // `(a) / 2` but `if (x) /re/`; `{}` an object or a block; `x! / 2` (TypeScript's
            // non-null assertion) but `!/re/`; `f<T> / 2` or `a > /re/`; `1. / 2` or a
            // property name missing.
            b')' | b'}' | b'!' | b'>' | b'.' => Slash::Either,
            b']' => Slash::Division,
            _ => Slash::Regex,
        }
    }

    fn step_slash(mut self, bytes: &[u8], next: Option<u8>) -> Vec<Reading> {
        let slash = match self.slash {
            Slash::AfterWord(start) => slash_after_word(bytes, start),
            slash => slash,
        };
        match (next, slash) {
            (Some(b'/'), _) => {
                self.mode = Mode::LineComment;
                self.skip = 1;
            }
            (Some(b'*'), _) => {
                self.mode = Mode::BlockComment;
                self.skip = 1;
            }
            (_, Slash::Regex) => self.mode = Mode::Regex { in_class: false },
            (_, Slash::Division | Slash::AfterWord(_)) => self.slash = Slash::Regex,
            (_, Slash::Either) => {
                let mut regex = self.clone();
                regex.mode = Mode::Regex { in_class: false };
                self.slash = Slash::Regex;
                return vec![self, regex];
            }
        }
        vec![self]
    }

    /// A closing bracket closes its opener and whatever `<` are still open inside it; one
    /// with no opener to close changes nothing.
    fn close(&mut self, opener: Opener) {
        if let Some(index) = self.open.iter().rposition(|open| *open == opener) {
            self.open.truncate(index);
        }
    }

    fn close_brace(&mut self) {
        let index = self
            .open
            .iter()
            .rposition(|open| matches!(open, Opener::Brace | Opener::TemplateExpression));
        if let Some(index) = index {
            if self.open[index] == Opener::TemplateExpression {
                self.mode = Mode::Template;
            }
            self.open.truncate(index);
        }
    }
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'$' | b'#' | b'\\') || byte >= 0x80
}

/// Division after identifiers and numbers; either reading after keywords that take an
/// expression.
fn slash_after_word(bytes: &[u8], start: usize) -> Slash {
    let end = bytes[start..]
        .iter()
        .position(|byte| !is_word_byte(*byte))
        .map_or(bytes.len(), |length| start + length);
    if KEYWORDS_BEFORE_EXPRESSIONS.contains(&&bytes[start..end]) {
        Slash::Either
    } else {
        Slash::Division
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(open: &str, depth: usize) -> String {
        format!("export default {}1", open.repeat(depth))
    }

    #[test]
    fn ordinary_code_passes() {
        let code =
            "export default async function (event: any, { store }: Ctx): Promise<Array<string>> {
            const half = total / 2, re = /[(\\[{]/g; // a comment with ( ( (
            /* and ( [ { */ const s = '((((' + \"[[[[\" + `${a / b}{{{{`;
            for (let i = 0; i < 10; i++) { if (i > 2 && a < b) { x = a++ / 2 } }
            return items.filter((item) => item.size / 2 > 1).map(String)
        }";
        assert_eq!(check(code), Ok(()));
    }

    #[test]
    fn deep_brackets_of_every_kind_are_refused() {
        for open in ["(", "[", "{", "a=(", "({a=", "x<", "`${"] {
            assert!(
                matches!(check(&nested(open, 100)), Err(Refusal::TooDeep(_))),
                "{open}"
            );
            assert_eq!(check(&nested(open, 20)), Ok(()), "{open}");
        }
    }

    #[test]
    fn closed_comparisons_do_not_add_up() {
        let code = "if (a < b) {}\n".repeat(200) + "for (;;) { x = a < b; }\n".repeat(200).as_str();
        assert_eq!(check(&code), Ok(()));
    }

    #[test]
    fn brackets_in_strings_and_comments_neither_open_nor_close() {
        let hidden_closers = format!("export default {}1", "a=(\")\"+".repeat(100));
        assert!(matches!(check(&hidden_closers), Err(Refusal::TooDeep(_))));
        let commented = format!("// {}\nexport default 1", "(".repeat(1000));
        assert_eq!(check(&commented), Ok(()));
    }

    #[test]
    fn a_slash_that_may_start_a_regex_cannot_hide_code() {
        // Read as division, `/*` would open a comment hiding everything after it.
        let tricked = format!("if (x) /[/*]/.test(s);\n{}", nested("a=(", 100));
        assert!(matches!(check(&tricked), Err(Refusal::TooDeep(_))));
        // Read as division, `/ "` would open a string hiding the rest of the line.
        let tricked = format!("if (x) / \"/.test(s); {}", nested("a=(", 100));
        assert!(matches!(check(&tricked), Err(Refusal::TooDeep(_))));
    }

    #[test]
    fn postfix_operators_leave_both_readings() {
        for before in ["a\n++", "x!", "f<T>"] {
            let code = format!("{before}/x(/; {}", nested("a=(", 100));
            assert!(matches!(check(&code), Err(Refusal::TooDeep(_))), "{before}");
            let code = format!("{before} / \"/; {}", nested("a=(", 100));
            assert!(matches!(check(&code), Err(Refusal::TooDeep(_))), "{before}");
        }
    }

    #[test]
    fn a_hashbang_line_is_a_comment() {
        let code = format!("#!/usr/bin/env node '\n{}", nested("a=(", 100));
        assert!(matches!(check(&code), Err(Refusal::TooDeep(_))));
    }

    #[test]
    fn every_line_terminator_ends_a_line_comment() {
        let code = format!("// note\u{2028}{}", nested("(", 100));
        assert!(matches!(check(&code), Err(Refusal::TooDeep(_))));
        let code = format!("// note\r{}", nested("(", 100));
        assert!(matches!(check(&code), Err(Refusal::TooDeep(_))));
    }

    #[test]
    fn strings_go_on_where_the_lexer_goes_on() {
        for inside in ["\\\r\n", "\\\n", "\u{2028}", "\u{2029}"] {
            let code = format!("x = '{inside}';\n{}", nested("(", 100));
            assert!(
                matches!(check(&code), Err(Refusal::TooDeep(_))),
                "{inside:?}"
            );
        }
    }

    #[test]
    fn endless_ambiguity_is_refused() {
        // Each line forks a reading that is one `(` deeper than its other reading.
        let code = "} / a(0 /\n".repeat(40);
        assert!(matches!(check(&code), Err(Refusal::TooAmbiguous(_))));
    }
}
