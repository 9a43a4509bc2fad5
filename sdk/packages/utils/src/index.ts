// @collab-kit/utils: the types CollabKit's objects have everywhere (REST, socket, webhooks),
// and defineStores, which types and checks the application's store schemas.

export type * from './types.js';
export {
  defineStores,
  checkSchema,
  checkStoreName,
  checkKey,
  checkSetValue,
  checkUpdateValue,
  SchemaValidationError,
  MAX_NAME_CHARS,
  MAX_KEY_CHARS,
  MAX_FIELDS,
} from './stores.js';
export type {
  FieldType,
  FieldDefinition,
  StoreSchema,
  StoresDefinition,
  FieldValue,
  RequiredFields,
  PresentFields,
  StoreInput,
  StorePatch,
  StoreValue,
} from './stores.js';
