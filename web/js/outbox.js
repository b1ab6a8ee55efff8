// Commands made while the socket is down (issue 14, point 9). The connection (net.js) keeps
// every command that has no answer yet, with its id; on reconnect it sends them again, in the
// order they were made, after the hello — the server reads them only once its catch-up is sent,
// and a command id it already logged is answered with the original seq, so each lands once.
//
// This module says how many are waiting (the connection pill), keeps them over a reload of the
// tab (sessionStorage, per media item and user) and asks before the tab is closed with commands
// that never reached the server. The functions at the top are pure (tests/web/js/outbox.test.mjs).

const KEY_PREFIX = "masklog.outbox:";

/** The storage key of a media item's waiting commands. */
export function queueKey(media) {
  return `${KEY_PREFIX}${media}`;
}

/** What the connection pill says: {text, look, title}. `waiting`: commands without an answer. */
export function connectionText(status, waiting = 0) {
  const [text, look] = {
    open: ["connected", "connected"],
    connecting: ["connecting…", "reconnecting"],
    reconnecting: ["reconnecting…", "reconnecting"],
    closed: ["offline", "offline"],
  }[status] ?? ["offline", "offline"];
  if (status === "open" || !waiting) return { text, look, title: status === "open" ? "connected: changes are sent at once" : text };
  const what = `${waiting} command${waiting === 1 ? "" : "s"}`;
  const title = status === "closed"
    ? `${what} did not reach the server and will not be sent: the server closed this connection`
    : `${what} wait for the server; they are sent, once each, when it answers again (${text})`;
  return { text: `offline · ${waiting} waiting`, look: "offline", title };
}

/**
 * The labels that waiting commands would save or delete on `frame`: Map object -> shape (null: a
 * delete), the latest command per object winning, so the page can show the work it holds.
 * `entries`: [{message}] as Connection.waiting() gives them.
 */
export function waitingLabels(entries, frame) {
  const out = new Map();
  for (const { message } of entries) {
    let body;
    try {
      body = JSON.parse(message).body;
    } catch {
      continue;
    }
    if (body?.frame !== frame) continue;
    if (body.type === "label_saved") out.set(body.object, body.shape);
    else if (body.type === "label_deleted") out.set(body.object, null);
  }
  return out;
}

/** The text kept in storage for `entries` ({id, message}) of `user`; null when there is nothing to keep. */
export function encodeQueue(user, entries) {
  if (!entries.length) return null;
  return JSON.stringify({ v: 1, user, commands: entries.map(({ id, message }) => ({ id, message })) });
}

/**
 * The entries kept for `user` in `text` (what encodeQueue wrote), in order; [] for anything
 * else (nothing kept, another user's queue, text this version cannot read).
 */
export function decodeQueue(text, user) {
  if (!text) return [];
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return [];
  }
  if (!data || data.v !== 1 || data.user !== user || !Array.isArray(data.commands)) return [];
  return data.commands.filter((c) => c && typeof c.id === "string" && typeof c.message === "string");
}

/**
 * Keeps one connection's waiting commands over a reload and warns before they would be lost.
 * page: {connection (a net.js Connection), user (the signed-in user's name), storage
 * (sessionStorage), answered(promise) (the page's handling of an ack or a refusal), changed()
 * (the count changed: redraw the pill)}.
 */
export class Outbox {
  constructor(page) {
    this.page = page;
    const { connection } = page;
    // Kept while the socket is down (and on leaving the page); forgotten once all are answered.
    this._onQueue = () => {
      if (connection.status !== "open" || !connection.waitingCount()) this.save();
      page.changed();
    };
    this._onHide = () => this.save();
    this._onBeforeUnload = (e) => {
      // A reload keeps the queue (save, above); closing the tab would lose it: ask first.
      if (connection.status === "open" || !connection.waitingCount()) return;
      this.save();
      e.preventDefault();
      e.returnValue = "";
    };
    connection.addEventListener("queue", this._onQueue);
    window.addEventListener("pagehide", this._onHide);
    window.addEventListener("beforeunload", this._onBeforeUnload);
  }

  /** Queue the commands a reload left behind (before the connection opens); how many. */
  restore() {
    const { connection, user } = this.page;
    const entries = decodeQueue(this._read(), user);
    for (const { id, message } of entries) this.page.answered(connection.resend(id, message));
    return entries.length;
  }

  /** Keep the waiting commands (or forget them once there are none). */
  save() {
    const { connection, storage, user } = this.page;
    const text = encodeQueue(user, connection.waiting());
    try {
      if (text === null) storage.removeItem(queueKey(connection.media));
      else storage.setItem(queueKey(connection.media), text);
    } catch {
      // Storage full or unavailable: the beforeunload warning still protects the work.
    }
  }

  /** Stop following the connection (another media item is opened); its queue stays kept. */
  detach() {
    const { connection } = this.page;
    this.save();
    connection.removeEventListener("queue", this._onQueue);
    window.removeEventListener("pagehide", this._onHide);
    window.removeEventListener("beforeunload", this._onBeforeUnload);
  }

  _read() {
    try {
      return this.page.storage.getItem(queueKey(this.page.connection.media));
    } catch {
      return null;
    }
  }
}
