// CollabKit API reference: builds the page from the OpenAPI document (/v1/openapi.json) in
// the browser, with our own small renderer and no library. Everything the document says is put
// in the page as text (createElement, textContent), never parsed as HTML, so a description
// cannot inject markup; the only request made is the one for the document. (Over our usual
// 600 lines: one script the page loads, in four marked parts: DOM helpers, descriptions,
// schemas, sections; a module split would need a bundler or more requests.)
"use strict";

/// Path item keys that are operations, in the order a reader expects them.
const METHODS = ["get", "post", "put", "patch", "delete", "head", "options", "trace"];
/// Nesting of one schema shown in full; deeper levels are named, not expanded. Real documents
/// stay far below it; it keeps a pathological one from freezing the page.
const MAX_DEPTH = 12;
/// Where `$ref`s to schemas point, the only kind shown by name and linked.
const SCHEMA_PREFIX = "#/components/schemas/";

// ---------------------------------------------------------------------------------------------
// DOM helpers: every string goes in as a text node.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  return append(node, children);
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false || child === "") continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function code(text, className) {
  return el("code", { class: className }, String(text));
}

/// An element id from free text: letters, digits, `-` and `_`, unique on the page.
function makeIds() {
  const used = new Set();
  return (prefix, text) => {
    const slug = String(text).replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "") || "x";
    const base = prefix ? `${prefix}-${slug}` : slug;
    let id = base;
    for (let n = 2; used.has(id); n += 1) id = `${base}-${n}`;
    used.add(id);
    return id;
  };
}

function json(value) {
  return JSON.stringify(value, null, 2);
}

