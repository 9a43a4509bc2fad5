// The bindings and globals of a run, made in JavaScript over two host functions: `enqueue`
// (a binding call, answered later through `settle`) and `print` (a console line). Evaluated
// once per run, in the run's fresh context; it returns what the engine needs.
(function (enqueue, print, maxLine) {
  "use strict";
  const pending = new Map();
  let nextCall = 0;

  function call(name, args) {
    return new Promise((resolve, reject) => {
      const id = nextCall++;
      pending.set(id, { resolve, reject });
      enqueue(id, name, JSON.stringify(args.map((arg) => (arg === undefined ? null : arg))));
    });
  }

  function settle(id, ok, payload) {
    const waiter = pending.get(id);
    pending.delete(id);
    if (ok) waiter.resolve(JSON.parse(payload));
    else waiter.reject(new Error(payload));
  }

  function text(value) {
    if (typeof value === "string") return value;
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json;
    } catch (_) {
      // Cycles, BigInt: as String() shows them.
    }
    return String(value);
  }

  // Out of memory, QuickJS may fail to make even its error and throw `null`: then a small
  // allocation fails too — at once, before queued jobs run and free what they hold.
  let memoryRanOut = false;
  function outOfMemory() {
    try {
      return "x".repeat(1 << 16).length === 0;
    } catch (_) {
      return true;
    }
  }

  function describe(error) {
    if (error === null && (memoryRanOut || outOfMemory())) return "InternalError: out of memory";
    if (error instanceof Error) return `${error.name}: ${error.message}`;
    return text(error);
  }

  function logger(level) {
    return (...args) => {
      const line = args.map(text).join(" ");
      print(level, line.length > maxLine ? line.slice(0, maxLine) : line);
    };
  }

  class Headers {
    constructor(fields) {
      this.fields = {};
      for (const name of Object.keys(fields || {})) this.fields[name.toLowerCase()] = String(fields[name]);
    }
    get(name) {
      const value = this.fields[String(name).toLowerCase()];
      return value === undefined ? null : value;
    }
    has(name) {
      return String(name).toLowerCase() in this.fields;
    }
  }

  function fetch(url, init) {
    const options = init || {};
    const body = options.body === undefined ? null : options.body;
    if (body !== null && typeof body !== "string") {
      return Promise.reject(new TypeError("fetch: body must be a string (use JSON.stringify)"));
    }
    const headers = {};
    for (const name of Object.keys(options.headers || {})) headers[name] = String(options.headers[name]);
    const request = { method: options.method === undefined ? null : options.method, headers, body };
    return call("fetch", [String(url), request]).then((answer) => ({
      ok: answer.status >= 200 && answer.status < 300,
      status: answer.status,
      statusText: answer.statusText,
      url: answer.url,
      headers: new Headers(answer.headers),
      text: async () => answer.body,
      json: async () => JSON.parse(answer.body),
    }));
  }

  const bindings = {
    store: {
      get: (storeName, key) => call("store.get", [storeName, key]),
      getAll: (storeName) => call("store.getAll", [storeName]),
    },
    room: {
      get: () => call("room.get", []),
      getUsers: () => call("room.getUsers", []),
    },
    files: {
      list: () => call("files.list", []),
    },
  };

  async function invoke(main, event) {
    try {
      if (typeof main !== "function") {
        return { ok: false, value: "TypeError: the default export is not a function" };
      }
      const running = main(event, bindings);
      memoryRanOut = outOfMemory();
      const json = JSON.stringify(await running);
      return { ok: true, value: json === undefined ? "null" : json };
    } catch (error) {
      return { ok: false, value: describe(error) };
    }
  }

  globalThis.console = {
    log: logger("log"),
    info: logger("info"),
    warn: logger("warn"),
    error: logger("error"),
    debug: logger("log"),
  };
  globalThis.fetch = fetch;
  return { invoke, settle, describe };
})
