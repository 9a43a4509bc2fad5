// A small typed event emitter. A listener that throws does not stop the others (or the SDK):
// the error is reported asynchronously, like an uncaught error in an event handler.

export type Listener<A extends unknown[]> = (...args: A) => void;

export class Emitter<Events extends { [name: string]: unknown[] }> {
  /** Each event's listeners, stored under it: `emit` calls them with that event's arguments. */
  private readonly listeners = new Map<keyof Events, Set<Listener<never>>>();

  on<E extends keyof Events>(event: E, listener: Listener<Events[E]>): () => void {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }

  once<E extends keyof Events>(event: E, listener: Listener<Events[E]>): () => void {
    const wrapper = ((...args: Events[E]) => {
      off();
      listener(...args);
    }) as Listener<Events[E]> & { original?: Listener<Events[E]> };
    wrapper.original = listener;
    const off = this.on(event, wrapper);
    return off;
  }

  off<E extends keyof Events>(event: E, listener: Listener<Events[E]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    if (!set.delete(listener)) {
      for (const candidate of set) {
        if ((candidate as { original?: unknown }).original === listener) {
          set.delete(candidate);
          break;
        }
      }
    }
    if (set.size === 0) this.listeners.delete(event);
  }

  emit<E extends keyof Events>(event: E, ...args: Events[E]): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const listener of [...set] as Listener<Events[E]>[]) {
      try {
        listener(...args);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  listenerCount(event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0;
  }

  clear(): void {
    this.listeners.clear();
  }
}
