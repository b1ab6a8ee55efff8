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
    // Fetched (with the token in a header), then shown through an object URL that is released
    // as soon as the image is decoded.
    promise = this.api
      .frame(this.media, index)
      .then(
        (blob) =>
          new Promise((resolve, reject) => {
            const url = URL.createObjectURL(blob);
            const image = new Image();
            image.decoding = "async";
            image.onload = () => {
              URL.revokeObjectURL(url);
              resolve(image);
            };
            image.onerror = () => {
              URL.revokeObjectURL(url);
              reject(new Error("not an image"));
            };
            image.src = url;
          }),
      )
      .catch(() => {
        if (this.cache.get(index) === promise) this.cache.delete(index);
        throw new Error(`frame ${index} could not be loaded`);
      });
    promise.catch(() => {});
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
