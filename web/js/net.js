// Talking to the server: REST with the user's token, and one socket per media item that resumes
// from the last position it saw whenever it drops (docs/protocol.md).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  constructor(token) {
    this.token = token;
  }

  async request(method, path, { params, body } = {}) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params ?? {})) if (v !== undefined && v !== null) url.searchParams.set(k, v);
    const response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${this.token}`, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const error = data?.error ?? { code: "http_error", message: `${response.status} ${response.statusText}` };
      throw new ApiError(response.status, error.code, error.message);
    }
    return data;
  }

  get(path, params) {
    return this.request("GET", path, { params });
  }

  me() {
    return this.get("/api/me");
  }

  projects() {
    return this.get("/api/projects");
  }

  project(id) {
    return this.get(`/api/projects/${encodeURIComponent(id)}`);
  }

  history(media, after = 0, limit = 200) {
    return this.get(`/api/media/${encodeURIComponent(media)}/history`, { after, limit });
  }

  /** A frame as a Blob (JPEG). Fetched with the Authorization header, never a token in the URL. */
  async frame(media, index) {
    const response = await fetch(`/api/media/${encodeURIComponent(media)}/frames/${index}`, {
      headers: { Authorization: `Bearer ${this.token}` },
    });
    if (!response.ok) throw new ApiError(response.status, "http_error", `frame ${index}: ${response.status} ${response.statusText}`);
    return response.blob();
  }
}

const RETRY_MS = [250, 500, 1000, 2000, 4000];

/**
 * The socket of one media item. Events: "welcome", "snapshot", "events", "presence",
 * "status" (detail: "connecting" | "open" | "reconnecting" | "closed"), "refused" (an error
 * without a command id, detail: {code, message}), "queue" (detail: how many commands wait for
 * an answer; sent when that changes).
 */
export class Connection extends EventTarget {
  constructor(media, token, { lastSeq = () => null, frame = () => 0, labelsWindow = () => null } = {}) {
    super();
    this.media = media;
    this.token = token;
    this.lastSeq = lastSeq;
    this.frame = frame;
    this.labelsWindow = labelsWindow; // [first, last] frames whose full labels a snapshot carries (null: all)
    this.status = "closed";
    this.user = null;
    this.role = null;
    this._pending = new Map(); // command id -> {resolve, reject}
    this._outbox = []; // commands sent while down, resent on open
    this._attempt = 0;
    this._closing = false;
    this.ws = null;
  }

  connect() {
    this._closing = false;
    this._setStatus(this._attempt ? "reconnecting" : "connecting");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/api/media/${encodeURIComponent(this.media)}/ws`);
    this.ws = ws;
    ws.onopen = () => {
      const hello = { type: "hello", token: this.token, last_seq: this.lastSeq(), frame: this.frame() };
      const window = this.labelsWindow();
      if (window) hello.labels_window = window;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (message) => this._receive(JSON.parse(message.data));
    ws.onclose = (close) => this._closed(close);
  }

  close() {
    this._closing = true;
    this.ws?.close();
    this._setStatus("closed");
  }

  /** Send a command; resolves with its ack, rejects with {code, message}. */
  command(body, { id = crypto.randomUUID(), panoptic = false } = {}) {
    return this.resend(id, JSON.stringify({ type: "command", id, body, panoptic }));
  }

  /**
   * Send a command message made earlier (kept over a reload: outbox.js) under its own id; while
   * the socket is down it waits, in order, for the next welcome. Resolves as `command`.
   */
  resend(id, message) {
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, message });
      if (this.status === "open") this.ws.send(message);
      else this._outbox.push(id);
      this._queueChanged();
    });
  }

  /** The commands without an answer yet, in the order they were made: [{id, message}]. */
  waiting() {
    return [...this._pending].map(([id, pending]) => ({ id, message: pending.message }));
  }

  waitingCount() {
    return this._pending.size;
  }

  _queueChanged() {
    this.dispatchEvent(new CustomEvent("queue", { detail: this._pending.size }));
  }

  presence(frame, cursor = null) {
    if (this.status === "open") this.ws.send(JSON.stringify({ type: "presence", frame, cursor }));
  }

  _receive(message) {
    const emit = (type, detail) => this.dispatchEvent(new CustomEvent(type, { detail }));
    switch (message.type) {
      case "welcome":
        this.user = message.user;
        this.role = message.role;
        this._attempt = 0;
        this._setStatus("open");
        emit("welcome", message);
        // Commands whose answer was lost with the old socket: resending the same id is safe.
        for (const [id, pending] of this._pending) if (!this._outbox.includes(id)) this.ws.send(pending.message);
        for (const id of this._outbox.splice(0)) this.ws.send(this._pending.get(id).message);
        break;
      case "snapshot":
        emit("snapshot", message);
        break;
      case "events":
        emit("events", message.events);
        break;
      case "presence":
        emit("presence", message.users);
        break;
      case "ack": {
        const pending = this._pending.get(message.id);
        this._pending.delete(message.id);
        pending?.resolve(message);
        if (pending) this._queueChanged();
        break;
      }
      case "error": {
        const pending = message.id ? this._pending.get(message.id) : null;
        if (pending) {
          this._pending.delete(message.id);
          pending.reject({ code: message.code, message: message.message });
          this._queueChanged();
        } else emit("refused", { code: message.code, message: message.message });
        break;
      }
      default:
        break;
    }
  }

  _closed(close) {
    this.ws = null;
    if (this._closing) return;
    if (close.code === 4001 || close.code === 4003 || close.code === 4004) {
      this._setStatus("closed");
      this.dispatchEvent(new CustomEvent("refused", { detail: { code: `closed_${close.code}`, message: close.reason || "the server closed the connection" } }));
      return;
    }
    // Anything else (a network drop, a server restart, 4008 "too slow") resumes from lastSeq.
    this._setStatus("reconnecting");
    const delay = RETRY_MS[Math.min(this._attempt, RETRY_MS.length - 1)];
    this._attempt += 1;
    setTimeout(() => {
      if (!this._closing) this.connect();
    }, delay);
  }

  _setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent("status", { detail: status }));
  }
}
