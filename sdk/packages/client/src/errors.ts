// The one error type the SDK rejects with: a server error (its documented code, message and
// field) or a client-side one (NOT_CONNECTED, DISCONNECTED, TIMEOUT, ...).

import type { CollabKitErrorBody, CollabKitErrorCode } from '@collab-kit/utils';

export class CollabKitError extends Error {
  /** A server code (`VALIDATION_ERROR`, `NOT_FOUND`, ...) or a client one (`TIMEOUT`, ...). */
  readonly code: CollabKitErrorCode;
  /** The offending field of a `VALIDATION_ERROR` (`value.title`, `key`, ...). */
  readonly field?: string;
  /** The request's method (`stores.set`, ...), when the error answers a request. */
  readonly method?: string;

  constructor(
    code: CollabKitErrorCode,
    message: string,
    extra: { field?: string; method?: string; cause?: unknown } = {},
  ) {
    // `cause`: the server's own error behind an SDK one (why a connection was refused).
    super(message, extra.cause !== undefined ? { cause: extra.cause } : undefined);
    this.name = 'CollabKitError';
    this.code = code;
    if (extra.field !== undefined) this.field = extra.field;
    if (extra.method !== undefined) this.method = extra.method;
  }

  static fromBody(body: CollabKitErrorBody, method?: string): CollabKitError {
    return new CollabKitError(body.code, body.message, {
      ...(body.field !== undefined ? { field: body.field } : {}),
      ...(method !== undefined ? { method } : {}),
    });
  }
}
