// Frame images of one media item: loaded once, kept in a small cache, neighbours fetched ahead
// so stepping and scrubbing do not wait on the network.

const KEEP = 64;

export class FrameImages {
  constructor(api, media, count) {
    this.api = api;
    this.media = media;
    this.count = count;
    this.cache = new Map(); // frame -> Promise<HTMLImageElement>
  }

  get(index) {
    let promise = this.cache.get(index);
    if (promise) {
      // Most recently used last.
      this.cache.delete(index);
      this.cache.set(index, promise);
      return promise;
    }
    const image = new Image();
    image.decoding = "async";
    promise = new Promise((resolve, reject) => {
      image.onload = () => resolve(image);
      image.onerror = () => {
        this.cache.delete(index);
        reject(new Error(`frame ${index} could not be loaded`));
      };
    });
    promise.catch(() => {});
    image.src = this.api.frameUrl(this.media, index);
    this.cache.set(index, promise);
    while (this.cache.size > KEEP) this.cache.delete(this.cache.keys().next().value);
    return promise;
  }

  /** Whether a frame is already decoded (the promise has settled with an image). */
  has(index) {
    return this.cache.has(index);
  }

  /** Fetch the frames around `index`, more of them in the direction of travel. */
  preload(index, direction = 1) {
    const ahead = direction >= 0 ? [1, 2, 3, 4, -1] : [-1, -2, -3, -4, 1];
    for (const step of ahead) {
      const i = index + step;
      if (i >= 0 && i < this.count && !this.cache.has(i)) this.get(i);
    }
  }
}
