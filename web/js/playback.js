// Playback (Space or the play button): frames advance at the media item's frame rate, one frame
// fetch at a time — when a frame arrives late, playback skips ahead to the frame that is due
// instead of queueing the ones it missed — and stops at the last frame. Stepping by hand while
// playing carries on from where the person went.
//
// Space: a tap plays or pauses; holding Space and dragging on the frame pans (the editor's), so
// the toggle happens on release, and only if no drag started while it was held.
//
// Frame numbers are shown from 0, as the API and the exports number them: `frameCounter` writes
// "frame 12 of 0–247" (the current frame and the range of valid frames).
//
// The scheduling (`nextStep`) and the counter touch no DOM (node --test tests/web/js/).

export const DEFAULT_FPS = 10;
export const MAX_FPS = 60;

/** "frame 12 of 0–247": frames numbered from 0, the range saying where they end. */
export function frameCounter(frame, frames) {
  if (!frames) return "frame \u2013";
  return `frame ${frame} of 0\u2013${frames - 1}`;
}

/** The frame rate playback uses for a media item (MediaAdded.fps; images and no fps: 10). */
export function playbackFps(media) {
  const fps = Number(media?.fps);
  return Number.isFinite(fps) && fps > 0 ? Math.min(MAX_FPS, fps) : DEFAULT_FPS;
}

/**
 * What playback does next: `{frame, wait}` — go to `frame` after `wait` ms — or null at the
 * end. `origin` {time, frame}: when playback (re)started and from which frame; frame i is due at
 * origin.time + (i - origin.frame) / fps. A frame shown late makes the next due frame a later
 * one (skipping), never a queue of missed ones.
 */
export function nextStep({ now, origin, fps, current, last }) {
  if (current >= last) return null;
  const due = origin.frame + Math.floor(((now - origin.time) * fps) / 1000);
  if (due > current) return { frame: Math.min(due, last), wait: 0 };
  const next = current + 1;
  return { frame: next, wait: Math.max(0, origin.time + ((next - origin.frame) * 1000) / fps - now) };
}

export class Player {
  /**
   * page: {state (its `frame`), media() (the open MediaAdded or null), goto(frame) (resolves
   * when the frame is on the canvas), changed(playing)}
   */
  constructor(page) {
    this.page = page;
    this.run = 0; // the current playback's number (0: stopped)
    this._runs = 0;
    this._space = null; // {dragged} while a Space press may become a play/pause toggle
  }

  get playing() {
    return this.run !== 0;
  }

  toggle() {
    if (this.playing) this.stop();
    else this.play();
  }

  stop() {
    if (!this.run) return;
    this.run = 0;
    this.page.changed(false);
  }

  async play() {
    const { page } = this;
    const media = page.media();
    if (!media || media.frames < 2 || this.playing) return;
    const run = (this.run = ++this._runs);
    page.changed(true);
    const last = media.frames - 1;
    if (page.state.frame >= last) await page.goto(0);
    const fps = playbackFps(media);
    let origin = { time: performance.now(), frame: page.state.frame };
    let expected = page.state.frame;
    while (this.run === run && page.media() === media) {
      const current = page.state.frame;
      if (current !== expected) origin = { time: performance.now(), frame: current }; // stepped by hand
      const step = nextStep({ now: performance.now(), origin, fps, current, last });
      if (!step) break;
      if (step.wait > 0) await new Promise((resolve) => setTimeout(resolve, step.wait));
      if (this.run !== run || page.media() !== media) return;
      if (page.state.frame !== current) {
        expected = -1; // moved while waiting: start again from there
        continue;
      }
      expected = step.frame;
      await page.goto(step.frame); // one fetch at a time; a late one makes the next step skip
    }
    if (this.run === run) this.stop();
  }

  // ---- Space: tap to play or pause, hold and drag to pan ------------------------------------

  /** The keymap's playPause action (keydown). */
  spaceDown(event) {
    if (event.repeat) return;
    this._space = { dragged: false };
  }

  /** Listen for the release of Space, and for a drag on the frame while it is held. */
  attach(stage) {
    stage.addEventListener("pointerdown", () => {
      if (this._space) this._space.dragged = true;
    });
    window.addEventListener("keyup", (e) => {
      if (e.code !== "Space" && e.key !== " ") return;
      const press = this._space;
      this._space = null;
      if (!press) return;
      e.preventDefault(); // a focused button does not click too
      if (!press.dragged) this.toggle();
    });
    window.addEventListener("blur", () => (this._space = null));
  }
}
