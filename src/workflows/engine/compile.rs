//! Turns a customer's TypeScript or JavaScript workflow into the plain JavaScript module
//! QuickJS runs: types stripped (enums and namespaces become objects), nothing downleveled.

use std::path::Path;
use std::thread;

use oxc_allocator::Allocator;
use oxc_ast::ast::{Program, Statement, TSModuleReference};
use oxc_ast::AstKind;
use oxc_ast_visit::Visit;
use oxc_codegen::{Codegen, CodegenOptions};
use oxc_diagnostics::OxcDiagnostic;
use oxc_parser::{ParseOptions, Parser};
use oxc_semantic::SemanticBuilder;
use oxc_span::{GetSpan, SourceType, Span};
use oxc_transformer::{TransformOptions, Transformer};

use super::nesting::{self, Refusal, MAX_BRACKET_DEPTH};

/// Larger code is refused. This bound is what makes `COMPILER_STACK_BYTES` safe: every level
/// of nesting takes at least one byte of source, so the parser never recurses deeper than
/// this many levels (the passes after it see trees at most `MAX_TREE_DEPTH` deep).
pub const MAX_CODE_BYTES: usize = 256 * 1024;

/// Deepest syntax tree accepted (nodes from the program down, so one level of source nesting
/// is often two or three). Hand-written code stays far below; a 300-term `a + b + ...`
/// or `else if` chain is about 300.
pub const MAX_TREE_DEPTH: usize = 1000;

/// Stack of the thread the compiler runs on. oxc's parser recurses once per nesting level and
/// brackets are limited first (`MAX_BRACKET_DEPTH`), so the deepest input left is a prefix
/// chain such as 262,000 `!`: measured at 128 MiB in a debug build (the worst of some forty
/// constructs tried; about half that optimized). Untouched stack pages are never committed,
/// so ordinary code costs little.
const COMPILER_STACK_BYTES: usize = 256 * 1024 * 1024;

/// The name the transformer is told; it only affects its diagnostics.
const SOURCE_NAME: &str = "workflow.ts";

const IMPORT_REFUSED: &str =
    "workflows cannot import modules: use the store, room and files bindings and fetch instead";
const DEFAULT_EXPORT_MISSING: &str = "the workflow has no default export: write `export default async function (event, { store, room, files }) { ... }`";

/// Where code failed to parse: 1-based line and column (columns in characters).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SyntaxError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Customer code (TypeScript or JavaScript, an ES module with a default export) as the
/// JavaScript QuickJS runs: types stripped, nothing else downleveled.
///
/// Refused with a `SyntaxError`: code longer than [`MAX_CODE_BYTES`], brackets nested deeper
/// than [`MAX_BRACKET_DEPTH`] (before parsing), syntax trees deeper than
/// [`MAX_TREE_DEPTH`], imports, and code without a default export. The compiler runs on a
/// thread of its own with a stack sized for the deepest nesting that size allows, so no input
/// can overflow the caller's stack; it cannot run where threads cannot be started (a
/// workflow worker under its system-call filter).
pub fn compile(code: &str) -> Result<String, SyntaxError> {
    if code.len() > MAX_CODE_BYTES {
        return Err(SyntaxError {
            line: 1,
            column: 1,
            message: format!("the workflow is longer than {MAX_CODE_BYTES} bytes"),
        });
    }
    check_brackets(code)?;
    thread::scope(|scope| {
        let compiler = thread::Builder::new()
            .name("workflow-compiler".into())
            .stack_size(COMPILER_STACK_BYTES)
            .spawn_scoped(scope, || strip_types(code));
        match compiler.map(|handle| handle.join()) {
            Ok(Ok(compiled)) => compiled,
            // A panic inside oxc or a thread that could not start: the code is not at fault,
            // but the caller can only show a syntax error, so say plainly what happened.
            Ok(Err(_)) | Err(_) => Err(SyntaxError {
                line: 1,
                column: 1,
                message: "the compiler failed on this code".into(),
            }),
        }
    })
}

fn strip_types(code: &str) -> Result<String, SyntaxError> {
    let allocator = Allocator::default();
    let mut program = parse(&allocator, code)?;
    check_tree_depth(code, &program)?;
    check_module_shape(code, &program)?;
    remove_types(&allocator, code, &mut program)?;
    Ok(print(&program))
}

fn parse<'a>(allocator: &'a Allocator, code: &'a str) -> Result<Program<'a>, SyntaxError> {
    let source_type = SourceType::ts().with_module(true);
    // Without parenthesis nodes the tree is shallower; the printer adds the parentheses
    // precedence needs anyway.
    let options = ParseOptions {
        preserve_parens: false,
        ..ParseOptions::default()
    };
    let parsed = Parser::new(allocator, code, source_type)
        .with_options(options)
        .parse();
    first_error(code, parsed.diagnostics.errors())?;
    Ok(parsed.program)
}

