// Lists the server answers a page at a time (users, a thread's comments): `hasMore` and an
// opaque string `cursor` to ask for the next page with. The SDK follows them itself.

import { CollabKitError } from './errors.js';

/** What each page of a cursor-paged list carries besides its items. */
export interface CursorPage {
  /** Absent from servers that do not page: everything is in this answer. */
  hasMore?: boolean;
  cursor?: string | null;
}

/**
 * Calls `fetch(cursor)` for each further page after `first` while the server says there are
 * more, handing every page (`first` included) to `take`. A cursor that is not a string or
 * does not move is a server bug: it fails rather than loop for ever.
 */
export async function followPages<P extends CursorPage>(
  method: string,
  first: P,
  fetch: (after: string) => Promise<P>,
  take: (page: P) => void,
): Promise<void> {
  let page = first;
  let after: string | undefined;
  take(page);
  while (page.hasMore) {
    const cursor = page.cursor;
    if (typeof cursor !== 'string' || cursor === after) {
      const message = `Unexpected ${method} answer: hasMore with an unusable cursor ${JSON.stringify(cursor)}`;
      throw new CollabKitError('INTERNAL_ERROR', message, { method });
    }
    after = cursor;
    page = await fetch(cursor);
    take(page);
  }
}
