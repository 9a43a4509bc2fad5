// Store schemas: `defineStores`, the TypeScript types it infers, and the checks the server
// applies to every write (docs/stores.md), so that the SDK refuses a bad write before sending.

export type FieldType = 'string' | 'number' | 'boolean';

/** One field of a store: `{ type: 'string', required: true }`, `{ type: 'boolean', default: false }`. */
export interface FieldDefinition {
  readonly type: FieldType;
  /** The field must be present in every entry (default `false`). */
  readonly required?: boolean;
  /** Filled in when a `set` leaves the field out. Of the field's type. */
  readonly default?: string | number | boolean;
}

/** A store's fields, by name. */
export type StoreSchema = { readonly [field: string]: FieldDefinition };

/** Every store of an application, by name: what `defineStores` takes. */
export type StoresDefinition = { readonly [store: string]: StoreSchema };

/** The TypeScript type of one field. */
export type FieldValue<F> = F extends { readonly type: 'string' }
  ? string
  : F extends { readonly type: 'number' }
    ? number
    : F extends { readonly type: 'boolean' }
      ? boolean
      : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** Fields a `set` must give: required and without a default. */
export type RequiredFields<S> = {
  [K in keyof S]: S[K] extends { readonly required: true }
    ? S[K] extends { readonly default: string | number | boolean }
      ? never
      : K
    : never;
}[keyof S];

/** Fields every stored entry has: required ones, and those with a default. */
export type PresentFields<S> = {
  [K in keyof S]: S[K] extends { readonly required: true }
    ? K
    : S[K] extends { readonly default: string | number | boolean }
      ? K
      : never;
}[keyof S];

/** What `set` takes: required fields (without a default) must be given, the others may be. */
export type StoreInput<S> = Simplify<
  { -readonly [K in RequiredFields<S>]: FieldValue<S[K]> } & {
    -readonly [K in Exclude<keyof S, RequiredFields<S>>]?: FieldValue<S[K]>;
  }
>;

/**
 * What `update` takes: some fields. `null` removes a field; only fields that are not required
 * (or that have a default to fall back on) can be removed.
 */
export type StorePatch<S> = Simplify<
  { -readonly [K in RequiredFields<S>]?: FieldValue<S[K]> } & {
    -readonly [K in Exclude<keyof S, RequiredFields<S>>]?: FieldValue<S[K]> | null;
  }
>;

/** An entry as stored and read back: required and defaulted fields are always there. */
export type StoreValue<S> = Simplify<
  { -readonly [K in PresentFields<S>]: FieldValue<S[K]> } & {
    -readonly [K in Exclude<keyof S, PresentFields<S>>]?: FieldValue<S[K]>;
  }
>;

// A field whose default is not of its type is turned into `never` so that defineStores refuses it.
type CheckedField<F> = F extends { readonly default: infer D }
  ? [D] extends [FieldValue<F>]
    ? F
    : { readonly type: F extends { readonly type: infer T } ? T : never; readonly required?: boolean; readonly default: FieldValue<F> }
  : F;

type CheckedStores<D> = { [N in keyof D]: { [K in keyof D[N]]: CheckedField<D[N][K]> } };

/** Longest store name, field name (characters). */
export const MAX_NAME_CHARS = 64;
/** Longest entry key (characters). */
export const MAX_KEY_CHARS = 256;
/** Most fields a schema may have (the server's default `stores.max_fields`). */
export const MAX_FIELDS = 64;

/** Why a schema or a write was refused: the path at fault, as the server names it. */
export class SchemaValidationError extends Error {
  readonly code = 'VALIDATION_ERROR';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'SchemaValidationError';
  }
}

/**
 * Declares the application's stores. The result is the same object, typed: pass it to
 * `new CollabKitClient({ stores })` to get `client.stores.<name>` with values typed from the
 * schema. Throws a `SchemaValidationError` for a schema the server would refuse.
 *
 * ```ts
 * const stores = defineStores({
 *   tasks: { title: { type: 'string', required: true },
 *            completed: { type: 'boolean', default: false },
 *            assignee: { type: 'string' } },
 * });
 * ```
 */
export function defineStores<const D extends StoresDefinition>(stores: D & CheckedStores<D>): D {
  if (!isPlainObject(stores)) {
    throw new SchemaValidationError('schemas', 'defineStores takes an object of stores');
  }
  for (const [name, schema] of Object.entries(stores)) {
    checkSchema(name, schema);
  }
  return stores;
}

