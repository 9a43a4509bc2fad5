// The sandbox's globals (console, fetch) and the bindings handed to the workflow, built on the
// two primitives the engine passes in (`log`, `host`); returns what the engine calls back
// (`invoke`, `settle`). Runs before any customer code, so it keeps its own
// copies of the built-ins it relies on: customers may replace globals, but only in their own
// run, and never in a way that makes the engine's result anything but JSON.
(function (engine) {
  "use strict";

  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const toText = String;
  const toNumber = Number;
  const NativePromise = Promise;
  const isError = (value) => value instanceof Error;
  const objectKeys = Object.keys;
  const objectTag = Object.prototype.toString;
  const freeze = Object.freeze;
  const createBare = Object.create;

  // What console prints for one argument: strings as they are, errors as "Name: message",
  // everything else as JSON where possible.
  function show(value) {
    if (typeof value === "string") return value;
    if (isError(value)) return toText(value);
    try {
      const json = stringify(value);
      if (json !== undefined) return json;
    } catch {
      // Cycles and BigInts cannot be JSON; fall through to String(value).
    }
    try {
      return toText(value);
    } catch {
      return objectTag.call(value);
    }
  }

  // Once the engine's log buffer is full it says so, and formatting stops costing anything.
  let logsFull = false;
  function logger(level) {
    return function (...values) {
      if (logsFull) return;
      let line = "";
      for (let i = 0; i < values.length; i++) {
        line += (i === 0 ? "" : " ") + show(values[i]);
      }
      logsFull = !engine.log(level, line);
    };
  }

  globalThis.console = {
    log: logger("log"),
    info: logger("info"),
    warn: logger("warn"),
    error: logger("error"),
    debug: logger("log"),
  };

  // Every binding returns a promise. The engine queues the request and, as soon as the code
  // that made it yields, asks the host and calls `settle` with the answer.
  const waiting = createBare(null);
  function callHost(name, args) {
    return new NativePromise((resolve, reject) => {
      waiting[engine.host(name, stringify(args))] = { resolve, reject };
    });
  }

  function settle(id, ok, payload) {
    const call = waiting[id];
    delete waiting[id];
    if (!ok) {
      call.reject(new Error(payload));
      return;
    }
    try {
      call.resolve(parse(payload));
    } catch (error) {
      call.reject(error);
    }
  }

  function fetchRequest(init) {
    const options = init === undefined || init === null ? {} : init;
    const method = options.method === undefined ? "GET" : toText(options.method).toUpperCase();
    const headers = {};
    if (options.headers !== undefined && options.headers !== null) {
      if (typeof options.headers !== "object") {
        throw new TypeError("fetch headers must be an object of strings");
      }
      for (const name of objectKeys(options.headers)) {
        headers[name] = toText(options.headers[name]);
      }
    }
    const body = options.body === undefined ? null : options.body;
    if (body !== null && typeof body !== "string") {
      throw new TypeError("fetch body must be a string: use JSON.stringify(body)");
    }
    return { method, headers, body };
  }

  function fetchResponse(url, reply) {
    const headers = createBare(null);
    const replyHeaders = reply.headers || {};
    for (const name of objectKeys(replyHeaders)) {
      headers[toText(name).toLowerCase()] = toText(replyHeaders[name]);
    }
    const status = toNumber(reply.status);
    const body = reply.body === undefined || reply.body === null ? "" : toText(reply.body);
    return freeze({
      ok: status >= 200 && status < 300,
      status,
      statusText: reply.statusText === undefined ? "" : toText(reply.statusText),
      url,
      headers: freeze({
        get(name) {
          const value = headers[toText(name).toLowerCase()];
          return value === undefined ? null : value;
        },
        has(name) {
          return headers[toText(name).toLowerCase()] !== undefined;
        },
      }),
      text: () => NativePromise.resolve(body),
      json: () => new NativePromise((resolve) => resolve(parse(body))),
    });
  }

  globalThis.fetch = async function fetch(resource, init) {
    const url = toText(resource);
    const reply = await callHost("fetch", [url, fetchRequest(init)]);
    return fetchResponse(url, reply);
  };

  const bindings = freeze({
    store: freeze({
      get: (storeName, key) => callHost("store.get", [storeName, key]),
      getAll: (storeName) => callHost("store.getAll", [storeName]),
    }),
    room: freeze({
      get: () => callHost("room.get", []),
      getUsers: () => callHost("room.getUsers", []),
    }),
    files: freeze({
      list: () => callHost("files.list", []),
    }),
  });

  // Waits for the module's top-level code, calls its default export and settles with the
  // JSON text of what it returned ("null" for undefined).
  async function invoke(evaluation, namespace, event) {
    await evaluation;
    const main = namespace.default;
    if (typeof main !== "function") {
      throw new TypeError("the default export is not a function");
    }
    const value = await main(event, bindings);
    const json = stringify(value);
    return json === undefined ? "null" : json;
  }

  return { invoke, settle };
});
