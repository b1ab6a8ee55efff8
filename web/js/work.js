// The model work as the page shows it (issue 17): where each running track of the open media item
// stands — waiting in the queue, worked by a worker, taken over by one after another died — and
// the live inference workers. The page only reads two REST answers (docs/api.md):
// `GET /api/media/{m}/tracks` every PLACEMENT_MS while the item has running tracks, and
// `GET /api/workers` every WORKERS_MS. A server alone on its log does the work itself (`shared`
// false): then there is nothing to tell, the indicator stays hidden and the tracks are not polled.
//
// The functions at the top and `Poller` are pure (node --test tests/web/js/ tests them);
// `Placements` and `WorkersIndicator` get from the page only what they use.

/** The name a server that runs the models itself, alone on its log, goes by. */
export const THIS_SERVER = "this server";
export const PLACEMENT_MS = 1000;
export const WORKERS_MS = 5000;
// A server that does not share its work only changes that on a restart: asked rarely.
export const WORKERS_UNSHARED_MS = 30000;

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A worker's short name: "host:pid" (its id is host:pid:random; pids are reused). */
export function workerName(id) {
  const parts = String(id ?? "").split(":");
  return parts.length >= 3 ? parts.slice(0, -1).join(":") : String(id ?? "");
}

/**
 * What a running track's row says about where it is, from its entry in
 * `GET /api/media/{m}/tracks` ({position, worker, resumed}): {text, look, title}, or null when
 * there is nothing to say (no entry, or the server works it itself).
 */
export function placementText(entry) {
  if (!entry) return null;
  if (entry.worker && entry.worker !== THIS_SERVER) {
    const name = workerName(entry.worker);
    if (entry.resumed) {
      return { text: `resumed on ${name}`, look: "resumed", title: `Taken over by worker ${entry.worker} after the worker running it stopped: it goes on from the last frame produced` };
    }
    return { text: `on ${name}`, look: "working", title: `Worked by worker ${entry.worker}` };
  }
  if (!entry.worker && entry.position) {
    const ahead = entry.position - 1;
    return { text: `queued #${entry.position}`, look: "queued", title: `Waiting for a free worker: ${ahead ? `${plural(ahead, "track")} ahead of it` : "next in the queue"}` };
  }
  return null;
}

/** One line of the indicator's tooltip about a worker (an entry of `GET /api/workers`). */
export function workerLine(worker) {
  const where = worker.device ? ` on ${worker.device}` : "";
  const clicks = worker.segmenter ? `clicks: ${worker.segmenter}` : "no clicks";
  const load = `working ${plural(worker.tracks ?? 0, "track")}, ${plural(worker.clicks ?? 0, "click")}${worker.resumed?.length ? ` (${worker.resumed.length} taken over)` : ""}`;
  return `${workerName(worker.id)} · ${worker.backend}${where} · trackers: ${(worker.trackers ?? []).join(", ")} · ${clicks} · ${load}`;
}

/**
 * The workers indicator for an answer of `GET /api/workers`: {hidden, text, look, title}. Hidden
 * unless the work is shared (a server alone on its log runs the models itself, or none run).
 */
export function workersView(answer) {
  if (!answer?.shared) return { hidden: true, text: "", look: "", title: "" };
  const workers = answer.workers ?? [];
  if (!workers.length) {
    return {
      hidden: false, text: "no workers", look: "none",
      title: "No live inference worker: track requests and clicks are refused until one starts (masklog worker)",
    };
  }
  const title = [`The model work is done by ${plural(workers.length, "live worker")}:`, ...workers.map(workerLine)].join("\n");
  return { hidden: false, text: plural(workers.length, "worker"), look: "live", title };
}

/**
 * Runs `task` (async) again `delay()` ms after each run ends, while started: never two at once.
 * A task that throws is tried again on the next turn; `skip()` true (a hidden tab) passes a turn.
 */
export class Poller {
  constructor(task, delay, { skip = () => false, timers = globalThis } = {}) {
    this.task = task;
    this.delay = delay;
    this.skip = skip;
    this.timers = timers;
    this.on = false;
    this.busy = false;
    this.timer = null;
  }

  /** Start now (if not running or waiting already). */
  start() {
    this.on = true;
    if (!this.busy && this.timer === null) this._run();
  }

  stop() {
    this.on = false;
    if (this.timer !== null) this.timers.clearTimeout(this.timer);
    this.timer = null;
  }

  async _run() {
    this.timer = null;
    if (!this.on) return;
    this.busy = true;
    try {
      if (!this.skip()) await this.task();
    } catch {
      // Unreachable for a moment, or refused: keep what is shown, ask again next turn.
    } finally {
      this.busy = false;
    }
    if (this.on && this.timer === null) this.timer = this.timers.setTimeout(() => this._run(), this.delay());
  }
}

const hiddenTab = () => typeof document !== "undefined" && document.hidden;

/** Where each running track of the open media item stands, polled while some run. */
export class Placements {
  /**
   * page: {media(): the open item's id or null, running(): whether it has running tracks,
   * shared(): whether the work is shared (null: not known yet), tracks(media): Promise of
   * `GET /api/media/{m}/tracks`, changed(): the rows should be drawn again}
   */
  constructor(page, { interval = PLACEMENT_MS } = {}) {
    this.page = page;
    this.media = null;
    this.byTrack = new Map(); // track id -> its entry in the last answer
    this.poller = new Poller(() => this._poll(), () => interval, { skip: hiddenTab });
  }

  /** After the tracks, the open item or the workers changed: poll while there is something to show. */
  sync() {
    const media = this.page.media();
    if (media !== this.media) {
      this.media = media;
      this._clear();
    }
    if (media && this.page.shared() && this.page.running()) this.poller.start();
    else {
      this.poller.stop();
      this._clear();
    }
  }

  /** The row text of a track ({text, look, title}), or null. */
  of(track) {
    return placementText(this.byTrack.get(track));
  }

  async _poll() {
    const media = this.media;
    if (!media || !this.page.running()) return;
    const answer = await this.page.tracks(media);
    if (media !== this.media || !this.poller.on) return; // another item was opened meanwhile
    this.byTrack = new Map((answer.tracks ?? []).map((entry) => [entry.track, entry]));
    this.page.changed();
  }

  _clear() {
    if (!this.byTrack.size) return;
    this.byTrack = new Map();
    this.page.changed();
  }
}

/** The toolbar's "2 workers" (data-testid="workers"), its tooltip listing them. */
export class WorkersIndicator {
  /** page: {workers(): Promise of `GET /api/workers`, sharedChanged(shared)} */
  constructor(page, root, { interval = WORKERS_MS, unshared = WORKERS_UNSHARED_MS } = {}) {
    this.page = page;
    this.root = root;
    this.shared = null; // null until the server has said
    this.poller = new Poller(() => this._poll(), () => (this.shared === false ? unshared : interval), { skip: hiddenTab });
  }

  start() {
    this.poller.start();
  }

  async _poll() {
    this.render(await this.page.workers());
  }

  render(answer) {
    const view = workersView(answer);
    const root = this.root;
    root.hidden = view.hidden;
    if (root.textContent !== view.text) root.textContent = view.text;
    root.title = view.title;
    root.dataset.state = view.look;
    root.dataset.count = String(answer?.workers?.length ?? 0);
    const shared = Boolean(answer?.shared);
    if (shared !== this.shared) {
      this.shared = shared;
      this.page.sharedChanged(shared);
    }
  }
}
