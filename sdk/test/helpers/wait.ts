// Waiting in tests: every wait has a time limit and says what it waited for.

export async function withTimeout<T>(promise: Promise<T>, ms: number, label: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms waiting for ${label}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves with the arguments of the next call of a subscription (that matches `filter`). */
export function next<A extends unknown[]>(
  subscribe: (callback: (...args: A) => void) => () => void,
  label: string,
  options: { ms?: number; filter?: (...args: A) => boolean } = {},
): Promise<A> {
  let off: (() => void) | undefined;
  const promise = new Promise<A>((resolve) => {
    off = subscribe((...args: A) => {
      if (options.filter && !options.filter(...args)) return;
      off?.();
      resolve(args);
    });
  });
  return withTimeout(promise, options.ms ?? 5_000, label).finally(() => off?.());
}

/** Polls `check` until it holds. */
export async function eventually(check: () => boolean | Promise<boolean>, label: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${label}`);
    await sleep(20);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Records every call of a subscription, and waits for calls that match. */
export class Recorder<A extends unknown[]> {
  readonly calls: A[] = [];
  private readonly waiters: { predicate: (calls: A[]) => boolean; resolve: () => void }[] = [];
  readonly off: () => void;
  /** The recording callback, for APIs that take one without returning an unsubscribe. */
  readonly callback = (...args: A): void => {
    this.calls.push(args);
    for (const waiter of [...this.waiters]) {
      if (waiter.predicate(this.calls)) {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };

  constructor(subscribe?: (callback: (...args: A) => void) => () => void) {
    this.off = subscribe ? subscribe(this.callback) : () => {};
  }

  /** Resolves once `predicate(calls)` holds. */
  until(predicate: (calls: A[]) => boolean, label: string, ms = 5_000): Promise<void> {
    if (predicate(this.calls)) return Promise.resolve();
    const promise = new Promise<void>((resolve) => this.waiters.push({ predicate, resolve }));
    return withTimeout(promise, ms, label);
  }

  /** Resolves with the first recorded call (from now on, or already recorded) that matches. */
  async find(match: (...args: A) => boolean, label: string, ms = 5_000): Promise<A> {
    await this.until((calls) => calls.some((c) => match(...c)), label, ms);
    return this.calls.find((c) => match(...c))!;
  }

  clear(): void {
    this.calls.length = 0;
  }
}
