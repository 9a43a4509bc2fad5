// client.storage: the room's files, over HTTP (not the socket), authenticated with the user's
// JWT, which names the account, the room and the uploader. Also the `fileUploaded` and
// `fileDeleted` events of the room's socket.

import { Emitter } from './emitter.js';
import { CollabKitError } from './errors.js';
import { claimsOf } from './token.js';
import type { StorageFile } from '@collab-kit/utils';

export interface StorageEvents {
  [name: string]: unknown[];
  /** A file was uploaded to the room (by anyone, this client included). */
  fileUploaded: [StorageFile];
  /** A file of the room was deleted. */
  fileDeleted: [{ key: string; file: StorageFile }];
}

export type StorageEventName = 'fileUploaded' | 'fileDeleted';

/** What `client.storage` needs of the client. */
export interface StorageContext {
  serverUrl: string;
  authToken: string;
}

export class Storage {
  private readonly emitter = new Emitter<StorageEvents>();
  private readonly base: string;
  private readonly accountId: string | undefined;

  constructor(private readonly context: StorageContext) {
    this.base = context.serverUrl.replace(/\/+$/, '');
    this.accountId = claimsOf(context.authToken)?.accountId;
  }

  /** Uploads a file (a `Blob` or `File`) to the room as this user: `{ key, url }`. */
  async upload({ file, filename }: { file: Blob; filename?: string }): Promise<{ key: string; url: string }> {
    if (!(file instanceof Blob)) {
      throw new CollabKitError('VALIDATION_ERROR', 'file must be a Blob or File', { field: 'file', method: 'storage.upload' });
    }
    const name = filename ?? (typeof (file as File).name === 'string' && (file as File).name !== '' ? (file as File).name : 'file');
    const form = new FormData();
    form.append('file', file, name);
    const data = await this.call('storage.upload', 'POST', '/upload', { body: form });
    return data.file as { key: string; url: string };
  }

  /** The public URL of a file (no request is made). */
  getUrl({ key }: { key: string }): string {
    const path = key.split('/').map(encodeURIComponent).join('/');
    return `${this.accountBase('storage.getUrl')}/storage/${path}`;
  }

  /** The room's files, newest first; `mimeType` (one or several, `image/` a category) and `userId` filter. */
  async getAll({ mimeType, userId }: { mimeType?: string | string[]; userId?: string } = {}): Promise<StorageFile[]> {
    const query = new URLSearchParams();
    for (const type of mimeType === undefined ? [] : Array.isArray(mimeType) ? mimeType : [mimeType]) {
      query.append('mimeType', type);
    }
    if (userId !== undefined) query.set('userId', userId);
    const search = query.size > 0 ? `?${query}` : '';
    const data = await this.call('storage.getAll', 'GET', `/files${search}`, {});
    return data.files as StorageFile[];
  }

  /** Deletes a file of the room. */
  async delete({ key }: { key: string }): Promise<void> {
    await this.call('storage.delete', 'DELETE', '/upload', {
      body: JSON.stringify({ key }),
      headers: { 'content-type': 'application/json' },
    });
  }

  on<E extends StorageEventName>(event: E, callback: (...args: StorageEvents[E]) => void): () => void {
    return this.emitter.on(event, callback);
  }

  once<E extends StorageEventName>(event: E, callback: (...args: StorageEvents[E]) => void): () => void {
    return this.emitter.once(event, callback);
  }

  off<E extends StorageEventName>(event: E, callback: (...args: StorageEvents[E]) => void): void {
    this.emitter.off(event, callback);
  }

  /** @internal A `fileUploaded` or `fileDeleted` event of the socket. */
  handle(event: StorageEventName, data: { file: StorageFile; key?: string }): void {
    if (event === 'fileUploaded') this.emitter.emit('fileUploaded', data.file);
    else this.emitter.emit('fileDeleted', { key: data.key ?? data.file.key, file: data.file });
  }

  private accountBase(method: string): string {
    if (!this.accountId) {
      throw new CollabKitError('VALIDATION_ERROR', 'authToken does not name an account', { field: 'authToken', method });
    }
    return `${this.base}/v1/accounts/${encodeURIComponent(this.accountId)}`;
  }

  /** One REST call: the envelope's `data`, or its error as a CollabKitError. */
  private async call(
    method: string,
    verb: string,
    path: string,
    init: { body?: BodyInit; headers?: Record<string, string> },
  ): Promise<Record<string, unknown>> {
    const url = `${this.accountBase(method)}${path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: verb,
        ...(init.body !== undefined ? { body: init.body } : {}),
        headers: { ...init.headers, authorization: `Bearer ${this.context.authToken}` },
      });
    } catch (cause) {
      throw new CollabKitError('DISCONNECTED', `The server could not be reached: ${String(cause)}`, { method, cause });
    }
    let envelope: { success?: boolean; data?: Record<string, unknown>; error?: { code?: string; message?: string; field?: string } };
    try {
      envelope = await response.json();
    } catch {
      throw new CollabKitError('INTERNAL_ERROR', `Unexpected answer (HTTP ${response.status})`, { method });
    }
    if (!response.ok || envelope.success !== true) {
      const error = envelope.error ?? {};
      throw new CollabKitError(
        (error.code ?? 'INTERNAL_ERROR') as CollabKitError['code'],
        error.message ?? `HTTP ${response.status}`,
        { ...(error.field !== undefined ? { field: error.field } : {}), method },
      );
    }
    return envelope.data ?? {};
  }
}