/** Throws unless `schema` is a store schema the server accepts under `name`. */
export function checkSchema(name: string, schema: unknown): asserts schema is StoreSchema {
  const path = `schemas.${name}`;
  if (!isIdentifier(name, true)) {
    throw new SchemaValidationError(
      path,
      `${path}: store names are 1 to ${MAX_NAME_CHARS} characters: a letter or _, then letters, digits, _ or -`,
    );
  }
  if (!isPlainObject(schema)) {
    throw new SchemaValidationError(path, `${path} must be an object of fields`);
  }
  const fields = Object.entries(schema);
  if (fields.length === 0 || fields.length > MAX_FIELDS) {
    throw new SchemaValidationError(path, `${path} must have 1 to ${MAX_FIELDS} fields`);
  }
  for (const [field, spec] of fields) {
    const fieldPath = `${path}.${field}`;
    if (!isIdentifier(field, false)) {
      throw new SchemaValidationError(
        fieldPath,
        `field names must be 1 to ${MAX_NAME_CHARS} letters, digits or _, not starting with a digit`,
      );
    }
    if (!isPlainObject(spec)) {
      throw new SchemaValidationError(fieldPath, `${fieldPath} must be an object with a type`);
    }
    const unknown = Object.keys(spec).find((k) => !['type', 'required', 'default'].includes(k));
    if (unknown !== undefined) {
      throw new SchemaValidationError(
        `${fieldPath}.${unknown}`,
        `${fieldPath}.${unknown} is not a schema property (type, required, default)`,
      );
    }
    if (spec.type !== 'string' && spec.type !== 'number' && spec.type !== 'boolean') {
      throw new SchemaValidationError(
        `${fieldPath}.type`,
        `${fieldPath}.type must be "string", "number" or "boolean"`,
      );
    }
    if (spec.required !== undefined && spec.required !== null && typeof spec.required !== 'boolean') {
      throw new SchemaValidationError(`${fieldPath}.required`, `${fieldPath}.required must be true or false`);
    }
    if (spec.default !== undefined && spec.default !== null && !accepts(spec.type, spec.default)) {
      throw new SchemaValidationError(`${fieldPath}.default`, `${fieldPath}.default must be a ${spec.type}`);
    }
  }
}

/** Throws unless `store` is a valid store name (field `store`). */
export function checkStoreName(store: string): void {
  if (typeof store !== 'string' || !isIdentifier(store, true)) {
    throw new SchemaValidationError(
      'store',
      `store must be 1 to ${MAX_NAME_CHARS} characters: a letter or _, then letters, digits, _ or -`,
    );
  }
}

/** Throws unless `key` is a valid entry key: 1 to 256 characters, no control characters. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string') {
    throw new SchemaValidationError('key', 'key must be a string');
  }
  const chars = [...key];
  if (chars.length === 0 || chars.length > MAX_KEY_CHARS || chars.some(isControl)) {
    throw new SchemaValidationError(
      'key',
      `key must be 1 to ${MAX_KEY_CHARS} characters without control characters`,
    );
  }
}

/**
 * Checks a whole value for `set` and returns it as the server will store it: only the schema's
 * fields, each of its type, `null` meaning absent, required fields present, defaults filled in.
 */
export function checkSetValue(schema: StoreSchema, value: unknown): Record<string, unknown> {
  const given = checkFields(schema, value);
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const v = given[name];
    if (v !== undefined && v !== null) {
      out[name] = v;
    } else if (spec.default !== undefined && spec.default !== null) {
      out[name] = spec.default;
    } else if (spec.required) {
      throw new SchemaValidationError(`value.${name}`, `value.${name} is required`);
    }
  }
  return out;
}

/**
 * Checks a partial value for `update`: only the schema's fields, each of its type or `null`
 * (which removes it); a required field without a default cannot be removed. Whether the merged
 * entry is complete is for the server to say (it alone knows the entry).
 */
export function checkUpdateValue(schema: StoreSchema, value: unknown): Record<string, unknown> {
  const given = checkFields(schema, value);
  for (const [name, v] of Object.entries(given)) {
    const spec = schema[name]!;
    if (v === null && spec.required && (spec.default === undefined || spec.default === null)) {
      throw new SchemaValidationError(`value.${name}`, `value.${name} is required`);
    }
  }
  return given;
}

function checkFields(schema: StoreSchema, value: unknown): Record<string, unknown> {
  if (!isPlainObject(value)) {
    throw new SchemaValidationError('value', 'value must be an object');
  }
  for (const [name, v] of Object.entries(value)) {
    const path = `value.${name}`;
    const spec = Object.hasOwn(schema, name) ? schema[name] : undefined;
    if (spec === undefined) {
      throw new SchemaValidationError(path, `${path} is not a field of this store`);
    }
    // `undefined` is left out by JSON: the same as absent.
    if (v !== null && v !== undefined && !accepts(spec.type, v)) {
      throw new SchemaValidationError(path, `${path} must be a ${spec.type}`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(value)) {
    if (v !== undefined) out[name] = v;
  }
  return out;
}

function accepts(type: FieldType, value: unknown): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    // JSON has no NaN or Infinity: JSON.stringify would silently turn them into null.
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'boolean':
      return typeof value === 'boolean';
  }
}

function isIdentifier(text: string, allowDash: boolean): boolean {
  const pattern = allowDash ? /^[A-Za-z_][A-Za-z0-9_-]*$/ : /^[A-Za-z_][A-Za-z0-9_]*$/;
  return text.length <= MAX_NAME_CHARS && pattern.test(text);
}

// Rust's char::is_control: the Unicode category Cc.
function isControl(char: string): boolean {
  const code = char.codePointAt(0)!;
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