/// Checks what the parser leaves to semantic analysis (redeclarations and the like), then
/// strips types; enums and namespaces become plain objects.
fn remove_types<'a>(
    allocator: &'a Allocator,
    code: &str,
    program: &mut Program<'a>,
) -> Result<(), SyntaxError> {
    let semantic = SemanticBuilder::new()
        .with_check_syntax_error(true)
        // The transformer needs enum member values to turn enums into objects.
        .with_enum_eval(true)
        .build(program);
    first_error(code, semantic.diagnostics.errors())?;
    let scoping = semantic.semantic.into_scoping();
    let transformer = Transformer::new(
        allocator,
        Path::new(SOURCE_NAME),
        &TransformOptions::default(),
    );
    let transformed = transformer.build_with_scoping(scoping, program);
    first_error(code, transformed.diagnostics.errors())
}

fn print(program: &Program) -> String {
    // Indentation would make the output grow with the square of the nesting depth.
    let options = CodegenOptions {
        indent_width: 0,
        ..CodegenOptions::default()
    };
    Codegen::new().with_options(options).build(program).code
}

fn check_brackets(code: &str) -> Result<(), SyntaxError> {
    let (offset, message) = match nesting::check(code) {
        Ok(()) => return Ok(()),
        Err(Refusal::TooDeep(offset)) => (
            offset,
            format!("brackets are nested more than {MAX_BRACKET_DEPTH} levels deep here"),
        ),
        Err(Refusal::TooAmbiguous(offset)) => (
            offset,
            "cannot tell where regular expressions start and end around here: \
             put divisions or regular expressions in parentheses"
                .to_string(),
        ),
    };
    Err(syntax_error_at(code, offset, &message))
}

/// Deeper trees are refused before the passes after parsing: some of oxc's syntax checks walk
/// every ancestor of a node (time grows with the square of the depth: 40,000 nested `await`
/// take seconds), and QuickJS, which parses the output again, would run out of stack anyway.
fn check_tree_depth(code: &str, program: &Program) -> Result<(), SyntaxError> {
    let mut depth = TreeDepth::default();
    depth.visit_program(program);
    match depth.too_deep_at {
        None => Ok(()),
        Some(offset) => Err(syntax_error_at(
            code,
            offset,
            &format!("the code is nested more than {MAX_TREE_DEPTH} levels deep"),
        )),
    }
}

/// Where the syntax tree first gets deeper than `MAX_TREE_DEPTH`.
#[derive(Default)]
struct TreeDepth {
    current: usize,
    too_deep_at: Option<usize>,
}

impl<'a> Visit<'a> for TreeDepth {
    fn enter_node(&mut self, kind: AstKind<'a>) {
        self.current += 1;
        if self.current > MAX_TREE_DEPTH && self.too_deep_at.is_none() {
            self.too_deep_at = Some(kind.span().start as usize);
        }
    }

    fn leave_node(&mut self, _kind: AstKind<'a>) {
        self.current -= 1;
    }
}

/// Workflows run alone: no imports, no re-exports, and a default export to call.
fn check_module_shape(code: &str, program: &Program) -> Result<(), SyntaxError> {
    if let Some(span) = program.body.iter().find_map(import_span) {
        return Err(syntax_error_at(code, span.start as usize, IMPORT_REFUSED));
    }
    if program.body.iter().any(exports_default) {
        Ok(())
    } else {
        Err(syntax_error_at(code, 0, DEFAULT_EXPORT_MISSING))
    }
}

/// Where `statement` brings in another module, if it does.
fn import_span(statement: &Statement) -> Option<Span> {
    match statement {
        Statement::ImportDeclaration(import) => Some(import.span),
        Statement::ExportAllDeclaration(export) => Some(export.span),
        Statement::ExportFromDeclaration(export) => Some(export.span),
        Statement::TSImportEqualsDeclaration(import) => match import.module_reference {
            TSModuleReference::ExternalModuleReference(_) => Some(import.span),
            _ => None,
        },
        _ => None,
    }
}

fn exports_default(statement: &Statement) -> bool {
    match statement {
        Statement::ExportDefaultDeclaration(_) => true,
        Statement::ExportNamedDeclaration(export) => export
            .specifiers
            .iter()
            .any(|specifier| specifier.exported.name() == "default"),
        _ => false,
    }
}

fn first_error<'d>(
    code: &str,
    mut errors: impl Iterator<Item = &'d OxcDiagnostic>,
) -> Result<(), SyntaxError> {
    match errors.next() {
        None => Ok(()),
        Some(error) => {
            let offset = error
                .labels
                .iter()
                .find(|label| label.primary())
                .or_else(|| error.labels.first())
                .map_or(0, |label| label.offset() as usize);
            Err(syntax_error_at(code, offset, &error.message))
        }
    }
}

fn syntax_error_at(code: &str, byte_offset: usize, message: &str) -> SyntaxError {
    let (line, column) = line_and_column(code, byte_offset);
    SyntaxError {
        line,
        column,
        message: message.to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset, clamped into the code.
fn line_and_column(code: &str, byte_offset: usize) -> (u32, u32) {
    let mut end = byte_offset.min(code.len());
    while !code.is_char_boundary(end) {
        end -= 1;
    }
    let before = &code[..end];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (saturate(line), saturate(column))
}

fn saturate(count: usize) -> u32 {
    u32::try_from(count).unwrap_or(u32::MAX)
}
