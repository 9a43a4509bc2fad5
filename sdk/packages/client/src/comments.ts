// `client.comments`: threads of comments in the room (see docs/comments.md).

import { Emitter } from './emitter.js';

export interface CommentsHost {
  request<T>(method: string, params?: unknown, options?: { retry?: boolean }): Promise<T>;
}

export class Comments {
  private readonly events = new Emitter<{ [name: string]: [any] }>();

  constructor(private readonly host: CommentsHost) {}

  on(event: string, callback: (data: any) => void): () => void {
    return this.events.on(event, callback);
  }

  off(event: string, callback: (data: any) => void): void {
    this.events.off(event, callback);
  }

  handle(name: string, data: any): void {
    void this.host;
    this.events.emit(name, data);
  }
}