function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Descriptions: a small, safe subset of CommonMark (paragraphs, lists, pipe tables, fenced
// code, `code`, **bold**, [links](http://...)), built as DOM.

function prose(text, className = "prose") {
  if (typeof text !== "string" || text.trim() === "") return null;
  const box = el("div", { class: className });
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (line.trim() === "") {
      i += 1;
    } else if (/^\s*```/.test(line)) {
      const body = [];
      for (i += 1; i < lines.length && !/^\s*```/.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1;
      box.append(el("pre", {}, code(body.join("\n"))));
    } else if (/^\s*\|/.test(line) && i + 1 < lines.length && /^\s*\|?[\s:|-]+\|?\s*$/.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const rows = [];
      for (; i < lines.length && /^\s*\|/.test(lines[i]); i += 1) rows.push(lines[i]);
      box.append(proseTable(rows));
    } else if (/^\s*[-*] /.test(line)) {
      const list = el("ul");
      for (; i < lines.length && lines[i].trim() !== ""; i += 1) {
        const bullet = /^\s*[-*] (.*)$/.exec(lines[i]);
        if (bullet) {
          list.append(append(el("li"), inline(bullet[1])));
        } else {
          list.lastChild.append(" ", ...inline(lines[i].trim()));
        }
      }
      box.append(list);
    } else if (/^#{1,6} /.test(line)) {
      box.append(el("p", { class: "heading" }, inline(line.replace(/^#+ /, ""))));
      i += 1;
    } else {
      const paragraph = [];
      for (; i < lines.length && lines[i].trim() !== "" && !/^\s*(```|[-*] |\|)/.test(lines[i]); i += 1) {
        paragraph.push(lines[i].trim());
      }
      if (paragraph.length === 0) {
        paragraph.push(line.trim());
        i += 1;
      }
      box.append(el("p", {}, inline(paragraph.join(" "))));
    }
  }
  return box;
}

function proseTable(rows) {
  const cells = (row) => row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((cell) => cell.trim());
  const table = el("table");
  table.append(el("thead", {}, el("tr", {}, cells(rows[0]).map((cell) => el("th", {}, inline(cell))))));
  const body = el("tbody");
  for (const row of rows.slice(2)) body.append(el("tr", {}, cells(row).map((cell) => el("td", {}, inline(cell)))));
  table.append(body);
  return el("div", { class: "scroll" }, table);
}

/// Inline marks as nodes: `code`, **bold**, [text](url) (a link only for http(s) and in-page
/// targets; any other target stays text).
function inline(text) {
  const nodes = [];
  const pattern = /`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let last = 0;
  for (let match; (match = pattern.exec(text)); ) {
    if (match.index > last) nodes.push(text.slice(last, match.index));
    if (match[1] !== undefined) nodes.push(code(match[1]));
    else if (match[2] !== undefined) nodes.push(el("strong", {}, match[2]));
    else if (/^(https?:\/\/|#)/i.test(match[4])) nodes.push(el("a", { href: match[4] }, match[3]));
    else nodes.push(match[3]);
    last = pattern.lastIndex;
  }
  if (last < text.length) nodes.push(text.slice(last));
  return nodes;
}

// ---------------------------------------------------------------------------------------------
// The document: references and schemas.

/// One segment of a JSON pointer in a URI fragment, as the key it names.
function pointerKey(segment) {
  let text = segment;
  try {
    text = decodeURIComponent(segment);
  } catch {
    // not percent-encoded after all: the segment as written
  }
  return text.replace(/~1/g, "/").replace(/~0/g, "~");
}

/// The value a local JSON pointer (`#/components/...`) names, or undefined.
function pointer(spec, ref) {
  if (typeof ref !== "string" || !ref.startsWith("#/")) return undefined;
  let node = spec;
  for (const raw of ref.slice(2).split("/")) {
    const key = pointerKey(raw);
    if (node === null || typeof node !== "object" || !Object.prototype.hasOwnProperty.call(node, key)) return undefined;
    node = node[key];
  }
  return node;
}

/// A parameter, body, response, header or example object with its `$ref`s followed (a
/// chain of them at most a few long; a loop ends as an empty object).
function deref(spec, value) {
  for (let hops = 0; isObject(value) && typeof value.$ref === "string"; hops += 1) {
    if (hops > 8) return {};
    const target = pointer(spec, value.$ref);
    if (target === undefined) return {};
    value = target;
  }
  return value ?? {};
}

function schemaName(ref) {
  return typeof ref === "string" && ref.startsWith(SCHEMA_PREFIX) ? pointerKey(ref.slice(SCHEMA_PREFIX.length)) : null;
}

/// A reference to the schema `components.schemas[name]`.
function schemaRef(name) {
  return { $ref: SCHEMA_PREFIX + encodeURIComponent(name.replace(/~/g, "~0").replace(/\//g, "~1")) };
}

/// A schema as a reader sees it: its `$ref` followed and its `allOf` parts merged into one
/// object (properties, required), with `seen` the references already open on the way here.
/// A reference met again on the same path is a cycle: `cycle` names it, and it is not opened.
function expand(ctx, schema, seen) {
  if (!isObject(schema)) return { schema: schema === false ? { not: {} } : {}, seen, cycle: null };
  if (typeof schema.$ref === "string") {
    if (seen.has(schema.$ref)) return { schema, seen, cycle: schema.$ref };
    const target = pointer(ctx.spec, schema.$ref);
    if (!isObject(target)) return { schema: {}, seen, cycle: null };
    const next = new Set(seen).add(schema.$ref);
    const inner = expand(ctx, target, next);
    // OpenAPI 3.1 allows siblings of `$ref` (a description of this use of the type): they win.
    const { $ref, ...siblings } = schema;
    return { ...inner, schema: { ...inner.schema, ...siblings } };
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length === 1) {
    // One part (how a described reference is often written): that part, described.
    const { allOf, ...own } = schema;
    const inner = expand(ctx, allOf[0], seen);
    return inner.cycle ? inner : { ...inner, schema: { ...inner.schema, ...own } };
  }
  if (Array.isArray(schema.allOf) && schema.allOf.length > 1) {
    const { allOf, ...own } = schema;
    const merged = { properties: {}, required: [] };
    let innerSeen = seen;
    for (const part of allOf) {
      const view = expand(ctx, part, seen);
      if (view.cycle) continue;
      innerSeen = new Set([...innerSeen, ...view.seen]);
      const { properties, required, ...rest } = view.schema;
      for (const [key, value] of Object.entries(rest)) if (!(key in merged)) merged[key] = value;
      Object.assign(merged.properties, properties ?? {});
      merged.required.push(...(required ?? []));
    }
    const { properties, required, ...rest } = own;
    Object.assign(merged, rest);
    Object.assign(merged.properties, properties ?? {});
    merged.required.push(...(required ?? []));
    if (Object.keys(merged.properties).length === 0) delete merged.properties;
    if (!merged.type && merged.properties) merged.type = "object";
    merged.required = [...new Set(merged.required)];
    return { schema: merged, seen: innerSeen, cycle: null };
  }
  return { schema, seen, cycle: null };
}

/// The alternatives of a schema (oneOf, anyOf), without the `null` one; `nullable` when there
/// was one (or a 3.1 type list holding "null", or 3.0's `nullable`).
function alternativesOf(schema) {
  const list = schema.oneOf ?? schema.anyOf;
  if (!Array.isArray(list)) return null;
  return list.filter((alternative) => !isNullSchema(alternative));
}

function isNullSchema(schema) {
  return isObject(schema) && (schema.type === "null" || (Array.isArray(schema.type) && schema.type.length === 1 && schema.type[0] === "null") || ("const" in schema && schema.const === null && !schema.type));
}

function isNullable(schema) {
  if (!isObject(schema)) return false;
  if (schema.nullable === true) return true;
  if (Array.isArray(schema.type) && schema.type.includes("null")) return true;
  const list = schema.oneOf ?? schema.anyOf;
  return Array.isArray(list) && list.some(isNullSchema);
}

/// A `oneOf: [null, X]` (how an optional reference is written) as X itself.
function unwrapNullable(schema) {
  const alternatives = alternativesOf(schema);
  if (alternatives && alternatives.length === 1 && !schema.properties) {
    const { oneOf, anyOf, ...rest } = schema;
    return isObject(alternatives[0]) && alternatives[0].$ref ? { ...rest, allOf: [alternatives[0]] } : { ...rest, ...alternatives[0] };
  }
  return schema;
}

function typesOf(schema) {
  if (Array.isArray(schema.type)) return schema.type.filter((type) => type !== "null");
  if (typeof schema.type === "string") return schema.type === "null" ? [] : [schema.type];
  if (schema.properties || isObject(schema.additionalProperties)) return ["object"];
  if (schema.items) return ["array"];
  if (Array.isArray(schema.enum) && schema.enum.length > 0) {
    return [...new Set(schema.enum.filter((value) => value !== null).map((value) => (Array.isArray(value) ? "array" : typeof value)))];
  }
  return [];
}

/// The type of a schema in a few words, named schemas as links to their definitions:
/// `string (uuid)`, `array of Room`, `string | null`, `map of string to StoreField`.
function typeNode(ctx, schema) {
  const span = el("span", { class: "type" });
  addType(ctx, span, schema, 0);
  return span;
}

function addType(ctx, span, schema, depth) {
  if (depth > 6) return span.append("…");
  if (schema === false) return span.append("nothing");
  if (!isObject(schema)) return span.append("any");
  if (typeof schema.$ref === "string") {
    const name = schemaName(schema.$ref);
    const id = name && ctx.schemaIds.get(name);
    return span.append(id ? el("a", { href: `#${id}` }, name) : (name ?? schema.$ref));
  }
  if ("const" in schema) return span.append(JSON.stringify(schema.const));
  if (schema.type === "null") return span.append("null");
  const alternatives = alternativesOf(schema);
  const nullable = isNullable(schema);
  const parts = [];
  if (alternatives && alternatives.length > 0) {
    parts.push(...alternatives);
  } else if (Array.isArray(schema.allOf) && schema.allOf.length > 0) {
    schema.allOf.forEach((part, index) => {
      if (index > 0) span.append(" & ");
      addType(ctx, span, part, depth + 1);
    });
  } else {
    const types = typesOf(schema);
    if (types.length === 0) span.append(nullable ? "" : "any");
    types.forEach((type, index) => {
      if (index > 0) span.append(" | ");
      if (type === "array") {
        span.append("array");
        if (schema.items !== undefined) {
          span.append(" of ");
          addType(ctx, span, schema.items, depth + 1);
        }
      } else if (type === "object" && !schema.properties && isObject(schema.additionalProperties)) {
        span.append("map of string to ");
        addType(ctx, span, schema.additionalProperties, depth + 1);
      } else {
        span.append(type);
      }
    });
    if (schema.format && types.length === 1) span.append(` (${schema.format})`);
  }
  parts.forEach((part, index) => {
    if (index > 0) span.append(" | ");
    addType(ctx, span, part, depth + 1);
  });
  if (nullable) span.append(span.textContent === "" ? "null" : " | null");
  return span;
}

/// The rules a value must follow, in words: lengths, ranges, patterns, default, examples.
function constraints(schema) {
  const rules = [];
  const range = (low, high, unit) => {
    if (low !== undefined && high !== undefined) rules.push(low === high ? `exactly ${low}${unit}` : `${low} to ${high}${unit}`);
    else if (low !== undefined) rules.push(`at least ${low}${unit}`);
    else if (high !== undefined) rules.push(`at most ${high}${unit}`);
  };
  range(schema.minLength, schema.maxLength, " characters");
  if (schema.maxItems === 0) rules.push("always empty: []");
  else range(schema.minItems, schema.maxItems, " items");
  if (schema.maxProperties === 0) rules.push("always empty: {}");
  else range(schema.minProperties, schema.maxProperties, " fields");
  if (schema.minimum !== undefined && schema.maximum !== undefined) rules.push(`${schema.minimum} to ${schema.maximum}`);
  else if (schema.minimum !== undefined) rules.push(`≥ ${schema.minimum}`);
  else if (schema.maximum !== undefined) rules.push(`≤ ${schema.maximum}`);
  if (typeof schema.exclusiveMinimum === "number") rules.push(`> ${schema.exclusiveMinimum}`);
  if (typeof schema.exclusiveMaximum === "number") rules.push(`< ${schema.exclusiveMaximum}`);
  if (schema.multipleOf !== undefined) rules.push(`a multiple of ${schema.multipleOf}`);
  if (schema.uniqueItems) rules.push("no repeats");
  const nodes = [];
  if (rules.length) nodes.push(rules.join("; "));
  if (schema.pattern) nodes.push(["pattern ", code(schema.pattern)]);
  if (schema.default !== undefined) nodes.push(["default ", code(JSON.stringify(schema.default))]);
  const examples = Array.isArray(schema.examples) ? schema.examples : schema.example !== undefined ? [schema.example] : [];
  if (examples.length) nodes.push([examples.length > 1 ? "examples " : "example ", examples.map((value, index) => [index ? ", " : "", code(JSON.stringify(value))])]);
  if (nodes.length === 0) return null;
  const line = el("p", { class: "rules" });
  nodes.forEach((node, index) => append(line, [index ? "; " : "", node]));
  return line;
}

function enumNode(schema, lead = "One of") {
  const values = Array.isArray(schema.enum) ? schema.enum : null;
  if (!values || values.length === 0) return null;
  return el("p", { class: "enum" }, `${lead}: `, values.map((value, index) => [index ? " " : "", code(JSON.stringify(value), "value")]));
}

function badges(schema) {
  return [
    schema.deprecated ? el("span", { class: "badge warn" }, "deprecated") : null,
    schema.readOnly ? el("span", { class: "badge" }, "read-only") : null,
    schema.writeOnly ? el("span", { class: "badge" }, "write-only") : null,
  ];
}

/// What a schema holds beyond its type: its fields (nested), its items' fields, its
/// alternatives. Null for a plain value.
function schemaDetails(ctx, schema, seen, depth) {
  if (depth > MAX_DEPTH) return el("p", { class: "muted" }, "(nested deeper than shown)");
  const view = expand(ctx, schema, seen);
  if (view.cycle) {
    return el("p", { class: "muted cycle" }, "Recursive: ", typeNode(ctx, { $ref: view.cycle }), " again, as above.");
  }
  const unwrapped = unwrapNullable(view.schema);
  if (unwrapped !== view.schema) return schemaDetails(ctx, unwrapped, view.seen, depth);
  const current = view.schema;
  const parts = [];
  if (current.properties || isObject(current.additionalProperties) || isObject(current.patternProperties)) {
    parts.push(fieldList(ctx, current, view.seen, depth));
  }
  if (current.items !== undefined && isObject(current.items)) {
    const items = schemaDetails(ctx, current.items, view.seen, depth + 1);
    const itemView = unwrapNullable(expand(ctx, current.items, view.seen).schema);
    const itemEnum = enumNode(itemView, "Each one of");
    if (items || itemEnum) parts.push(el("div", { class: "items" }, itemEnum, items ? [el("p", { class: "label" }, "Each item:"), items] : null));
  }
  const alternatives = alternativesOf(current);
  if (alternatives && alternatives.length > 0) {
    const list = el("ul", { class: "alternatives" });
    for (const alternative of alternatives) {
      const altView = unwrapNullable(expand(ctx, alternative, view.seen).schema);
      list.append(el("li", {}, typeNode(ctx, alternative), prose(altView.description), constraints(altView), enumNode(altView), schemaDetails(ctx, alternative, view.seen, depth + 1)));
    }
    parts.push(el("div", { class: "one-of" }, el("p", { class: "label" }, current.anyOf ? "Any of:" : "One of:"), list));
  }
  if (current.not !== undefined && isObject(current.not)) parts.push(el("p", { class: "rules" }, "Not: ", typeNode(ctx, current.not)));
  return parts.length ? el("div", { class: "details" }, parts) : null;
}

function fieldList(ctx, schema, seen, depth) {
  const list = el("ul", { class: "fields" });
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  for (const [name, property] of Object.entries(schema.properties ?? {})) {
    list.append(fieldItem(ctx, name, property, required.has(name), seen, depth));
  }
  for (const [pattern, property] of Object.entries(schema.patternProperties ?? {})) {
    list.append(fieldItem(ctx, `/${pattern}/`, property, false, seen, depth, "any field matching"));
  }
  if (isObject(schema.additionalProperties)) {
    list.append(fieldItem(ctx, "*", schema.additionalProperties, false, seen, depth, "any other field"));
  }
  if (schema.additionalProperties === false && schema.properties) {
    list.append(el("li", { class: "muted note" }, "No other fields."));
  }
  return list;
}

function fieldItem(ctx, name, property, required, seen, depth, what) {
  const view = expand(ctx, property, seen);
  const shown = view.cycle ? {} : unwrapNullable(view.schema);
  const own = isObject(property) ? property : {};
  const item = el("li", { class: "field" });
  item.append(el("div", { class: "field-head" },
    what ? el("span", { class: "muted" }, `${what} `) : null,
    code(name, "name"), " ",
    typeNode(ctx, property), " ",
    required ? el("span", { class: "required" }, "required") : el("span", { class: "optional" }, "optional"),
    badges(shown)));
  append(item, [prose(own.description ?? shown.description), constraints(shown), enumNode(shown), schemaDetails(ctx, property, seen, depth + 1)]);
  return item;
}

/// A schema as the body of a request or response: its type, description, rules and fields.
/// `named: false` leaves out the type line, where a heading already names the schema.
function schemaBlock(ctx, schema, { named = true } = {}) {
  const view = expand(ctx, schema, new Set());
  const shown = view.cycle ? {} : unwrapNullable(view.schema);
  return el("div", { class: "schema" },
    named ? el("p", { class: "schema-type" }, "Schema: ", typeNode(ctx, schema), badges(shown)) : badges(shown),
    prose(shown.description), constraints(shown), enumNode(shown),
    schemaDetails(ctx, schema, new Set(), 0));
}

/// A media type object's examples: `example`, `examples` (each with its summary), else the
/// schema's own example.
function examplesOf(ctx, media) {
  const found = [];
  if (media.example !== undefined) found.push({ title: "Example", value: media.example });
  for (const [name, raw] of Object.entries(isObject(media.examples) ? media.examples : {})) {
    const example = deref(ctx.spec, raw);
    if (example.value !== undefined) found.push({ title: `Example: ${example.summary ?? name}`, value: example.value, description: example.description });
    else if (typeof example.externalValue === "string") found.push({ title: `Example: ${example.summary ?? name}`, value: example.externalValue });
  }
  if (found.length === 0 && isObject(media.schema)) {
    const schema = unwrapNullable(expand(ctx, media.schema, new Set()).schema);
    if (schema.example !== undefined) found.push({ title: "Example", value: schema.example });
    else if (Array.isArray(schema.examples) && schema.examples.length > 0) found.push({ title: "Example", value: schema.examples[0] });
  }
  return found.map(({ title, value, description }) =>
    el("details", { class: "example", open: true },
      el("summary", {}, title),
      prose(description),
      el("pre", {}, code(typeof value === "string" ? value : json(value)))));
}

function contentBlocks(ctx, content) {
  const blocks = [];
  for (const [mediaType, raw] of Object.entries(isObject(content) ? content : {})) {
    const media = isObject(raw) ? raw : {};
    blocks.push(el("div", { class: "media" },
      el("p", { class: "media-type" }, "Content type: ", code(mediaType)),
      media.schema !== undefined ? schemaBlock(ctx, media.schema) : null,
      examplesOf(ctx, media)));
  }
  return blocks;
}

// ---------------------------------------------------------------------------------------------
// Sections of the page.

function overview(ctx) {
  const info = isObject(ctx.spec.info) ? ctx.spec.info : {};
  const section = el("section", { id: "overview", class: "card" },
    el("h1", {}, info.title ?? "API reference"),
    el("p", { class: "muted" },
      info.version ? ["Version ", code(info.version)] : null,
      ctx.spec.openapi ? [" · OpenAPI ", code(ctx.spec.openapi)] : null),
    typeof info.summary === "string" ? el("p", { class: "summary" }, inline(info.summary)) : null,
    prose(info.description));
  const facts = el("dl", { class: "facts" });
  if (isObject(info.license) && info.license.name) facts.append(el("dt", {}, "License"), el("dd", {}, info.license.name));
  if (isObject(info.contact) && (info.contact.name || info.contact.email)) {
    facts.append(el("dt", {}, "Contact"), el("dd", {}, [info.contact.name, info.contact.email].filter(Boolean).join(" ")));
  }
  const servers = Array.isArray(ctx.spec.servers) ? ctx.spec.servers.filter((server) => isObject(server) && server.url) : [];
  if (servers.length) {
    facts.append(el("dt", {}, "Servers"), el("dd", {}, servers.map((server, index) => [index ? ", " : "", code(server.url), server.description ? ` (${server.description})` : ""])));
  }
  if (facts.childNodes.length) section.append(facts);
  return section;
}

function requirementText(requirements) {
  if (!Array.isArray(requirements) || requirements.length === 0) return "none";
  return requirements
    .map((requirement) => (isObject(requirement) && Object.keys(requirement).length > 0 ? Object.keys(requirement).join(" and ") : "none"))
    .join(", or ");
}

function authentication(ctx) {
  const schemes = isObject(ctx.spec.components?.securitySchemes) ? ctx.spec.components.securitySchemes : {};
  const section = el("section", { id: "authentication" }, el("h2", {}, "Authentication"));
  if (Array.isArray(ctx.spec.security)) {
    section.append(el("p", {}, "Unless an operation says otherwise, it needs: ", el("strong", {}, requirementText(ctx.spec.security)), "."));
  }
  const names = Object.keys(schemes);
  if (names.length === 0) section.append(el("p", { class: "muted" }, "The document declares no security schemes."));
  for (const name of names) {
    const scheme = deref(ctx.spec, schemes[name]);
    const facts = el("dl", { class: "facts" });
    const fact = (term, value) => value !== undefined && value !== null && facts.append(el("dt", {}, term), el("dd", {}, value));
    fact("Type", scheme.type ? code(scheme.type) : undefined);
    fact("Scheme", scheme.scheme ? code(scheme.scheme) : undefined);
    fact("Bearer format", scheme.bearerFormat ? code(scheme.bearerFormat) : undefined);
    if (scheme.type === "apiKey") fact("Sent in", [code(scheme.name ?? "?"), ` (${scheme.in ?? "?"})`]);
    if (scheme.type === "http" && String(scheme.scheme).toLowerCase() === "bearer") {
      fact("Header", code("Authorization: Bearer <token>"));
    }
    fact("OpenID Connect", scheme.openIdConnectUrl ? code(scheme.openIdConnectUrl) : undefined);
    if (isObject(scheme.flows)) fact("OAuth 2 flows", Object.keys(scheme.flows).join(", "));
    section.append(el("div", { class: "card", id: ctx.ids("auth", name) }, el("h3", {}, name), facts, prose(scheme.description)));
  }
  return section;
}

/// Names of the schemas that describe the envelope and its error (the document has no other
/// way to say which they are): `Envelope`, `ErrorEnvelope`, `ErrorBody`, `ApiError`, `Error`.
const ENVELOPE_NAME = /^(error)?envelope$|^(api)?error(body|response)?$/i;
/// Success envelopes made per operation (`Envelope_RoomData`, `EnvelopeRoom`): one shows the
/// shape, the others are in the Schemas section.
const ENVELOPE_FAMILY = /^envelope[_-]?./i;

/// The envelope every answer comes in, its error, and the table of error codes.
function envelopeAndErrors(ctx) {
  const schemas = isObject(ctx.spec.components?.schemas) ? ctx.spec.components.schemas : {};
  const section = el("section", { id: "envelope" }, el("h2", {}, "The envelope and errors"));
  const card = (title, ...body) => section.append(el("div", { class: "card" }, el("h3", {}, title), body));
  const names = Object.keys(schemas);
  const family = names.filter((name) => ENVELOPE_FAMILY.test(name) && !ENVELOPE_NAME.test(name));
  if (family.length > 0 && !names.some((name) => /^envelope$/i.test(name))) {
    card(["A successful answer, for example ", schemaLink(ctx, family[0])],
      family.length > 1 ? el("p", { class: "muted" }, "Each operation's answer has an envelope schema of its own, differing in ", code("data"), ` only (${family.length} in all, under Schemas).`) : null,
      schemaBlock(ctx, schemaRef(family[0]), { named: false }));
  }
  for (const name of names.filter((name) => ENVELOPE_NAME.test(name))) {
    card(schemaLink(ctx, name), schemaBlock(ctx, schemaRef(name), { named: false }));
  }
  for (const name of names) {
    const codes = errorCodes(ctx, name, schemas[name]);
    if (codes) card(["Error codes ", el("span", { class: "muted" }, "(", schemaLink(ctx, name), ")")], codes);
  }
  if (section.childNodes.length === 1) section.append(el("p", { class: "muted" }, "The document names no envelope or error schema."));
  return section;
}

function schemaLink(ctx, name) {
  const id = ctx.schemaIds.get(name);
  return id ? el("a", { href: `#${id}` }, name) : name;
}

/// A table of error codes when `schema` is one: a string enum whose name says "code" or whose
/// values look like them (`NOT_FOUND`). Descriptions come from `oneOf` entries
/// (`{ const | enum: [one], description }`) or an `x-enum-descriptions` list.
function errorCodes(ctx, name, schema) {
  if (!isObject(schema)) return null;
  const rows = [];
  if (Array.isArray(schema.oneOf) && schema.oneOf.every((entry) => isObject(entry) && ("const" in entry || (Array.isArray(entry.enum) && entry.enum.length === 1)))) {
    for (const entry of schema.oneOf) rows.push({ value: "const" in entry ? entry.const : entry.enum[0], description: entry.description ?? entry.title });
  } else if (Array.isArray(schema.enum)) {
    const described = schema["x-enum-descriptions"] ?? schema["x-enumDescriptions"];
    schema.enum.forEach((value, index) => {
      const description = Array.isArray(described) ? described[index] : isObject(described) ? described[value] : undefined;
      rows.push({ value, description });
    });
  }
  const codeLike = rows.length > 0 && rows.every((row) => typeof row.value === "string" && /^[A-Z][A-Z0-9_]+$/.test(row.value));
  if (!codeLike || !(/code/i.test(name) || rows.some((row) => row.value === "NOT_FOUND"))) return null;
  if (rows.every((row) => !row.description)) return [prose(schema.description), enumNode(schema, "Codes")];
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "code"), el("th", {}, "meaning"))));
  const body = el("tbody");
  for (const row of rows) body.append(el("tr", {}, el("td", {}, code(row.value)), el("td", {}, prose(row.description) ?? "")));
  table.append(body);
  return [prose(schema.description), el("div", { class: "scroll" }, table)];
}

/// The operations of the document, in its order, with their tag (the first one, else "Other").
function operationsOf(ctx) {
  const operations = [];
  for (const [path, rawItem] of Object.entries(isObject(ctx.spec.paths) ? ctx.spec.paths : {})) {
    const item = deref(ctx.spec, rawItem);
    for (const method of METHODS) {
      if (!isObject(item[method])) continue;
      const operation = item[method];
      const tag = Array.isArray(operation.tags) && operation.tags.length > 0 ? String(operation.tags[0]) : "Other";
      operations.push({ path, method, operation, item, tag });
    }
  }
  return operations;
}

/// Tags in the order the document lists them, then the others as they come, "Other" last.
function groupByTag(ctx, operations) {
  const groups = new Map();
  for (const tag of Array.isArray(ctx.spec.tags) ? ctx.spec.tags : []) {
    if (isObject(tag) && tag.name) groups.set(String(tag.name), { tag, operations: [] });
  }
  for (const entry of operations) {
    if (!groups.has(entry.tag)) groups.set(entry.tag, { tag: { name: entry.tag }, operations: [] });
    groups.get(entry.tag).operations.push(entry);
  }
  const ordered = [...groups.values()].filter((group) => group.operations.length > 0);
  return [...ordered.filter((group) => group.tag.name !== "Other"), ...ordered.filter((group) => group.tag.name === "Other")];
}

/// A path with its `{parameters}` marked; a line may break after any "/".
function pathNode(path) {
  const node = el("code", { class: "path" });
  for (const piece of path.split(/(\{[^}]*\}|\/)/)) {
    if (piece === "/") node.append("/", el("wbr"));
    else if (piece) node.append(piece.startsWith("{") ? el("span", { class: "param" }, piece) : piece);
  }
  return node;
}

function parametersOf(ctx, item, operation) {
  const byKey = new Map();
  for (const raw of [...(Array.isArray(item.parameters) ? item.parameters : []), ...(Array.isArray(operation.parameters) ? operation.parameters : [])]) {
    const parameter = deref(ctx.spec, raw);
    if (parameter.name !== undefined) byKey.set(`${parameter.in}:${parameter.name}`, parameter);
  }
  return [...byKey.values()];
}

function parameterTable(ctx, parameters) {
  const order = { path: 0, query: 1, header: 2, cookie: 3 };
  parameters.sort((a, b) => (order[a.in] ?? 9) - (order[b.in] ?? 9));
  const body = el("tbody");
  for (const parameter of parameters) {
    let schema = parameter.schema;
    if (schema === undefined && isObject(parameter.content)) schema = Object.values(parameter.content)[0]?.schema;
    const shown = unwrapNullable(expand(ctx, schema ?? {}, new Set()).schema);
    body.append(el("tr", { "data-param": parameter.name },
      el("td", {}, code(parameter.name, "name"), parameter.deprecated ? [" ", el("span", { class: "badge warn" }, "deprecated")] : null),
      el("td", {}, parameter.in ?? ""),
      el("td", {}, typeNode(ctx, schema ?? {})),
      el("td", {}, parameter.required ? el("span", { class: "required" }, "required") : el("span", { class: "optional" }, "optional")),
      el("td", {}, prose(parameter.description ?? shown.description), constraints(shown), enumNode(shown),
        parameter.example !== undefined ? el("p", { class: "rules" }, "example ", code(JSON.stringify(parameter.example))) : null)));
  }
  return el("div", { class: "scroll" }, el("table", { class: "params" },
    el("thead", {}, el("tr", {}, ["Name", "In", "Type", "Required", "Description"].map((title) => el("th", {}, title)))),
    body));
}

function statusClass(status) {
  const first = String(status)[0];
  return /[1-5]/.test(first) ? `status s${first}` : "status";
}

function responsesBlock(ctx, responses) {
  const block = el("div", { class: "responses" });
  const statuses = Object.keys(isObject(responses) ? responses : {}).sort((a, b) => {
    const rank = (status) => (status === "default" ? "9" : status.toUpperCase());
    return rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : 0;
  });
  for (const status of statuses) {
    const response = deref(ctx.spec, responses[status]);
    const success = /^[23]/.test(status);
    const details = el("details", { class: "response", "data-status": status, open: success },
      el("summary", {}, el("span", { class: statusClass(status) }, status), " ",
        typeof response.description === "string" ? inline(response.description.replace(/\s+/g, " ")) : ""));
    const headers = Object.entries(isObject(response.headers) ? response.headers : {});
    if (headers.length) {
      const rows = headers.map(([name, raw]) => {
        const header = deref(ctx.spec, raw);
        return el("tr", {}, el("td", {}, code(name, "name")), el("td", {}, typeNode(ctx, header.schema ?? {})), el("td", {}, prose(header.description) ?? ""));
      });
      details.append(el("p", { class: "label" }, "Headers:"), el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["Header", "Type", "Description"].map((title) => el("th", {}, title)))),
        el("tbody", {}, rows))));
    }
    const content = contentBlocks(ctx, response.content);
    if (content.length) append(details, content);
    else details.append(el("p", { class: "muted" }, "No body."));
    block.append(details);
  }
  return block;
}

function operationSection(ctx, entry) {
  const { path, method, operation, item } = entry;
  const section = el("section", { class: "operation card", id: entry.id, "data-method": method.toUpperCase(), "data-path": path });
  section.append(el("h3", {},
    el("span", { class: `method ${method}` }, method.toUpperCase()), " ", pathNode(path), " ",
    el("a", { class: "anchor", href: `#${entry.id}`, "aria-label": `Link to ${method.toUpperCase()} ${path}` }, "#")));
  if (operation.deprecated) section.append(el("p", {}, el("span", { class: "badge warn" }, "deprecated")));
  if (typeof operation.summary === "string") section.append(el("p", { class: "summary" }, inline(operation.summary)));
  append(section, [prose(operation.description)]);
  const security = operation.security ?? ctx.spec.security;
  const meta = el("p", { class: "meta muted" }, "Authentication: ", requirementText(security));
  if (operation.operationId) append(meta, [" · operationId ", code(operation.operationId)]);
  section.append(meta);

  const parameters = parametersOf(ctx, item, operation);
  if (parameters.length) section.append(el("h4", {}, "Parameters"), parameterTable(ctx, parameters));

  if (operation.requestBody !== undefined) {
    const body = deref(ctx.spec, operation.requestBody);
    section.append(el("div", { class: "request-body" },
      el("h4", {}, "Request body ", body.required ? el("span", { class: "required" }, "required") : el("span", { class: "optional" }, "optional")),
      prose(body.description), contentBlocks(ctx, body.content)));
  }
  section.append(el("h4", {}, "Responses"), responsesBlock(ctx, operation.responses));
  return section;
}

function schemasSection(ctx) {
  const schemas = isObject(ctx.spec.components?.schemas) ? ctx.spec.components.schemas : {};
  const section = el("section", { id: "schemas" }, el("h2", {}, "Schemas"));
  for (const name of Object.keys(schemas)) {
    section.append(el("div", { class: "card schema-def", id: ctx.schemaIds.get(name) },
      el("h3", {}, name, " ", el("a", { class: "anchor", href: `#${ctx.schemaIds.get(name)}`, "aria-label": `Link to ${name}` }, "#")),
      schemaBlock(ctx, schemaRef(name), { named: false })));
  }
  return section;
}

/// A path as the contents list shows it: the account's prefix as "…", and a line may break
/// after any "/".
function tocPath(path) {
  const short = path.replace(/^\/v1\/accounts\/\{accountId\}(?=\/)/, "…");
  const span = el("span", { class: "toc-path", title: path });
  short.split("/").forEach((piece, index) => {
    if (index > 0) span.append("/", el("wbr"));
    span.append(piece);
  });
  return span;
}

function tableOfContents(ctx, groups) {
  const list = el("ul");
  const link = (id, ...text) => el("li", {}, el("a", { href: `#${id}` }, text));
  list.append(link("overview", "Overview"), link("authentication", "Authentication"), link("envelope", "The envelope and errors"));
  for (const group of groups) {
    const operations = el("ul");
    for (const entry of group.operations) {
      operations.append(el("li", {}, el("a", { href: `#${entry.id}` },
        el("span", { class: `method ${entry.method}` }, entry.method.toUpperCase()), " ",
        tocPath(entry.path))));
    }
    list.append(el("li", {}, el("a", { href: `#${group.id}` }, group.tag.name), operations));
  }
  if (ctx.schemaIds.size) list.append(link("schemas", "Schemas"));
  return [el("h2", { class: "visually-hidden" }, "Contents"), list];
}

function render(spec) {
  if (!isObject(spec)) throw new Error("the document is not a JSON object");
  const ids = makeIds();
  for (const fixed of ["overview", "authentication", "envelope", "schemas", "main", "toc", "status"]) ids("", fixed);
  const ctx = { spec, ids, schemaIds: new Map() };
  for (const name of Object.keys(isObject(spec.components?.schemas) ? spec.components.schemas : {})) {
    ctx.schemaIds.set(name, ids("schema", name));
  }
  const operations = operationsOf(ctx);
  for (const entry of operations) entry.id = ids("op", entry.operation.operationId ?? `${entry.method}-${entry.path}`);
  const groups = groupByTag(ctx, operations);
  for (const group of groups) group.id = ids("tag", group.tag.name);

  const main = document.getElementById("main");
  main.replaceChildren(overview(ctx), authentication(ctx), envelopeAndErrors(ctx));
  for (const group of groups) {
    main.append(el("section", { class: "tag", id: group.id },
      el("h2", {}, group.tag.name), prose(group.tag.description),
      group.operations.map((entry) => operationSection(ctx, entry))));
  }
  if (ctx.schemaIds.size) main.append(schemasSection(ctx));
  document.getElementById("toc").replaceChildren(...tableOfContents(ctx, groups));
  const title = spec.info?.title;
  if (title) document.title = `${title} API reference`;
}

async function start() {
  const main = document.getElementById("main");
  const url = main.dataset.spec || "/v1/openapi.json";
  main.dataset.state = "loading";
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered ${response.status} ${response.statusText}`);
    render(await response.json());
    main.dataset.state = "ready";
    // The page was empty when the browser looked for the fragment's target: look again.
    if (location.hash.length > 1) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  } catch (error) {
    main.dataset.state = "error";
    const status = document.getElementById("status") ?? main.appendChild(el("p", { id: "status", role: "status" }));
    status.className = "error";
    status.textContent = `Could not show the API reference: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", start);
